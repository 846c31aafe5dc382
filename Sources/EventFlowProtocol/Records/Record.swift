import NIOCore

/// A record header: a UTF-8 key and an optional value.
public struct RecordHeader: Hashable, Sendable {
    public var key: String
    public var value: ByteBuffer?

    public init(key: String, value: ByteBuffer?) {
        self.key = key
        self.value = value
    }

    public init<Bytes: Sequence>(key: String, value: Bytes?) where Bytes.Element == UInt8 {
        self.key = key
        self.value = value.map { ByteBuffer(bytes: $0) }
    }
}

/// One decoded record. Key, value and header values are slices of the batch (or of its
/// decompressed records section), not copies.
public struct Record: Hashable, Sendable {
    /// The batch's base offset plus the record's offset delta.
    public var offset: Int64
    /// Milliseconds since the epoch: base timestamp plus delta, or the batch's max timestamp
    /// when the batch uses log-append time.
    public var timestamp: Int64
    public var key: ByteBuffer?
    public var value: ByteBuffer?
    public var headers: [RecordHeader]
    /// The per-record attributes byte, unused by the protocol today (always 0).
    public var attributes: Int8

    public init(offset: Int64, timestamp: Int64, key: ByteBuffer?, value: ByteBuffer?,
                headers: [RecordHeader] = [], attributes: Int8 = 0) {
        self.offset = offset
        self.timestamp = timestamp
        self.key = key
        self.value = value
        self.headers = headers
        self.attributes = attributes
    }
}

/// Decodes a batch's records one at a time.
///
/// Each record is checked as it is read: its length covers exactly its fields, lengths are
/// -1 or non-negative and inside the record, offset deltas increase and stay within the
/// batch's `lastOffsetDelta`. After the last record, the count must match the header and no
/// bytes may be left over.
public struct RecordReader: Sendable {
    private var records: ByteBuffer
    private let header: RecordBatchHeader
    private var recordsRead: Int32 = 0
    private var previousOffsetDelta: Int64 = -1

    init(header: RecordBatchHeader, records: ByteBuffer) {
        self.header = header
        self.records = records
    }

    /// The next record, or nil after the last one.
    public mutating func next() throws -> Record? {
        guard recordsRead < header.recordCount else {
            guard records.readableBytes == 0 else {
                throw ProtocolError(.corruptRecord, field: "RecordBatch.records", offset: records.readerIndex,
                                    detail: "\(records.readableBytes) bytes after the last of \(header.recordCount) records")
            }
            return nil
        }
        do {
            let record = try readRecord(keeping: true)
            recordsRead += 1
            return record
        } catch let error as ProtocolError where error.kind != .corruptRecord {
            // Inside a batch whose CRC matched, a short or malformed field means the producer
            // wrote an inconsistent batch, which Kafka reports as a corrupt record.
            throw ProtocolError(.corruptRecord, field: error.field, offset: error.offset,
                                detail: "record \(recordsRead) of \(header.recordCount): \(error.kind.rawValue) \(error.detail)")
        }
    }

    /// Checks the next record as `next()` does without building it (no header keys decoded, no
    /// arrays): false after the last one. What a broker runs on every produced batch.
    public mutating func skip() throws -> Bool {
        guard recordsRead < header.recordCount else {
            _ = try next()
            return false
        }
        do {
            _ = try readRecord(keeping: false)
            recordsRead += 1
            return true
        } catch let error as ProtocolError where error.kind != .corruptRecord {
            throw ProtocolError(.corruptRecord, field: error.field, offset: error.offset,
                                detail: "record \(recordsRead) of \(header.recordCount): \(error.kind.rawValue) \(error.detail)")
        }
    }

    /// Every remaining record, in order.
    public mutating func readAll() throws -> [Record] {
        var result: [Record] = []
        // The count was checked against the bytes present, so this reservation is bounded by them.
        result.reserveCapacity(Int(header.recordCount - recordsRead))
        while let record = try next() {
            result.append(record)
        }
        return result
    }

    /// `keeping`: build the record (false: only check it; the result is then nil).
    private mutating func readRecord(keeping: Bool) throws -> Record? {
        let lengthOffset = records.readerIndex
        let length = try records.readVarInt("Record.length")
        guard length >= 0, var body = records.readSlice(length: Int(length)) else {
            throw ProtocolError(.corruptRecord, field: "Record.length", offset: lengthOffset,
                                detail: "length \(length) with \(records.readableBytes) bytes left")
        }
        let attributes = try body.readKafkaInt8("Record.attributes")
        let timestampDelta = try body.readVarLong("Record.timestampDelta")
        let offsetDeltaIndex = body.readerIndex
        let offsetDelta = Int64(try body.readVarInt("Record.offsetDelta"))
        guard offsetDelta > previousOffsetDelta, offsetDelta <= Int64(header.lastOffsetDelta) else {
            throw ProtocolError(.corruptRecord, field: "Record.offsetDelta", offset: offsetDeltaIndex,
                                detail: "offset delta \(offsetDelta) after \(previousOffsetDelta), last is \(header.lastOffsetDelta)")
        }
        previousOffsetDelta = offsetDelta
        let key = try Self.readNullableBytes(&body, "Record.key")
        let value = try Self.readNullableBytes(&body, "Record.value")

        let countOffset = body.readerIndex
        let headerCount = try body.readVarInt("Record.headers")
        // A header takes at least two bytes (key length and value length).
        guard headerCount >= 0, Int(headerCount) <= body.readableBytes / 2 else {
            throw ProtocolError(.corruptRecord, field: "Record.headers", offset: countOffset,
                                detail: "header count \(headerCount) with \(body.readableBytes) bytes left")
        }
        var headers: [RecordHeader] = []
        if headerCount > 0 {
            if keeping { headers.reserveCapacity(Int(headerCount)) }
            for _ in 0..<headerCount {
                let keyOffset = body.readerIndex
                guard let keyBytes = try Self.readNullableBytes(&body, "RecordHeader.key") else {
                    throw ProtocolError(.corruptRecord, field: "RecordHeader.key", offset: keyOffset, detail: "null header key")
                }
                let headerValue = try Self.readNullableBytes(&body, "RecordHeader.value")
                if keeping { headers.append(RecordHeader(key: String(buffer: keyBytes), value: headerValue)) }
            }
        }
        guard body.readableBytes == 0 else {
            throw ProtocolError(.corruptRecord, field: "Record.length", offset: lengthOffset,
                                detail: "\(body.readableBytes) bytes left inside the record after its fields")
        }
        guard keeping else { return nil }
        let timestamp = header.attributes.timestampType == .logAppendTime
            ? header.maxTimestamp
            : header.baseTimestamp &+ timestampDelta
        return Record(offset: header.baseOffset &+ offsetDelta, timestamp: timestamp,
                      key: key, value: value, headers: headers, attributes: attributes)
    }

    /// A varint length (-1 is null) followed by that many bytes, as a slice.
    private static func readNullableBytes(_ body: inout ByteBuffer, _ field: String) throws -> ByteBuffer? {
        let start = body.readerIndex
        let length = try body.readVarInt(field)
        if length == -1 { return nil }
        guard length >= 0, let slice = body.readSlice(length: Int(length)) else {
            throw ProtocolError(.corruptRecord, field: field, offset: start,
                                detail: "length \(length) with \(body.readableBytes) bytes left")
        }
        return slice
    }
}
