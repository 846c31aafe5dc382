import NIOCore

/// A request or response body of one Kafka API, at any version in `SupportedAPIVersions`.
///
/// A value holds the union of the fields of every supported version; `encode` writes the fields
/// that exist at `version` and `decode` fills the others with Kafka's defaults.
public protocol KafkaMessage: Sendable, Equatable {
    static var apiKey: APIKey { get }
    func encode(into buffer: inout ByteBuffer, version: Int16)
    static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self
}

public protocol KafkaRequestMessage: KafkaMessage {
    associatedtype Response: KafkaResponseMessage
}

public protocol KafkaResponseMessage: KafkaMessage {}

extension KafkaMessage {
    /// Throws `.unsupportedVersion` when `version` is outside what EventFlow serves for this API.
    @inlinable
    static func checkVersion(_ version: Int16, _ buffer: ByteBuffer) throws {
        guard SupportedAPIVersions.supports(apiKey, version: version) else {
            throw ProtocolError(.unsupportedVersion, field: "\(Self.self)", offset: buffer.readerIndex,
                                detail: "\(apiKey) v\(version) is not supported")
        }
    }

    /// The body encoded at `version` into a fresh buffer.
    public func encoded(version: Int16, allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 64)
        encode(into: &buffer, version: version)
        return buffer
    }
}

extension KafkaRequestMessage {
    /// Header + body, ready for `KafkaFrameEncoder` (which adds the size prefix).
    public func encodedRequest(version: Int16, correlationId: Int32, clientId: String?,
                               allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 64)
        RequestHeader(apiKey: Self.apiKey, apiVersion: version, correlationId: correlationId, clientId: clientId)
            .encode(into: &buffer)
        encode(into: &buffer, version: version)
        return buffer
    }
}

extension KafkaResponseMessage {
    /// Response header + body, ready for `KafkaFrameEncoder`.
    public func encodedResponse(version: Int16, correlationId: Int32,
                                allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 64)
        ResponseHeader(correlationId: correlationId)
            .encode(into: &buffer, headerVersion: Self.apiKey.responseHeaderVersion(apiVersion: version))
        encode(into: &buffer, version: version)
        return buffer
    }

    /// Reads a response frame (header + body) for a request sent at `version`; bytes left
    /// after the body are an error.
    public static func decodeResponse(frame: ByteBuffer, version: Int16) throws -> (ResponseHeader, Self) {
        var buffer = frame
        let header = try ResponseHeader.decode(from: &buffer,
                                               headerVersion: apiKey.responseHeaderVersion(apiVersion: version))
        let body = try decode(from: &buffer, version: version)
        try buffer.expectFullyRead("\(Self.self)")
        return (header, body)
    }
}

extension ByteBuffer {
    /// A body must account for every byte of its frame: leftovers mean the two ends disagree
    /// on the layout, so the request is rejected rather than half-understood.
    @usableFromInline
    func expectFullyRead(_ field: String) throws {
        guard readableBytes == 0 else {
            throw ProtocolError(.invalidValue, field: field, offset: readerIndex,
                                detail: "\(readableBytes) trailing bytes after the body")
        }
    }

    @inlinable
    mutating func readKafkaInt32Array(_ field: String) throws -> [Int32] {
        try readKafkaArray(field, minimumElementBytes: 4) { try $0.readKafkaInt32(field) }
    }

    @inlinable
    mutating func writeKafkaInt32Array(_ values: [Int32]) {
        writeKafkaArray(values) { $0.writeInteger($1) }
    }

    @inlinable
    mutating func readErrorCode(_ field: String) throws -> ErrorCode {
        ErrorCode(rawValue: try readKafkaInt16(field))
    }

    @inlinable
    mutating func writeErrorCode(_ code: ErrorCode) {
        writeInteger(code.rawValue)
    }
}
