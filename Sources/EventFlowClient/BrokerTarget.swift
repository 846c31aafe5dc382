import Foundation

/// Where and how to reach a broker, from the command-line flags with their `EVENTFLOW_*`
/// fallbacks: shared by the CLI and the load generator so both read the same variables the same way.
public struct BrokerTarget: Sendable {
    public var brokers: [BrokerAddress]
    public var credentials: APIKeyCredentials?
    public var security: TransportSecurity

    /// The reason a flag or variable cannot be used, as one line for the user.
    public struct Problem: Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    /// Each argument falls back to its variable: `EVENTFLOW_BROKERS` (else 127.0.0.1:9092),
    /// `EVENTFLOW_API_KEY` and `EVENTFLOW_API_SECRET` (both or neither), `EVENTFLOW_CA` (ignored with plaintext).
    public static func resolve(brokers: String?, apiKey: String?, apiSecret: String?, ca: String?, plaintext: Bool,
                               environment: [String: String]) throws(Problem) -> BrokerTarget {
        let brokerList = brokers ?? environment["EVENTFLOW_BROKERS"] ?? "127.0.0.1:9092"
        guard let addresses = BrokerAddress.parseList(brokerList) else {
            throw Problem(description: "--brokers: expected host:port[,host:port], got '\(brokerList)'")
        }
        let credentials: APIKeyCredentials?
        switch (apiKey ?? environment["EVENTFLOW_API_KEY"], apiSecret ?? environment["EVENTFLOW_API_SECRET"]) {
        case let (keyID?, secret?): credentials = APIKeyCredentials(keyID: keyID, secret: secret)
        case (nil, nil): credentials = nil
        default: throw Problem(description: "give both --api-key and --api-secret (or EVENTFLOW_API_KEY and EVENTFLOW_API_SECRET)")
        }
        guard !plaintext else { return BrokerTarget(brokers: addresses, credentials: credentials, security: .plaintext) }
        let caPath = ca ?? environment["EVENTFLOW_CA"]
        if let caPath, !FileManager.default.isReadableFile(atPath: caPath) {
            throw Problem(description: "--ca: cannot read \(caPath)")
        }
        return BrokerTarget(brokers: addresses, credentials: credentials, security: .tls(caFilePath: caPath))
    }
}
