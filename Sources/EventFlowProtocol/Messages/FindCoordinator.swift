import NIOCore

/// FindCoordinator (key 10), v0–v2. EventFlow is its own group coordinator: it answers with
/// the broker's own node.
public struct FindCoordinatorRequest: KafkaRequestMessage {
    public typealias Response = FindCoordinatorResponse
    public static let apiKey = APIKey.findCoordinator

    /// The group id (or, with key type 1, a transactional id).
    public var key: String
    /// v1+: 0 = consumer group, 1 = transaction (not served by EventFlow).
    public var keyType: Int8

    public init(key: String, keyType: Int8 = 0) {
        self.key = key
        self.keyType = keyType
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        buffer.writeKafkaString(key)
        if version >= 1 { buffer.writeInteger(keyType) }
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        var request = Self(key: try buffer.readKafkaString("FindCoordinatorRequest.key"))
        if version >= 1 { request.keyType = try buffer.readKafkaInt8("FindCoordinatorRequest.keyType") }
        return request
    }
}

public struct FindCoordinatorResponse: KafkaResponseMessage {
    public static let apiKey = APIKey.findCoordinator

    /// v1+.
    public var throttleTimeMs: Int32
    public var errorCode: ErrorCode
    /// v1+.
    public var errorMessage: String?
    public var nodeId: Int32
    public var host: String
    public var port: Int32

    public init(throttleTimeMs: Int32 = 0, errorCode: ErrorCode = .noError, errorMessage: String? = nil,
                nodeId: Int32, host: String, port: Int32) {
        self.throttleTimeMs = throttleTimeMs
        self.errorCode = errorCode
        self.errorMessage = errorMessage
        self.nodeId = nodeId
        self.host = host
        self.port = port
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        if version >= 1 { buffer.writeInteger(throttleTimeMs) }
        buffer.writeErrorCode(errorCode)
        if version >= 1 { buffer.writeKafkaNullableString(errorMessage) }
        buffer.writeInteger(nodeId)
        buffer.writeKafkaString(host)
        buffer.writeInteger(port)
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        var throttle: Int32 = 0
        if version >= 1 { throttle = try buffer.readKafkaInt32("FindCoordinatorResponse.throttleTimeMs") }
        let errorCode = try buffer.readErrorCode("FindCoordinatorResponse.errorCode")
        var message: String?
        if version >= 1 { message = try buffer.readKafkaNullableString("FindCoordinatorResponse.errorMessage") }
        return Self(throttleTimeMs: throttle, errorCode: errorCode, errorMessage: message,
                    nodeId: try buffer.readKafkaInt32("FindCoordinatorResponse.nodeId"),
                    host: try buffer.readKafkaString("FindCoordinatorResponse.host"),
                    port: try buffer.readKafkaInt32("FindCoordinatorResponse.port"))
    }
}
