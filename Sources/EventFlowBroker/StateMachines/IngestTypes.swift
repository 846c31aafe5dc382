import Foundation
import NIOCore

/// One partition of one event stream: the unit that owns a dense offset sequence.
public struct StreamPartition: Hashable, Sendable, CustomStringConvertible {
    public var streamID: UUID
    public var partition: Int32

    public init(streamID: UUID, partition: Int32) {
        self.streamID = streamID
        self.partition = partition
    }

    public var description: String { "\(streamID)/\(partition)" }
}

/// An opaque identifier the I/O layer attaches to a request so it can answer it when a
/// state machine says so. The machines never interpret it.
public struct RequestToken: Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64

    public init(_ rawValue: UInt64) {
        self.rawValue = rawValue
    }

    public var description: String { "#\(rawValue)" }
}

/// When a produce is answered. Maps to Kafka's `acks`: -1 = durable, 1 = memory, 0 = none.
public enum AckMode: Hashable, Sendable {
    /// After the flush holding the batch has committed (`acks=-1` / `all`).
    case durable
    /// As soon as the batcher has accepted the batch and assigned its offsets (`acks=1`).
    case memory
    /// Never: the producer does not wait for an answer (`acks=0`).
    case none

    /// The Kafka `acks` value, or nil if it is not one EventFlow accepts (Kafka error 21).
    public init?(kafkaAcks: Int16) {
        switch kafkaAcks {
        case -1: self = .durable
        case 1: self = .memory
        case 0: self = .none
        default: return nil
        }
    }
}

/// The idempotent-producer fields of a batch header (`producerId >= 0`).
public struct ProducerBatchInfo: Hashable, Sendable {
    public var producerID: Int64
    public var epoch: Int16
    public var baseSequence: Int32

    public init(producerID: Int64, epoch: Int16, baseSequence: Int32) {
        self.producerID = producerID
        self.epoch = epoch
        self.baseSequence = baseSequence
    }
}

/// A record batch that the I/O layer has framed and validated (CRC, magic, record count),
/// handed to the batcher together with what is needed to answer its produce request.
public struct ValidatedBatch: Sendable {
    public var partition: StreamPartition
    public var recordCount: Int32
    /// The batch exactly as received (RecordBatch v2). The batcher rewrites only its base
    /// offset and never decodes the records.
    public var bytes: ByteBuffer
    /// Present when the batch carries a producer id, i.e. the producer is idempotent.
    public var producer: ProducerBatchInfo?
    public var ackMode: AckMode
    public var token: RequestToken
    /// Set when the partition belongs to a dead-letter stream (`<name>.dlq`): the organization
    /// whose streams the records' headers name. Only such batches are decoded by the flush, to
    /// index them in `dead_letter_events`; the machine passes the field through untouched.
    public var deadLetterOrganizationID: UUID?

    public init(
        partition: StreamPartition,
        recordCount: Int32,
        bytes: ByteBuffer,
        producer: ProducerBatchInfo? = nil,
        ackMode: AckMode,
        token: RequestToken,
        deadLetterOrganizationID: UUID? = nil
    ) {
        self.partition = partition
        self.recordCount = recordCount
        self.bytes = bytes
        self.producer = producer
        self.ackMode = ackMode
        self.token = token
        self.deadLetterOrganizationID = deadLetterOrganizationID
    }

    /// Memory the batch occupies while buffered: its bytes.
    public var byteCount: Int { bytes.readableBytes }
}
