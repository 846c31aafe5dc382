import EventFlowProtocol
import NIOCore

/// One record to produce. Key and value are bytes; a nil key spreads records over partitions.
public struct ProducerMessage: Sendable {
    public var stream: String
    /// nil: chosen by key (murmur2) or, without a key, the stream's current sticky partition.
    public var partition: Int32?
    public var key: ByteBuffer?
    public var value: ByteBuffer?
    public var headers: [RecordHeader]
    /// Milliseconds since the epoch; nil means now.
    public var timestampMilliseconds: Int64?

    public init(stream: String, partition: Int32? = nil, key: ByteBuffer? = nil, value: ByteBuffer?,
                headers: [RecordHeader] = [], timestampMilliseconds: Int64? = nil) {
        self.stream = stream
        self.partition = partition
        self.key = key
        self.value = value
        self.headers = headers
        self.timestampMilliseconds = timestampMilliseconds
    }

    public init(stream: String, key: String? = nil, value: String) {
        self.init(stream: stream, key: key.map { ByteBuffer(string: $0) }, value: ByteBuffer(string: value))
    }

    /// Bytes the record adds to its batch, roughly; used for the batch and buffer limits.
    var estimatedByteCount: Int {
        var count = 21 + (key?.readableBytes ?? 0) + (value?.readableBytes ?? 0)
        for header in headers { count += 10 + header.key.utf8.count + (header.value?.readableBytes ?? 0) }
        return count
    }
}

/// Identifies a message given to `send`; ids increase by one per message of a producer.
public struct MessageID: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var rawValue: UInt64

    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public static func < (lhs: MessageID, rhs: MessageID) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { "\(rawValue)" }
}

/// The outcome of one message.
public struct DeliveryReport: Sendable, Hashable {
    public var id: MessageID
    public var stream: String
    /// -1 when the message failed before a partition was chosen.
    public var partition: Int32
    /// The record's offset; nil with `acks = .none` or on error.
    public var offset: Int64?
    public var error: ProducerError?

    public init(id: MessageID, stream: String, partition: Int32, offset: Int64?, error: ProducerError?) {
        self.id = id
        self.stream = stream
        self.partition = partition
        self.offset = offset
        self.error = error
    }
}

/// What the producer reports on its `events` sequence.
public enum ProducerEvent: Sendable, Hashable {
    /// The reports of one acknowledged (or failed) batch, in message id order.
    case deliveryReports([DeliveryReport])
}

/// Why a message or the producer failed.
public enum ProducerError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The broker answered with this error (after the retries allowed for retriable ones).
    case broker(ErrorCode, message: String?)
    /// Connecting, TLS, a closed connection or an undecodable answer.
    case connection(String)
    case authenticationFailed(String)
    case unknownStream(String)
    /// More unacknowledged bytes than `bufferedBytesMax`: wait for reports or `flush()`.
    case bufferFull
    case messageTooLarge(bytes: Int, max: Int)
    case shutDown
    case invalidConfiguration(String)
    case requestTimedOut

    public var description: String {
        switch self {
        case .broker(let code, let message): "broker error \(code)" + (message.map { ": \($0)" } ?? "")
        case .connection(let detail): "connection failed: \(detail)"
        case .authenticationFailed(let detail): "authentication failed: \(detail)"
        case .unknownStream(let name): "unknown stream \(name)"
        case .bufferFull: "producer buffer full"
        case .messageTooLarge(let bytes, let max): "message of \(bytes) bytes exceeds batchBytesMax \(max)"
        case .shutDown: "producer is shut down"
        case .invalidConfiguration(let detail): "invalid producer configuration: \(detail)"
        case .requestTimedOut: "request timed out"
        }
    }

    /// Whether trying again (new connection, later) may succeed.
    var isRetriable: Bool {
        switch self {
        case .broker(let code, _): code.isRetriable
        case .connection, .requestTimedOut: true
        default: false
        }
    }
}
