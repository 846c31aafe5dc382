import NIOCore

/// Fetch (key 1), v4–v11. v4 is the first version that carries RecordBatch v2 fields
/// (last stable offset, aborted transactions); v7 adds fetch sessions, which EventFlow
/// answers with session id 0 (no session: every request is a full fetch); v11 adds the
/// consumer's rack and the preferred read replica (always -1: one broker serves every read).
public struct FetchRequest: KafkaRequestMessage {
    public typealias Response = FetchResponse
    public static let apiKey = APIKey.fetch

    public struct Partition: Sendable, Hashable {
        public var partition: Int32
        /// v9+ (-1 = unknown; not checked by EventFlow).
        public var currentLeaderEpoch: Int32
        public var fetchOffset: Int64
        /// v5+: only meaningful for followers; -1 from consumers.
        public var logStartOffset: Int64
        public var partitionMaxBytes: Int32

        public init(partition: Int32, currentLeaderEpoch: Int32 = -1, fetchOffset: Int64,
                    logStartOffset: Int64 = -1, partitionMaxBytes: Int32) {
            self.partition = partition
            self.currentLeaderEpoch = currentLeaderEpoch
            self.fetchOffset = fetchOffset
            self.logStartOffset = logStartOffset
            self.partitionMaxBytes = partitionMaxBytes
        }
    }

    public struct Topic: Sendable, Hashable {
        public var topic: String
        public var partitions: [Partition]

        public init(topic: String, partitions: [Partition]) {
            self.topic = topic
            self.partitions = partitions
        }
    }

    public struct ForgottenTopic: Sendable, Hashable {
        public var topic: String
        public var partitions: [Int32]

        public init(topic: String, partitions: [Int32]) {
            self.topic = topic
            self.partitions = partitions
        }
    }

    public var replicaId: Int32
    /// How long the broker may hold the request waiting for `minBytes`.
    public var maxWaitMs: Int32
    public var minBytes: Int32
    public var maxBytes: Int32
    public var isolationLevel: Int8
    /// v7+.
    public var sessionId: Int32
    /// v7+.
    public var sessionEpoch: Int32
    public var topics: [Topic]
    /// v7+.
    public var forgottenTopicsData: [ForgottenTopic]
    /// v11+: the consumer's rack (informational for EventFlow).
    public var rackId: String

    public init(replicaId: Int32 = -1, maxWaitMs: Int32, minBytes: Int32, maxBytes: Int32 = .max,
                isolationLevel: Int8 = 0, sessionId: Int32 = 0, sessionEpoch: Int32 = -1,
                topics: [Topic], forgottenTopicsData: [ForgottenTopic] = [], rackId: String = "") {
        self.replicaId = replicaId
        self.maxWaitMs = maxWaitMs
        self.minBytes = minBytes
        self.maxBytes = maxBytes
        self.isolationLevel = isolationLevel
        self.sessionId = sessionId
        self.sessionEpoch = sessionEpoch
        self.topics = topics
        self.forgottenTopicsData = forgottenTopicsData
        self.rackId = rackId
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        buffer.writeInteger(replicaId)
        buffer.writeInteger(maxWaitMs)
        buffer.writeInteger(minBytes)
        buffer.writeInteger(maxBytes)
        buffer.writeInteger(isolationLevel)
        if version >= 7 {
            buffer.writeInteger(sessionId)
            buffer.writeInteger(sessionEpoch)
        }
        buffer.writeKafkaArray(topics) { buffer, topic in
            buffer.writeKafkaString(topic.topic)
            buffer.writeKafkaArray(topic.partitions) { buffer, partition in
                buffer.writeInteger(partition.partition)
                if version >= 9 { buffer.writeInteger(partition.currentLeaderEpoch) }
                buffer.writeInteger(partition.fetchOffset)
                if version >= 5 { buffer.writeInteger(partition.logStartOffset) }
                buffer.writeInteger(partition.partitionMaxBytes)
            }
        }
        if version >= 7 {
            buffer.writeKafkaArray(forgottenTopicsData) { buffer, forgotten in
                buffer.writeKafkaString(forgotten.topic)
                buffer.writeKafkaInt32Array(forgotten.partitions)
            }
        }
        if version >= 11 { buffer.writeKafkaString(rackId) }
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        var request = Self(replicaId: try buffer.readKafkaInt32("FetchRequest.replicaId"),
                           maxWaitMs: try buffer.readKafkaInt32("FetchRequest.maxWaitMs"),
                           minBytes: try buffer.readKafkaInt32("FetchRequest.minBytes"),
                           maxBytes: try buffer.readKafkaInt32("FetchRequest.maxBytes"),
                           isolationLevel: try buffer.readKafkaInt8("FetchRequest.isolationLevel"),
                           topics: [])
        if version >= 7 {
            request.sessionId = try buffer.readKafkaInt32("FetchRequest.sessionId")
            request.sessionEpoch = try buffer.readKafkaInt32("FetchRequest.sessionEpoch")
        }
        request.topics = try buffer.readKafkaArray("FetchRequest.topics", minimumElementBytes: 6) { buffer in
            Topic(topic: try buffer.readKafkaString("FetchRequest.topics[].topic"),
                  partitions: try buffer.readKafkaArray("FetchRequest.topics[].partitions", minimumElementBytes: 16) { buffer in
                      let index = try buffer.readKafkaInt32("FetchRequest.topics[].partitions[].partition")
                      var partition = Partition(partition: index, fetchOffset: 0, partitionMaxBytes: 0)
                      if version >= 9 {
                          partition.currentLeaderEpoch = try buffer.readKafkaInt32("FetchRequest.topics[].partitions[].currentLeaderEpoch")
                      }
                      partition.fetchOffset = try buffer.readKafkaInt64("FetchRequest.topics[].partitions[].fetchOffset")
                      if version >= 5 {
                          partition.logStartOffset = try buffer.readKafkaInt64("FetchRequest.topics[].partitions[].logStartOffset")
                      }
                      partition.partitionMaxBytes = try buffer.readKafkaInt32("FetchRequest.topics[].partitions[].partitionMaxBytes")
                      return partition
                  })
        }
        if version >= 7 {
            request.forgottenTopicsData = try buffer.readKafkaArray("FetchRequest.forgottenTopicsData", minimumElementBytes: 6) { buffer in
                ForgottenTopic(topic: try buffer.readKafkaString("FetchRequest.forgottenTopicsData[].topic"),
                               partitions: try buffer.readKafkaInt32Array("FetchRequest.forgottenTopicsData[].partitions"))
            }
        }
        if version >= 11 { request.rackId = try buffer.readKafkaString("FetchRequest.rackId") }
        return request
    }
}

public struct FetchResponse: KafkaResponseMessage {
    public static let apiKey = APIKey.fetch

    public struct AbortedTransaction: Sendable, Hashable {
        public var producerId: Int64
        public var firstOffset: Int64

        public init(producerId: Int64, firstOffset: Int64) {
            self.producerId = producerId
            self.firstOffset = firstOffset
        }
    }

    public struct Partition: Sendable, Equatable {
        public var partitionIndex: Int32
        public var errorCode: ErrorCode
        public var highWatermark: Int64
        /// EventFlow has no transactions: always the high watermark.
        public var lastStableOffset: Int64
        /// v5+.
        public var logStartOffset: Int64
        /// Null or empty for EventFlow (no transactions).
        public var abortedTransactions: [AbortedTransaction]?
        /// v11+: the replica the consumer should read from instead; -1 = this broker.
        public var preferredReadReplica: Int32
        /// Stored record batches, sent as stored (slices; concatenated batches).
        public var records: ByteBuffer?

        public init(partitionIndex: Int32, errorCode: ErrorCode = .noError, highWatermark: Int64,
                    lastStableOffset: Int64 = -1, logStartOffset: Int64 = -1,
                    abortedTransactions: [AbortedTransaction]? = nil, preferredReadReplica: Int32 = -1,
                    records: ByteBuffer?) {
            self.partitionIndex = partitionIndex
            self.errorCode = errorCode
            self.highWatermark = highWatermark
            self.lastStableOffset = lastStableOffset
            self.logStartOffset = logStartOffset
            self.abortedTransactions = abortedTransactions
            self.preferredReadReplica = preferredReadReplica
            self.records = records
        }
    }

    public struct Topic: Sendable, Equatable {
        public var topic: String
        public var partitions: [Partition]

        public init(topic: String, partitions: [Partition]) {
            self.topic = topic
            self.partitions = partitions
        }
    }

    public var throttleTimeMs: Int32
    /// v7+: a request-level error (fetch sessions).
    public var errorCode: ErrorCode
    /// v7+.
    public var sessionId: Int32
    public var responses: [Topic]

    public init(throttleTimeMs: Int32 = 0, errorCode: ErrorCode = .noError, sessionId: Int32 = 0, responses: [Topic]) {
        self.throttleTimeMs = throttleTimeMs
        self.errorCode = errorCode
        self.sessionId = sessionId
        self.responses = responses
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        buffer.writeInteger(throttleTimeMs)
        if version >= 7 {
            buffer.writeErrorCode(errorCode)
            buffer.writeInteger(sessionId)
        }
        buffer.writeKafkaArray(responses) { buffer, topic in
            buffer.writeKafkaString(topic.topic)
            buffer.writeKafkaArray(topic.partitions) { buffer, partition in
                buffer.writeInteger(partition.partitionIndex)
                buffer.writeErrorCode(partition.errorCode)
                buffer.writeInteger(partition.highWatermark)
                buffer.writeInteger(partition.lastStableOffset)
                if version >= 5 { buffer.writeInteger(partition.logStartOffset) }
                buffer.writeKafkaNullableArray(partition.abortedTransactions) { buffer, aborted in
                    buffer.writeInteger(aborted.producerId)
                    buffer.writeInteger(aborted.firstOffset)
                }
                if version >= 11 { buffer.writeInteger(partition.preferredReadReplica) }
                buffer.writeKafkaNullableBytes(partition.records)
            }
        }
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        var response = Self(throttleTimeMs: try buffer.readKafkaInt32("FetchResponse.throttleTimeMs"), responses: [])
        if version >= 7 {
            response.errorCode = try buffer.readErrorCode("FetchResponse.errorCode")
            response.sessionId = try buffer.readKafkaInt32("FetchResponse.sessionId")
        }
        response.responses = try buffer.readKafkaArray("FetchResponse.responses", minimumElementBytes: 6) { buffer in
            Topic(topic: try buffer.readKafkaString("FetchResponse.responses[].topic"),
                  partitions: try buffer.readKafkaArray("FetchResponse.responses[].partitions", minimumElementBytes: 30) { buffer in
                      var partition = Partition(
                          partitionIndex: try buffer.readKafkaInt32("FetchResponse.responses[].partitions[].partitionIndex"),
                          errorCode: try buffer.readErrorCode("FetchResponse.responses[].partitions[].errorCode"),
                          highWatermark: try buffer.readKafkaInt64("FetchResponse.responses[].partitions[].highWatermark"),
                          lastStableOffset: try buffer.readKafkaInt64("FetchResponse.responses[].partitions[].lastStableOffset"),
                          records: nil)
                      if version >= 5 {
                          partition.logStartOffset = try buffer.readKafkaInt64("FetchResponse.responses[].partitions[].logStartOffset")
                      }
                      partition.abortedTransactions = try buffer.readKafkaNullableArray(
                          "FetchResponse.responses[].partitions[].abortedTransactions", minimumElementBytes: 16) { buffer in
                          AbortedTransaction(
                              producerId: try buffer.readKafkaInt64("FetchResponse.responses[].partitions[].abortedTransactions[].producerId"),
                              firstOffset: try buffer.readKafkaInt64("FetchResponse.responses[].partitions[].abortedTransactions[].firstOffset"))
                      }
                      if version >= 11 {
                          partition.preferredReadReplica = try buffer.readKafkaInt32("FetchResponse.responses[].partitions[].preferredReadReplica")
                      }
                      partition.records = try buffer.readKafkaNullableBytes("FetchResponse.responses[].partitions[].records")
                      return partition
                  })
        }
        return response
    }
}
