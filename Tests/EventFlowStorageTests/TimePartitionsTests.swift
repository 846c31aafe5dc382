import EventFlowStorage
import EventFlowTestSupport
import Foundation
import Testing

@Suite struct TimePartitionsTests {
    @Test func partitionsExistFromYesterdayThroughTodayPlusNAndInsertsLandInTheirDay() throws {
        let db = try PostgresConnection(url: try TestCluster.freshDatabase())
        defer { db.close() }
        let now = Date()
        let created = try TimePartitions(daysAhead: 3).ensure(db, now: now)
        #expect(created.count == 2 * 5)  // two tables, yesterday + today + 3 days

        for table in TimePartitions.partitionedTables {
            let existing = try TimePartitions.existing(db, table: table)
            let expected = (-1...3).map { TimePartitions.partitionName(table, day: now.addingTimeInterval(Double($0) * 86_400)) }
            #expect(existing == expected.sorted())
        }
        // Running again creates nothing.
        #expect(try TimePartitions(daysAhead: 3).ensure(db, now: now).isEmpty)

        let org = try Organizations.create(db, name: "acme")
        let stream = try Streams.create(db, org: org, name: "orders")
        try db.execute("""
            INSERT INTO event_batches (stream_id, partition, base_offset, last_offset, record_count, first_timestamp, max_timestamp, created_at, codec, batch)
            VALUES ($1, 0, 0, 9, 10, now(), now(), (now() AT TIME ZONE 'UTC') + interval '2 days', 3, '\\x00')
            """, [stream.id.uuidString])
        let landed = try db.query("SELECT tableoid::regclass::text AS part FROM event_batches")
        #expect(landed.map { $0["part"] } == [TimePartitions.partitionName("event_batches", day: now.addingTimeInterval(2 * 86_400))])

        try db.execute("""
            INSERT INTO events (id, stream_id, payload, created_at) VALUES (gen_random_uuid(), $1, '{"a": 1}', now() AT TIME ZONE 'UTC')
            """, [stream.id.uuidString])
        let event = try db.query("SELECT tableoid::regclass::text AS part FROM events")
        #expect(event.map { $0["part"] } == [TimePartitions.partitionName("events", day: now)])
    }

    @Test func aRowForADayWithoutPartitionIsRefusedNotParkedInADefault() throws {
        let db = try PostgresConnection(url: try TestCluster.freshDatabase())
        defer { db.close() }
        try TimePartitions(daysAhead: 1).ensure(db)
        let org = try Organizations.create(db, name: "acme")
        let stream = try Streams.create(db, org: org, name: "orders")
        let error = #expect(throws: DatabaseError.self) {
            try db.execute("""
                INSERT INTO event_batches (stream_id, partition, base_offset, last_offset, record_count, first_timestamp, max_timestamp, created_at, codec, batch)
                VALUES ($1, 0, 0, 0, 1, now(), now(), now() + interval '30 days', 0, '\\x00')
                """, [stream.id.uuidString])
        }
        #expect(error?.sqlState == "23514")  // no partition of relation found for row
    }
}
