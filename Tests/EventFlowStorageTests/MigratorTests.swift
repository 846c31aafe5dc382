import EventFlowStorage
import EventFlowTestSupport
import Foundation
import Testing

@Suite struct MigratorTests {
    let migrationsDirectory: String

    init() throws {
        migrationsDirectory = try Migrator.locateDirectory()
    }

    @Test func freshDatabaseAppliesEveryMigrationWithPrismaBookkeeping() throws {
        let db = try PostgresConnection(url: try TestCluster.freshDatabase(migrated: false))
        defer { db.close() }
        let migrator = try Migrator(directory: migrationsDirectory)
        let applied = try migrator.migrate(db)
        #expect(applied == migrator.migrations.map(\.name))
        #expect(applied.count >= 2)

        let rows = try db.query("""
            SELECT migration_name, checksum, finished_at IS NOT NULL AS finished, applied_steps_count, logs, rolled_back_at
            FROM _prisma_migrations ORDER BY migration_name
            """)
        #expect(rows.map { $0["migration_name"] } == applied)
        for (row, migration) in zip(rows, migrator.migrations) {
            // Prisma's checksum: SHA-256 hex of the migration.sql bytes.
            let expected = try sha256Hex(ofFile: migration.path)
            #expect(row["checksum"] == expected)
            #expect(row["finished"] == "t")
            #expect(row["applied_steps_count"] == "1")
            #expect(row["rolled_back_at"] == nil)
        }
        let columns = try db.query("""
            SELECT column_name FROM information_schema.columns WHERE table_name = '_prisma_migrations' ORDER BY ordinal_position
            """).compactMap { $0["column_name"] }
        #expect(columns == ["id", "checksum", "finished_at", "migration_name", "logs", "rolled_back_at", "started_at", "applied_steps_count"])
    }

    @Test func secondRunAppliesNothing() throws {
        let db = try PostgresConnection(url: try TestCluster.freshDatabase(migrated: false))
        defer { db.close() }
        let migrator = try Migrator(directory: migrationsDirectory)
        try migrator.migrate(db)
        #expect(try migrator.migrate(db).isEmpty)
        #expect(try db.query("SELECT count(*) AS n FROM _prisma_migrations")[0]["n"] == String(migrator.migrations.count))
        #expect(try migrator.status(db).allSatisfy(\.isApplied))
    }

    @Test func tamperedAppliedMigrationStopsWithBothChecksumsAndAppliesNothingAfter() throws {
        let db = try PostgresConnection(url: try TestCluster.freshDatabase(migrated: false))
        defer { db.close() }
        let copy = TestCluster.temporaryDirectory("migrations")
        try FileManager.default.copyItem(atPath: migrationsDirectory, toPath: copy + "/migrations")
        let directory = copy + "/migrations"
        let original = try Migrator(directory: directory)
        // Apply only the first migration, then tamper with it and add a later one.
        try Migrator(migrations: [original.migrations[0]]).migrate(db)
        let tamperedPath = original.migrations[0].path
        try (original.migrations[0].sql + "\n-- edited after it was applied\n").write(toFile: tamperedPath, atomically: true, encoding: .utf8)
        let tampered = try Migrator(directory: directory)

        #expect(throws: MigrationError.checksumMismatch(file: tamperedPath, recorded: original.migrations[0].checksum,
                                                        current: tampered.migrations[0].checksum)) {
            try tampered.migrate(db)
        }
        let error = #expect(throws: MigrationError.self) { try tampered.migrate(db) }
        #expect(error?.description.contains(tamperedPath) == true)
        #expect(error?.description.contains(original.migrations[0].checksum) == true)
        // Nothing after it was applied.
        #expect(try db.query("SELECT count(*) AS n FROM _prisma_migrations")[0]["n"] == "1")
        #expect(try db.query("SELECT to_regclass('event_batches') AS t")[0]["t"] == nil)
    }

    @Test func concurrentMigratorsApplyEachMigrationExactlyOnce() async throws {
        let url = try TestCluster.freshDatabase(migrated: false)
        let directory = migrationsDirectory
        let results = try await withThrowingTaskGroup(of: [String].self) { group in
            for _ in 0..<4 {
                group.addTask {
                    let db = try PostgresConnection(url: url)
                    defer { db.close() }
                    return try Migrator(directory: directory).migrate(db)
                }
            }
            var all: [[String]] = []
            for try await applied in group { all.append(applied) }
            return all
        }
        let migrator = try Migrator(directory: directory)
        // Exactly one migrator applied everything; the others found nothing pending.
        #expect(results.filter { !$0.isEmpty }.count == 1)
        #expect(results.flatMap { $0 }.sorted() == migrator.migrations.map(\.name))
        let db = try PostgresConnection(url: url)
        defer { db.close() }
        #expect(try db.query("SELECT count(*) AS n FROM _prisma_migrations")[0]["n"] == String(migrator.migrations.count))
    }
}

func sha256Hex(ofFile path: String) throws -> String {
    // Independent of the migrator's own hashing: ask sha256sum.
    let output = try runTool("/usr/bin/sha256sum", [path])
    return String(output.split(separator: " ")[0])
}

func runTool(_ tool: String, _ arguments: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: tool)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return String(decoding: data, as: UTF8.self)
}
