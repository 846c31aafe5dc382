import NIOCore

// The "consumer" embedded protocol: the bytes a consumer puts into JoinGroup's protocol metadata
// and the leader puts into SyncGroup's assignments. The broker passes them through opaquely; every
// member of a group (Java, librdkafka, kafka-python, EventFlow) must read what the others wrote, so
// the layout is Kafka's `ConsumerProtocolSubscription` / `ConsumerProtocolAssignment` to the byte.
// Unlike the API messages, each structure starts with its own int16 version.

/// What a member subscribes to (JoinGroup's `protocols[].metadata`), versions 0–1 written, 0–3 read.
public struct ConsumerProtocolSubscription: Sendable, Hashable {
    public struct OwnedPartitions: Sendable, Hashable {
        public var topic: String
        public var partitions: [Int32]

        public init(topic: String, partitions: [Int32]) {
            self.topic = topic
            self.partitions = partitions
        }
    }

    /// The version the bytes carry; `encode` writes 0 or 1 (higher versions only add fields it has no use for).
    public var version: Int16
    public var topics: [String]
    /// Assignor-specific; nil and empty are different on the wire (int32 −1 vs 0).
    public var userData: ByteBuffer?
    /// v1+: the partitions the member holds now (cooperative assignors use it; eager ones ignore it).
    public var ownedPartitions: [OwnedPartitions]
    /// v2+ (read only): the generation the owned partitions are from; −1 when absent.
    public var generationId: Int32
    /// v3+ (read only).
    public var rackId: String?

    public init(version: Int16 = 1, topics: [String], userData: ByteBuffer? = nil, ownedPartitions: [OwnedPartitions] = [],
                generationId: Int32 = -1, rackId: String? = nil) {
        self.version = version
        self.topics = topics
        self.userData = userData
        self.ownedPartitions = ownedPartitions
        self.generationId = generationId
        self.rackId = rackId
    }

    /// Writes version 0 or 1 (`version` clamped to that range: the fields of v2+ are not ours to invent).
    public func encode(into buffer: inout ByteBuffer) {
        let written = min(max(version, 0), 1)
        buffer.writeInteger(written)
        buffer.writeKafkaArray(topics) { $0.writeKafkaString($1) }
        buffer.writeKafkaNullableBytes(userData)
        if written >= 1 {
            buffer.writeKafkaArray(ownedPartitions) { buffer, owned in
                buffer.writeKafkaString(owned.topic)
                buffer.writeKafkaInt32Array(owned.partitions)
            }
        }
    }

    public func encoded() -> ByteBuffer {
        var buffer = ByteBuffer()
        encode(into: &buffer)
        return buffer
    }

    /// Reads any version: fields of versions newer than 3 come after the known ones and are
    /// skipped, as Kafka's own reader does (a newer client may join an older group).
    public static func decode(from buffer: inout ByteBuffer) throws -> Self {
        let version = try buffer.readKafkaInt16("ConsumerProtocolSubscription.version")
        guard version >= 0 else {
            throw ProtocolError(.invalidValue, field: "ConsumerProtocolSubscription.version", offset: buffer.readerIndex - 2,
                                detail: "negative version \(version)")
        }
        var subscription = Self(version: version,
                                topics: try buffer.readKafkaArray("ConsumerProtocolSubscription.topics", minimumElementBytes: 2) {
                                    try $0.readKafkaString("ConsumerProtocolSubscription.topics[]")
                                })
        subscription.userData = try buffer.readKafkaNullableBytes("ConsumerProtocolSubscription.userData")
        if version >= 1 {
            subscription.ownedPartitions = try buffer.readKafkaArray("ConsumerProtocolSubscription.ownedPartitions",
                                                                     minimumElementBytes: 6) { buffer in
                OwnedPartitions(topic: try buffer.readKafkaString("ConsumerProtocolSubscription.ownedPartitions[].topic"),
                                partitions: try buffer.readKafkaInt32Array("ConsumerProtocolSubscription.ownedPartitions[].partitions"))
            }
        }
        if version >= 2 { subscription.generationId = try buffer.readKafkaInt32("ConsumerProtocolSubscription.generationId") }
        if version >= 3 { subscription.rackId = try buffer.readKafkaNullableString("ConsumerProtocolSubscription.rackId") }
        buffer.moveReaderIndex(to: buffer.writerIndex)
        return subscription
    }

    public static func decode(_ bytes: ByteBuffer) throws -> Self {
        var copy = bytes
        return try decode(from: &copy)
    }
}

/// What the leader hands one member (SyncGroup's `assignments[].assignment`), versions 0–1 (same layout).
public struct ConsumerProtocolAssignment: Sendable, Hashable {
    public struct TopicPartitions: Sendable, Hashable {
        public var topic: String
        public var partitions: [Int32]

        public init(topic: String, partitions: [Int32]) {
            self.topic = topic
            self.partitions = partitions
        }
    }

    public var version: Int16
    public var assignedPartitions: [TopicPartitions]
    public var userData: ByteBuffer?

    public init(version: Int16 = 1, assignedPartitions: [TopicPartitions], userData: ByteBuffer? = nil) {
        self.version = version
        self.assignedPartitions = assignedPartitions
        self.userData = userData
    }

    public func encode(into buffer: inout ByteBuffer) {
        buffer.writeInteger(min(max(version, 0), 1))
        buffer.writeKafkaArray(assignedPartitions) { buffer, entry in
            buffer.writeKafkaString(entry.topic)
            buffer.writeKafkaInt32Array(entry.partitions)
        }
        buffer.writeKafkaNullableBytes(userData)
    }

    public func encoded() -> ByteBuffer {
        var buffer = ByteBuffer()
        encode(into: &buffer)
        return buffer
    }

    /// Zero bytes decode as an empty assignment: that is what a member gets when the leader
    /// assigned it nothing at all, or a SyncGroup answer with an error carries.
    public static func decode(from buffer: inout ByteBuffer) throws -> Self {
        if buffer.readableBytes == 0 { return Self(version: 0, assignedPartitions: []) }
        let version = try buffer.readKafkaInt16("ConsumerProtocolAssignment.version")
        guard version >= 0 else {
            throw ProtocolError(.invalidValue, field: "ConsumerProtocolAssignment.version", offset: buffer.readerIndex - 2,
                                detail: "negative version \(version)")
        }
        let assigned = try buffer.readKafkaArray("ConsumerProtocolAssignment.assignedPartitions", minimumElementBytes: 6) { buffer in
            TopicPartitions(topic: try buffer.readKafkaString("ConsumerProtocolAssignment.assignedPartitions[].topic"),
                            partitions: try buffer.readKafkaInt32Array("ConsumerProtocolAssignment.assignedPartitions[].partitions"))
        }
        let userData = try buffer.readKafkaNullableBytes("ConsumerProtocolAssignment.userData")
        // Fields a later version may add follow; skipped, as Kafka's reader does.
        buffer.moveReaderIndex(to: buffer.writerIndex)
        return Self(version: version, assignedPartitions: assigned, userData: userData)
    }

    public static func decode(_ bytes: ByteBuffer) throws -> Self {
        var copy = bytes
        return try decode(from: &copy)
    }
}
