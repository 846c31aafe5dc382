@testable import EventFlowBroker
import EventFlowProtocol
import EventFlowStorage
import EventFlowTestSupport
import Foundation
import Logging
import NIOCore
import Testing

/// Batches written by the writer's own path (`EventBatchLog.write`, which also creates the
/// missing daily partitions around that day) as one flush created at `createdAt`, from
/// `firstOffset` on. Returns them as stored.
func writeFlush(_ db: PostgresConnection, stream: UUID, partition: Int32 = 0, counts: [Int], from firstOffset: Int64,
                createdAt: Date) throws -> [ByteBuffer] {
    var copy = EventBatchCopy(createdAt: createdAt)
    var next = firstOffset
    var stored: [ByteBuffer] = []
    for count in counts {
        let batch = try producedBatch(count: count)
        let bytes = ByteBuffer(bytes: expectedStored(batch, baseOffset: next))
        copy.append(EventBatchRow(streamID: stream, partition: partition, baseOffset: next, lastOffset: next + Int64(count) - 1,
                                  recordCount: Int32(count), firstTimestampMilliseconds: 1_764_000_000_000,
                                  maxTimestampMilliseconds: 1_764_000_000_000 + Int64(count) - 1, codec: 0),
                    batchByteCount: bytes.readableBytes) { destination in
            bytes.withUnsafeReadableBytes { destination.copyMemory(from: $0) }
        }
        stored.append(bytes)
        next += Int64(count)
    }
    try EventBatchLog.write(db, copy)
    return stored
}

/// Runs blocking libpq work (a retention round) off the Swift concurrency pool.
func offThePool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(with: Result { try body() }) }
    }
}

/// Retention end to end: a real broker over TLS, real PostgreSQL, batches written days ago by the
/// writer's path, and the maintenance call with the real clock.
@Suite struct RetentionTests {
    static let day: TimeInterval = 86_400
    let fetchTests = FetchTests()

    /// One maintenance round's retention, on its own connection, off the concurrency pool.
    func retentionRound(_ harness: BrokerHarness, now: Date) async throws -> RetentionRound.Report {
        try await offThePool {
            let db = try harness.database()
            defer { db.close() }
            let logger = TestLogs.logger(label: "test.retention")
            return try harness.broker.enforceRetention(db, now: now, logger: logger)
        }
    }

    func table(_ log: PartitionedLog, daysAgo: Double, from now: Date) -> String {
        TimePartitions.partitionName(log.rawValue, day: now.addingTimeInterval(-daysAgo * Self.day))
    }

    /// Whether `table` exists, and whether it is attached to its parent.
    func presence(_ db: PostgresConnection, _ table: String) throws -> (exists: Bool, attached: Bool) {
        let row = try db.query("""
            SELECT to_regclass($1) IS NOT NULL AS present,
                   EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass($1)) AS attached
            """, [table])
        return (row.first?["present"] == "t", row.first?["attached"] == "t")
    }

    func listOffset(_ connection: TestConnection, topic: String = "orders", partition: Int32 = 0, _ timestamp: Int64) async throws -> Int64? {
        let (_, response) = try await connection.call(
            ListOffsetsRequest(topics: [.init(name: topic, partitions: [.init(partitionIndex: partition, timestamp: timestamp)])]), version: 5)
        return response.topics.first?.partitions.first?.offset
    }

    func fetchPartition(_ connection: TestConnection, topic: String = "orders", partition: Int32 = 0,
                        _ offset: Int64) async throws -> FetchResponse.Partition {
        let (_, response) = try await connection.call(fetchTests.fetchRequest([(partition, offset)], topic: topic), version: 11)
        return try #require(response.responses.first?.partitions.first)
    }

    @Test(arguments: [FetchService.Configuration(), FetchTests.noCache])
    func expiredBatchesLeaveFetchAndListOffsetsAndTheirDayGoesWhileADayAnotherStreamNeedsStays(
        configuration: FetchService.Configuration) async throws {
        let now = Date()
        var old: [ByteBuffer] = []
        let harness = try await BrokerHarness.start(fetch: configuration) { db, stream in
            // orders keeps 48 h: four and three days ago are past it. audit keeps ten days and
            // shares three days ago's partition.
            try Streams.alter(db, org: try Organizations.find(db, "acme"), name: stream.name, retentionHours: 48)
            let auditStream = try Streams.create(db, org: try Organizations.find(db, "acme"), name: "audit", retentionHours: 240)
            old += try writeFlush(db, stream: stream.id, counts: [2, 3], from: 0, createdAt: now.addingTimeInterval(-4 * Self.day))
            old += try writeFlush(db, stream: stream.id, counts: [2], from: 5, createdAt: now.addingTimeInterval(-3 * Self.day))
            _ = try writeFlush(db, stream: auditStream.id, counts: [4], from: 0, createdAt: now.addingTimeInterval(-3 * Self.day))
        }
        let connection = try await harness.authenticatedConnection()
        let recent = try await fetchTests.produce([try producedBatch(count: 3), try producedBatch(count: 1)], on: connection)
        let db = try harness.database()
        defer { db.close() }

        // Before retention runs, everything stored is served.
        #expect(try await listOffset(connection, -2) == 0)
        let before = try await fetchPartition(connection, 0)
        #expect(before.errorCode == .noError)
        #expect(Array(before.records?.readableBytesView ?? ByteBuffer().readableBytesView) == fetchTests.concatenated(old + recent))

        let report = try await retentionRound(harness, now: now)
        let orders0 = StreamPartition(streamID: harness.stream.id, partition: 0)
        #expect(report.moves == [.init(partition: orders0, from: 0, to: 7)])
        // Every day before yesterday goes except three days ago's log partition, which audit needs;
        // the events days are empty.
        #expect(Set(report.dropped.map(\.table)) == Set(
            (2...5).map { table(.events, daysAgo: Double($0), from: now) }
                + [5, 4, 2].map { table(.batches, daysAgo: Double($0), from: now) }))
        #expect(report.retained.map(\.table) == [table(.batches, daysAgo: 3, from: now)])
        #expect(report.kept.isEmpty)
        #expect(try presence(db, table(.batches, daysAgo: 4, from: now)) == (false, false))
        #expect(try presence(db, table(.events, daysAgo: 4, from: now)) == (false, false))
        #expect(try presence(db, table(.batches, daysAgo: 3, from: now)) == (true, true))
        #expect(try presence(db, table(.batches, daysAgo: 1, from: now)) == (true, true), "yesterday is never dropped")
        #expect(try db.query("SELECT log_start_offset FROM log_start_offsets WHERE stream_id = $1 AND partition = 0",
                             [harness.stream.id.uuidString]).first?["log_start_offset"] == "7")

        // Below the log start: out of range, even where the batches are still stored (three days ago).
        for offset: Int64 in [0, 4, 5, 6] {
            let below = try await fetchPartition(connection, offset)
            #expect(below.errorCode == .offsetOutOfRange, "offset \(offset)")
            #expect(below.logStartOffset == 7)
        }
        let kept = try await fetchPartition(connection, 7)
        #expect(kept.errorCode == .noError)
        #expect(kept.logStartOffset == 7)
        #expect(Array(kept.records?.readableBytesView ?? ByteBuffer().readableBytesView) == fetchTests.concatenated(recent))
        #expect(try await listOffset(connection, -2) == 7)
        #expect(try await listOffset(connection, -1) == 11)
        #expect(try await listOffset(connection, 0) == 7, "by time: the first record at or after the log start")
        // The other partition and the other stream are untouched.
        #expect(try await listOffset(connection, partition: 1, -2) == 0)
        #expect(try await listOffset(connection, topic: "audit", -2) == 0)
        let auditRecords = try await fetchPartition(connection, topic: "audit", 0)
        #expect(auditRecords.errorCode == .noError)
        #expect(auditRecords.records?.readableBytes ?? 0 > 0)

        // A second round finds nothing more to do.
        let again = try await retentionRound(harness, now: now)
        #expect(again.moves.isEmpty && again.dropped.isEmpty)
        await connection.close()

        // The log start is persisted: a broker started on the same database answers the same.
        await harness.broker.shutdown()
        let logger = TestLogs.logger(label: "test.broker.restarted")
        let restarted = try await Broker.start(configuration: harness.broker.configuration, databaseURL: harness.databaseURL, logger: logger)
        let fresh = try await TestConnection.connect(port: restarted.port, caPath: harness.certificates.certificateAuthority)
        _ = try await fresh.call(SaslHandshakeRequest(mechanism: "PLAIN"), version: 1)
        let credentials = SaslPlainCredentials(username: harness.key.key.id.uuidString.lowercased(), password: harness.key.secret)
        let (_, authenticated) = try await fresh.call(SaslAuthenticateRequest(authBytes: credentials.encoded), version: 1)
        try #require(authenticated.errorCode == .noError)
        #expect(try await listOffset(fresh, -2) == 7)
        #expect(try await fetchPartition(fresh, 5).errorCode == .offsetOutOfRange)
        #expect(try await fetchPartition(fresh, 7).errorCode == .noError)
        await fresh.close()
        await restarted.shutdown()
    }

    @Test func aProduceRunningThroughRetentionRoundsIsUnaffected() async throws {
        let now = Date()
        let harness = try await BrokerHarness.start { db, stream in
            try Streams.alter(db, org: try Organizations.find(db, "acme"), name: stream.name, retentionHours: 24)
            for partition: Int32 in [0, 1] {
                _ = try writeFlush(db, stream: stream.id, partition: partition, counts: [2, 3], from: 0,
                                   createdAt: now.addingTimeInterval(-3 * Self.day))
            }
        }
        let producer = try await harness.authenticatedConnection()
        let consumer = try await harness.authenticatedConnection()
        let db = try harness.database()
        defer { db.close() }
        let batchesPerPartition = 60

        // Produces while the rounds detach and drop the old days beside today's partition.
        let produced = Task { () throws -> [[Int64]] in
            var offsets: [[Int64]] = [[], []]
            for index in 0..<(2 * batchesPerPartition) {
                let partition = Int32(index % 2)
                let (_, response) = try await producer.call(
                    produceRequest(topic: "orders", partition: partition, batch: try producedBatch(count: 2)), version: 7)
                let answer = try #require(response.responses.first?.partitionResponses.first)
                try #require(answer.errorCode == .noError, "produce \(index): \(answer.errorCode)")
                offsets[Int(partition)].append(answer.baseOffset)
            }
            return offsets
        }
        var reports: [RetentionRound.Report] = []
        repeat {
            reports.append(try await retentionRound(harness, now: Date()))
        } while reports.count < 3
        let offsets = try await produced.value
        reports.append(try await retentionRound(harness, now: Date()))

        // Every produce was acknowledged, offsets dense from where the old days ended.
        let expected = (0..<batchesPerPartition).map { 5 + 2 * Int64($0) }
        #expect(offsets == [expected, expected])
        #expect(reports.flatMap(\.dropped).map(\.table).contains(TimePartitions.partitionName("event_batches", day: now.addingTimeInterval(-3 * Self.day))))
        #expect(reports.flatMap(\.kept).isEmpty)
        for partition: Int32 in [0, 1] {
            #expect(try await listOffset(consumer, partition: partition, -2) == 5)
            #expect(try await listOffset(consumer, partition: partition, -1) == 5 + 2 * Int64(batchesPerPartition))
            #expect(try await fetchPartition(consumer, partition: partition, 0).errorCode == .offsetOutOfRange)
            // Everything produced reads back, in order, from the log start.
            var next: Int64 = 5
            while next < 5 + 2 * Int64(batchesPerPartition) {
                let read = try await fetchPartition(consumer, partition: partition, next)
                try #require(read.errorCode == .noError)
                var records = try #require(read.records)
                try #require(records.readableBytes > 0)
                while records.readableBytes > 0 {
                    let header = try RecordBatchHeader(parsing: records, at: records.readerIndex)
                    #expect(header.baseOffset == next)
                    next = header.baseOffset + Int64(header.lastOffsetDelta) + 1
                    records.moveReaderIndex(forwardBy: header.totalByteCount)
                }
            }
        }
        let rows = try db.query("SELECT count(*) AS n FROM event_batches WHERE stream_id = $1", [harness.stream.id.uuidString])
        #expect(rows.first?["n"] == String(2 * batchesPerPartition), "the old days are gone, today's batches all stored")
        await producer.close()
        await consumer.close()
        await harness.broker.shutdown()
    }

    @Test func aReadSentToADayDroppedUnderItReadsOnFromTheDaysThatRemain() async throws {
        let now = Date()
        var old: [ByteBuffer] = []
        let harness = try await BrokerHarness.start(fetch: FetchTests.noCache) { db, stream in
            old = try writeFlush(db, stream: stream.id, counts: [2, 3], from: 0, createdAt: now.addingTimeInterval(-3 * Self.day))
        }
        let connection = try await harness.authenticatedConnection()
        let recent = try await fetchTests.produce([try producedBatch(count: 2), try producedBatch(count: 1)], on: connection)
        // The fetch service learns the day index (three days ago, today) and serves from it.
        let all = try await fetchPartition(connection, 0)
        #expect(Array(all.records?.readableBytesView ?? ByteBuffer().readableBytesView) == fetchTests.concatenated(old + recent))

        // The day goes behind the fetch service's back, as when a read started just before the
        // log start moved: the read that names the dropped table must not fail.
        let db = try harness.database()
        defer { db.close() }
        try LogStartOffsets.advance(db, [StoredPartitionOffset(streamID: harness.stream.id, partition: 0, offset: 5)])
        #expect(try LogRetention.drop(db, DayPartition(log: .batches, day: now.addingTimeInterval(-3 * Self.day)), now: now) == .dropped)
        let after = try await fetchPartition(connection, 0)
        #expect(after.errorCode == .noError)
        #expect(Array(after.records?.readableBytesView ?? ByteBuffer().readableBytesView) == fetchTests.concatenated(recent))
        // The index read again starts at what is stored: the log start follows.
        #expect(try await fetchPartition(connection, 0).errorCode == .offsetOutOfRange)
        #expect(try await listOffset(connection, -2) == 5)
        await connection.close()
        await harness.broker.shutdown()
    }
}
