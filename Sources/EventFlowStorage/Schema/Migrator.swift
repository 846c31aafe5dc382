import Crypto
import Foundation

/// One migration folder in Prisma Migrate's layout: `prisma/migrations/<timestamp>_<name>/migration.sql`.
public struct Migration: Sendable, Equatable {
    /// The folder name, e.g. `20261125090000_init` (Prisma's `migration_name`).
    public var name: String
    public var sql: String
    /// SHA-256 hex of the file's bytes, as Prisma computes it.
    public var checksum: String
    public var path: String

    public init(name: String, sql: Data, path: String) {
        self.name = name
        self.sql = String(decoding: sql, as: UTF8.self)
        self.checksum = SHA256.hash(data: sql).map { String(format: "%02x", $0) }.joined()
        self.path = path
    }
}

public enum MigrationError: Error, CustomStringConvertible, Equatable {
    case directoryNotFound(searched: [String])
    case checksumMismatch(file: String, recorded: String, current: String)
    case failedMigrationRecorded(name: String)
    case missingFile(name: String)
    case failed(name: String, message: String)

    public var description: String {
        switch self {
        case .directoryNotFound(let searched):
            return "migrations folder not found (searched: \(searched.joined(separator: ", "))); set EVENTFLOW_MIGRATIONS"
        case .checksumMismatch(let file, let recorded, let current):
            return "applied migration \(file) was modified: recorded checksum \(recorded), file checksum \(current); migrations are immutable, restore the file or add a new migration"
        case .failedMigrationRecorded(let name):
            return "migration \(name) is recorded as started but not finished in _prisma_migrations; resolve it before migrating"
        case .missingFile(let name):
            return "migration \(name) is recorded as applied but its folder is missing"
        case .failed(let name, let message):
            return "migration \(name) failed: \(message)"
        }
    }
}

public struct MigrationStatus: Sendable, Equatable {
    public var name: String
    public var appliedAt: String?
    public var checksum: String
    public var isApplied: Bool { appliedAt != nil }
}

/// Applies `prisma/migrations` in order, each in its own transaction, under Prisma's advisory lock,
/// recording each in `_prisma_migrations` exactly as Prisma Migrate does.
public struct Migrator: Sendable {
    /// The advisory lock key Prisma Migrate takes, so EventFlow and Prisma never migrate at once.
    public static let advisoryLockKey: Int64 = 72_707_369

    public var migrations: [Migration]

    public init(migrations: [Migration]) {
        self.migrations = migrations.sorted { $0.name < $1.name }
    }

    /// Loads every `<folder>/migration.sql` under `directory`.
    public init(directory: String) throws {
        let fm = FileManager.default
        let names = try fm.contentsOfDirectory(atPath: directory).filter { name in
            var isDirectory: ObjCBool = false
            return fm.fileExists(atPath: directory + "/" + name, isDirectory: &isDirectory) && isDirectory.boolValue
        }
        var migrations: [Migration] = []
        for name in names {
            let path = directory + "/" + name + "/migration.sql"
            guard let data = fm.contents(atPath: path) else { continue }
            migrations.append(Migration(name: name, sql: data, path: path))
        }
        self.init(migrations: migrations)
    }

    /// Finds the migrations folder: `$EVENTFLOW_MIGRATIONS`, `./prisma/migrations`, then beside the executable
    /// (`<prefix>/share/eventflow/prisma/migrations`) and the source checkout the executable was built in.
    public static func locateDirectory(executablePath: String = CommandLine.arguments.first ?? "") throws -> String {
        var candidates: [String] = []
        if let fromEnvironment = ProcessInfo.processInfo.environment["EVENTFLOW_MIGRATIONS"] {
            candidates.append(fromEnvironment)
        }
        candidates.append(FileManager.default.currentDirectoryPath + "/prisma/migrations")
        let executable = URL(fileURLWithPath: executablePath).resolvingSymlinksInPath()
        var folder = executable.deletingLastPathComponent()
        candidates.append(folder.appendingPathComponent("../share/eventflow/prisma/migrations").standardizedFileURL.path)
        // .build/<triple>/debug/eventflow → the checkout is four levels up at most.
        for _ in 0..<5 {
            folder = folder.deletingLastPathComponent()
            candidates.append(folder.appendingPathComponent("prisma/migrations").path)
        }
        // The source tree this file was compiled from (tests and `swift run`).
        let sourceRoot = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
        candidates.append(sourceRoot.appendingPathComponent("prisma/migrations").path)
        for candidate in candidates where FileManager.default.fileExists(atPath: candidate + "/migration_lock.toml") {
            return candidate
        }
        throw MigrationError.directoryNotFound(searched: candidates)
    }

    static let createBookkeepingTable = """
        CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
            "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
            "checksum"              VARCHAR(64) NOT NULL,
            "finished_at"           TIMESTAMPTZ,
            "migration_name"        VARCHAR(255) NOT NULL,
            "logs"                  TEXT,
            "rolled_back_at"        TIMESTAMPTZ,
            "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
            "applied_steps_count"   INTEGER NOT NULL DEFAULT 0
        )
        """

    /// Applies every pending migration. Returns the names applied (empty when up to date).
    @discardableResult
    public func migrate(_ connection: PostgresConnection) throws -> [String] {
        // Session-level lock: a second migrator blocks here until the first is done, then finds
        // nothing pending.
        try connection.execute("SELECT pg_advisory_lock($1)", [String(Self.advisoryLockKey)])
        defer { try? connection.execute("SELECT pg_advisory_unlock($1)", [String(Self.advisoryLockKey)]) }
        try connection.execute(Self.createBookkeepingTable)

        let recorded = try recordedMigrations(connection)
        try verify(recorded: recorded)

        var applied: [String] = []
        for migration in migrations where recorded[migration.name] == nil {
            do {
                try connection.transaction {
                    try connection.execute(
                        """
                        INSERT INTO "_prisma_migrations" (id, checksum, migration_name, started_at, applied_steps_count)
                        VALUES (gen_random_uuid()::text, $1, $2, now(), 0)
                        """, [migration.checksum, migration.name])
                    try connection.execute(migration.sql)
                    try connection.execute(
                        """
                        UPDATE "_prisma_migrations" SET finished_at = clock_timestamp(), applied_steps_count = 1
                        WHERE migration_name = $1 AND finished_at IS NULL
                        """, [migration.name])
                }
            } catch let error as DatabaseError {
                throw MigrationError.failed(name: migration.name, message: error.message)
            }
            applied.append(migration.name)
        }
        return applied
    }

    /// Applied and pending migrations, in order, after the same checks `migrate` makes.
    public func status(_ connection: PostgresConnection) throws -> [MigrationStatus] {
        try connection.execute(Self.createBookkeepingTable)
        let recorded = try recordedMigrations(connection)
        try verify(recorded: recorded)
        return migrations.map { migration in
            MigrationStatus(name: migration.name, appliedAt: recorded[migration.name]?.finishedAt, checksum: migration.checksum)
        }
    }

    struct Recorded {
        var checksum: String
        var finishedAt: String?
    }

    func recordedMigrations(_ connection: PostgresConnection) throws -> [String: Recorded] {
        let rows = try connection.query("""
            SELECT migration_name, checksum, to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS finished_at
            FROM "_prisma_migrations" WHERE rolled_back_at IS NULL ORDER BY started_at
            """)
        var recorded: [String: Recorded] = [:]
        for row in rows {
            guard let name = row["migration_name"], let checksum = row["checksum"] else { continue }
            recorded[name] = Recorded(checksum: checksum, finishedAt: row["finished_at"])
        }
        return recorded
    }

    /// Stops at the first applied migration whose file changed, or one left unfinished.
    func verify(recorded: [String: Recorded]) throws {
        for migration in migrations {
            guard let entry = recorded[migration.name] else { continue }
            if entry.finishedAt == nil { throw MigrationError.failedMigrationRecorded(name: migration.name) }
            if entry.checksum != migration.checksum {
                throw MigrationError.checksumMismatch(file: migration.path, recorded: entry.checksum, current: migration.checksum)
            }
        }
        let known = Set(migrations.map(\.name))
        if let missing = recorded.keys.sorted().first(where: { !known.contains($0) }) {
            throw MigrationError.missingFile(name: missing)
        }
    }
}
