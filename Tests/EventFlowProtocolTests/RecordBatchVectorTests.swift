import Foundation
import NIOCore
import Testing
@testable import EventFlowProtocol

/// Batches written by kafka-python (`protocol/vectors/batches/`, made by
/// `scripts/kafka_python_vectors.py`): EventFlow must decode each to the same header and
/// records, and its builder must re-encode the same inputs to the same bytes.
@Suite struct RecordBatchVectorTests {
    static let names: [String] = {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: RecordsTestSupport.batchVectors.path)) ?? []
        return files.filter { $0.hasSuffix(".json") }.map { String($0.dropLast(5)) }.sorted()
    }()

    static func load(_ name: String) throws -> (ByteBuffer, BatchDescription) {
        let directory = RecordsTestSupport.batchVectors
        let hex = try String(contentsOf: directory.appendingPathComponent("\(name).hex"), encoding: .utf8)
        let bytes = try #require(RecordsTestSupport.bytes(hex: hex))
        let description = try JSONDecoder().decode(BatchDescription.self,
                                                   from: Data(contentsOf: directory.appendingPathComponent("\(name).json")))
        return (ByteBuffer(bytes: bytes), description)
    }

    @Test func everyExpectedVectorIsPresent() {
        #expect(Self.names.count >= 9)
        #expect(Self.names.contains("lz4-multiblock"))
        #expect(Self.names.contains("uncompressed-headers"))
    }

    @Test(arguments: names)
    func decodesToTheRecordsKafkaPythonWrote(name: String) throws {
        let (batch, expected) = try Self.load(name)
        let view = try RecordBatchView(validating: batch)
        #expect(BatchDescription.Header(view.header) == expected.header)
        var reader = try view.records(decompressedBytesMax: 1 << 20)
        let records = try reader.readAll().map(BatchDescription.RecordDescription.init)
        #expect(records == expected.records)
    }

    @Test(arguments: names)
    func builderReencodesTheSameInputsToTheSameBytes(name: String) throws {
        let (batch, expected) = try Self.load(name)
        var configuration = RecordBatchBuilder.Configuration(
            baseOffset: expected.builder.base_offset,
            partitionLeaderEpoch: expected.builder.partition_leader_epoch,
            producerId: expected.builder.producer_id,
            producerEpoch: expected.builder.producer_epoch,
            baseSequence: expected.builder.base_sequence,
            isTransactional: expected.builder.is_transactional)
        if expected.builder.compression == "lz4" {
            // kafka-python's frame options: independent 64 KB blocks with the content size, no
            // checksums. Both sides use liblz4 1.9.4 at level 0, so the frames are identical too.
            configuration.compression = .lz4(LZ4Frame.Preferences(contentSize: true))
        }
        var builder = RecordBatchBuilder(configuration: configuration)
        for record in expected.records {
            builder.append(
                timestamp: record.timestamp,
                key: record.key.flatMap(RecordsTestSupport.bytes(hex:)),
                value: record.value.flatMap(RecordsTestSupport.bytes(hex:)),
                headers: record.headers.map { RecordHeader(key: $0.key, value: $0.value.flatMap(RecordsTestSupport.bytes(hex:))) })
        }
        let rebuilt = try builder.build()
        #expect(RecordsTestSupport.hex(rebuilt.bytesForTest) == RecordsTestSupport.hex(batch.bytesForTest))
        // Independently of frame bytes, the decompressed record sections must be equal.
        let ours = try RecordBatchView(validating: rebuilt), theirs = try RecordBatchView(validating: batch)
        var ourRecords = try ours.records(decompressedBytesMax: 1 << 20)
        var theirRecords = try theirs.records(decompressedBytesMax: 1 << 20)
        #expect(try ourRecords.readAll() == theirRecords.readAll())
    }

    @Test func splitsAProduceRecordsFieldHoldingTwoBatches() throws {
        let hex = try String(contentsOf: RecordsTestSupport.batchVectors.appendingPathComponent("concatenated-two-batches.hex"),
                             encoding: .utf8)
        let records = ByteBuffer(bytes: try #require(RecordsTestSupport.bytes(hex: hex)))
        let batches = try RecordBatchView.batches(in: records)
        #expect(batches.map(\.header.recordCount) == [1, 10])
        #expect(batches.map(\.header.attributes.compression) == [CompressionCodec.none, .lz4])
        var second = try batches[1].records(decompressedBytesMax: 1 << 20)
        #expect(try second.readAll().map { $0.value?.bytesForTest } == (0..<10).map { RecordsTestSupport.jsonEvent($0) })
    }

    @Test(arguments: names)
    func anySingleBitFlipInTheCRCCoveredBytesIsDetected(name: String) throws {
        let (batch, _) = try Self.load(name)
        var bytes = batch.bytesForTest
        let step = max(1, (bytes.count - 21) / 64)
        for index in stride(from: 21, to: bytes.count, by: step) {
            bytes[index] ^= 0x10
            #expect { try RecordBatchView(validating: ByteBuffer(bytes: bytes)) } throws: { error in
                (error as? ProtocolError).map { $0.kind == .corruptRecord && $0.field == "RecordBatch.crc" } ?? false
            }
            bytes[index] ^= 0x10
        }
    }
}
