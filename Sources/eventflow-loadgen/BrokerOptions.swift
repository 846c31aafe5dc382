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

    struct Resolved {
        var addresses: [BrokerAddress]
        var credentials: APIKeyCredentials?
        var security: TransportSecurity
    }

    func resolve(environment: [String: String]) throws -> Resolved {
        let brokerList = brokers ?? environment["EVENTFLOW_BROKERS"] ?? "127.0.0.1:9092"
        guard let addresses = BrokerAddress.parseList(brokerList) else {
            throw LoadgenFailure("--brokers: expected host:port[,host:port], got '\(brokerList)'")
        }
        let keyID = apiKey ?? environment["EVENTFLOW_API_KEY"]
        let secret = apiSecret ?? environment["EVENTFLOW_API_SECRET"]
        let credentials: APIKeyCredentials?
        switch (keyID, secret) {
        case let (keyID?, secret?): credentials = APIKeyCredentials(keyID: keyID, secret: secret)
        case (nil, nil): credentials = nil
        default: throw LoadgenFailure("give both --api-key and --api-secret (or EVENTFLOW_API_KEY and EVENTFLOW_API_SECRET)")
        }
        let caPath = plaintext ? nil : (ca ?? environment["EVENTFLOW_CA"])
        if let caPath, !FileManager.default.isReadableFile(atPath: caPath) {
            throw LoadgenFailure("--ca: cannot read \(caPath)")
        }
        return Resolved(addresses: addresses, credentials: credentials, security: plaintext ? .plaintext : .tls(caFilePath: caPath))
    }
}
