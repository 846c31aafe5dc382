@testable import EventFlowBroker
import EventFlowProtocol
import EventFlowStorage
import Foundation
import NIOCore
import Testing

/// A quick throughput probe of the ingest path (not a test of speed: it asserts only that
/// everything was stored). Runs when EVENTFLOW_INGEST_PROBE is set; prints events/s.
@Suite struct IngestThroughputProbe {
    @Test(.enabled(if: ProcessInfo.processInfo.environment["EVENTFLOW_INGEST_PROBE"] != nil))
    func durableIngestOfHundredByteJSONEvents() async throws {
        let environment = ProcessInfo.processInfo.environment
        let eventsTotal = Int(environment["EVENTFLOW_INGEST_PROBE_EVENTS"] ?? "") ?? 200_000
        let recordsPerBatch = Int(environment["EVENTFLOW_INGEST_PROBE_BATCH"] ?? "") ?? 150
        let window = 32
        let harness = try await BrokerHarness.start(partitions: 4, groupCommit: .init(flushBytesTarget: 1 << 20, lingerMilliseconds: 5))
        let connection = try await harness.authenticatedConnection()

        // ~100-byte JSON events, LZ4 per batch, built before the clock starts.
        let batchesTotal = eventsTotal / recordsPerBatch
        var batches: [ByteBuffer] = []
        for b in 0..<batchesTotal {
            var builder = RecordBatchBuilder(configuration: .init(compression: .lz4()))
            for i in 0..<recordsPerBatch {
                let n = b * recordsPerBatch + i
                let json = "{\"id\":\(n),\"type\":\"page_view\",\"user\":\"u\(n % 9973)\",\"path\":\"/products/\(n % 517)\",\"ms\":\(n % 1000)}"
                builder.append(timestamp: 1_764_000_000_000 + Int64(n), key: nil as [UInt8]?, value: Array(json.utf8))
            }
            batches.append(try builder.build())
        }
        let bytesTotal = batches.reduce(0) { $0 + $1.readableBytes }

        let start = ContinuousClock.now
        var next = 0
        var outstanding = 0
        var errors = 0
        while next < batchesTotal || outstanding > 0 {
            while outstanding < window && next < batchesTotal {
                _ = try await connection.send(produceRequest(topic: "orders", partition: Int32(next % 4), batch: batches[next]), version: 7)
                next += 1
                outstanding += 1
            }
            let (_, response) = try await connection.receive(ProduceResponse.self, version: 7)
            if response.responses.first?.partitionResponses.first?.errorCode != .noError { errors += 1 }
            outstanding -= 1
        }
        let elapsed = ContinuousClock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        print("ingest probe: \(batchesTotal * recordsPerBatch) events (\(recordsPerBatch)/batch, LZ4, \(bytesTotal) bytes), acks=-1, "
              + "window \(window): \(String(format: "%.2f", seconds)) s, \(Int(Double(batchesTotal * recordsPerBatch) / seconds)) events/s, "
              + "\(String(format: "%.1f", Double(bytesTotal) / seconds / 1e6)) MB/s compressed")
        #expect(errors == 0)
        let db = try harness.database()
        defer { db.close() }
        #expect(try db.query("SELECT sum(record_count) AS n FROM event_batches").first?["n"] == String(batchesTotal * recordsPerBatch))
        await connection.close()
        await harness.broker.shutdown()
    }
}
