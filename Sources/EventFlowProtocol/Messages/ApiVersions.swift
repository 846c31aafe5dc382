import NIOCore

/// ApiVersions (key 18), v0–v3. v3 is flexible: compact strings, compact arrays, tagged fields.
public struct ApiVersionsRequest: KafkaRequestMessage {
    public typealias Response = ApiVersionsResponse
    public static let apiKey = APIKey.apiVersions

    /// v3+: the client library's name and version (informational; EventFlow logs them).
    public var clientSoftwareName: String
    public var clientSoftwareVersion: String

    public init(clientSoftwareName: String = "", clientSoftwareVersion: String = "") {
        self.clientSoftwareName = clientSoftwareName
        self.clientSoftwareVersion = clientSoftwareVersion
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        guard version >= 3 else { return }
        buffer.writeKafkaCompactString(clientSoftwareName)
        buffer.writeKafkaCompactString(clientSoftwareVersion)
        buffer.writeKafkaEmptyTaggedFields()
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        var request = Self()
        if version >= 3 {
            request.clientSoftwareName = try buffer.readKafkaCompactString("ApiVersionsRequest.clientSoftwareName")
            request.clientSoftwareVersion = try buffer.readKafkaCompactString("ApiVersionsRequest.clientSoftwareVersion")
            try buffer.skipKafkaTaggedFields("ApiVersionsRequest.taggedFields")
        }
        return request
    }
}

public struct ApiVersionsResponse: KafkaResponseMessage {
    public static let apiKey = APIKey.apiVersions

    public struct APIVersionRange: Sendable, Hashable {
        public var apiKey: Int16
        public var minVersion: Int16
        public var maxVersion: Int16

        public init(apiKey: Int16, minVersion: Int16, maxVersion: Int16) {
            self.apiKey = apiKey
            self.minVersion = minVersion
            self.maxVersion = maxVersion
        }
    }

    public var errorCode: ErrorCode
    public var apiKeys: [APIVersionRange]
    /// v1+.
    public var throttleTimeMs: Int32

    public init(errorCode: ErrorCode = .noError, apiKeys: [APIVersionRange] = SupportedAPIVersions.apiVersionsEntries,
                throttleTimeMs: Int32 = 0) {
        self.errorCode = errorCode
        self.apiKeys = apiKeys
        self.throttleTimeMs = throttleTimeMs
    }

    /// The answer to a request at a version EventFlow does not serve: error 35 with the
    /// supported ranges, always sent as a v0 body so any client can read it and fall back.
    public static let unsupportedVersionAnswer = ApiVersionsResponse(errorCode: .unsupportedVersion)

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        buffer.writeErrorCode(errorCode)
        if version >= 3 {
            buffer.writeKafkaCompactArray(apiKeys) { buffer, range in
                buffer.writeInteger(range.apiKey)
                buffer.writeInteger(range.minVersion)
                buffer.writeInteger(range.maxVersion)
                buffer.writeKafkaEmptyTaggedFields()
            }
        } else {
            buffer.writeKafkaArray(apiKeys) { buffer, range in
                buffer.writeInteger(range.apiKey)
                buffer.writeInteger(range.minVersion)
                buffer.writeInteger(range.maxVersion)
            }
        }
        if version >= 1 { buffer.writeInteger(throttleTimeMs) }
        if version >= 3 { buffer.writeKafkaEmptyTaggedFields() }
    }

    /// An UNSUPPORTED_VERSION answer is read as v0 whatever version was asked, because the
    /// broker could not know which layout the client understands.
    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        let errorCode = try buffer.readErrorCode("ApiVersionsResponse.errorCode")
        let layout = errorCode == .unsupportedVersion ? 0 : version
        func readRange(_ buffer: inout ByteBuffer) throws -> APIVersionRange {
            let range = APIVersionRange(apiKey: try buffer.readKafkaInt16("ApiVersionsResponse.apiKeys[].apiKey"),
                                        minVersion: try buffer.readKafkaInt16("ApiVersionsResponse.apiKeys[].minVersion"),
                                        maxVersion: try buffer.readKafkaInt16("ApiVersionsResponse.apiKeys[].maxVersion"))
            if layout >= 3 { try buffer.skipKafkaTaggedFields("ApiVersionsResponse.apiKeys[].taggedFields") }
            return range
        }
        let apiKeys = layout >= 3
            ? try buffer.readKafkaCompactArray("ApiVersionsResponse.apiKeys", minimumElementBytes: 7, readRange)
            : try buffer.readKafkaArray("ApiVersionsResponse.apiKeys", minimumElementBytes: 6, readRange)
        var response = Self(errorCode: errorCode, apiKeys: apiKeys, throttleTimeMs: 0)
        if layout >= 1 { response.throttleTimeMs = try buffer.readKafkaInt32("ApiVersionsResponse.throttleTimeMs") }
        if layout >= 3 { try buffer.skipKafkaTaggedFields("ApiVersionsResponse.taggedFields") }
        return response
    }
}
