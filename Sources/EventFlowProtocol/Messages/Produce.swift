import NIOCore

/// Produce (key 0), v3–v8. v3 is the first version whose records are RecordBatch v2.
/// Versions 3–8 share the request layout; they differ in what the broker may answer (v8 adds
/// the per-record errors and message of a refused batch).
public struct ProduceRequest: KafkaRequestMessage {
    public typealias Response = ProduceResponse
    public static let apiKey = APIKey.produce

    public struct PartitionData: Sendable, Equatable {
        public var index: Int32
        /// The record batches exactly as sent: a slice of the request frame (not copied, not
        /// validated here; the broker validates each batch before accepting it).
        public var records: ByteBuffer?

        public init(index: Int32, records: ByteBuffer?) {
            self.index = index
            self.records = records
        }
    }

    public struct TopicData: Sendable, Equatable {
        public var name: String
        public var partitionData: [PartitionData]

        public init(name: String, partitionData: [PartitionData]) {
            self.name = name
            self.partitionData = partitionData
        }
    }

    /// Null unless the producer is transactional (EventFlow rejects transactional produce).
    public var transactionalId: String?
    /// 0 = no answer, 1 = after the batcher accepted, -1 = after COMMIT.
    public var acks: Int16
    public var timeoutMs: Int32
    public var topicData: [TopicData]

    public init(transactionalId: String? = nil, acks: Int16, timeoutMs: Int32, topicData: [TopicData]) {
        self.transactionalId = transactionalId
        self.acks = acks
        self.timeoutMs = timeoutMs
        self.topicData = topicData
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        buffer.writeKafkaNullableString(transactionalId)
        buffer.writeInteger(acks)
        buffer.writeInteger(timeoutMs)
        buffer.writeKafkaArray(topicData) { buffer, topic in
            buffer.writeKafkaString(topic.name)
            buffer.writeKafkaArray(topic.partitionData) { buffer, partition in
                buffer.writeInteger(partition.index)
                buffer.writeKafkaNullableBytes(partition.records)
            }
        }
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        let transactionalId = try buffer.readKafkaNullableString("ProduceRequest.transactionalId")
        let acks = try buffer.readKafkaInt16("ProduceRequest.acks")
        let timeoutMs = try buffer.readKafkaInt32("ProduceRequest.timeoutMs")
        let topics = try buffer.readKafkaArray("ProduceRequest.topicData", minimumElementBytes: 6) { buffer in
            TopicData(name: try buffer.readKafkaString("ProduceRequest.topicData[].name"),
                      partitionData: try buffer.readKafkaArray("ProduceRequest.topicData[].partitionData", minimumElementBytes: 8) { buffer in
                          PartitionData(index: try buffer.readKafkaInt32("ProduceRequest.topicData[].partitionData[].index"),
                                        records: try buffer.readKafkaNullableBytes("ProduceRequest.topicData[].partitionData[].records"))
                      })
        }
        return Self(transactionalId: transactionalId, acks: acks, timeoutMs: timeoutMs, topicData: topics)
    }
}

public struct ProduceResponse: KafkaResponseMessage {
    public static let apiKey = APIKey.produce

    /// v8+: a record of the partition's batches that caused its refusal.
    public struct RecordError: Sendable, Hashable {
        /// The record's position among the partition's records in the request, from 0.
        public var batchIndex: Int32
        public var message: String?

        public init(batchIndex: Int32, message: String?) {
            self.batchIndex = batchIndex
            self.message = message
        }
    }

    public struct PartitionResponse: Sendable, Hashable {
        public var index: Int32
        public var errorCode: ErrorCode
        /// The offset given to the first record of the first batch.
        public var baseOffset: Int64
        /// -1 when the topic uses CreateTime (EventFlow's only mode).
        public var logAppendTimeMs: Int64
        /// v5+: the partition's earliest offset still stored.
        public var logStartOffset: Int64
        /// v8+: the records that caused an INVALID_RECORD refusal.
        public var recordErrors: [RecordError]
        /// v8+: why the partition was refused.
        public var errorMessage: String?

        public init(index: Int32, errorCode: ErrorCode = .noError, baseOffset: Int64,
                    logAppendTimeMs: Int64 = -1, logStartOffset: Int64 = -1,
                    recordErrors: [RecordError] = [], errorMessage: String? = nil) {
            self.index = index
            self.errorCode = errorCode
            self.baseOffset = baseOffset
            self.logAppendTimeMs = logAppendTimeMs
            self.logStartOffset = logStartOffset
            self.recordErrors = recordErrors
            self.errorMessage = errorMessage
        }
    }

    public struct TopicResponse: Sendable, Hashable {
        public var name: String
        public var partitionResponses: [PartitionResponse]

        public init(name: String, partitionResponses: [PartitionResponse]) {
            self.name = name
            self.partitionResponses = partitionResponses
        }
    }

    public var responses: [TopicResponse]
    public var throttleTimeMs: Int32

    public init(responses: [TopicResponse], throttleTimeMs: Int32 = 0) {
        self.responses = responses
        self.throttleTimeMs = throttleTimeMs
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        buffer.writeKafkaArray(responses) { buffer, topic in
            buffer.writeKafkaString(topic.name)
            buffer.writeKafkaArray(topic.partitionResponses) { buffer, partition in
                buffer.writeInteger(partition.index)
                buffer.writeErrorCode(partition.errorCode)
                buffer.writeInteger(partition.baseOffset)
                buffer.writeInteger(partition.logAppendTimeMs)
                if version >= 5 { buffer.writeInteger(partition.logStartOffset) }
                if version >= 8 {
                    buffer.writeKafkaArray(partition.recordErrors) { buffer, recordError in
                        buffer.writeInteger(recordError.batchIndex)
                        buffer.writeKafkaNullableString(recordError.message)
                    }
                    buffer.writeKafkaNullableString(partition.errorMessage)
                }
            }
        }
        buffer.writeInteger(throttleTimeMs)
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        let responses = try buffer.readKafkaArray("ProduceResponse.responses", minimumElementBytes: 6) { buffer in
            TopicResponse(name: try buffer.readKafkaString("ProduceResponse.responses[].name"),
                          partitionResponses: try buffer.readKafkaArray("ProduceResponse.responses[].partitionResponses",
                                                                        minimumElementBytes: 22) { buffer in
                var partition = PartitionResponse(
                    index: try buffer.readKafkaInt32("ProduceResponse.responses[].partitionResponses[].index"),
                    errorCode: try buffer.readErrorCode("ProduceResponse.responses[].partitionResponses[].errorCode"),
                    baseOffset: try buffer.readKafkaInt64("ProduceResponse.responses[].partitionResponses[].baseOffset"),
                    logAppendTimeMs: try buffer.readKafkaInt64("ProduceResponse.responses[].partitionResponses[].logAppendTimeMs"))
                if version >= 5 {
                    partition.logStartOffset = try buffer.readKafkaInt64("ProduceResponse.responses[].partitionResponses[].logStartOffset")
                }
                if version >= 8 {
                    partition.recordErrors = try buffer.readKafkaArray("ProduceResponse.responses[].partitionResponses[].recordErrors",
                                                                       minimumElementBytes: 6) { buffer in
                        RecordError(batchIndex: try buffer.readKafkaInt32("ProduceResponse...recordErrors[].batchIndex"),
                                    message: try buffer.readKafkaNullableString("ProduceResponse...recordErrors[].batchIndexErrorMessage"))
                    }
                    partition.errorMessage = try buffer.readKafkaNullableString("ProduceResponse.responses[].partitionResponses[].errorMessage")
                }
                return partition
            })
        }
        return Self(responses: responses, throttleTimeMs: try buffer.readKafkaInt32("ProduceResponse.throttleTimeMs"))
    }
}
