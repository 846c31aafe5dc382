/// A decoding or validation failure on bytes that came from the network or the log.
///
/// Every decoder in EventFlow is total: any byte string yields either a value or one of these,
/// naming the field that was wrong and the reader offset where it was found.
public struct ProtocolError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Kind: String, Hashable, Sendable {
        /// The input ended before the field was complete.
        case truncated
        /// A length, count or enum value is outside what the protocol allows.
        case invalidValue
        /// A frame's size prefix is larger than the configured maximum.
        case frameTooLarge
        /// The API key is not one EventFlow implements.
        case unsupportedAPIKey
        /// The API key is known but this version is not supported.
        case unsupportedVersion
        /// A record batch failed validation (CRC, magic, lengths, record count).
        case corruptRecord
        /// Compressed data could not be decompressed, or the codec is not supported.
        case compression
    }

    public var kind: Kind
    /// The protocol field being read, e.g. `"ProduceRequest.topics[].name"`.
    public var field: String
    /// Byte offset (reader index of the buffer being decoded) where the failure was found.
    public var offset: Int
    public var detail: String

    public init(_ kind: Kind, field: String, offset: Int, detail: String = "") {
        self.kind = kind
        self.field = field
        self.offset = offset
        self.detail = detail
    }

    public var description: String {
        let suffix = detail.isEmpty ? "" : ": \(detail)"
        return "\(kind.rawValue) at \(field) (offset \(offset))\(suffix)"
    }
}
