import EventFlowStorage
import EventFlowTestSupport
import Foundation
import Testing

@Suite(.serialized) struct EmbeddedPostgresTests {
    @Test func dataSurvivesARestartAndStopLeavesNoServer() throws {
        let folder = TestCluster.temporaryDirectory("restart") + "/data"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let first = try EmbeddedPostgres(dataDirectory: folder)
        let url = try first.start()
        #expect(first.startedByUs)
        #expect(url.hasPrefix("postgresql://eventflow:"))
        #expect(maskedDatabaseURL(url).contains("****"))
        #expect(!maskedDatabaseURL(url).contains(try String(contentsOfFile: folder + "/db-password", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        do {
            let db = try PostgresConnection(url: url)
            try Migrator(directory: try Migrator.locateDirectory()).migrate(db)
            _ = try Organizations.create(db, name: "survivor")
            db.close()
        }
        try first.stop()
        #expect(first.runningPort() == nil)
        #expect(throws: DatabaseError.self) { try PostgresConnection(url: url) }

        let second = try EmbeddedPostgres(dataDirectory: folder)
        let db = try PostgresConnection(url: try second.start())
        #expect(try Organizations.list(db).map(\.name) == ["survivor"])
        db.close()
        try second.stop()
    }

    @Test func serveTuningIsWhatTheClusterRunsWithAndNeverTurnsDurabilityOff() throws {
        let folder = TestCluster.temporaryDirectory("tuning") + "/data"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // A 2 GiB machine: shared_buffers 256MB, as small as the test clusters beside it.
        let tuning = PostgresLogTuning.forMachine(physicalMemoryBytes: 2 << 30)
        let cluster = try EmbeddedPostgres(dataDirectory: folder)
        func show(_ url: String, _ name: String) throws -> String? {
            let db = try PostgresConnection(url: url)
            defer { db.close() }
            return try db.query("SELECT current_setting($1) AS value", [name]).first?["value"] ?? nil
        }
        let url = try cluster.start(tuning: tuning)
        #expect(try show(url, "shared_buffers") == "256MB")
        #expect(try show(url, "max_wal_size") == "16GB")
        #expect(try show(url, "wal_buffers") == "64MB")
        #expect(try show(url, "wal_compression") == "off")
        #expect(try show(url, "checkpoint_timeout") == "15min")
        #expect(try show(url, "autovacuum_vacuum_insert_threshold") == "-1")
        for durable in ["fsync", "synchronous_commit", "full_page_writes"] {
            #expect(try show(url, durable) == "on", "\(durable)")
        }
        try cluster.stop()

        // Without tuning (`serve --no-postgres-tuning`) the cluster is back to what initdb and EventFlow's basics set.
        let plain = try EmbeddedPostgres(dataDirectory: folder)
        let plainURL = try plain.start(tuning: PostgresLogTuning(settings: []))
        #expect(try show(plainURL, "max_wal_size") == "4GB")
        // A running cluster picks the reloadable settings up when `serve` attaches to it.
        let attaching = try EmbeddedPostgres(dataDirectory: folder)
        let attachedURL = try attaching.start(tuning: tuning)
        #expect(!attaching.startedByUs)
        #expect(try show(attachedURL, "max_wal_size") == "16GB")
        try plain.stop()
    }

    @Test func sharedBuffersFollowTheMachinesMemoryWithinBounds() {
        #expect(PostgresLogTuning.sharedBuffersMegabytes(physicalMemoryBytes: 512 << 20) == 128)
        #expect(PostgresLogTuning.sharedBuffersMegabytes(physicalMemoryBytes: 24 << 30) == 3_072)
        #expect(PostgresLogTuning.sharedBuffersMegabytes(physicalMemoryBytes: 256 << 30) == 8_192)
    }

    @Test func aSecondUserAttachesToTheRunningClusterWithoutOwningIt() throws {
        let folder = TestCluster.temporaryDirectory("attach") + "/data"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let owner = try EmbeddedPostgres(dataDirectory: folder)
        try owner.start()
        let visitor = try EmbeddedPostgres(dataDirectory: folder)
        try visitor.start()
        #expect(!visitor.startedByUs)
        #expect(visitor.port == owner.port)
        try visitor.stop()  // not ours: a no-op
        #expect(owner.runningPort() == owner.port)
        try owner.stop()
    }

    @Test func aConfiguredPortInUseIsAClearError() throws {
        let folder = TestCluster.temporaryDirectory("port") + "/data"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let busy = try TestCluster.cluster().port ?? 0
        let cluster = try EmbeddedPostgres(dataDirectory: folder, port: busy)
        let error = #expect(throws: EmbeddedPostgresError.self) { try cluster.start() }
        #expect(error?.description == "port \(busy) on 127.0.0.1 is already in use; choose another with --db-port or leave it unset to pick a free one")
    }

    @Test func aDataFolderOwnedBySomeoneElseIsAClearError() throws {
        guard geteuid() == 0 else { return }  // needs root to hand the folder to another user
        let folder = TestCluster.temporaryDirectory("owner") + "/data"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        chown(folder, 65534, 65534)  // nobody
        let cluster = try EmbeddedPostgres(dataDirectory: folder)
        let error = #expect(throws: EmbeddedPostgresError.self) { try cluster.start() }
        #expect(error?.description.contains("is owned by nobody") == true)
    }
}
