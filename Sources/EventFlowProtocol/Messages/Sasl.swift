import NIOCore

/// SaslHandshake (key 17), v0–v1. EventFlow offers only the PLAIN mechanism.
/// v0 means the SASL bytes that follow travel raw on the socket; v1 means they travel inside
/// SaslAuthenticate requests. The layout is the same.
public struct SaslHandshakeRequest: KafkaRequestMessage {
    public typealias Response = SaslHandshakeResponse
    public static let apiKey = APIKey.saslHandshake

    public var mechanism: String

    public init(mechanism: String) {
        self.mechanism = mechanism
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        buffer.writeKafkaString(mechanism)
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        return Self(mechanism: try buffer.readKafkaString("SaslHandshakeRequest.mechanism"))
    }
}

public struct SaslHandshakeResponse: KafkaResponseMessage {
    public static let apiKey = APIKey.saslHandshake

    public var errorCode: ErrorCode
    /// The mechanisms the broker enables (EventFlow: `["PLAIN"]`).
    public var mechanisms: [String]

    public init(errorCode: ErrorCode = .noError, mechanisms: [String]) {
        self.errorCode = errorCode
        self.mechanisms = mechanisms
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        buffer.writeErrorCode(errorCode)
        buffer.writeKafkaArray(mechanisms) { $0.writeKafkaString($1) }
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        let errorCode = try buffer.readErrorCode("SaslHandshakeResponse.errorCode")
        let mechanisms = try buffer.readKafkaArray("SaslHandshakeResponse.mechanisms", minimumElementBytes: 2) {
            try $0.readKafkaString("SaslHandshakeResponse.mechanisms[]")
        }
        return Self(errorCode: errorCode, mechanisms: mechanisms)
    }
}

/// SaslAuthenticate (key 36), v0–v1. For PLAIN, `authBytes` is
/// `authzid NUL username NUL password` (username = API key id, password = its secret).
public struct SaslAuthenticateRequest: KafkaRequestMessage {
    public typealias Response = SaslAuthenticateResponse
    public static let apiKey = APIKey.saslAuthenticate

    public var authBytes: ByteBuffer

    public init(authBytes: ByteBuffer) {
        self.authBytes = authBytes
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        buffer.writeKafkaBytes(authBytes)
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        return Self(authBytes: try buffer.readKafkaBytes("SaslAuthenticateRequest.authBytes"))
    }
}

public struct SaslAuthenticateResponse: KafkaResponseMessage {
    public static let apiKey = APIKey.saslAuthenticate

    public var errorCode: ErrorCode
    public var errorMessage: String?
    public var authBytes: ByteBuffer
    /// v1+: how long the authenticated session may last before the client must re-authenticate
    /// (0 = no limit).
    public var sessionLifetimeMs: Int64

    public init(errorCode: ErrorCode = .noError, errorMessage: String? = nil,
                authBytes: ByteBuffer = ByteBuffer(), sessionLifetimeMs: Int64 = 0) {
        self.errorCode = errorCode
        self.errorMessage = errorMessage
        self.authBytes = authBytes
        self.sessionLifetimeMs = sessionLifetimeMs
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        buffer.writeErrorCode(errorCode)
        buffer.writeKafkaNullableString(errorMessage)
        buffer.writeKafkaBytes(authBytes)
        if version >= 1 { buffer.writeInteger(sessionLifetimeMs) }
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        var response = Self(errorCode: try buffer.readErrorCode("SaslAuthenticateResponse.errorCode"),
                            errorMessage: try buffer.readKafkaNullableString("SaslAuthenticateResponse.errorMessage"),
                            authBytes: try buffer.readKafkaBytes("SaslAuthenticateResponse.authBytes"))
        if version >= 1 {
            response.sessionLifetimeMs = try buffer.readKafkaInt64("SaslAuthenticateResponse.sessionLifetimeMs")
        }
        return response
    }
}

/// The SASL PLAIN message (RFC 4616): `[authzid] NUL authcid NUL passwd`.
public struct SaslPlainCredentials: Sendable, Hashable {
    public var authorizationId: String
    /// EventFlow: the API key id.
    public var username: String
    /// EventFlow: the API key secret.
    public var password: String

    public init(authorizationId: String = "", username: String, password: String) {
        self.authorizationId = authorizationId
        self.username = username
        self.password = password
    }

    /// Splits the PLAIN message; anything other than exactly three NUL-separated UTF-8 parts
    /// with a non-empty username and password is `.invalidValue`.
    public init(parsing bytes: ByteBuffer) throws {
        let parts = bytes.readableBytesView.split(separator: 0, maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3,
              let authzid = String(validating: parts[0], as: UTF8.self),
              let username = String(validating: parts[1], as: UTF8.self),
              let password = String(validating: parts[2], as: UTF8.self),
              !username.isEmpty, !password.isEmpty, !password.utf8.contains(0) else {
            throw ProtocolError(.invalidValue, field: "SaslAuthenticateRequest.authBytes", offset: bytes.readerIndex,
                                detail: "not a SASL PLAIN message (authzid NUL username NUL password)")
        }
        self.init(authorizationId: authzid, username: username, password: password)
    }

    public var encoded: ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeString(authorizationId)
        buffer.writeInteger(UInt8(0))
        buffer.writeString(username)
        buffer.writeInteger(UInt8(0))
        buffer.writeString(password)
        return buffer
    }
}
