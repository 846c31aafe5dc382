import ArgumentParser
import EventFlowClient
import Foundation

/// How `produce` and `consume` reach a broker: the same flags and environment for both.
struct BrokerConnectionOptions: ParsableArguments {
    @Option(name: .long, help: "Brokers, host:port[,host:port] (default: $EVENTFLOW_BROKERS or 127.0.0.1:9092).")
    var brokers: String?

    @Option(name: .long, help: "API key id (default: $EVENTFLOW_API_KEY).")
    var apiKey: String?

    @Option(name: .long, help: "API key secret (default: $EVENTFLOW_API_SECRET).")
    var apiSecret: String?

    @Option(name: .long, help: "CA certificate (PEM) to trust (default: $EVENTFLOW_CA; unset: the system's roots).")
    var ca: String?

    @Flag(name: .long, help: "Connect without TLS.")
    var plaintext = false

    /// The flags, each falling back to its environment variable.
    func resolve(environment: [String: String]) throws -> BrokerTarget {
        do {
            return try BrokerTarget.resolve(brokers: brokers, apiKey: apiKey, apiSecret: apiSecret, ca: ca, plaintext: plaintext,
                                            environment: environment)
        } catch {
            throw ValidationError(error.description)
        }
    }
}
