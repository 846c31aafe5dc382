import NIOCore

/// The header in front of every request body.
///
/// v1: int16 apiKey, int16 apiVersion, int32 correlationId, nullable string clientId.
/// v2 (flexible versions) adds a tagged-field section; clientId stays a classic nullable string.
public struct RequestHeader: Sendable, Hashable {
    public var apiKey: APIKey
    public var apiVersion: Int16
    public var correlationId: Int32
    public var clientId: String?

    public init(apiKey: APIKey, apiVersion: Int16, correlationId: Int32, clientId: String?) {
        self.apiKey = apiKey
        self.apiVersion = apiVersion
        self.correlationId = correlationId
        self.clientId = clientId
    }

    /// 1 or 2, decided by the API and version (see `APIKey.requestHeaderVersion`).
    public var headerVersion: Int16 { apiKey.requestHeaderVersion(apiVersion: apiVersion) }

    public func encode(into buffer: inout ByteBuffer) {
        buffer.writeInteger(apiKey.rawValue)
        buffer.writeInteger(apiVersion)
        buffer.writeInteger(correlationId)
        buffer.writeKafkaNullableString(clientId)
        if headerVersion >= 2 { buffer.writeKafkaEmptyTaggedFields() }
    }

    /// Reads the header of a request for an API and version EventFlow supports.
    /// Use `KafkaRequest.decode(frame:)` to also get the error context for unsupported ones.
    public static func decode(from buffer: inout ByteBuffer) throws -> RequestHeader {
        do {
            return try decodeReportingContext(from: &buffer)
        } catch {
            throw error.protocolError
        }
    }

    /// Decodes the header; a failure carries whatever header fields were read before it.
    static func decodeReportingContext(from buffer: inout ByteBuffer) throws(RequestDecodingError) -> RequestHeader {
        var context = RequestDecodingError.Context()
        do {
            let keyOffset = buffer.readerIndex
            let rawKey = try buffer.readKafkaInt16("RequestHeader.apiKey")
            context.apiKey = rawKey
            let version = try buffer.readKafkaInt16("RequestHeader.apiVersion")
            context.apiVersion = version
            let correlationId = try buffer.readKafkaInt32("RequestHeader.correlationId")
            context.correlationId = correlationId
            let clientId = try buffer.readKafkaNullableString("RequestHeader.clientId")
            context.clientId = clientId

            guard let apiKey = APIKey(rawValue: rawKey), let range = SupportedAPIVersions.range(for: apiKey) else {
                throw ProtocolError(.unsupportedAPIKey, field: "RequestHeader.apiKey", offset: keyOffset,
                                    detail: "API key \(rawKey) is not served")
            }
            guard range.contains(version) else {
                throw ProtocolError(.unsupportedVersion, field: "RequestHeader.apiVersion", offset: keyOffset + 2,
                                    detail: "\(apiKey) v\(version) is not served (versions \(range.lowerBound)-\(range.upperBound))")
            }
            let header = RequestHeader(apiKey: apiKey, apiVersion: version, correlationId: correlationId, clientId: clientId)
            if header.headerVersion >= 2 {
                try buffer.skipKafkaTaggedFields("RequestHeader.taggedFields")
            }
            return header
        } catch let error as ProtocolError {
            throw RequestDecodingError(error, context: context)
        } catch {
            throw RequestDecodingError(ProtocolError(.invalidValue, field: "RequestHeader", offset: buffer.readerIndex,
                                                     detail: "\(error)"), context: context)
        }
    }
}

/// The header in front of every response body: v0 is the correlation id, v1 (flexible
/// versions, except ApiVersions) adds a tagged-field section.
public struct ResponseHeader: Sendable, Hashable {
    public var correlationId: Int32

    public init(correlationId: Int32) {
        self.correlationId = correlationId
    }

    public func encode(into buffer: inout ByteBuffer, headerVersion: Int16) {
        buffer.writeInteger(correlationId)
        if headerVersion >= 1 { buffer.writeKafkaEmptyTaggedFields() }
    }

    public static func decode(from buffer: inout ByteBuffer, headerVersion: Int16) throws -> ResponseHeader {
        let correlationId = try buffer.readKafkaInt32("ResponseHeader.correlationId")
        if headerVersion >= 1 { try buffer.skipKafkaTaggedFields("ResponseHeader.taggedFields") }
        return ResponseHeader(correlationId: correlationId)
    }
}
