import EventFlowStorage
import EventFlowTestSupport
import Foundation
import Testing

/// The seed schema's constraints, enforced by PostgreSQL itself.
@Suite struct SchemaTests {
    let db: PostgresConnection

    init() throws {
        db = try PostgresConnection(url: try TestCluster.freshDatabase())
    }

    func sqlState(_ body: () throws -> Void) -> String? {
        do {
            try body()
            return nil
        } catch let error as DatabaseError {
            return error.sqlState
        } catch {
            return "unexpected \(error)"
        }
    }

    /// libpq sends text parameters as C strings: a NUL would cut the value short (and PostgreSQL's text
    /// cannot hold one), so such a parameter is refused before anything is sent. Found by the broker fuzzer
    /// (`malformed array literal: "{"or"` for a stream name with a NUL).
    @Test func aParameterWithANulByteIsRefusedAndTheConnectionStaysUsable() throws {
        do {
            _ = try db.query("SELECT $1::text AS v", ["or\0ders"])
            Issue.record("a NUL parameter was sent")
        } catch let error as DatabaseError {
            #expect(error.sqlState == "22021")
            #expect(error.message == "parameter $1 contains a NUL byte, which PostgreSQL text cannot hold")
        }
        #expect(sqlState { try db.queryBinary("SELECT $1::text, $2::text", ["ok", "a\0"]) { _ in } } == "22021")
        #expect(try db.query("SELECT $1::text AS v", ["orders"]).first?["v"] == "orders")
    }

    /// Timestamps outside PostgreSQL's range (4714 BC to 294276 AD) are clamped to its ends in the
    /// binary COPY encoding: the bytes are the ends' microseconds since 2000-01-01 and COPY stores them.
    @Test func copyTimestampsAreClampedIntoWhatPostgresStores() throws {
        func encoded(_ unixMilliseconds: Int64) -> [UInt8] {
            var encoder = BinaryCopyEncoder()
            let start = encoder.bytes.count
            encoder.timestamp(unixMilliseconds: unixMilliseconds)
            return Array(encoder.bytes[start...])
        }
        func field(_ micros: Int64) -> [UInt8] { [0, 0, 0, 8] + withUnsafeBytes(of: micros.bigEndian) { Array($0) } }
        #expect(encoded(946_684_800_001) == field(1000))
        #expect(encoded(Int64.max) == field(9_223_371_331_199_999_000))
        #expect(encoded(9_224_318_100_000_000) == field(9_223_371_331_199_999_000))
        #expect(encoded(Int64.min) == field(-211_813_488_000_000_000))

        try db.execute("CREATE TEMP TABLE stamps (t timestamp(3) NOT NULL)")
        var rows = BinaryCopyEncoder()
        for value in [Int64.max, 9_224_318_100_000_000, Int64.min, 0] {
            rows.beginRow(fieldCount: 1)
            rows.timestamp(unixMilliseconds: value)
        }
        try db.copyIn("COPY stamps (t) FROM STDIN (FORMAT binary)") { send in
            try (rows.bytes + BinaryCopyEncoder.trailer).withUnsafeBytes { try send($0) }
        }
        #expect(try db.query("SELECT t::text AS t FROM stamps").map { $0["t"] ?? "" }
                == ["294276-12-31 23:59:59.999", "294276-12-31 23:59:59.999", "4714-11-24 00:00:00 BC", "1970-01-01 00:00:00"])
    }

    @Test func foreignKeysAreEnforced() throws {
        let missing = UUID().uuidString
        #expect(sqlState { try db.execute("INSERT INTO users (org_id, email, password_hash, role) VALUES ($1, 'a@b.io', 'x', 'admin')", [missing]) } == "23503")
        #expect(sqlState { try db.execute("INSERT INTO event_streams (org_id, name) VALUES ($1, 's')", [missing]) } == "23503")
        #expect(sqlState { try db.execute("INSERT INTO api_keys (org_id, key_hash) VALUES ($1, 'h')", [missing]) } == "23503")
        #expect(sqlState { try db.execute("INSERT INTO consumer_groups (stream_id, name) VALUES ($1, 'g')", [missing]) } == "23503")
        #expect(sqlState { try db.execute("INSERT INTO consumer_offsets (consumer_group_id) VALUES ($1)", [missing]) } == "23503")
    }

    @Test func deletingAnOrganizationWithChildrenIsRefusedNotCascaded() throws {
        let org = try Organizations.create(db, name: "acme")
        _ = try Streams.create(db, org: org, name: "orders")
        #expect(sqlState { try db.execute("DELETE FROM organizations WHERE id = $1", [org.id.uuidString]) } == "23503")
        #expect(try Streams.list(db, org: org).count == 1)
    }

    @Test func emailIsUniqueAndRoleIsChecked() throws {
        let org = try Organizations.create(db, name: "acme")
        _ = try Users.create(db, org: org, email: "Ada@Example.com", password: "correct horse", role: "admin", passwordRounds: 1024)
        #expect(throws: TenancyError.duplicateEmail("ada@example.com")) {
            try Users.create(db, org: org, email: "ada@example.com", password: "correct horse", role: "viewer", passwordRounds: 1024)
        }
        #expect(sqlState {
            try db.execute("INSERT INTO users (org_id, email, password_hash, role) VALUES ($1, 'b@b.io', 'x', 'root')", [org.id.uuidString])
        } == "23514")
        #expect(throws: TenancyError.invalidRole("root")) {
            try Users.create(db, org: org, email: "c@example.com", password: "correct horse", role: "root", passwordRounds: 1024)
        }
        #expect(throws: TenancyError.invalidEmail("not-an-email")) {
            try Users.create(db, org: org, email: "not-an-email", password: "correct horse", role: "viewer", passwordRounds: 1024)
        }
    }

    @Test func streamNamesAreUniquePerOrganizationOnly() throws {
        let acme = try Organizations.create(db, name: "acme")
        let globex = try Organizations.create(db, name: "globex")
        _ = try Streams.create(db, org: acme, name: "orders", partitions: 3)
        #expect(throws: TenancyError.duplicateStream(org: "acme", name: "orders")) {
            try Streams.create(db, org: acme, name: "orders")
        }
        let other = try Streams.create(db, org: globex, name: "orders")
        #expect(other.orgID == globex.id)
        #expect(sqlState {
            try db.execute("INSERT INTO event_streams (org_id, name) VALUES ($1, 'orders')", [acme.id.uuidString])
        } == "23505")
        #expect(throws: TenancyError.invalidPartitions(0)) { try Streams.create(db, org: acme, name: "p0", partitions: 0) }
        #expect(throws: TenancyError.self) { try Streams.create(db, org: acme, name: "bad name!") }
    }

    @Test func consumerGroupNamesAreUniquePerStream() throws {
        let org = try Organizations.create(db, name: "acme")
        let stream = try Streams.create(db, org: org, name: "orders")
        try db.execute("INSERT INTO consumer_groups (stream_id, name) VALUES ($1, 'billing')", [stream.id.uuidString])
        #expect(sqlState {
            try db.execute("INSERT INTO consumer_groups (stream_id, name) VALUES ($1, 'billing')", [stream.id.uuidString])
        } == "23505")
        let group = try db.query("SELECT id FROM consumer_groups WHERE stream_id = $1", [stream.id.uuidString])[0]["id"]
        try db.execute("INSERT INTO consumer_offsets (consumer_group_id) VALUES ($1)", [group])
        #expect(sqlState { try db.execute("INSERT INTO consumer_offsets (consumer_group_id) VALUES ($1)", [group]) } == "23505")
        // Beside it, one committed offset per group and partition.
        try db.execute("INSERT INTO consumer_partition_offsets (consumer_group_id, partition, committed_offset) VALUES ($1, 0, 10), ($1, 1, 20)", [group])
        #expect(sqlState {
            try db.execute("INSERT INTO consumer_partition_offsets (consumer_group_id, partition, committed_offset) VALUES ($1, 0, 11)", [group])
        } == "23505")
    }

    @Test func softDeleteHidesTheStreamButKeepsTheRow() throws {
        let org = try Organizations.create(db, name: "acme")
        let stream = try Streams.create(db, org: org, name: "orders")
        try Streams.delete(db, org: org, name: "orders")
        #expect(try Streams.list(db, org: org).isEmpty)
        #expect(throws: TenancyError.unknownStream(org: "acme", name: "orders")) { try Streams.find(db, org: org, name: "orders") }
        let row = try db.query("SELECT is_active, deleted_at IS NOT NULL AS deleted FROM event_streams WHERE id = $1", [stream.id.uuidString])
        #expect(row.count == 1)
        #expect(row[0]["is_active"] == "f")
        #expect(row[0]["deleted"] == "t")
        #expect(try Streams.list(db, org: org, includeDeleted: true).map(\.name) == ["orders"])
        #expect(throws: TenancyError.deletedStreamNameReserved(org: "acme", name: "orders")) {
            try Streams.create(db, org: org, name: "orders")
        }
    }

    @Test func batchColumnIsStoredExternalWithoutCompression() throws {
        try TimePartitions(daysAhead: 2).ensure(db)
        let storage = try db.query("""
            SELECT c.relname, a.attstorage FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
            WHERE a.attname = 'batch' AND c.relname LIKE 'event_batches%' ORDER BY c.relname
            """)
        #expect(storage.count >= 4)
        #expect(storage.allSatisfy { $0["attstorage"] == "e" })
    }
}
