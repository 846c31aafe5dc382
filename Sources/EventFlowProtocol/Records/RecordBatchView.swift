import NIOCore

/// One validated RecordBatch v2, held as a slice of the bytes it arrived in (no copy).
///
/// Validation checks everything that can be checked without decoding records: the length
/// prefix, magic 2, the CRC32C over attributes..end, a supported codec (none or LZ4) and a
/// record count consistent with the offset range and the bytes present. Records are decoded
/// only on demand, by `records(decompressedBytesMax:)`.
public struct RecordBatchView: Hashable, Sendable {
    /// The smallest possible record: a one-byte length, attributes, timestamp delta, offset
    /// delta, key length, value length and header count.
    public static let recordByteCountMin = 7

    /// Exactly the batch's bytes, header first.
    public private(set) var bytes: ByteBuffer
    public private(set) var header: RecordBatchHeader

    /// Validates the batch at the start of `bytes`, which must hold exactly one batch.
    public init(validating bytes: ByteBuffer) throws {
        let total = try Self.validatedLength(of: bytes, at: bytes.readerIndex)
        guard total == bytes.readableBytes else {
            throw ProtocolError(.corruptRecord, field: "RecordBatch.batchLength", offset: bytes.readerIndex,
                                detail: "batch is \(total) bytes but \(bytes.readableBytes) were given")
        }
        try self.init(validatedSlice: bytes)
    }

    private init(validatedSlice bytes: ByteBuffer) throws {
        let start = bytes.readerIndex
        let header = try RecordBatchHeader(parsing: bytes, at: start)
        let recordsByteCount = header.totalByteCount - RecordBatchHeader.byteCount

        guard header.magic == RecordBatchHeader.magic else {
            throw ProtocolError(.corruptRecord, field: "RecordBatch.magic", offset: start + RecordBatchHeader.magicIndex,
                                detail: "magic \(header.magic), only 2 is supported")
        }
        let crcLength = header.totalByteCount - RecordBatchHeader.attributesIndex
        let computed = CRC32C.checksum(bytes, at: start + RecordBatchHeader.attributesIndex, length: crcLength)
        guard computed == header.crc else {
            throw ProtocolError(.corruptRecord, field: "RecordBatch.crc", offset: start + RecordBatchHeader.crcIndex,
                                detail: "stored \(crcHex(header.crc)), computed \(computed.map(crcHex) ?? "nothing")")
        }
        guard let codec = header.attributes.compression, codec == .none || codec == .lz4 else {
            throw ProtocolError(.compression, field: "RecordBatch.attributes", offset: start + RecordBatchHeader.attributesIndex,
                                detail: "compression codec \(header.attributes.compressionBits) is not supported (none and lz4 are)")
        }
        guard header.recordCount >= 0 else {
            throw ProtocolError(.corruptRecord, field: "RecordBatch.recordCount", offset: start + RecordBatchHeader.recordCountIndex,
                                detail: "negative record count \(header.recordCount)")
        }
        if header.recordCount > 0 {
            // Every record has its own offset in base...base+lastOffsetDelta.
            guard header.lastOffsetDelta >= 0, Int64(header.recordCount) <= Int64(header.lastOffsetDelta) + 1 else {
                throw ProtocolError(.corruptRecord, field: "RecordBatch.recordCount", offset: start + RecordBatchHeader.recordCountIndex,
                                    detail: "\(header.recordCount) records do not fit lastOffsetDelta \(header.lastOffsetDelta)")
            }
        }
        if codec == .none {
            guard Int(header.recordCount) <= recordsByteCount / Self.recordByteCountMin else {
                throw ProtocolError(.corruptRecord, field: "RecordBatch.recordCount", offset: start + RecordBatchHeader.recordCountIndex,
                                    detail: "\(header.recordCount) records cannot fit in \(recordsByteCount) bytes")
            }
        } else if header.recordCount > 0 && recordsByteCount == 0 {
            throw ProtocolError(.compression, field: "RecordBatch.records", offset: start + RecordBatchHeader.byteCount,
                                detail: "compressed batch with records has no data")
        }
        self.bytes = bytes
        self.header = header
    }

    /// Checks the length prefix of the batch at absolute index `index` and returns the batch's
    /// total size; throws `.truncated` when `buffer` ends before the batch does.
    static func validatedLength(of buffer: ByteBuffer, at index: Int) throws -> Int {
        guard let batchLength = buffer.getInteger(at: index + RecordBatchHeader.batchLengthIndex, as: Int32.self),
              index + RecordBatchHeader.lengthPrefixByteCount <= buffer.writerIndex else {
            throw ProtocolError(.truncated, field: "RecordBatch.batchLength", offset: index,
                                detail: "needs \(RecordBatchHeader.lengthPrefixByteCount) bytes, \(buffer.writerIndex - index) left")
        }
        let minimum = RecordBatchHeader.byteCount - RecordBatchHeader.lengthPrefixByteCount
        guard Int(batchLength) >= minimum else {
            throw ProtocolError(.corruptRecord, field: "RecordBatch.batchLength", offset: index + RecordBatchHeader.batchLengthIndex,
                                detail: "batchLength \(batchLength) is below the \(minimum)-byte header")
        }
        let total = RecordBatchHeader.lengthPrefixByteCount + Int(batchLength)
        guard total <= buffer.writerIndex - index else {
            throw ProtocolError(.truncated, field: "RecordBatch", offset: index,
                                detail: "batch is \(total) bytes, \(buffer.writerIndex - index) left")
        }
        return total
    }

    /// The records section: plain records, or one LZ4 frame when the batch is compressed.
    public var recordsSection: ByteBuffer {
        bytes.getSlice(at: bytes.readerIndex + RecordBatchHeader.byteCount,
                       length: bytes.readableBytes - RecordBatchHeader.byteCount) ?? ByteBuffer()
    }

    /// Sets the base offset in this view's bytes (the CRC stays valid: it does not cover it).
    public mutating func rewriteBaseOffset(_ baseOffset: Int64) {
        bytes.setInteger(baseOffset, at: bytes.readerIndex + RecordBatchHeader.baseOffsetIndex)
        header.baseOffset = baseOffset
    }

    /// A reader over the batch's records, decompressing the records section first when the batch
    /// is LZ4-compressed. `decompressedBytesMax` bounds the memory that decompression may use.
    public func records(decompressedBytesMax: Int) throws -> RecordReader {
        var section = recordsSection
        if header.attributes.compression == .lz4 {
            var decompressed = ByteBuffer()
            try LZ4Frame.decompress(section, into: &decompressed, decompressedBytesMax: decompressedBytesMax)
            section = decompressed
            // Validation could not see inside the frame: check the count against the content now,
            // before anything is sized by it.
            guard Int(header.recordCount) <= section.readableBytes / Self.recordByteCountMin else {
                throw ProtocolError(.corruptRecord, field: "RecordBatch.recordCount",
                                    offset: bytes.readerIndex + RecordBatchHeader.recordCountIndex,
                                    detail: "\(header.recordCount) records cannot fit in \(section.readableBytes) decompressed bytes")
            }
        }
        return RecordReader(header: header, records: section)
    }

    /// Walks every record (after decompressing an LZ4 batch) and checks the batch holds what its
    /// header says: `recordCount` records, each well formed, offset deltas rising within
    /// `lastOffsetDelta`, nothing left over. A CRC only proves the bytes arrived as the producer
    /// wrote them; this proves a consumer can read them.
    public func validateRecords(decompressedBytesMax: Int) throws {
        var reader = try records(decompressedBytesMax: decompressedBytesMax)
        while try reader.skip() {}
    }

    /// Splits a Produce or Fetch `records` field (zero or more concatenated batches) into
    /// validated batches, slices of `records`.
    ///
    /// - Parameter allowsTrailingPartialBatch: Fetch responses may end with a batch cut short by
    ///   the size limit; when true it is ignored, when false (Produce) it is a `.truncated` error.
    public static func batches(in records: ByteBuffer, allowsTrailingPartialBatch: Bool = false) throws -> [RecordBatchView] {
        var sequence = RecordBatchSequence(records, allowsTrailingPartialBatch: allowsTrailingPartialBatch)
        var result: [RecordBatchView] = []
        while let batch = try sequence.next() {
            result.append(batch)
        }
        return result
    }
}

/// Walks concatenated batches one by one without allocating; each is validated as it is reached.
public struct RecordBatchSequence: Sendable {
    private var remaining: ByteBuffer
    private let allowsTrailingPartialBatch: Bool

    public init(_ records: ByteBuffer, allowsTrailingPartialBatch: Bool = false) {
        self.remaining = records
        self.allowsTrailingPartialBatch = allowsTrailingPartialBatch
    }

    public mutating func next() throws -> RecordBatchView? {
        guard remaining.readableBytes > 0 else { return nil }
        let start = remaining.readerIndex
        let total: Int
        do {
            total = try RecordBatchView.validatedLength(of: remaining, at: start)
        } catch let error as ProtocolError where error.kind == .truncated && allowsTrailingPartialBatch {
            remaining.moveReaderIndex(forwardBy: remaining.readableBytes)
            return nil
        }
        guard let slice = remaining.readSlice(length: total) else {
            throw ProtocolError(.truncated, field: "RecordBatch", offset: start, detail: "batch is \(total) bytes")
        }
        return try RecordBatchView(validating: slice)
    }
}

@inline(__always)
private func crcHex(_ value: UInt32) -> String {
    "0x" + String(value, radix: 16, uppercase: true)
}
