import NIOCore

/// CreateTopics (key 19), v0–v3.
public struct CreateTopicsRequest: KafkaRequestMessage {
    public typealias Response = CreateTopicsResponse
    public static let apiKey = APIKey.createTopics

    public struct Assignment: Sendable, Hashable {
        public var partitionIndex: Int32
        public var brokerIds: [Int32]

        public init(partitionIndex: Int32, brokerIds: [Int32]) {
            self.partitionIndex = partitionIndex
            self.brokerIds = brokerIds
        }
    }

    public struct Config: Sendable, Hashable {
        public var name: String
        public var value: String?

        public init(name: String, value: String?) {
            self.name = name
            self.value = value
        }
    }

    public struct Topic: Sendable, Hashable {
        public var name: String
        /// -1 asks for the broker's default.
        public var numPartitions: Int32
        /// -1 asks for the broker's default; EventFlow stores one copy (in PostgreSQL).
        public var replicationFactor: Int16
        public var assignments: [Assignment]
        public var configs: [Config]

        public init(name: String, numPartitions: Int32, replicationFactor: Int16,
                    assignments: [Assignment] = [], configs: [Config] = []) {
            self.name = name
            self.numPartitions = numPartitions
            self.replicationFactor = replicationFactor
            self.assignments = assignments
            self.configs = configs
        }
    }

    public var topics: [Topic]
    public var timeoutMs: Int32
    /// v1+: check the request without creating anything.
    public var validateOnly: Bool

    public init(topics: [Topic], timeoutMs: Int32, validateOnly: Bool = false) {
        self.topics = topics
        self.timeoutMs = timeoutMs
        self.validateOnly = validateOnly
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        buffer.writeKafkaArray(topics) { buffer, topic in
            buffer.writeKafkaString(topic.name)
            buffer.writeInteger(topic.numPartitions)
            buffer.writeInteger(topic.replicationFactor)
            buffer.writeKafkaArray(topic.assignments) { buffer, assignment in
                buffer.writeInteger(assignment.partitionIndex)
                buffer.writeKafkaInt32Array(assignment.brokerIds)
            }
            buffer.writeKafkaArray(topic.configs) { buffer, config in
                buffer.writeKafkaString(config.name)
                buffer.writeKafkaNullableString(config.value)
            }
        }
        buffer.writeInteger(timeoutMs)
        if version >= 1 { buffer.writeKafkaBool(validateOnly) }
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        let topics = try buffer.readKafkaArray("CreateTopicsRequest.topics", minimumElementBytes: 16) { buffer in
            Topic(name: try buffer.readKafkaString("CreateTopicsRequest.topics[].name"),
                  numPartitions: try buffer.readKafkaInt32("CreateTopicsRequest.topics[].numPartitions"),
                  replicationFactor: try buffer.readKafkaInt16("CreateTopicsRequest.topics[].replicationFactor"),
                  assignments: try buffer.readKafkaArray("CreateTopicsRequest.topics[].assignments", minimumElementBytes: 8) { buffer in
                      Assignment(partitionIndex: try buffer.readKafkaInt32("CreateTopicsRequest.topics[].assignments[].partitionIndex"),
                                 brokerIds: try buffer.readKafkaInt32Array("CreateTopicsRequest.topics[].assignments[].brokerIds"))
                  },
                  configs: try buffer.readKafkaArray("CreateTopicsRequest.topics[].configs", minimumElementBytes: 4) { buffer in
                      Config(name: try buffer.readKafkaString("CreateTopicsRequest.topics[].configs[].name"),
                             value: try buffer.readKafkaNullableString("CreateTopicsRequest.topics[].configs[].value"))
                  })
        }
        var request = Self(topics: topics, timeoutMs: try buffer.readKafkaInt32("CreateTopicsRequest.timeoutMs"))
        if version >= 1 { request.validateOnly = try buffer.readKafkaBool("CreateTopicsRequest.validateOnly") }
        return request
    }
}

public struct CreateTopicsResponse: KafkaResponseMessage {
    public static let apiKey = APIKey.createTopics

    public struct TopicResult: Sendable, Hashable {
        public var name: String
        public var errorCode: ErrorCode
        /// v1+.
        public var errorMessage: String?

        public init(name: String, errorCode: ErrorCode = .noError, errorMessage: String? = nil) {
            self.name = name
            self.errorCode = errorCode
            self.errorMessage = errorMessage
        }
    }

    /// v2+.
    public var throttleTimeMs: Int32
    public var topics: [TopicResult]

    public init(throttleTimeMs: Int32 = 0, topics: [TopicResult]) {
        self.throttleTimeMs = throttleTimeMs
        self.topics = topics
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        if version >= 2 { buffer.writeInteger(throttleTimeMs) }
        buffer.writeKafkaArray(topics) { buffer, topic in
            buffer.writeKafkaString(topic.name)
            buffer.writeErrorCode(topic.errorCode)
            if version >= 1 { buffer.writeKafkaNullableString(topic.errorMessage) }
        }
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        var response = Self(topics: [])
        if version >= 2 { response.throttleTimeMs = try buffer.readKafkaInt32("CreateTopicsResponse.throttleTimeMs") }
        response.topics = try buffer.readKafkaArray("CreateTopicsResponse.topics", minimumElementBytes: 4) { buffer in
            var topic = TopicResult(name: try buffer.readKafkaString("CreateTopicsResponse.topics[].name"),
                                    errorCode: try buffer.readErrorCode("CreateTopicsResponse.topics[].errorCode"))
            if version >= 1 {
                topic.errorMessage = try buffer.readKafkaNullableString("CreateTopicsResponse.topics[].errorMessage")
            }
            return topic
        }
        return response
    }
}

/// DeleteTopics (key 20), v0–v3.
public struct DeleteTopicsRequest: KafkaRequestMessage {
    public typealias Response = DeleteTopicsResponse
    public static let apiKey = APIKey.deleteTopics

    public var topicNames: [String]
    public var timeoutMs: Int32

    public init(topicNames: [String], timeoutMs: Int32) {
        self.topicNames = topicNames
        self.timeoutMs = timeoutMs
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        buffer.writeKafkaArray(topicNames) { $0.writeKafkaString($1) }
        buffer.writeInteger(timeoutMs)
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        let names = try buffer.readKafkaArray("DeleteTopicsRequest.topicNames", minimumElementBytes: 2) {
            try $0.readKafkaString("DeleteTopicsRequest.topicNames[]")
        }
        return Self(topicNames: names, timeoutMs: try buffer.readKafkaInt32("DeleteTopicsRequest.timeoutMs"))
    }
}

public struct DeleteTopicsResponse: KafkaResponseMessage {
    public static let apiKey = APIKey.deleteTopics

    public struct TopicResult: Sendable, Hashable {
        public var name: String
        public var errorCode: ErrorCode

        public init(name: String, errorCode: ErrorCode = .noError) {
            self.name = name
            self.errorCode = errorCode
        }
    }

    /// v1+.
    public var throttleTimeMs: Int32
    public var responses: [TopicResult]

    public init(throttleTimeMs: Int32 = 0, responses: [TopicResult]) {
        self.throttleTimeMs = throttleTimeMs
        self.responses = responses
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        if version >= 1 { buffer.writeInteger(throttleTimeMs) }
        buffer.writeKafkaArray(responses) { buffer, topic in
            buffer.writeKafkaString(topic.name)
            buffer.writeErrorCode(topic.errorCode)
        }
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        var response = Self(responses: [])
        if version >= 1 { response.throttleTimeMs = try buffer.readKafkaInt32("DeleteTopicsResponse.throttleTimeMs") }
        response.responses = try buffer.readKafkaArray("DeleteTopicsResponse.responses", minimumElementBytes: 4) { buffer in
            TopicResult(name: try buffer.readKafkaString("DeleteTopicsResponse.responses[].name"),
                        errorCode: try buffer.readErrorCode("DeleteTopicsResponse.responses[].errorCode"))
        }
        return response
    }
}

/// CreatePartitions (key 37), v0–v3; v2+ are flexible.
public struct CreatePartitionsRequest: KafkaRequestMessage {
    public typealias Response = CreatePartitionsResponse
    public static let apiKey = APIKey.createPartitions

    public struct Assignment: Sendable, Hashable {
        public var brokerIds: [Int32]

        public init(brokerIds: [Int32]) {
            self.brokerIds = brokerIds
        }
    }

    public struct Topic: Sendable, Hashable {
        public var name: String
        /// The new total partition count.
        public var count: Int32
        /// One entry per new partition, or nil to let the broker place them.
        public var assignments: [Assignment]?

        public init(name: String, count: Int32, assignments: [Assignment]? = nil) {
            self.name = name
            self.count = count
            self.assignments = assignments
        }
    }

    public var topics: [Topic]
    public var timeoutMs: Int32
    public var validateOnly: Bool

    public init(topics: [Topic], timeoutMs: Int32, validateOnly: Bool = false) {
        self.topics = topics
        self.timeoutMs = timeoutMs
        self.validateOnly = validateOnly
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        let compact = Self.apiKey.isFlexible(version: version)
        buffer.writeKafkaArray(topics, compact: compact) { buffer, topic in
            buffer.writeKafkaString(topic.name, compact: compact)
            buffer.writeInteger(topic.count)
            buffer.writeKafkaNullableArray(topic.assignments, compact: compact) { buffer, assignment in
                buffer.writeKafkaArray(assignment.brokerIds, compact: compact) { $0.writeInteger($1) }
                buffer.writeKafkaEmptyTaggedFields(compact: compact)
            }
            buffer.writeKafkaEmptyTaggedFields(compact: compact)
        }
        buffer.writeInteger(timeoutMs)
        buffer.writeKafkaBool(validateOnly)
        buffer.writeKafkaEmptyTaggedFields(compact: compact)
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        let compact = apiKey.isFlexible(version: version)
        let topics = try buffer.readKafkaArray("CreatePartitionsRequest.topics", compact: compact, minimumElementBytes: 6) { buffer in
            let topic = Topic(
                name: try buffer.readKafkaString("CreatePartitionsRequest.topics[].name", compact: compact),
                count: try buffer.readKafkaInt32("CreatePartitionsRequest.topics[].count"),
                assignments: try buffer.readKafkaNullableArray("CreatePartitionsRequest.topics[].assignments", compact: compact,
                                                               minimumElementBytes: 1) { buffer in
                    let assignment = Assignment(brokerIds: try buffer.readKafkaArray(
                        "CreatePartitionsRequest.topics[].assignments[].brokerIds", compact: compact, minimumElementBytes: 4) {
                            try $0.readKafkaInt32("CreatePartitionsRequest.topics[].assignments[].brokerIds[]")
                        })
                    try buffer.skipKafkaTaggedFields("CreatePartitionsRequest.topics[].assignments[].taggedFields", compact: compact)
                    return assignment
                })
            try buffer.skipKafkaTaggedFields("CreatePartitionsRequest.topics[].taggedFields", compact: compact)
            return topic
        }
        let request = Self(topics: topics, timeoutMs: try buffer.readKafkaInt32("CreatePartitionsRequest.timeoutMs"),
                           validateOnly: try buffer.readKafkaBool("CreatePartitionsRequest.validateOnly"))
        try buffer.skipKafkaTaggedFields("CreatePartitionsRequest.taggedFields", compact: compact)
        return request
    }
}

public struct CreatePartitionsResponse: KafkaResponseMessage {
    public static let apiKey = APIKey.createPartitions

    public struct TopicResult: Sendable, Hashable {
        public var name: String
        public var errorCode: ErrorCode
        public var errorMessage: String?

        public init(name: String, errorCode: ErrorCode = .noError, errorMessage: String? = nil) {
            self.name = name
            self.errorCode = errorCode
            self.errorMessage = errorMessage
        }
    }

    public var throttleTimeMs: Int32
    public var results: [TopicResult]

    public init(throttleTimeMs: Int32 = 0, results: [TopicResult]) {
        self.throttleTimeMs = throttleTimeMs
        self.results = results
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        let compact = Self.apiKey.isFlexible(version: version)
        buffer.writeInteger(throttleTimeMs)
        buffer.writeKafkaArray(results, compact: compact) { buffer, result in
            buffer.writeKafkaString(result.name, compact: compact)
            buffer.writeErrorCode(result.errorCode)
            buffer.writeKafkaNullableString(result.errorMessage, compact: compact)
            buffer.writeKafkaEmptyTaggedFields(compact: compact)
        }
        buffer.writeKafkaEmptyTaggedFields(compact: compact)
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        let compact = apiKey.isFlexible(version: version)
        var response = Self(throttleTimeMs: try buffer.readKafkaInt32("CreatePartitionsResponse.throttleTimeMs"), results: [])
        response.results = try buffer.readKafkaArray("CreatePartitionsResponse.results", compact: compact, minimumElementBytes: 4) { buffer in
            let result = TopicResult(name: try buffer.readKafkaString("CreatePartitionsResponse.results[].name", compact: compact),
                                     errorCode: try buffer.readErrorCode("CreatePartitionsResponse.results[].errorCode"),
                                     errorMessage: try buffer.readKafkaNullableString("CreatePartitionsResponse.results[].errorMessage",
                                                                                     compact: compact))
            try buffer.skipKafkaTaggedFields("CreatePartitionsResponse.results[].taggedFields", compact: compact)
            return result
        }
        try buffer.skipKafkaTaggedFields("CreatePartitionsResponse.taggedFields", compact: compact)
        return response
    }
}
