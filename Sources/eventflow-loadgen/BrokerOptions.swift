import ArgumentParser
import EventFlowClient
import Foundation

/// How the broker is reached: the flags `produce` and `consume` share (and the CLI's variables).
struct BrokerOptions: ParsableArguments {
    @Option(help: "Brokers, host:port[,host:port] (default: $EVENTFLOW_BROKERS or 127.0.0.1:9092).")
    var brokers: String?

    @Option(help: "API key id (default: $EVENTFLOW_API_KEY).")
    var apiKey: String?

    @Option(help: "API key secret (default: $EVENTFLOW_API_SECRET).")
    var apiSecret: String?

    @Option(help: "CA certificate (PEM) to trust (default: $EVENTFLOW_CA; unset: the system's roots).")
    var ca: String?

    @Flag(help: "Connect without TLS.")
    var plaintext = false

    mutating func validate() throws {
        if plaintext, ca != nil { throw ValidationError("--ca and --plaintext exclude each other") }
    }

    func resolve(environment: [String: String]) throws -> BrokerTarget {
        do {
            return try BrokerTarget.resolve(brokers: brokers, apiKey: apiKey, apiSecret: apiSecret, ca: ca, plaintext: plaintext,
                                            environment: environment)
        } catch {
            throw LoadgenFailure(error.description)
        }
    }
}
