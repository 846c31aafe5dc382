@testable import EventFlowBroker
import EventFlowProtocol
@testable import EventFlowStorage
import EventFlowTestSupport
import Foundation
import NIOCore
import Testing

/// The broker's HTTP listener: `/metrics` read by Prometheus' own text parser (prometheus_client,
/// through scripts/http-probe.py) after produces, fetches and commits; `/health`; `/ready` false
/// without the database or with a migration not applied.
@Suite struct MetricsEndpointTests {
    struct Probe: Decodable {
        var status: Int
        var body: String
        var contentType: String?
        var samples: [Sample]?
    }

    struct Sample: Decodable {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    /// GETs `path` of the harness's HTTP listener with the Python probe (urllib, prometheus_client).
    static func get(_ path: String, _ harness: BrokerHarness, prometheus: Bool = false) async throws -> Probe {
        let port = try #require(harness.broker.httpPort)
        let script = KafkaPythonTests.packageRoot.appendingPathComponent("scripts/http-probe.py").path
        let arguments = ["python3", script, "http://127.0.0.1:\(port)\(path)"] + (prometheus ? ["--prometheus"] : [])
        let result = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<ProgramResult, any Error>) in
            Thread.detachNewThread {
                continuation.resume(with: Result { try Program.run("/usr/bin/env", arguments) })
            }
        }
        try #require(result.exitCode == 0, "http-probe \(path): \(result.output)")
        let line = try #require(result.output.split(separator: "\n").last { $0.hasPrefix("{") })
        return try JSONDecoder().decode(Probe.self, from: Data(line.utf8))
    }

    static func value(_ samples: [Sample], _ name: String, _ labels: [String: String] = [:]) -> Double? {
        samples.first { sample in sample.name == name && labels.allSatisfy { key, value in sample.labels[key] == value } }?.value
    }

    @Test func metricsCountProducesFetchesFlushesAndErrorsAndShowEachGroupsLag() async throws {
        let harness = try await BrokerHarness.start(configure: { $0.http = .init(host: "127.0.0.1", port: 0) })
        let connection = try await harness.authenticatedConnection()
        for _ in 0..<3 {
            let (_, produced) = try await connection.call(produceRequest(topic: "orders", partition: 0, batch: try producedBatch(count: 4)), version: 7)
            #expect(produced.responses.first?.partitionResponses.first?.errorCode == .noError)
        }
        _ = try await connection.call(produceRequest(topic: "orders", partition: 1, batch: try producedBatch(count: 2)), version: 7)
        let (_, unknown) = try await connection.call(produceRequest(topic: "orders", partition: 7, batch: try producedBatch(count: 1)), version: 7)
        #expect(unknown.responses.first?.partitionResponses.first?.errorCode == .unknownTopicOrPartition)
        let (_, fetched) = try await connection.call(FetchRequest(maxWaitMs: 0, minBytes: 0, maxBytes: 1 << 20, topics: [
            .init(topic: "orders", partitions: [.init(partition: 0, fetchOffset: 0, partitionMaxBytes: 1 << 20)]),
        ]), version: 11)
        #expect(fetched.responses.first?.partitions.first?.highWatermark == 12)
        let (_, committed) = try await connection.call(OffsetCommitRequest(groupId: "billing", topics: [
            .init(name: "orders", partitions: [.init(partitionIndex: 0, committedOffset: 5), .init(partitionIndex: 1, committedOffset: 2)]),
        ]), version: 7)
        #expect(committed.topics.flatMap(\.partitions).map(\.errorCode) == [.noError, .noError])

        let metrics = try await Self.get("/metrics", harness, prometheus: true)
        #expect(metrics.status == 200)
        #expect(metrics.contentType?.hasPrefix("text/plain; version=0.0.4") == true, "\(metrics.contentType ?? "")")
        let samples = try #require(metrics.samples)
        func value(_ name: String, _ labels: [String: String] = [:]) -> Double? { Self.value(samples, name, labels) }
        #expect(value("eventflow_requests_total", ["api": "produce"]) == 5)
        #expect(value("eventflow_requests_total", ["api": "fetch"]) == 1)
        #expect(value("eventflow_requests_total", ["api": "offsetCommit"]) == 1)
        #expect(value("eventflow_requests_total", ["api": "saslAuthenticate"]) == 1)
        #expect(value("eventflow_request_duration_seconds_count", ["api": "produce"]) == 5)
        #expect(value("eventflow_request_errors_total", ["api": "produce", "error": "UNKNOWN_TOPIC_OR_PARTITION"]) == 1)
        #expect(value("eventflow_flushed_batches_total") == 4)
        #expect(value("eventflow_flushed_records_total") == 14)
        #expect((value("eventflow_flushes_total") ?? 0) >= 1)
        #expect((value("eventflow_flush_duration_seconds_count") ?? 0) == value("eventflow_flushes_total"))
        #expect(value("eventflow_flush_failures_total") == 0)
        // Where the 4 stored durable produces spent their time: per request (the connection) and
        // per batch (the batcher and the writer); the refused one was never accepted by the batcher.
        for stage in ["accepted_to_flush_started", "flush_started_to_copy_sent", "copy_sent_to_committed", "committed_to_answered"] {
            #expect(value("eventflow_ingest_stage_seconds_count", ["stage": stage]) == 4, "\(stage)")
        }
        for stage in ["frame_to_accepted", "accepted_to_answered", "answered_to_written", "frame_to_written"] {
            #expect(value("eventflow_ingest_stage_seconds_count", ["stage": stage]) == 5, "\(stage)")
        }
        // The first fetch after start reads PostgreSQL (the persisted log starts are loaded there); later ones the cache.
        #expect((value("eventflow_fetch_reads_total", ["source": "cache"]) ?? 0) + (value("eventflow_fetch_reads_total", ["source": "postgres"]) ?? 0) == 1)
        #expect(value("eventflow_connections_open") == 1)
        #expect(value("eventflow_connections_opened_total") == 1)
        #expect(value("eventflow_batcher_memory_bytes") == 0)
        #expect((value("eventflow_tail_cache_bytes") ?? 0) > 0)
        // Lag: the committed end minus the group's committed offset, per partition.
        let lag = ["organization": "acme", "stream": "orders", "group": "billing"]
        #expect(value("eventflow_consumer_group_lag", lag.merging(["partition": "0"]) { $1 }) == 7)
        #expect(value("eventflow_consumer_group_lag", lag.merging(["partition": "1"]) { $1 }) == 0)

        let health = try await Self.get("/health", harness)
        #expect(health.status == 200)
        #expect(health.body == "ok\n")
        let ready = try await Self.get("/ready", harness)
        #expect(ready.status == 200)
        #expect(ready.body == "ready\n")
        let missing = try await Self.get("/nothing", harness)
        #expect(missing.status == 404)
        await connection.close()
        await harness.broker.shutdown()
    }

    @Test func readyIsFalseWithAMigrationNotAppliedOrWithoutTheDatabase() async throws {
        // A migrations folder with one more migration than the database has.
        let folder = TestCluster.temporaryDirectory("migrations") + "/migrations"
        try FileManager.default.copyItem(atPath: try Migrator.locateDirectory(), toPath: folder)
        try FileManager.default.createDirectory(atPath: folder + "/29991231000000_later", withIntermediateDirectories: true)
        try "SELECT 1;\n".write(toFile: folder + "/29991231000000_later/migration.sql", atomically: true, encoding: .utf8)
        let pending = try await BrokerHarness.start(configure: { $0.http = .init(host: "127.0.0.1", port: 0, migrationsDirectory: folder) })
        let notMigrated = try await Self.get("/ready", pending)
        #expect(notMigrated.status == 503)
        #expect(notMigrated.body == "not ready: migrations not applied: 29991231000000_later\n")
        #expect(try await Self.get("/health", pending).status == 200)
        await pending.broker.shutdown()

        let harness = try await BrokerHarness.start(configure: {
            $0.http = .init(host: "127.0.0.1", port: 0, migrationsDirectory: try? Migrator.locateDirectory())
        })
        #expect(try await Self.get("/ready", harness).status == 200)
        // The broker's database goes away.
        let name = try #require(URL(string: harness.databaseURL)?.lastPathComponent)
        let admin = try PostgresConnection(url: try TestCluster.cluster().url(database: "postgres"))
        try admin.execute("DROP DATABASE \(PostgresConnection.quoteIdentifier(name)) WITH (FORCE)")
        admin.close()
        let gone = try await Self.get("/ready", harness)
        #expect(gone.status == 503)
        #expect(gone.body.hasPrefix("not ready: database unreachable: "), "\(gone.body)")
        #expect(try await Self.get("/health", harness).status == 200)
        // Metrics still answer (without the lag, which needs the database).
        let metrics = try await Self.get("/metrics", harness, prometheus: true)
        #expect(metrics.status == 200)
        #expect(Self.value(metrics.samples ?? [], "eventflow_connections_open") == 0)
        await harness.broker.shutdown()
    }
}
