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
