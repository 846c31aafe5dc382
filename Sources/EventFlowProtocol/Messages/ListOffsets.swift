import NIOCore

/// ListOffsets (key 2), v0–v5: the offset for a timestamp, or the earliest (-2) / latest (-1).
/// v5 changes no field (it lets the broker answer OFFSET_NOT_AVAILABLE); EventFlow serves v1–v5.
public struct ListOffsetsRequest: KafkaRequestMessage {
    public typealias Response = ListOffsetsResponse
    public static let apiKey = APIKey.listOffsets

    /// Timestamp asking for the next offset to be written (the high watermark).
    public static let latestTimestamp: Int64 = -1
    /// Timestamp asking for the earliest offset still stored.
    public static let earliestTimestamp: Int64 = -2

    public struct Partition: Sendable, Hashable {
        public var partitionIndex: Int32
        /// v4+ (-1 = unknown; EventFlow does not check leader epochs).
        public var currentLeaderEpoch: Int32
        public var timestamp: Int64
        /// v0 only: how many offsets to return (EventFlow returns at most one).
        public var maxNumOffsets: Int32

        public init(partitionIndex: Int32, currentLeaderEpoch: Int32 = -1, timestamp: Int64, maxNumOffsets: Int32 = 1) {
            self.partitionIndex = partitionIndex
            self.currentLeaderEpoch = currentLeaderEpoch
            self.timestamp = timestamp
            self.maxNumOffsets = maxNumOffsets
        }
    }

    public struct Topic: Sendable, Hashable {
        public var name: String
        public var partitions: [Partition]

        public init(name: String, partitions: [Partition]) {
            self.name = name
            self.partitions = partitions
        }
    }

    /// -1 for a consumer.
    public var replicaId: Int32
    /// v2+: 0 = read uncommitted, 1 = read committed (the same for EventFlow: no transactions).
    public var isolationLevel: Int8
    public var topics: [Topic]

    public init(replicaId: Int32 = -1, isolationLevel: Int8 = 0, topics: [Topic]) {
        self.replicaId = replicaId
        self.isolationLevel = isolationLevel
        self.topics = topics
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        buffer.writeInteger(replicaId)
        if version >= 2 { buffer.writeInteger(isolationLevel) }
        buffer.writeKafkaArray(topics) { buffer, topic in
            buffer.writeKafkaString(topic.name)
            buffer.writeKafkaArray(topic.partitions) { buffer, partition in
                buffer.writeInteger(partition.partitionIndex)
                if version >= 4 { buffer.writeInteger(partition.currentLeaderEpoch) }
                buffer.writeInteger(partition.timestamp)
                if version == 0 { buffer.writeInteger(partition.maxNumOffsets) }
            }
        }
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        var request = Self(replicaId: try buffer.readKafkaInt32("ListOffsetsRequest.replicaId"), topics: [])
        if version >= 2 { request.isolationLevel = try buffer.readKafkaInt8("ListOffsetsRequest.isolationLevel") }
        request.topics = try buffer.readKafkaArray("ListOffsetsRequest.topics", minimumElementBytes: 6) { buffer in
            Topic(name: try buffer.readKafkaString("ListOffsetsRequest.topics[].name"),
                  partitions: try buffer.readKafkaArray("ListOffsetsRequest.topics[].partitions", minimumElementBytes: 12) { buffer in
                      let index = try buffer.readKafkaInt32("ListOffsetsRequest.topics[].partitions[].partitionIndex")
                      var partition = Partition(partitionIndex: index, timestamp: 0)
                      if version >= 4 {
                          partition.currentLeaderEpoch = try buffer.readKafkaInt32("ListOffsetsRequest.topics[].partitions[].currentLeaderEpoch")
                      }
                      partition.timestamp = try buffer.readKafkaInt64("ListOffsetsRequest.topics[].partitions[].timestamp")
                      if version == 0 {
                          partition.maxNumOffsets = try buffer.readKafkaInt32("ListOffsetsRequest.topics[].partitions[].maxNumOffsets")
                      }
                      return partition
                  })
        }
        return request
    }
}

public struct ListOffsetsResponse: KafkaResponseMessage {
    public static let apiKey = APIKey.listOffsets

    public struct Partition: Sendable, Hashable {
        public var partitionIndex: Int32
        public var errorCode: ErrorCode
        /// v0 only: the offsets found (EventFlow: zero or one).
        public var oldStyleOffsets: [Int64]
        /// v1+: the timestamp of the offset found, -1 for earliest/latest.
        public var timestamp: Int64
        /// v1+.
        public var offset: Int64
        /// v4+.
        public var leaderEpoch: Int32

        public init(partitionIndex: Int32, errorCode: ErrorCode = .noError, oldStyleOffsets: [Int64] = [],
                    timestamp: Int64 = -1, offset: Int64 = -1, leaderEpoch: Int32 = -1) {
            self.partitionIndex = partitionIndex
            self.errorCode = errorCode
            self.oldStyleOffsets = oldStyleOffsets
            self.timestamp = timestamp
            self.offset = offset
            self.leaderEpoch = leaderEpoch
        }
    }

    public struct Topic: Sendable, Hashable {
        public var name: String
        public var partitions: [Partition]

        public init(name: String, partitions: [Partition]) {
            self.name = name
            self.partitions = partitions
        }
    }

    /// v2+.
    public var throttleTimeMs: Int32
    public var topics: [Topic]

    public init(throttleTimeMs: Int32 = 0, topics: [Topic]) {
        self.throttleTimeMs = throttleTimeMs
        self.topics = topics
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        if version >= 2 { buffer.writeInteger(throttleTimeMs) }
        buffer.writeKafkaArray(topics) { buffer, topic in
            buffer.writeKafkaString(topic.name)
            buffer.writeKafkaArray(topic.partitions) { buffer, partition in
                buffer.writeInteger(partition.partitionIndex)
                buffer.writeErrorCode(partition.errorCode)
                if version == 0 {
                    buffer.writeKafkaArray(partition.oldStyleOffsets) { $0.writeInteger($1) }
                } else {
                    buffer.writeInteger(partition.timestamp)
                    buffer.writeInteger(partition.offset)
                }
                if version >= 4 { buffer.writeInteger(partition.leaderEpoch) }
            }
        }
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        var response = Self(topics: [])
        if version >= 2 { response.throttleTimeMs = try buffer.readKafkaInt32("ListOffsetsResponse.throttleTimeMs") }
        response.topics = try buffer.readKafkaArray("ListOffsetsResponse.topics", minimumElementBytes: 6) { buffer in
            Topic(name: try buffer.readKafkaString("ListOffsetsResponse.topics[].name"),
                  partitions: try buffer.readKafkaArray("ListOffsetsResponse.topics[].partitions", minimumElementBytes: 10) { buffer in
                      var partition = Partition(
                          partitionIndex: try buffer.readKafkaInt32("ListOffsetsResponse.topics[].partitions[].partitionIndex"),
                          errorCode: try buffer.readErrorCode("ListOffsetsResponse.topics[].partitions[].errorCode"))
                      if version == 0 {
                          partition.oldStyleOffsets = try buffer.readKafkaArray("ListOffsetsResponse.topics[].partitions[].oldStyleOffsets",
                                                                                minimumElementBytes: 8) {
                              try $0.readKafkaInt64("ListOffsetsResponse.topics[].partitions[].oldStyleOffsets[]")
                          }
                      } else {
                          partition.timestamp = try buffer.readKafkaInt64("ListOffsetsResponse.topics[].partitions[].timestamp")
                          partition.offset = try buffer.readKafkaInt64("ListOffsetsResponse.topics[].partitions[].offset")
                      }
                      if version >= 4 {
                          partition.leaderEpoch = try buffer.readKafkaInt32("ListOffsetsResponse.topics[].partitions[].leaderEpoch")
                      }
                      return partition
                  })
        }
        return response
    }
}
