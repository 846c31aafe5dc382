import NIOCore

/// Metadata (key 3), v0–v7.
public struct MetadataRequest: KafkaRequestMessage {
    public typealias Response = MetadataResponse
    public static let apiKey = APIKey.metadata

    /// The topics asked about; nil means every topic the caller may see. v0 has no null array
    /// and says "all" with an empty one, so v0 decodes an empty array as nil.
    public var topics: [String]?
    /// v4+: create unknown topics (EventFlow never auto-creates; it answers
    /// UNKNOWN_TOPIC_OR_PARTITION).
    public var allowAutoTopicCreation: Bool

    public init(topics: [String]?, allowAutoTopicCreation: Bool = true) {
        self.topics = topics
        self.allowAutoTopicCreation = allowAutoTopicCreation
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        if version == 0 {
            buffer.writeKafkaArray(topics ?? []) { $0.writeKafkaString($1) }
        } else {
            buffer.writeKafkaNullableArray(topics) { $0.writeKafkaString($1) }
        }
        if version >= 4 { buffer.writeKafkaBool(allowAutoTopicCreation) }
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        let readName: (inout ByteBuffer) throws -> String = { try $0.readKafkaString("MetadataRequest.topics[].name") }
        var topics: [String]?
        if version == 0 {
            let names = try buffer.readKafkaArray("MetadataRequest.topics", minimumElementBytes: 2, readName)
            topics = names.isEmpty ? nil : names
        } else {
            topics = try buffer.readKafkaNullableArray("MetadataRequest.topics", minimumElementBytes: 2, readName)
        }
        var request = Self(topics: topics)
        if version >= 4 {
            request.allowAutoTopicCreation = try buffer.readKafkaBool("MetadataRequest.allowAutoTopicCreation")
        }
        return request
    }
}

public struct MetadataResponse: KafkaResponseMessage {
    public static let apiKey = APIKey.metadata

    public struct Broker: Sendable, Hashable {
        public var nodeId: Int32
        public var host: String
        public var port: Int32
        /// v1+.
        public var rack: String?

        public init(nodeId: Int32, host: String, port: Int32, rack: String? = nil) {
            self.nodeId = nodeId
            self.host = host
            self.port = port
            self.rack = rack
        }
    }

    public struct Partition: Sendable, Hashable {
        public var errorCode: ErrorCode
        public var partitionIndex: Int32
        public var leaderId: Int32
        /// v7+.
        public var leaderEpoch: Int32
        public var replicaNodes: [Int32]
        public var isrNodes: [Int32]
        /// v5+.
        public var offlineReplicas: [Int32]

        public init(errorCode: ErrorCode = .noError, partitionIndex: Int32, leaderId: Int32, leaderEpoch: Int32 = -1,
                    replicaNodes: [Int32], isrNodes: [Int32], offlineReplicas: [Int32] = []) {
            self.errorCode = errorCode
            self.partitionIndex = partitionIndex
            self.leaderId = leaderId
            self.leaderEpoch = leaderEpoch
            self.replicaNodes = replicaNodes
            self.isrNodes = isrNodes
            self.offlineReplicas = offlineReplicas
        }
    }

    public struct Topic: Sendable, Hashable {
        public var errorCode: ErrorCode
        public var name: String
        /// v1+.
        public var isInternal: Bool
        public var partitions: [Partition]

        public init(errorCode: ErrorCode = .noError, name: String, isInternal: Bool = false, partitions: [Partition]) {
            self.errorCode = errorCode
            self.name = name
            self.isInternal = isInternal
            self.partitions = partitions
        }
    }

    /// v3+.
    public var throttleTimeMs: Int32
    public var brokers: [Broker]
    /// v2+.
    public var clusterId: String?
    /// v1+.
    public var controllerId: Int32
    public var topics: [Topic]

    public init(throttleTimeMs: Int32 = 0, brokers: [Broker], clusterId: String? = nil, controllerId: Int32 = -1,
                topics: [Topic]) {
        self.throttleTimeMs = throttleTimeMs
        self.brokers = brokers
        self.clusterId = clusterId
        self.controllerId = controllerId
        self.topics = topics
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        if version >= 3 { buffer.writeInteger(throttleTimeMs) }
        buffer.writeKafkaArray(brokers) { buffer, broker in
            buffer.writeInteger(broker.nodeId)
            buffer.writeKafkaString(broker.host)
            buffer.writeInteger(broker.port)
            if version >= 1 { buffer.writeKafkaNullableString(broker.rack) }
        }
        if version >= 2 { buffer.writeKafkaNullableString(clusterId) }
        if version >= 1 { buffer.writeInteger(controllerId) }
        buffer.writeKafkaArray(topics) { buffer, topic in
            buffer.writeErrorCode(topic.errorCode)
            buffer.writeKafkaString(topic.name)
            if version >= 1 { buffer.writeKafkaBool(topic.isInternal) }
            buffer.writeKafkaArray(topic.partitions) { buffer, partition in
                buffer.writeErrorCode(partition.errorCode)
                buffer.writeInteger(partition.partitionIndex)
                buffer.writeInteger(partition.leaderId)
                if version >= 7 { buffer.writeInteger(partition.leaderEpoch) }
                buffer.writeKafkaInt32Array(partition.replicaNodes)
                buffer.writeKafkaInt32Array(partition.isrNodes)
                if version >= 5 { buffer.writeKafkaInt32Array(partition.offlineReplicas) }
            }
        }
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        var response = Self(brokers: [], topics: [])
        if version >= 3 { response.throttleTimeMs = try buffer.readKafkaInt32("MetadataResponse.throttleTimeMs") }
        response.brokers = try buffer.readKafkaArray("MetadataResponse.brokers", minimumElementBytes: 10) { buffer in
            var broker = Broker(nodeId: try buffer.readKafkaInt32("MetadataResponse.brokers[].nodeId"),
                                host: try buffer.readKafkaString("MetadataResponse.brokers[].host"),
                                port: try buffer.readKafkaInt32("MetadataResponse.brokers[].port"))
            if version >= 1 { broker.rack = try buffer.readKafkaNullableString("MetadataResponse.brokers[].rack") }
            return broker
        }
        if version >= 2 { response.clusterId = try buffer.readKafkaNullableString("MetadataResponse.clusterId") }
        if version >= 1 { response.controllerId = try buffer.readKafkaInt32("MetadataResponse.controllerId") }
        response.topics = try buffer.readKafkaArray("MetadataResponse.topics", minimumElementBytes: 8) { buffer in
            var topic = Topic(errorCode: try buffer.readErrorCode("MetadataResponse.topics[].errorCode"),
                              name: try buffer.readKafkaString("MetadataResponse.topics[].name"), partitions: [])
            if version >= 1 { topic.isInternal = try buffer.readKafkaBool("MetadataResponse.topics[].isInternal") }
            topic.partitions = try buffer.readKafkaArray("MetadataResponse.topics[].partitions", minimumElementBytes: 18) { buffer in
                var partition = Partition(
                    errorCode: try buffer.readErrorCode("MetadataResponse.topics[].partitions[].errorCode"),
                    partitionIndex: try buffer.readKafkaInt32("MetadataResponse.topics[].partitions[].partitionIndex"),
                    leaderId: try buffer.readKafkaInt32("MetadataResponse.topics[].partitions[].leaderId"),
                    replicaNodes: [], isrNodes: [])
                if version >= 7 {
                    partition.leaderEpoch = try buffer.readKafkaInt32("MetadataResponse.topics[].partitions[].leaderEpoch")
                }
                partition.replicaNodes = try buffer.readKafkaInt32Array("MetadataResponse.topics[].partitions[].replicaNodes")
                partition.isrNodes = try buffer.readKafkaInt32Array("MetadataResponse.topics[].partitions[].isrNodes")
                if version >= 5 {
                    partition.offlineReplicas = try buffer.readKafkaInt32Array("MetadataResponse.topics[].partitions[].offlineReplicas")
                }
                return partition
            }
            return topic
        }
        return response
    }
}
