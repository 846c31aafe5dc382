import NIOCore

// Kafka's primitive types over NIO's ByteBuffer. Every read is bounds-checked and throws
// `ProtocolError`; counts and lengths are checked against the bytes actually present before
// anything is allocated, so a hostile length can never cause an unbounded allocation.

extension ByteBuffer {
    @inline(__always)
    @usableFromInline
    func truncated(_ field: String, needing bytes: Int) -> ProtocolError {
        ProtocolError(.truncated, field: field, offset: readerIndex,
                      detail: "needs \(bytes) bytes, \(readableBytes) left")
    }

    // MARK: Fixed-width integers (big-endian)

    @inlinable
    public mutating func readKafkaInt8(_ field: String) throws -> Int8 {
        guard let value = readInteger(as: Int8.self) else { throw truncated(field, needing: 1) }
        return value
    }

    @inlinable
    public mutating func readKafkaInt16(_ field: String) throws -> Int16 {
        guard let value = readInteger(as: Int16.self) else { throw truncated(field, needing: 2) }
        return value
    }

    @inlinable
    public mutating func readKafkaInt32(_ field: String) throws -> Int32 {
        guard let value = readInteger(as: Int32.self) else { throw truncated(field, needing: 4) }
        return value
    }

    @inlinable
    public mutating func readKafkaUInt32(_ field: String) throws -> UInt32 {
        guard let value = readInteger(as: UInt32.self) else { throw truncated(field, needing: 4) }
        return value
    }

    @inlinable
    public mutating func readKafkaInt64(_ field: String) throws -> Int64 {
        guard let value = readInteger(as: Int64.self) else { throw truncated(field, needing: 8) }
        return value
    }

    @inlinable
    public mutating func readKafkaBool(_ field: String) throws -> Bool {
        guard let value = readInteger(as: UInt8.self) else { throw truncated(field, needing: 1) }
        return value != 0
    }

    // MARK: Varints (protobuf-style base-128; signed ones zigzag-encoded)

    /// Kafka `unsigned_varint` (at most 5 bytes).
    @inlinable
    public mutating func readUnsignedVarInt(_ field: String) throws -> UInt32 {
        var result: UInt32 = 0
        var shift: UInt32 = 0
        let start = readerIndex
        while true {
            guard let byte = readInteger(as: UInt8.self) else {
                moveReaderIndex(to: start)
                throw truncated(field, needing: 1)
            }
            if shift == 28 && byte > 0x0F {
                moveReaderIndex(to: start)
                throw ProtocolError(.invalidValue, field: field, offset: start, detail: "varint longer than 5 bytes")
            }
            result |= UInt32(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
    }

    /// Kafka `unsigned_varlong` (at most 10 bytes).
    @inlinable
    public mutating func readUnsignedVarLong(_ field: String) throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        let start = readerIndex
        while true {
            guard let byte = readInteger(as: UInt8.self) else {
                moveReaderIndex(to: start)
                throw truncated(field, needing: 1)
            }
            if shift == 63 && byte > 0x01 {
                moveReaderIndex(to: start)
                throw ProtocolError(.invalidValue, field: field, offset: start, detail: "varlong longer than 10 bytes")
            }
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
    }

    /// Kafka `varint`: zigzag-encoded signed 32-bit.
    @inlinable
    public mutating func readVarInt(_ field: String) throws -> Int32 {
        let raw = try readUnsignedVarInt(field)
        return Int32(bitPattern: (raw >> 1) ^ (0 &- (raw & 1)))
    }

    /// Kafka `varlong`: zigzag-encoded signed 64-bit.
    @inlinable
    public mutating func readVarLong(_ field: String) throws -> Int64 {
        let raw = try readUnsignedVarLong(field)
        return Int64(bitPattern: (raw >> 1) ^ (0 &- (raw & 1)))
    }

    @inlinable
    @discardableResult
    public mutating func writeUnsignedVarInt(_ value: UInt32) -> Int {
        writeUnsignedVarLong(UInt64(value))
    }

    /// One bounds check and one pointer write per varint: this sits on the hot path of batch building.
    @inlinable
    @discardableResult
    public mutating func writeUnsignedVarLong(_ value: UInt64) -> Int {
        if value < 0x80 {
            writeInteger(UInt8(truncatingIfNeeded: value))
            return 1
        }
        return writeWithUnsafeMutableBytes(minimumWritableBytes: VarInt.maxByteCount) { pointer in
            VarInt.write(value, to: pointer, at: 0)
        }
    }

    @inlinable
    @discardableResult
    public mutating func writeVarInt(_ value: Int32) -> Int {
        writeUnsignedVarInt(UInt32(bitPattern: (value << 1) ^ (value >> 31)))
    }

    @inlinable
    @discardableResult
    public mutating func writeVarLong(_ value: Int64) -> Int {
        writeUnsignedVarLong(VarInt.zigZag(value))
    }

    // MARK: Strings and bytes (classic, int16/int32 length prefixes)

    @inlinable
    mutating func readUTF8(_ field: String, length: Int) throws -> String {
        guard length <= readableBytes else { throw truncated(field, needing: length) }
        guard let string = readString(length: length) else { throw truncated(field, needing: length) }
        return string
    }

    /// Kafka `STRING`: int16 length, then UTF-8 bytes.
    @inlinable
    public mutating func readKafkaString(_ field: String) throws -> String {
        let start = readerIndex
        let length = try readKafkaInt16(field)
        guard length >= 0 else {
            throw ProtocolError(.invalidValue, field: field, offset: start, detail: "negative length \(length) for a non-nullable string")
        }
        return try readUTF8(field, length: Int(length))
    }

    /// Kafka `NULLABLE_STRING`: int16 length (-1 is null), then UTF-8 bytes.
    @inlinable
    public mutating func readKafkaNullableString(_ field: String) throws -> String? {
        let start = readerIndex
        let length = try readKafkaInt16(field)
        if length == -1 { return nil }
        guard length >= 0 else {
            throw ProtocolError(.invalidValue, field: field, offset: start, detail: "invalid length \(length)")
        }
        return try readUTF8(field, length: Int(length))
    }

    /// Kafka `BYTES`: int32 length, then the bytes, returned as a slice (no copy).
    @inlinable
    public mutating func readKafkaBytes(_ field: String) throws -> ByteBuffer {
        let start = readerIndex
        let length = try readKafkaInt32(field)
        guard length >= 0 else {
            throw ProtocolError(.invalidValue, field: field, offset: start, detail: "negative length \(length) for non-nullable bytes")
        }
        guard let slice = readSlice(length: Int(length)) else { throw truncated(field, needing: Int(length)) }
        return slice
    }

    /// Kafka `NULLABLE_BYTES` / `RECORDS`: int32 length (-1 is null), then the bytes as a slice.
    @inlinable
    public mutating func readKafkaNullableBytes(_ field: String) throws -> ByteBuffer? {
        let start = readerIndex
        let length = try readKafkaInt32(field)
        if length == -1 { return nil }
        guard length >= 0 else {
            throw ProtocolError(.invalidValue, field: field, offset: start, detail: "invalid length \(length)")
        }
        guard let slice = readSlice(length: Int(length)) else { throw truncated(field, needing: Int(length)) }
        return slice
    }

    /// Kafka `ARRAY`: int32 count, then the elements. A count larger than the bytes left
    /// (every element takes at least `minimumElementBytes`) is rejected before allocating.
    @inlinable
    public mutating func readKafkaArray<Element>(
        _ field: String,
        minimumElementBytes: Int = 1,
        _ element: (inout ByteBuffer) throws -> Element
    ) throws -> [Element] {
        guard let elements = try readKafkaNullableArray(field, minimumElementBytes: minimumElementBytes, element) else {
            throw ProtocolError(.invalidValue, field: field, offset: readerIndex - 4, detail: "null array where one is required")
        }
        return elements
    }

    /// Kafka nullable `ARRAY`: int32 count (-1 is null).
    @inlinable
    public mutating func readKafkaNullableArray<Element>(
        _ field: String,
        minimumElementBytes: Int = 1,
        _ element: (inout ByteBuffer) throws -> Element
    ) throws -> [Element]? {
        let start = readerIndex
        let count = try readKafkaInt32(field)
        if count == -1 { return nil }
        guard count >= 0 else {
            throw ProtocolError(.invalidValue, field: field, offset: start, detail: "invalid array count \(count)")
        }
        return try readElements(field, count: Int(count), start: start, minimumElementBytes: minimumElementBytes, element)
    }

    @inlinable
    mutating func readElements<Element>(
        _ field: String,
        count: Int,
        start: Int,
        minimumElementBytes: Int,
        _ element: (inout ByteBuffer) throws -> Element
    ) throws -> [Element] {
        guard count <= readableBytes / max(minimumElementBytes, 1) || count == 0 else {
            throw ProtocolError(.invalidValue, field: field, offset: start,
                                detail: "array count \(count) exceeds the \(readableBytes) bytes left")
        }
        var result: [Element] = []
        result.reserveCapacity(count)
        for _ in 0..<count {
            result.append(try element(&self))
        }
        return result
    }

    // MARK: Compact forms (flexible versions: unsigned varint length + 1, 0 is null)

    @inlinable
    public mutating func readKafkaCompactNullableString(_ field: String) throws -> String? {
        let lengthPlusOne = try readUnsignedVarInt(field)
        if lengthPlusOne == 0 { return nil }
        return try readUTF8(field, length: Int(lengthPlusOne - 1))
    }

    @inlinable
    public mutating func readKafkaCompactString(_ field: String) throws -> String {
        let start = readerIndex
        guard let string = try readKafkaCompactNullableString(field) else {
            throw ProtocolError(.invalidValue, field: field, offset: start, detail: "null where a string is required")
        }
        return string
    }

    @inlinable
    public mutating func readKafkaCompactNullableBytes(_ field: String) throws -> ByteBuffer? {
        let lengthPlusOne = try readUnsignedVarInt(field)
        if lengthPlusOne == 0 { return nil }
        let length = Int(lengthPlusOne - 1)
        guard let slice = readSlice(length: length) else { throw truncated(field, needing: length) }
        return slice
    }

    @inlinable
    public mutating func readKafkaCompactBytes(_ field: String) throws -> ByteBuffer {
        let start = readerIndex
        guard let bytes = try readKafkaCompactNullableBytes(field) else {
            throw ProtocolError(.invalidValue, field: field, offset: start, detail: "null where bytes are required")
        }
        return bytes
    }

    @inlinable
    public mutating func readKafkaCompactNullableArray<Element>(
        _ field: String,
        minimumElementBytes: Int = 1,
        _ element: (inout ByteBuffer) throws -> Element
    ) throws -> [Element]? {
        let start = readerIndex
        let countPlusOne = try readUnsignedVarInt(field)
        if countPlusOne == 0 { return nil }
        return try readElements(field, count: Int(countPlusOne - 1), start: start,
                                minimumElementBytes: minimumElementBytes, element)
    }

    @inlinable
    public mutating func readKafkaCompactArray<Element>(
        _ field: String,
        minimumElementBytes: Int = 1,
        _ element: (inout ByteBuffer) throws -> Element
    ) throws -> [Element] {
        let start = readerIndex
        guard let elements = try readKafkaCompactNullableArray(field, minimumElementBytes: minimumElementBytes, element) else {
            throw ProtocolError(.invalidValue, field: field, offset: start, detail: "null array where one is required")
        }
        return elements
    }

    /// Skips a flexible version's tagged-field section (EventFlow defines no tagged fields).
    @inlinable
    public mutating func skipKafkaTaggedFields(_ field: String) throws {
        let count = try readUnsignedVarInt(field)
        for _ in 0..<count {
            _ = try readUnsignedVarInt(field)  // tag
            let size = Int(try readUnsignedVarInt(field))
            guard size <= readableBytes else { throw truncated(field, needing: size) }
            moveReaderIndex(forwardBy: size)
        }
    }

    // MARK: Writers

    @inlinable
    public mutating func writeKafkaString(_ value: String) {
        writeInteger(Int16(truncatingIfNeeded: value.utf8.count))
        writeString(value)
    }

    @inlinable
    public mutating func writeKafkaNullableString(_ value: String?) {
        guard let value else { writeInteger(Int16(-1)); return }
        writeKafkaString(value)
    }

    @inlinable
    public mutating func writeKafkaBytes(_ value: ByteBuffer) {
        writeInteger(Int32(truncatingIfNeeded: value.readableBytes))
        writeImmutableBuffer(value)
    }

    @inlinable
    public mutating func writeKafkaNullableBytes(_ value: ByteBuffer?) {
        guard let value else { writeInteger(Int32(-1)); return }
        writeKafkaBytes(value)
    }

    @inlinable
    public mutating func writeKafkaBool(_ value: Bool) {
        writeInteger(UInt8(value ? 1 : 0))
    }

    @inlinable
    public mutating func writeKafkaArray<Element>(_ elements: [Element], _ element: (inout ByteBuffer, Element) -> Void) {
        writeInteger(Int32(truncatingIfNeeded: elements.count))
        for e in elements { element(&self, e) }
    }

    @inlinable
    public mutating func writeKafkaNullableArray<Element>(_ elements: [Element]?, _ element: (inout ByteBuffer, Element) -> Void) {
        guard let elements else { writeInteger(Int32(-1)); return }
        writeKafkaArray(elements, element)
    }

    @inlinable
    public mutating func writeKafkaCompactNullableString(_ value: String?) {
        guard let value else { writeUnsignedVarInt(0); return }
        writeUnsignedVarInt(UInt32(truncatingIfNeeded: value.utf8.count + 1))
        writeString(value)
    }

    @inlinable
    public mutating func writeKafkaCompactString(_ value: String) {
        writeKafkaCompactNullableString(value)
    }

    @inlinable
    public mutating func writeKafkaCompactNullableBytes(_ value: ByteBuffer?) {
        guard let value else { writeUnsignedVarInt(0); return }
        writeUnsignedVarInt(UInt32(truncatingIfNeeded: value.readableBytes + 1))
        writeImmutableBuffer(value)
    }

    @inlinable
    public mutating func writeKafkaCompactNullableArray<Element>(_ elements: [Element]?, _ element: (inout ByteBuffer, Element) -> Void) {
        guard let elements else { writeUnsignedVarInt(0); return }
        writeUnsignedVarInt(UInt32(truncatingIfNeeded: elements.count + 1))
        for e in elements { element(&self, e) }
    }

    @inlinable
    public mutating func writeKafkaCompactArray<Element>(_ elements: [Element], _ element: (inout ByteBuffer, Element) -> Void) {
        writeKafkaCompactNullableArray(elements, element)
    }

    /// An empty tagged-field section.
    @inlinable
    public mutating func writeKafkaEmptyTaggedFields() {
        writeUnsignedVarInt(0)
    }
}

/// Kafka's varints on raw memory: sizes (to write a length prefix before its content) and the
/// encoding itself, shared by `ByteBuffer.writeUnsignedVarLong` and the record batch builder's
/// single-pass record writer.
@usableFromInline
enum VarInt {
    /// An unsigned 64-bit varint takes at most 10 bytes.
    @usableFromInline
    static let maxByteCount = 10

    @inlinable
    @inline(__always)
    static func zigZag(_ value: Int64) -> UInt64 {
        UInt64(bitPattern: (value << 1) ^ (value >> 63))
    }

    @inlinable
    @inline(__always)
    static func zigZagByteCount(_ value: Int64) -> Int {
        (64 - (zigZag(value) | 1).leadingZeroBitCount + 6) / 7
    }

    /// Writes `value` at `offset`, where the caller has made room for `maxByteCount` bytes (or
    /// the value's exact size); returns the bytes written.
    @inlinable
    @inline(__always)
    static func write(_ value: UInt64, to pointer: UnsafeMutableRawBufferPointer, at offset: Int) -> Int {
        var v = value
        var index = offset
        while v >= 0x80 {
            pointer[index] = UInt8(truncatingIfNeeded: v) | 0x80
            v >>= 7
            index += 1
        }
        pointer[index] = UInt8(truncatingIfNeeded: v)
        return index + 1 - offset
    }
}

// MARK: Classic or compact by version

/// For messages whose served versions span the switch to the flexible encoding: the same field
/// is a classic string/array before it and a compact one (plus tag sections) from it on.
extension ByteBuffer {
    @inlinable
    public mutating func writeKafkaString(_ value: String, compact: Bool) {
        if compact { writeKafkaCompactString(value) } else { writeKafkaString(value) }
    }

    @inlinable
    public mutating func writeKafkaNullableString(_ value: String?, compact: Bool) {
        if compact { writeKafkaCompactNullableString(value) } else { writeKafkaNullableString(value) }
    }

    @inlinable
    public mutating func writeKafkaArray<Element>(_ elements: [Element], compact: Bool,
                                                  _ element: (inout ByteBuffer, Element) -> Void) {
        if compact { writeKafkaCompactArray(elements, element) } else { writeKafkaArray(elements, element) }
    }

    @inlinable
    public mutating func writeKafkaNullableArray<Element>(_ elements: [Element]?, compact: Bool,
                                                          _ element: (inout ByteBuffer, Element) -> Void) {
        if compact { writeKafkaCompactNullableArray(elements, element) } else { writeKafkaNullableArray(elements, element) }
    }

    /// An empty tag section in a flexible version; nothing otherwise.
    @inlinable
    public mutating func writeKafkaEmptyTaggedFields(compact: Bool) {
        if compact { writeKafkaEmptyTaggedFields() }
    }

    @inlinable
    public mutating func readKafkaString(_ field: String, compact: Bool) throws -> String {
        compact ? try readKafkaCompactString(field) : try readKafkaString(field)
    }

    @inlinable
    public mutating func readKafkaNullableString(_ field: String, compact: Bool) throws -> String? {
        compact ? try readKafkaCompactNullableString(field) : try readKafkaNullableString(field)
    }

    /// `minimumElementBytes` is the element's smallest size in the compact form (the smaller one).
    @inlinable
    public mutating func readKafkaArray<Element>(_ field: String, compact: Bool, minimumElementBytes: Int = 1,
                                                 _ element: (inout ByteBuffer) throws -> Element) throws -> [Element] {
        compact
            ? try readKafkaCompactArray(field, minimumElementBytes: minimumElementBytes, element)
            : try readKafkaArray(field, minimumElementBytes: minimumElementBytes, element)
    }

    @inlinable
    public mutating func readKafkaNullableArray<Element>(_ field: String, compact: Bool, minimumElementBytes: Int = 1,
                                                         _ element: (inout ByteBuffer) throws -> Element) throws -> [Element]? {
        compact
            ? try readKafkaCompactNullableArray(field, minimumElementBytes: minimumElementBytes, element)
            : try readKafkaNullableArray(field, minimumElementBytes: minimumElementBytes, element)
    }

    /// Skips a tag section in a flexible version; nothing otherwise.
    @inlinable
    public mutating func skipKafkaTaggedFields(_ field: String, compact: Bool) throws {
        if compact { try skipKafkaTaggedFields(field) }
    }
}
