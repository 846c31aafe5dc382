import EventFlowStorage
import EventFlowTestSupport
import Foundation
import Testing

/// The retention statements against a real database: what a round measures, and the drop that
/// refuses to take anything still needed.
@Suite struct LogRetentionTests {
    static let day: TimeInterval = 86_400
    let db: PostgresConnection
    let stream: EventStream
    let now = Date()

    init() throws {
        db = try PostgresConnection(url: try TestCluster.freshDatabase())
        try TimePartitions().ensure(db)
        let org = try Organizations.create(db, name: "acme")
        stream = try Streams.create(db, org: org, name: "orders", partitions: 2, retentionHours: 24)
    }

    /// One flush of one-record batches (any bytes do for storage) at `offsets`, created `daysAgo`.
    func write(_ offsets: [Int64], partition: Int32 = 0, daysAgo: Double) throws {
        var copy = EventBatchCopy(createdAt: now.addingTimeInterval(-daysAgo * Self.day))
        for offset in offsets {
            copy.append(EventBatchRow(streamID: stream.id, partition: partition, baseOffset: offset, lastOffset: offset, recordCount: 1,
                                      firstTimestampMilliseconds: 0, maxTimestampMilliseconds: 0, codec: 0),
                        batchByteCount: 4) { $0.copyBytes(from: [1, 2, 3, 4]) }
        }
        try EventBatchLog.write(db, copy)
    }

    func attached(_ table: String) throws -> Bool {
        try db.query("SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass($1)", [table]).count == 1
    }

    func exists(_ table: String) throws -> Bool {
        try db.query("SELECT to_regclass($1) IS NOT NULL AS present", [table]).first?["present"] == "t"
    }

    var nowMilliseconds: Int64 { Int64(now.timeIntervalSince1970 * 1000) }

    @Test func measureFindsTheFirstBatchCreatedAtOrAfterTheCutoffAndTheNextOffsetInOneSnapshot() throws {
        try write([0, 1], daysAgo: 3)
        try write([2, 3], daysAgo: 2)
        try write([4], daysAgo: 0)
        try write([0], partition: 1, daysAgo: 3)
        let cutoff = RetentionCutoff(streamID: stream.id, createdBeforeMilliseconds: nowMilliseconds - Int64(2.5 * Self.day * 1000))
        let measured = try LogRetention.measure(db, cutoffs: [cutoff])
        #expect(measured == [
            PartitionLogExtent(streamID: stream.id, partition: 0, logStartOffset: 0, firstRetainedOffset: 2, nextOffset: 5),
            PartitionLogExtent(streamID: stream.id, partition: 1, logStartOffset: 0, firstRetainedOffset: nil, nextOffset: 1),
        ])
        #expect(try LogRetention.streams(db) == [StreamRetention(streamID: stream.id, partitions: 2, retentionHours: 24)])
        let threeDaysAgo = DayPartition(log: .batches, day: now.addingTimeInterval(-3 * Self.day))
        #expect(Set(try LogRetention.lastOffsets(db, in: threeDaysAgo))
                == [StoredPartitionOffset(streamID: stream.id, partition: 0, offset: 1),
                    StoredPartitionOffset(streamID: stream.id, partition: 1, offset: 0)])
        let days = try LogRetention.dayPartitions(db)
        #expect(days.first == DayPartition(log: .batches, day: now.addingTimeInterval(-4 * Self.day)), "the writer made the days around its own")
        #expect(days.contains(DayPartition(log: .events, day: now)))
    }

    @Test func aLogStartOnlyMovesForward() throws {
        let partition0 = StoredPartitionOffset(streamID: stream.id, partition: 0, offset: 10)
        try LogStartOffsets.advance(db, [partition0, StoredPartitionOffset(streamID: stream.id, partition: 1, offset: 3)])
        try LogStartOffsets.advance(db, [StoredPartitionOffset(streamID: stream.id, partition: 0, offset: 4)])
        #expect(Set(try LogStartOffsets.all(db)) == [partition0, StoredPartitionOffset(streamID: stream.id, partition: 1, offset: 3)])
        let measured = try LogRetention.measure(db, cutoffs: [RetentionCutoff(streamID: stream.id, createdBeforeMilliseconds: 0)])
        #expect(measured.map(\.logStartOffset) == [10, 3])
    }

    @Test func aDetachedDayStillHoldingBatchesAtOrAfterTheLogStartIsAttachedAgainAndDroppedOnceItIsNot() throws {
        try write([0, 1, 2], daysAgo: 3)
        let day = DayPartition(log: .batches, day: now.addingTimeInterval(-3 * Self.day))
        // No log start yet (0): the batches are readable, so the drop must refuse.
        guard case .kept(let reason) = try LogRetention.drop(db, day, now: now) else {
            Issue.record("a day with readable batches is kept")
            return
        }
        #expect(reason.contains("at or after its log start"))
        #expect(try attached(day.table))
        #expect(try db.query("SELECT count(*) AS n FROM event_batches").first?["n"] == "3")

        try LogStartOffsets.advance(db, [StoredPartitionOffset(streamID: stream.id, partition: 0, offset: 2)])
        guard case .kept = try LogRetention.drop(db, day, now: now) else {
            Issue.record("offset 2 is still at the log start")
            return
        }
        try LogStartOffsets.advance(db, [StoredPartitionOffset(streamID: stream.id, partition: 0, offset: 3)])
        #expect(try LogRetention.drop(db, day, now: now) == .dropped)
        #expect(try !exists(day.table))
        #expect(try db.query("SELECT count(*) AS n FROM event_batches").first?["n"] == "0")
        #expect(try LogRetention.drop(db, day, now: now) == .gone)
    }

    @Test func anEventsDayGoesOnlyWhenItsEventsArePastTheirStreamsRetention() throws {
        try write([0], daysAgo: 3)  // makes the events partitions around three days ago too
        let day = DayPartition(log: .events, day: now.addingTimeInterval(-3 * Self.day))
        try db.execute("""
            INSERT INTO events (id, stream_id, payload, created_at)
            VALUES (gen_random_uuid(), $1, '{"total": 1}', 'epoch'::timestamp + $2::bigint * interval '1 millisecond')
            """, [stream.id.uuidString, String(day.dayStartMilliseconds + 3_600_000)])
        #expect(try LogRetention.streamsPresent(db, in: day) == [stream.id])
        // Retention 100 days: still needed.
        try Streams.alter(db, org: try Organizations.find(db, "acme"), name: "orders", retentionHours: 2400)
        guard case .kept = try LogRetention.drop(db, day, now: now) else {
            Issue.record("events inside their retention are kept")
            return
        }
        #expect(try attached(day.table))
        try Streams.alter(db, org: try Organizations.find(db, "acme"), name: "orders", retentionHours: 24)
        #expect(try LogRetention.drop(db, day, now: now) == .dropped)
        #expect(try !exists(day.table))
    }

    @Test func whatAnInterruptedDropLeftDetachedIsAttachedAgain() throws {
        try write([0], daysAgo: 3)
        let day = DayPartition(log: .batches, day: now.addingTimeInterval(-3 * Self.day))
        try db.execute("ALTER TABLE event_batches DETACH PARTITION \(day.table)")
        #expect(try !attached(day.table))
        #expect(try !LogRetention.dayPartitions(db).contains(day))
        #expect(try LogRetention.repairInterruptedDrops(db) == [day])
        #expect(try attached(day.table))
        #expect(try db.query("SELECT count(*) AS n FROM event_batches").first?["n"] == "1")
        #expect(try LogRetention.repairInterruptedDrops(db).isEmpty)
    }
}
