import NIOCore
import Testing
@testable import EventFlowProtocol

@Suite struct RecordBatchTests {
    static let t0: Int64 = 1_700_000_000_000

    static func sampleBatch(compression: RecordBatchBuilder.Compression = .none, records: Int = 3) throws -> ByteBuffer {
        var builder = RecordBatchBuilder(configuration: .init(compression: compression))
        for i in 0..<records {
            builder.append(timestamp: t0 + Int64(i), key: Array("k\(i)".utf8), value: RecordsTestSupport.jsonEvent(i))
        }
        return try builder.build()
    }

    @Test func emptyBatchHasTheHeaderOnly() throws {
        var builder = RecordBatchBuilder()
        let batch = try builder.build()
        #expect(batch.readableBytes == 61)
        let view = try RecordBatchView(validating: batch)
        #expect(view.header.recordCount == 0)
        #expect(view.header.batchLength == 49)
        var reader = try view.records(decompressedBytesMax: 0)
        #expect(try reader.next() == nil)
    }

    @Test func singleRecordBytesMatchTheSpecLayout() throws {
        var builder = RecordBatchBuilder(configuration: .init(producerId: 7, producerEpoch: 1, baseSequence: 5))
        builder.append(timestamp: 1000, key: Array("k".utf8), value: Array("v".utf8),
                       headers: [RecordHeader(key: "h", value: Array("x".utf8))])
        let batch = try builder.build()
        // record: length 12, attributes 0, timestampDelta 0, offsetDelta 0, key "k", value "v",
        // 1 header "h" = "x"; varints are zigzag (1 → 0x02, -1 → 0x01).
        let record: [UInt8] = [0x18, 0x00, 0x00, 0x00, 0x02, 0x6B, 0x02, 0x76, 0x02, 0x02, 0x68, 0x02, 0x78]
        #expect(Array(batch.bytesForTest[61...]) == record)
        var expected = ByteBuffer()
        expected.writeInteger(Int64(0))                    // baseOffset
        expected.writeInteger(Int32(49 + record.count))    // batchLength
        expected.writeInteger(Int32(-1))                   // partitionLeaderEpoch
        expected.writeInteger(Int8(2))                     // magic
        expected.writeInteger(UInt32(0))                   // crc, checked below
        expected.writeInteger(Int16(0))                    // attributes
        expected.writeInteger(Int32(0))                    // lastOffsetDelta
        expected.writeInteger(Int64(1000))                 // baseTimestamp
        expected.writeInteger(Int64(1000))                 // maxTimestamp
        expected.writeInteger(Int64(7))                    // producerId
        expected.writeInteger(Int16(1))                    // producerEpoch
        expected.writeInteger(Int32(5))                    // baseSequence
        expected.writeInteger(Int32(1))                    // recordCount
        expected.writeBytes(record)
        let crc = CRC32C.checksum(Array(expected.bytesForTest[21...]))
        expected.setInteger(crc, at: 17)
        #expect(batch == expected)
    }

    @Test(arguments: [RecordBatchBuilder.Compression.none, .lz4()])
    func builtBatchReadsBackWithOffsetsTimestampsKeysValuesAndHeaders(compression: RecordBatchBuilder.Compression) throws {
        var builder = RecordBatchBuilder(configuration: .init(compression: compression, producerId: 11,
                                                              producerEpoch: 2, baseSequence: 100))
        builder.append(timestamp: Self.t0 + 5, key: ByteBuffer(string: "a"), value: ByteBuffer(string: "one"),
                       headers: [RecordHeader(key: "trace", value: ByteBuffer(string: "t1")),
                                 RecordHeader(key: "nil", value: nil as ByteBuffer?)])
        builder.append(timestamp: Self.t0, key: nil, value: nil)
        builder.append(timestamp: Self.t0 + 9, key: nil, value: Array(repeating: UInt8(0x7A), count: 300))
        var batch = try builder.build()
        try RecordBatchHeader.rewriteBaseOffset(500, in: &batch, batchIndex: batch.readerIndex)

        let view = try RecordBatchView(validating: batch)
        #expect(view.header.baseOffset == 500)
        #expect(view.header.lastOffset == 502)
        #expect(view.header.recordCount == 3)
        #expect(view.header.baseTimestamp == Self.t0 + 5)
        #expect(view.header.maxTimestamp == Self.t0 + 9)
        #expect(view.header.producerId == 11)
        #expect(view.header.producerEpoch == 2)
        #expect(view.header.baseSequence == 100)
        #expect(view.header.attributes.compression == compression.codec)
        var reader = try view.records(decompressedBytesMax: 1 << 20)
        let records = try reader.readAll()
        #expect(records == [
            Record(offset: 500, timestamp: Self.t0 + 5, key: ByteBuffer(string: "a"), value: ByteBuffer(string: "one"),
                   headers: [RecordHeader(key: "trace", value: ByteBuffer(string: "t1")),
                             RecordHeader(key: "nil", value: nil as ByteBuffer?)]),
            Record(offset: 501, timestamp: Self.t0, key: nil, value: nil),
            Record(offset: 502, timestamp: Self.t0 + 9, key: nil, value: ByteBuffer(repeating: 0x7A, count: 300)),
        ])
    }

    @Test func builderIsReusableAndProducesIdenticalBatchesForIdenticalInput() throws {
        var builder = RecordBatchBuilder(configuration: .init(compression: .lz4()))
        var first = ByteBuffer()
        for round in 0..<3 {
            for i in 0..<100 {
                builder.append(timestamp: Self.t0 + Int64(i), key: nil, value: RecordsTestSupport.jsonEvent(i))
            }
            var output = ByteBuffer(string: "before")
            let size = try builder.build(into: &output)
            #expect(output.readString(length: 6) == "before")
            #expect(size == output.readableBytes)
            if round == 0 { first = output } else { #expect(output == first) }
            #expect(builder.recordCount == 0)
        }
    }

    @Test func logAppendTimeGivesEveryRecordTheMaxTimestamp() throws {
        var builder = RecordBatchBuilder(configuration: .init(timestampType: .logAppendTime))
        builder.append(timestamp: 10, key: nil, value: ByteBuffer(string: "a"))
        builder.append(timestamp: 30, key: nil, value: ByteBuffer(string: "b"))
        let view = try RecordBatchView(validating: try builder.build())
        #expect(view.header.attributes.timestampType == .logAppendTime)
        var reader = try view.records(decompressedBytesMax: 0)
        #expect(try reader.readAll().map(\.timestamp) == [30, 30])
    }

    @Test func attributesBits() {
        let attributes = RecordBatchAttributes(compression: .lz4, timestampType: .logAppendTime,
                                               isTransactional: true, isControl: true)
        #expect(attributes.rawValue == 0b0011_1011)
        #expect(attributes.compression == .lz4)
        #expect(RecordBatchAttributes(rawValue: 7).compression == nil)
        #expect(RecordBatchAttributes(rawValue: 1 << 6).hasDeleteHorizon)
    }

    @Test func rewritingTheBaseOffsetKeepsTheCRCValid() throws {
        var batch = try Self.sampleBatch()
        let crcBefore = batch.getInteger(at: 17, as: UInt32.self)
        try RecordBatchHeader.rewriteBaseOffset(Int64.max - 10, in: &batch, batchIndex: 0)
        #expect(batch.getInteger(at: 0, as: Int64.self) == Int64.max - 10)
        #expect(batch.getInteger(at: 17, as: UInt32.self) == crcBefore)
        var view = try RecordBatchView(validating: batch)
        view.rewriteBaseOffset(42)
        #expect(view.bytes.getInteger(at: 0, as: Int64.self) == 42)
        _ = try RecordBatchView(validating: view.bytes)
        var short = ByteBuffer(repeating: 0, count: 7)
        #expect(throws: ProtocolError.self) { try RecordBatchHeader.rewriteBaseOffset(1, in: &short, batchIndex: 0) }
    }

    // MARK: Splitting a Produce `records` field

    @Test func splitsConcatenatedBatchesIntoSlicesOfTheInput() throws {
        var records = ByteBuffer()
        records.writeImmutableBuffer(try Self.sampleBatch(records: 2))
        records.writeImmutableBuffer(try Self.sampleBatch(compression: .lz4(), records: 50))
        records.writeImmutableBuffer(try Self.sampleBatch(records: 1))
        let batches = try RecordBatchView.batches(in: records)
        #expect(batches.map(\.header.recordCount) == [2, 50, 1])
        #expect(batches.map(\.bytes.readableBytes).reduce(0, +) == records.readableBytes)
        #expect(try RecordBatchView.batches(in: ByteBuffer()).isEmpty)
    }

    @Test(arguments: [40, 3])
    func aTrailingPartialBatchIsAnErrorInProduceAndIgnoredInFetch(trailingBytes: Int) throws {
        var records = try Self.sampleBatch(records: 2)
        records.writeBytes(try Self.sampleBatch(records: 4).bytesForTest.prefix(trailingBytes))
        #expect { try RecordBatchView.batches(in: records) } throws: { ($0 as? ProtocolError)?.kind == .truncated }
        let fetched = try RecordBatchView.batches(in: records, allowsTrailingPartialBatch: true)
        #expect(fetched.map(\.header.recordCount) == [2])
    }

    // MARK: Validation errors

    static func expectError(_ kind: ProtocolError.Kind, field: String, _ bytes: ByteBuffer,
                            sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            let view = try RecordBatchView(validating: bytes)
            var reader = try view.records(decompressedBytesMax: 1 << 20)
            _ = try reader.readAll()
            Issue.record("accepted a bad batch", sourceLocation: sourceLocation)
        } catch let error as ProtocolError {
            #expect(error.kind == kind, "\(error)", sourceLocation: sourceLocation)
            #expect(error.field == field, "\(error)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("untyped error \(error)", sourceLocation: sourceLocation)
        }
    }

    /// Applies `edit` to a valid batch and fixes its CRC, so the edit itself is what is tested.
    static func edited(_ batch: ByteBuffer, recomputeCRC: Bool = true, _ edit: (inout ByteBuffer) -> Void) -> ByteBuffer {
        var copy = ByteBuffer(bytes: batch.bytesForTest)
        edit(&copy)
        if recomputeCRC, copy.readableBytes >= 61 {
            copy.setInteger(CRC32C.checksum(Array(copy.bytesForTest[21...])), at: 17)
        }
        return copy
    }

    @Test func rejectsBadLengthsMagicAndCRC() throws {
        let batch = try Self.sampleBatch()
        Self.expectError(.truncated, field: "RecordBatch.batchLength", ByteBuffer(bytes: batch.bytesForTest.prefix(11)))
        Self.expectError(.truncated, field: "RecordBatch", ByteBuffer(bytes: batch.bytesForTest.dropLast()))
        Self.expectError(.corruptRecord, field: "RecordBatch.batchLength", ByteBuffer(bytes: batch.bytesForTest + [0]))
        Self.expectError(.corruptRecord, field: "RecordBatch.batchLength", Self.edited(batch) { $0.setInteger(Int32(48), at: 8) })
        Self.expectError(.corruptRecord, field: "RecordBatch.batchLength", Self.edited(batch) { $0.setInteger(Int32(-1), at: 8) })
        Self.expectError(.corruptRecord, field: "RecordBatch.magic", Self.edited(batch) { $0.setInteger(Int8(1), at: 16) })
        Self.expectError(.corruptRecord, field: "RecordBatch.crc", Self.edited(batch, recomputeCRC: false) { $0.setInteger(UInt8(0xFF), at: 70) })
        Self.expectError(.corruptRecord, field: "RecordBatch.crc", Self.edited(batch, recomputeCRC: false) { $0.setInteger(Int16(3), at: 21) })
    }

    @Test func rejectsUnsupportedCodecs() throws {
        let batch = try Self.sampleBatch()
        for codec: Int16 in [1, 2, 4, 5, 7] {
            Self.expectError(.compression, field: "RecordBatch.attributes", Self.edited(batch) { $0.setInteger(codec, at: 21) })
        }
    }

    @Test func rejectsRecordCountsThatDisagreeWithTheRecords() throws {
        let batch = try Self.sampleBatch(records: 3)
        Self.expectError(.corruptRecord, field: "RecordBatch.recordCount", Self.edited(batch) { $0.setInteger(Int32(-1), at: 57) })
        // More records than offsets in the batch.
        Self.expectError(.corruptRecord, field: "RecordBatch.recordCount", Self.edited(batch) { $0.setInteger(Int32(4), at: 57) })
        // More records than could fit in the bytes (lastOffsetDelta raised so only the size check trips).
        Self.expectError(.corruptRecord, field: "RecordBatch.recordCount", Self.edited(batch) {
            $0.setInteger(Int32(1000), at: 23)
            $0.setInteger(Int32(1000), at: 57)
        })
        // Fewer records declared than present: bytes are left over.
        Self.expectError(.corruptRecord, field: "RecordBatch.records", Self.edited(batch) { $0.setInteger(Int32(2), at: 57) })
        // More declared than present, but plausible for the size: the records run out.
        Self.expectError(.corruptRecord, field: "Record.length", Self.edited(batch) {
            $0.setInteger(Int32(10), at: 23)
            $0.setInteger(Int32(4), at: 57)
        })
    }

    @Test func rejectsMalformedRecords() throws {
        var builder = RecordBatchBuilder()
        builder.append(timestamp: 0, key: Array("key".utf8), value: Array("value".utf8))
        let batch = try builder.build()
        // Record starts at 61: length(1) attributes(1) timestampDelta(1) offsetDelta(1) keyLength(1) "key" ...
        Self.expectError(.corruptRecord, field: "Record.length", Self.edited(batch) { $0.setInteger(UInt8(0x7E), at: 61) })
        Self.expectError(.corruptRecord, field: "Record.length", Self.edited(batch) { $0.setInteger(UInt8(0x01), at: 61) })
        Self.expectError(.corruptRecord, field: "Record.offsetDelta", Self.edited(batch) { $0.setInteger(UInt8(0x02), at: 64) })
        Self.expectError(.corruptRecord, field: "Record.offsetDelta", Self.edited(batch) { $0.setInteger(UInt8(0x01), at: 64) })
        Self.expectError(.corruptRecord, field: "Record.key", Self.edited(batch) { $0.setInteger(UInt8(0x40), at: 65) })
        Self.expectError(.corruptRecord, field: "Record.key", Self.edited(batch) { $0.setInteger(UInt8(0x03), at: 65) })
        // A record length longer than its fields leaves bytes unread inside the record.
        Self.expectError(.corruptRecord, field: "Record.length", Self.edited(batch) {
            $0.setInteger(UInt8(0x1E), at: 61)  // 15 instead of 14
            $0.writeInteger(UInt8(0))
            $0.setInteger(Int32(49 + 16), at: 8)
        })
    }

    @Test func anLZ4BatchClaimingMoreRecordsThanItsContentHoldsIsRejectedBeforeReading() throws {
        let batch = try Self.sampleBatch(compression: .lz4(), records: 3)
        // Validation cannot see inside the frame, so a huge count passes it...
        let huge = Self.edited(batch) {
            $0.setInteger(Int32.max - 1, at: 23)
            $0.setInteger(Int32.max, at: 57)
        }
        let view = try RecordBatchView(validating: huge)
        // ...and is caught once the content is known, before a reader sizes anything by it.
        #expect { try view.records(decompressedBytesMax: 1 << 20) } throws: { error in
            (error as? ProtocolError).map { $0.kind == .corruptRecord && $0.field == "RecordBatch.recordCount" } ?? false
        }
    }

    @Test func lz4BatchesAreBoundedAndCheckedWhenIterated() throws {
        let batch = try Self.sampleBatch(compression: .lz4(), records: 100)
        let view = try RecordBatchView(validating: batch)
        #expect { try view.records(decompressedBytesMax: 1000) } throws: { ($0 as? ProtocolError)?.kind == .compression }
        // A CRC-valid batch whose frame is damaged.
        let damaged = Self.edited(batch) { $0.setInteger(UInt8(0x00), at: 61) }
        Self.expectError(.compression, field: "lz4.header", damaged)
    }
}

extension RecordBatchBuilder.Compression: CustomTestStringConvertible {
    public var testDescription: String { "\(codec)" }
}
