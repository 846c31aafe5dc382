import EventFlowProtocol
import NIOCore

/// One record read from a stream partition.
///
/// Key, value and header values are slices of the fetched (or decompressed) batch, not copies:
/// holding a message keeps its batch's memory alive, so copy what is kept for long.
public struct ConsumerMessage: Sendable, Hashable {
    public var stream: String
    public var partition: Int32
    public var offset: Int64
    public var key: ByteBuffer?
    public var value: ByteBuffer?
    public var headers: [RecordHeader]
    /// Milliseconds since the epoch: the producer's create time, or the broker's append time.
    public var timestampMilliseconds: Int64

    public init(stream: String, partition: Int32, offset: Int64, key: ByteBuffer?, value: ByteBuffer?,
                headers: [RecordHeader] = [], timestampMilliseconds: Int64) {
        self.stream = stream
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.headers = headers
        self.timestampMilliseconds = timestampMilliseconds
    }
}

/// Why the consumer stopped. `messages` throws it after the messages that came before it.
public enum ConsumerError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The broker answered with this error (after the retries allowed for retriable ones).
    case broker(ErrorCode, message: String?)
    /// Connecting, TLS, a closed connection or an undecodable answer, after `retriesMax` attempts.
    case connection(String)
    case authenticationFailed(String)
    case unknownStream(String)
    case unknownPartition(stream: String, partition: Int32, partitionCount: Int32)
    /// The offset is outside the stored range and `autoOffsetReset` is `.error`.
    case offsetOutOfRange(stream: String, partition: Int32, offset: Int64)
    /// A fetched batch failed its CRC or structure check.
    case corruptBatch(stream: String, partition: Int32, offset: Int64, detail: String)
    /// The partition's next batch does not fit in a Fetch answer of `partitionFetchBytesMax` bytes.
    case batchTooLarge(stream: String, partition: Int32, offset: Int64, fetchBytes: Int)
    case invalidConfiguration(String)
    case requestTimedOut
    /// A group commit did not go through (rebalance, shutdown, or the coordinator refused it).
    case commitFailed(String)
    /// `commit()` or `storeOffset(_:)` on a consumer that is not in group mode, or a partition it does not own.
    case notInGroup(String)

    public var description: String {
        switch self {
        case .broker(let code, let message): "broker error \(code)" + (message.map { ": \($0)" } ?? "")
        case .connection(let detail): "connection failed: \(detail)"
        case .authenticationFailed(let detail): "authentication failed: \(detail)"
        case .unknownStream(let name): "unknown stream \(name)"
        case .unknownPartition(let stream, let partition, let count):
            "stream \(stream) has no partition \(partition) (it has \(count))"
        case .offsetOutOfRange(let stream, let partition, let offset):
            "offset \(offset) is out of range for \(stream)/\(partition) (autoOffsetReset is error)"
        case .corruptBatch(let stream, let partition, let offset, let detail):
            "corrupt record batch in \(stream)/\(partition) at offset \(offset): \(detail)"
        case .batchTooLarge(let stream, let partition, let offset, let bytes):
            "the batch at \(stream)/\(partition) offset \(offset) does not fit in a \(bytes)-byte fetch (raise partitionFetchBytesMax)"
        case .invalidConfiguration(let detail): "invalid consumer configuration: \(detail)"
        case .requestTimedOut: "request timed out"
        case .commitFailed(let detail): "commit failed: \(detail)"
        case .notInGroup(let detail): detail
        }
    }

    /// The connection layer is shared with the producer and reports its errors as `ProducerError`.
    init(_ error: ProducerError) {
        switch error {
        case .broker(let code, let message): self = .broker(code, message: message)
        case .connection(let detail): self = .connection(detail)
        case .authenticationFailed(let detail): self = .authenticationFailed(detail)
        case .unknownStream(let name): self = .unknownStream(name)
        case .requestTimedOut: self = .requestTimedOut
        case .invalidConfiguration(let detail): self = .invalidConfiguration(detail)
        case .bufferFull, .messageTooLarge, .shutDown: self = .connection("\(error)")
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
