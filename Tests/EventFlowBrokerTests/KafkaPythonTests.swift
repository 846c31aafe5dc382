@testable import EventFlowBroker
import EventFlowProtocol
@testable import EventFlowStorage
import EventFlowTestSupport
import Foundation
import NIOCore
import Testing

/// An existing Kafka client against the broker: kafka-python (PyPI `kafka-python` + `lz4`)
/// produces over TLS + SASL PLAIN with LZ4, idempotent, acks=all (scripts/kafka-python-produce.py).
@Suite struct KafkaPythonTests {
    static var packageRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    @Test func kafkaPythonProducesOverTLSWithSaslPlainAndLZ4() async throws {
        let probe = try Program.run("/usr/bin/env", ["python3", "-c", "import kafka, lz4; print(kafka.__version__)"])
        try #require(probe.exitCode == 0, "kafka-python is needed: pip install kafka-python==3.0.12 lz4 (\(probe.output))")

        let harness = try await BrokerHarness.start(partitions: 3)
        let script = Self.packageRoot.appendingPathComponent("scripts/kafka-python-produce.py").path
        let arguments = ["python3", script, "localhost:\(harness.broker.port)", harness.certificates.certificateAuthority,
                         harness.key.key.id.uuidString, harness.key.secret, "orders", "50"]
        // The client blocks while it runs; keep it off the concurrency pool's threads.
        let result = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<ProgramResult, any Error>) in
            Thread.detachNewThread {
                continuation.resume(with: Result { try Program.run("/usr/bin/env", arguments) })
            }
        }
        try #require(result.exitCode == 0, "kafka-python failed: \(result.output)")

        struct Delivery: Decodable, Hashable {
            var partition: Int32
            var offset: Int64
        }
        let deliveries = result.output.split(separator: "\n").filter { $0.hasPrefix("{") }
            .compactMap { try? JSONDecoder().decode(Delivery.self, from: Data($0.utf8)) }
        #expect(deliveries.count == 50)

        // Every acknowledged record is in a stored, LZ4-compressed batch with a valid CRC.
        let db = try harness.database()
        defer { db.close() }
        let rows = try storedRows(db, streamID: harness.stream.id)
        #expect(!rows.isEmpty)
        #expect(rows.allSatisfy { $0.producerID >= 0 }, "every batch is idempotent: \(rows.map(\.producerID))")
        // kafka-python sends a batch uncompressed when LZ4 does not make it smaller, which is the
        // case for one or two of these records (`DefaultRecordBatchBuilder._maybe_compress`);
        // under load a linger can close a batch that small.
        let shapes = rows.map { (codec: $0.codec, records: $0.lastOffset - $0.baseOffset + 1) }
        #expect(shapes.allSatisfy { $0.codec == 3 || ($0.codec == 0 && $0.records <= 2) }, "codec and record count per batch: \(shapes)")
        #expect(shapes.contains { $0.codec == 3 }, "LZ4 was used: \(shapes)")
        var stored = Set<Delivery>()
        for row in rows {
            let view = try RecordBatchView(validating: ByteBuffer(bytes: row.bytes))
            var reader = try view.records(decompressedBytesMax: 1 << 20)
            var offset = row.baseOffset
            while try reader.next() != nil {
                stored.insert(Delivery(partition: row.partition, offset: offset))
                offset += 1
            }
            #expect(offset == row.lastOffset + 1)
        }
        #expect(Set(deliveries) == stored)
        await harness.broker.shutdown()
    }
}
