import NIOCore

/// InitProducerId (key 22), v0–v1: hands an idempotent producer its id and epoch.
public struct InitProducerIdRequest: KafkaRequestMessage {
    public typealias Response = InitProducerIdResponse
    public static let apiKey = APIKey.initProducerId

    /// Null for an idempotent (non-transactional) producer; EventFlow supports only those.
    public var transactionalId: String?
    public var transactionTimeoutMs: Int32

    public init(transactionalId: String? = nil, transactionTimeoutMs: Int32) {
        self.transactionalId = transactionalId
        self.transactionTimeoutMs = transactionTimeoutMs
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        buffer.writeKafkaNullableString(transactionalId)
        buffer.writeInteger(transactionTimeoutMs)
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        return Self(transactionalId: try buffer.readKafkaNullableString("InitProducerIdRequest.transactionalId"),
                    transactionTimeoutMs: try buffer.readKafkaInt32("InitProducerIdRequest.transactionTimeoutMs"))
    }
}

public struct InitProducerIdResponse: KafkaResponseMessage {
    public static let apiKey = APIKey.initProducerId

    public var throttleTimeMs: Int32
    public var errorCode: ErrorCode
    public var producerId: Int64
    public var producerEpoch: Int16

    public init(throttleTimeMs: Int32 = 0, errorCode: ErrorCode = .noError, producerId: Int64, producerEpoch: Int16) {
        self.throttleTimeMs = throttleTimeMs
        self.errorCode = errorCode
        self.producerId = producerId
        self.producerEpoch = producerEpoch
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        buffer.writeInteger(throttleTimeMs)
        buffer.writeErrorCode(errorCode)
        buffer.writeInteger(producerId)
        buffer.writeInteger(producerEpoch)
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        return Self(throttleTimeMs: try buffer.readKafkaInt32("InitProducerIdResponse.throttleTimeMs"),
                    errorCode: try buffer.readErrorCode("InitProducerIdResponse.errorCode"),
                    producerId: try buffer.readKafkaInt64("InitProducerIdResponse.producerId"),
                    producerEpoch: try buffer.readKafkaInt16("InitProducerIdResponse.producerEpoch"))
    }
}
