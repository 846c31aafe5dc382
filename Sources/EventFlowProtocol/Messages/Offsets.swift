import NIOCore

/// OffsetCommit (key 8), v2–v7: a consumer group's committed positions. v7 adds the group
/// instance id.
public struct OffsetCommitRequest: KafkaRequestMessage {
    public typealias Response = OffsetCommitResponse
    public static let apiKey = APIKey.offsetCommit

    public struct Partition: Sendable, Hashable {
        public var partitionIndex: Int32
        public var committedOffset: Int64
        /// v6+ (-1 = unknown).
        public var committedLeaderEpoch: Int32
        public var committedMetadata: String?

        public init(partitionIndex: Int32, committedOffset: Int64, committedLeaderEpoch: Int32 = -1,
                    committedMetadata: String? = nil) {
            self.partitionIndex = partitionIndex
            self.committedOffset = committedOffset
            self.committedLeaderEpoch = committedLeaderEpoch
            self.committedMetadata = committedMetadata
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

    public var groupId: String
    /// -1 for a commit from outside the group protocol (a "simple" consumer).
    public var generationId: Int32
    public var memberId: String
    /// v7+: the static member's instance id, nil for a dynamic member or a commit from outside the group.
    public var groupInstanceId: String?
    /// v2–v4: how long to keep the offsets (-1 = broker default). Removed in v5.
    public var retentionTimeMs: Int64
    public var topics: [Topic]

    public init(groupId: String, generationId: Int32 = -1, memberId: String = "", groupInstanceId: String? = nil,
                retentionTimeMs: Int64 = -1, topics: [Topic]) {
        self.groupId = groupId
        self.generationId = generationId
        self.memberId = memberId
        self.groupInstanceId = groupInstanceId
        self.retentionTimeMs = retentionTimeMs
        self.topics = topics
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        buffer.writeKafkaString(groupId)
        buffer.writeInteger(generationId)
        buffer.writeKafkaString(memberId)
        if version >= 7 { buffer.writeKafkaNullableString(groupInstanceId) }
        if version <= 4 { buffer.writeInteger(retentionTimeMs) }
        buffer.writeKafkaArray(topics) { buffer, topic in
            buffer.writeKafkaString(topic.name)
            buffer.writeKafkaArray(topic.partitions) { buffer, partition in
                buffer.writeInteger(partition.partitionIndex)
                buffer.writeInteger(partition.committedOffset)
                if version >= 6 { buffer.writeInteger(partition.committedLeaderEpoch) }
                buffer.writeKafkaNullableString(partition.committedMetadata)
            }
        }
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        var request = Self(groupId: try buffer.readKafkaString("OffsetCommitRequest.groupId"),
                           generationId: try buffer.readKafkaInt32("OffsetCommitRequest.generationId"),
                           memberId: try buffer.readKafkaString("OffsetCommitRequest.memberId"),
                           topics: [])
        if version >= 7 { request.groupInstanceId = try buffer.readKafkaNullableString("OffsetCommitRequest.groupInstanceId") }
        if version <= 4 { request.retentionTimeMs = try buffer.readKafkaInt64("OffsetCommitRequest.retentionTimeMs") }
        request.topics = try buffer.readKafkaArray("OffsetCommitRequest.topics", minimumElementBytes: 6) { buffer in
            Topic(name: try buffer.readKafkaString("OffsetCommitRequest.topics[].name"),
                  partitions: try buffer.readKafkaArray("OffsetCommitRequest.topics[].partitions", minimumElementBytes: 14) { buffer in
                      var partition = Partition(
                          partitionIndex: try buffer.readKafkaInt32("OffsetCommitRequest.topics[].partitions[].partitionIndex"),
                          committedOffset: try buffer.readKafkaInt64("OffsetCommitRequest.topics[].partitions[].committedOffset"))
                      if version >= 6 {
                          partition.committedLeaderEpoch = try buffer.readKafkaInt32("OffsetCommitRequest.topics[].partitions[].committedLeaderEpoch")
                      }
                      partition.committedMetadata = try buffer.readKafkaNullableString("OffsetCommitRequest.topics[].partitions[].committedMetadata")
                      return partition
                  })
        }
        return request
    }
}

public struct OffsetCommitResponse: KafkaResponseMessage {
    public static let apiKey = APIKey.offsetCommit

    public struct Partition: Sendable, Hashable {
        public var partitionIndex: Int32
        public var errorCode: ErrorCode

        public init(partitionIndex: Int32, errorCode: ErrorCode = .noError) {
            self.partitionIndex = partitionIndex
            self.errorCode = errorCode
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

    /// v3+.
    public var throttleTimeMs: Int32
    public var topics: [Topic]

    public init(throttleTimeMs: Int32 = 0, topics: [Topic]) {
        self.throttleTimeMs = throttleTimeMs
        self.topics = topics
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        if version >= 3 { buffer.writeInteger(throttleTimeMs) }
        buffer.writeKafkaArray(topics) { buffer, topic in
            buffer.writeKafkaString(topic.name)
            buffer.writeKafkaArray(topic.partitions) { buffer, partition in
                buffer.writeInteger(partition.partitionIndex)
                buffer.writeErrorCode(partition.errorCode)
            }
        }
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        var response = Self(topics: [])
        if version >= 3 { response.throttleTimeMs = try buffer.readKafkaInt32("OffsetCommitResponse.throttleTimeMs") }
        response.topics = try buffer.readKafkaArray("OffsetCommitResponse.topics", minimumElementBytes: 6) { buffer in
            Topic(name: try buffer.readKafkaString("OffsetCommitResponse.topics[].name"),
                  partitions: try buffer.readKafkaArray("OffsetCommitResponse.topics[].partitions", minimumElementBytes: 6) { buffer in
                      Partition(partitionIndex: try buffer.readKafkaInt32("OffsetCommitResponse.topics[].partitions[].partitionIndex"),
                                errorCode: try buffer.readErrorCode("OffsetCommitResponse.topics[].partitions[].errorCode"))
                  })
        }
        return response
    }
}

/// OffsetFetch (key 9), v1–v5: read a group's committed positions.
public struct OffsetFetchRequest: KafkaRequestMessage {
    public typealias Response = OffsetFetchResponse
    public static let apiKey = APIKey.offsetFetch

    public struct Topic: Sendable, Hashable {
        public var name: String
        public var partitionIndexes: [Int32]

        public init(name: String, partitionIndexes: [Int32]) {
            self.name = name
            self.partitionIndexes = partitionIndexes
        }
    }

    public var groupId: String
    /// nil (v2+) asks for every partition the group has committed.
    public var topics: [Topic]?

    public init(groupId: String, topics: [Topic]?) {
        self.groupId = groupId
        self.topics = topics
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        buffer.writeKafkaString(groupId)
        let writeTopic: (inout ByteBuffer, Topic) -> Void = { buffer, topic in
            buffer.writeKafkaString(topic.name)
            buffer.writeKafkaInt32Array(topic.partitionIndexes)
        }
        if version >= 2 {
            buffer.writeKafkaNullableArray(topics, writeTopic)
        } else {
            buffer.writeKafkaArray(topics ?? [], writeTopic)
        }
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        let groupId = try buffer.readKafkaString("OffsetFetchRequest.groupId")
        let readTopic: (inout ByteBuffer) throws -> Topic = { buffer in
            Topic(name: try buffer.readKafkaString("OffsetFetchRequest.topics[].name"),
                  partitionIndexes: try buffer.readKafkaInt32Array("OffsetFetchRequest.topics[].partitionIndexes"))
        }
        let topics = version >= 2
            ? try buffer.readKafkaNullableArray("OffsetFetchRequest.topics", minimumElementBytes: 6, readTopic)
            : try buffer.readKafkaArray("OffsetFetchRequest.topics", minimumElementBytes: 6, readTopic)
        return Self(groupId: groupId, topics: topics)
    }
}

public struct OffsetFetchResponse: KafkaResponseMessage {
    public static let apiKey = APIKey.offsetFetch

    public struct Partition: Sendable, Hashable {
        public var partitionIndex: Int32
        /// -1 when the group has no committed offset for the partition.
        public var committedOffset: Int64
        /// v5+.
        public var committedLeaderEpoch: Int32
        public var metadata: String?
        public var errorCode: ErrorCode

        public init(partitionIndex: Int32, committedOffset: Int64, committedLeaderEpoch: Int32 = -1,
                    metadata: String? = nil, errorCode: ErrorCode = .noError) {
            self.partitionIndex = partitionIndex
            self.committedOffset = committedOffset
            self.committedLeaderEpoch = committedLeaderEpoch
            self.metadata = metadata
            self.errorCode = errorCode
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

    /// v3+.
    public var throttleTimeMs: Int32
    public var topics: [Topic]
    /// v2+: a group-level error.
    public var errorCode: ErrorCode

    public init(throttleTimeMs: Int32 = 0, topics: [Topic], errorCode: ErrorCode = .noError) {
        self.throttleTimeMs = throttleTimeMs
        self.topics = topics
        self.errorCode = errorCode
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        if version >= 3 { buffer.writeInteger(throttleTimeMs) }
        buffer.writeKafkaArray(topics) { buffer, topic in
            buffer.writeKafkaString(topic.name)
            buffer.writeKafkaArray(topic.partitions) { buffer, partition in
                buffer.writeInteger(partition.partitionIndex)
                buffer.writeInteger(partition.committedOffset)
                if version >= 5 { buffer.writeInteger(partition.committedLeaderEpoch) }
                buffer.writeKafkaNullableString(partition.metadata)
                buffer.writeErrorCode(partition.errorCode)
            }
        }
        if version >= 2 { buffer.writeErrorCode(errorCode) }
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        var response = Self(topics: [])
        if version >= 3 { response.throttleTimeMs = try buffer.readKafkaInt32("OffsetFetchResponse.throttleTimeMs") }
        response.topics = try buffer.readKafkaArray("OffsetFetchResponse.topics", minimumElementBytes: 6) { buffer in
            Topic(name: try buffer.readKafkaString("OffsetFetchResponse.topics[].name"),
                  partitions: try buffer.readKafkaArray("OffsetFetchResponse.topics[].partitions", minimumElementBytes: 16) { buffer in
                      var partition = Partition(
                          partitionIndex: try buffer.readKafkaInt32("OffsetFetchResponse.topics[].partitions[].partitionIndex"),
                          committedOffset: try buffer.readKafkaInt64("OffsetFetchResponse.topics[].partitions[].committedOffset"))
                      if version >= 5 {
                          partition.committedLeaderEpoch = try buffer.readKafkaInt32("OffsetFetchResponse.topics[].partitions[].committedLeaderEpoch")
                      }
                      partition.metadata = try buffer.readKafkaNullableString("OffsetFetchResponse.topics[].partitions[].metadata")
                      partition.errorCode = try buffer.readErrorCode("OffsetFetchResponse.topics[].partitions[].errorCode")
                      return partition
                  })
        }
        if version >= 2 { response.errorCode = try buffer.readErrorCode("OffsetFetchResponse.errorCode") }
        return response
    }
}
