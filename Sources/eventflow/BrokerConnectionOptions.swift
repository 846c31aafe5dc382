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

    struct Target {
        var brokers: [BrokerAddress]
        var credentials: APIKeyCredentials?
        var security: TransportSecurity
    }

    /// The flags, each falling back to its environment variable.
    func resolve(environment: [String: String]) throws -> Target {
        let brokerList = brokers ?? environment["EVENTFLOW_BROKERS"] ?? "127.0.0.1:9092"
        guard let addresses = BrokerAddress.parseList(brokerList) else {
            throw ValidationError("--brokers: expected host:port[,host:port], got '\(brokerList)'")
        }
        let keyID = apiKey ?? environment["EVENTFLOW_API_KEY"]
        let secret = apiSecret ?? environment["EVENTFLOW_API_SECRET"]
        let credentials: APIKeyCredentials?
        switch (keyID, secret) {
        case let (keyID?, secret?): credentials = APIKeyCredentials(keyID: keyID, secret: secret)
        case (nil, nil): credentials = nil
        default: throw ValidationError("give both --api-key and --api-secret (or EVENTFLOW_API_KEY and EVENTFLOW_API_SECRET)")
        }
        let caPath = ca ?? environment["EVENTFLOW_CA"]
        if let caPath, !plaintext, !FileManager.default.isReadableFile(atPath: caPath) {
            throw ValidationError("--ca: cannot read \(caPath)")
        }
        return Target(brokers: addresses, credentials: credentials, security: plaintext ? .plaintext : .tls(caFilePath: caPath))
    }
}
