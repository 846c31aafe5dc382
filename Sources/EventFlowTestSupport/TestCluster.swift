import EventFlowStorage
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One embedded PostgreSQL per test process (started on first use, stopped at exit), and a fresh
/// database per test, so tests run in parallel without seeing each other's rows.
public enum TestCluster {
    private static let state = SharedCluster()

    /// A new, empty database on the shared cluster; `migrated` applies prisma/migrations to it.
    public static func freshDatabase(migrated: Bool = true) throws -> String {
        let cluster = try state.cluster()
        let name = "test_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(16)
        let admin = try PostgresConnection(url: try cluster.url(database: "postgres"))
        defer { admin.close() }
        try admin.execute("CREATE DATABASE \(PostgresConnection.quoteIdentifier(String(name)))")
        let url = try cluster.url(database: String(name))
        if migrated {
            let db = try PostgresConnection(url: url)
            defer { db.close() }
            try Migrator(directory: try Migrator.locateDirectory()).migrate(db)
        }
        return url
    }

    /// The shared cluster itself (for tests that stop and start it must use their own instead).
    public static func cluster() throws -> EmbeddedPostgres {
        try state.cluster()
    }

    /// A private temporary folder for a test's own data folder or files.
    public static func temporaryDirectory(_ label: String) -> String {
        let path = NSTemporaryDirectory() + "eventflow-\(label)-\(UUID().uuidString.prefix(8))"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }
}

private final class SharedCluster: @unchecked Sendable {
    private let lock = NSLock()
    private var running: EmbeddedPostgres?
    private var failure: Error?

    func cluster() throws -> EmbeddedPostgres {
        lock.lock()
        defer { lock.unlock() }
        if let running { return running }
        if let failure { throw failure }
        do {
            let folder = TestCluster.temporaryDirectory("tests") + "/data"
            // Dozens of suites run at once, each with brokers of ~6 connections and its own.
            let cluster = try EmbeddedPostgres(dataDirectory: folder, connectionsMax: 600)
            try cluster.start()
            running = cluster
            stopAtExit = { try? cluster.stop(); try? FileManager.default.removeItem(atPath: folder) }
            atexit { stopAtExit?() }
            return cluster
        } catch {
            failure = error
            throw error
        }
    }
}

nonisolated(unsafe) private var stopAtExit: (() -> Void)?
