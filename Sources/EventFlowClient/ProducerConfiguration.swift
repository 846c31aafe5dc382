import EventFlowProtocol

/// A broker's address, `host:port`.
public struct BrokerAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port` (`[v6]:port` for IPv6); a missing port means 9092.
    public init?(parsing text: String) {
        let trimmed = text.trimmingWhitespace()
        guard !trimmed.isEmpty else { return nil }
        if trimmed.hasPrefix("["), let close = trimmed.firstIndex(of: "]") {
            let host = String(trimmed[trimmed.index(after: trimmed.startIndex)..<close])
            let rest = trimmed[trimmed.index(after: close)...]
            if rest.isEmpty { self.init(host: host, port: 9092); return }
            guard rest.hasPrefix(":"), let port = Int(rest.dropFirst()), (1...65535).contains(port) else { return nil }
            self.init(host: host, port: port)
            return
        }
        let parts = trimmed.split(separator: ":", omittingEmptySubsequences: false)
        switch parts.count {
        case 1:
            self.init(host: trimmed, port: 9092)
        case 2:
            guard !parts[0].isEmpty, let port = Int(parts[1]), (1...65535).contains(port) else { return nil }
            self.init(host: String(parts[0]), port: port)
        default:
            return nil
        }
    }

    /// A comma-separated list; nil if any entry is malformed or the list is empty.
    public static func parseList(_ text: String) -> [BrokerAddress]? {
        let entries = text.split(separator: ",").map(String.init)
        let addresses = entries.compactMap(BrokerAddress.init(parsing:))
        guard !addresses.isEmpty, addresses.count == entries.count else { return nil }
        return addresses
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

extension String {
    func trimmingWhitespace() -> String {
        guard let first = firstIndex(where: { !$0.isWhitespace }),
              let last = lastIndex(where: { !$0.isWhitespace }) else { return "" }
        return String(self[first...last])
    }
}

/// An API key: SASL PLAIN username = key id, password = secret.
public struct APIKeyCredentials: Sendable, Hashable {
    public var keyID: String
    public var secret: String

    public init(keyID: String, secret: String) {
        self.keyID = keyID
        self.secret = secret
    }
}

/// How the connection is secured.
public enum TransportSecurity: Sendable, Hashable {
    /// Plaintext TCP; only when asked for explicitly.
    case plaintext
    /// TLS, trusting the CA certificates in the PEM file at `caFilePath`, or the system's roots when nil.
    case tls(caFilePath: String?)
}

/// Which acknowledgement a produce waits for (Kafka's `acks`).
public enum ProducerAcks: Int16, Sendable, Hashable {
    /// -1: after the broker committed the batch to PostgreSQL.
    case all = -1
    /// 0: no answer; delivery reports carry no offset.
    case none = 0
    /// 1: after the broker's batcher accepted the batch (in memory).
    case leader = 1
}

/// The producer's settings, with EventFlow's defaults.
public struct ProducerConfiguration: Sendable {
    public enum Compression: Sendable, Hashable {
        case none
        case lz4
    }

    public var brokers: [BrokerAddress]
    /// nil: no SASL (only for brokers that do not require it).
    public var credentials: APIKeyCredentials?
    public var security: TransportSecurity
    public var clientID: String = "eventflow-swift"

    /// How long a batch waits for more records before it is sent.
    public var lingerMilliseconds: Int = 5
    /// A batch is sealed when its uncompressed records would exceed this size.
    public var batchBytesMax: Int = 1024 * 1024
    /// Records accepted by `send` but not yet acknowledged; beyond it `send` throws `.bufferFull`.
    public var bufferedBytesMax: Int = 64 * 1024 * 1024
    public var compression: Compression = .lz4
    public var acks: ProducerAcks = .all
    /// Producer id + epoch + per-partition sequences, so retries are never stored twice. Needs `acks = .all`.
    public var idempotent: Bool = true
    /// Attempts after the first for a batch failing with a retriable error.
    public var retriesMax: Int = 10
    /// First retry waits this long; each further retry doubles it, up to `retryBackoffMaxMilliseconds`.
    public var retryBackoffMilliseconds: Int = 100
    public var retryBackoffMaxMilliseconds: Int = 2_000
    /// A request unanswered after this long closes its connection (pipelined answers come in order,
    /// so nothing behind it could be trusted); its batches are retried on a new connection.
    public var requestTimeoutMilliseconds: Int = 30_000
    /// Requests sent on one connection and not yet answered.
    public var inflightRequestsMax: Int = 5
    /// The largest response frame accepted from a broker.
    public var frameBytesMax: Int = KafkaFrameDecoder.defaultFrameBytesMax
    public var connectTimeoutMilliseconds: Int = 10_000

    public init(brokers: [BrokerAddress], credentials: APIKeyCredentials?, security: TransportSecurity) {
        self.brokers = brokers
        self.credentials = credentials
        self.security = security
    }

    /// The first inconsistency, if any.
    func validationError() -> String? {
        if brokers.isEmpty { return "no broker address" }
        if idempotent && acks != .all { return "an idempotent producer needs acks = all (-1)" }
        if lingerMilliseconds < 0 { return "lingerMilliseconds must not be negative" }
        if batchBytesMax < 1 { return "batchBytesMax must be positive" }
        if bufferedBytesMax < batchBytesMax { return "bufferedBytesMax must be at least batchBytesMax" }
        if inflightRequestsMax < 1 { return "inflightRequestsMax must be at least 1" }
        if retriesMax < 0 { return "retriesMax must not be negative" }
        if requestTimeoutMilliseconds < 1 { return "requestTimeoutMilliseconds must be positive" }
        return nil
    }
}
