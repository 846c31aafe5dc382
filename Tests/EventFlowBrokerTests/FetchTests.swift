@testable import EventFlowBroker
import EventFlowProtocol
@testable import EventFlowStorage
import EventFlowClient
import EventFlowTestSupport
import Logging
import Foundation
import NIOCore
import Testing

/// Fetch and ListOffsets end to end: a real broker over TLS, real PostgreSQL, a raw client.
@Suite struct FetchTests {
    static let noCache = FetchService.Configuration(tailCacheBytesMax: 0)

    /// Produces each batch to `partition` (acks=all) and returns the bytes as stored.
    func produce(_ batches: [ByteBuffer], partition: Int32 = 0, on connection: TestConnection) async throws -> [ByteBuffer] {
        var stored: [ByteBuffer] = []
        for batch in batches {
            let (_, response) = try await connection.call(produceRequest(topic: "orders", partition: partition, batch: batch), version: 7)
            let answer = try #require(response.responses.first?.partitionResponses.first)
            try #require(answer.errorCode == .noError)
            stored.append(ByteBuffer(bytes: expectedStored(batch, baseOffset: answer.baseOffset)))
        }
        return stored
    }

    func fetchRequest(_ offsets: [(partition: Int32, offset: Int64)], topic: String = "orders", partitionMaxBytes: Int32 = 1 << 20,
                      maxBytes: Int32 = 50 << 20, maxWaitMs: Int32 = 0, minBytes: Int32 = 1) -> FetchRequest {
        FetchRequest(maxWaitMs: maxWaitMs, minBytes: minBytes, maxBytes: maxBytes, topics: [
            .init(topic: topic, partitions: offsets.map { .init(partition: $0.partition, fetchOffset: $0.offset, partitionMaxBytes: partitionMaxBytes) }),
        ])
    }

    func concatenated(_ batches: [ByteBuffer]) -> [UInt8] {
        batches.flatMap { Array($0.readableBytesView) }
    }

    func records(_ response: FetchResponse, partition: Int = 0) -> [UInt8] {
        Array(response.responses.first?.partitions[partition].records?.readableBytesView ?? ByteBuffer().readableBytesView)
    }

    @Test(arguments: [FetchService.Configuration(), FetchTests.noCache])
    func batchesComeBackByteForByteAsStoredFromTheCacheAndFromPostgres(configuration: FetchService.Configuration) async throws {
        let harness = try await BrokerHarness.start(fetch: configuration)
        let connection = try await harness.authenticatedConnection()
        let stored = try await produce([try producedBatch(count: 3), try producedBatch(count: 4, compression: .lz4()),
                                        try producedBatch(count: 2)], on: connection)
        for version: Int16 in [4, 7, 11] {
            let (_, all) = try await connection.call(fetchRequest([(0, 0)]), version: version)
            let partition = try #require(all.responses.first?.partitions.first)
            #expect(partition.errorCode == .noError)
            #expect(partition.highWatermark == 9)
            #expect(partition.lastStableOffset == 9)
            #expect(records(all) == concatenated(stored), "v\(version)")
            if version >= 5 { #expect(partition.logStartOffset == 0) }
            if version >= 7 { #expect(all.sessionId == 0) }
            if version >= 11 { #expect(partition.preferredReadReplica == -1) }
        }
        // An offset inside a batch returns that batch whole (the consumer skips the records before it).
        let (_, middle) = try await connection.call(fetchRequest([(0, 5)]), version: 11)
        #expect(records(middle) == concatenated(Array(stored[1...])))
        // At the high watermark there is nothing yet: an empty answer, no error.
        let (_, tail) = try await connection.call(fetchRequest([(0, 9)]), version: 11)
        #expect(tail.responses.first?.partitions.first?.errorCode == .noError)
        #expect(records(tail).isEmpty)
        await connection.close()
        await harness.broker.shutdown()
    }

    @Test func catchUpReadsCrossDailyPartitionsInOffsetOrder() async throws {
        // Two batches written to yesterday's partition by the writer's own path, before the broker starts.
        let yesterday = Date().addingTimeInterval(-86_400)
        var old: [ByteBuffer] = []
        let harness = try await BrokerHarness.start(fetch: Self.noCache) { db, stream in
            var copy = EventBatchCopy(createdAt: yesterday)
            var next: Int64 = 0
            for count in [2, 3] {
                let batch = try producedBatch(count: count)
                let stored = ByteBuffer(bytes: expectedStored(batch, baseOffset: next))
                copy.append(EventBatchRow(streamID: stream.id, partition: 0, baseOffset: next, lastOffset: next + Int64(count) - 1,
                                          recordCount: Int32(count), firstTimestampMilliseconds: 1_764_000_000_000,
                                          maxTimestampMilliseconds: 1_764_000_000_000 + Int64(count) - 1, codec: 0),
                            batchByteCount: stored.readableBytes) { destination in
                    stored.withUnsafeReadableBytes { destination.copyMemory(from: $0) }
                }
                old.append(stored)
                next += Int64(count)
            }
            try EventBatchLog.write(db, copy)
        }
        let connection = try await harness.authenticatedConnection()
        let recent = try await produce([try producedBatch(count: 4), try producedBatch(count: 1)], on: connection)
        let db = try harness.database()
        defer { db.close() }
        let days = try EventBatchReads.dayRanges(db, streamID: harness.stream.id, partition: 0)
        #expect(days.map(\.firstOffset) == [0, 5])
        #expect(days.map(\.table) == [TimePartitions.partitionName("event_batches", day: yesterday),
                                      TimePartitions.partitionName("event_batches", day: Date())])

        let (_, all) = try await connection.call(fetchRequest([(0, 0)]), version: 11)
        #expect(all.responses.first?.partitions.first?.highWatermark == 10)
        #expect(records(all) == concatenated(old + recent))
        // From inside yesterday's second batch, and from today's first.
        let (_, fromThree) = try await connection.call(fetchRequest([(0, 3)]), version: 11)
        #expect(records(fromThree) == concatenated(Array(old[1...]) + recent))
        let (_, fromToday) = try await connection.call(fetchRequest([(0, 6)]), version: 11)
        #expect(records(fromToday) == concatenated(recent))
        await connection.close()
        await harness.broker.shutdown()
    }

    @Test(arguments: [FetchService.Configuration(), FetchTests.noCache])
    func budgetsKeepBatchesWholeAndAlwaysSendTheFirst(configuration: FetchService.Configuration) async throws {
        let harness = try await BrokerHarness.start(fetch: configuration)
        let connection = try await harness.authenticatedConnection()
        let stored = try await produce([try producedBatch(count: 3), try producedBatch(count: 3), try producedBatch(count: 3)], on: connection)
        let other = try await produce([try producedBatch(count: 2)], partition: 1, on: connection)
        let size = Int32(stored[0].readableBytes)

        // partitionMaxBytes one byte short of two batches: one batch.
        let (_, one) = try await connection.call(fetchRequest([(0, 0)], partitionMaxBytes: 2 * size - 1), version: 11)
        #expect(records(one) == concatenated([stored[0]]))
        // A budget smaller than the first batch still gets it whole, so the consumer progresses.
        let (_, tiny) = try await connection.call(fetchRequest([(0, 3)], partitionMaxBytes: 1), version: 11)
        #expect(records(tiny) == concatenated([stored[1]]))
        // maxBytes covers the whole response: after partition 0 took two batches, partition 1's does not fit.
        let (_, shared) = try await connection.call(fetchRequest([(0, 0), (1, 0)], maxBytes: 2 * size + 10), version: 11)
        #expect(records(shared, partition: 0) == concatenated(Array(stored[0...1])))
        #expect(records(shared, partition: 1).isEmpty)
        #expect(shared.responses.first?.partitions[1].highWatermark == 2)
        // Only the first batch of the response may exceed the budget: not the first of partition 1.
        let (_, both) = try await connection.call(fetchRequest([(0, 9), (1, 0)], partitionMaxBytes: 1), version: 11)
        #expect(records(both, partition: 1) == concatenated(other))
        await connection.close()
        await harness.broker.shutdown()
    }

    @Test func aLongPollIsAnsweredWhenACommitMovesTheWatermarkAndEmptyAtItsDeadline() async throws {
        let harness = try await BrokerHarness.start()
        let consumer = try await harness.authenticatedConnection()
        let producer = try await harness.authenticatedConnection()

        // Nothing arrives: answered empty once the wait is over.
        let (_, empty) = try await consumer.call(fetchRequest([(0, 0)], maxWaitMs: 200), version: 11)
        #expect(empty.responses.first?.partitions.first?.errorCode == .noError)
        #expect(records(empty).isEmpty)

        // Parked at the tail with a 20 s wait; a produce on another connection answers it.
        let started = ContinuousClock.now
        _ = try await consumer.send(fetchRequest([(0, 0)], maxWaitMs: 20_000), version: 11)
        try await Task.sleep(for: .milliseconds(100))
        let stored = try await produce([try producedBatch(count: 2)], on: producer)
        let (_, woken) = try await consumer.receive(FetchResponse.self, version: 11)
        #expect(ContinuousClock.now - started < .seconds(20), "answered by the commit, not by the deadline")
        #expect(records(woken) == concatenated(stored))
        #expect(woken.responses.first?.partitions.first?.highWatermark == 2)

        // minBytes larger than one batch: the first commit is not enough, the second is.
        let size = Int32(stored[0].readableBytes)
        _ = try await consumer.send(fetchRequest([(0, 2)], maxWaitMs: 20_000, minBytes: size + 1), version: 11)
        let first = try await produce([try producedBatch(count: 2)], on: producer)
        let second = try await produce([try producedBatch(count: 2)], on: producer)
        let (_, both) = try await consumer.receive(FetchResponse.self, version: 11)
        #expect(records(both) == concatenated(first + second))
        await consumer.close()
        await producer.close()
        await harness.broker.shutdown()
    }

    @Test func outOfRangeOffsetsOtherOrganizationsAndSessionsAreRefused() async throws {
        let harness = try await BrokerHarness.start()
        let db = try harness.database()
        defer { db.close() }
        let other = try Organizations.create(db, name: "other")
        _ = try Streams.create(db, org: other, name: "secret")
        let connection = try await harness.authenticatedConnection()
        _ = try await produce([try producedBatch(count: 2)], on: connection)

        let (_, beyond) = try await connection.call(fetchRequest([(0, 3), (0, -1)]), version: 11)
        #expect(beyond.responses.first?.partitions.map(\.errorCode) == [.offsetOutOfRange, .offsetOutOfRange])
        #expect(beyond.responses.first?.partitions.first?.highWatermark == 2)
        let (_, secret) = try await connection.call(fetchRequest([(0, 0)], topic: "secret"), version: 11)
        #expect(secret.responses.first?.partitions.first?.errorCode == .unknownTopicOrPartition)
        let (_, noPartition) = try await connection.call(fetchRequest([(7, 0)]), version: 11)
        #expect(noPartition.responses.first?.partitions.first?.errorCode == .unknownTopicOrPartition)
        let (_, listed) = try await connection.call(ListOffsetsRequest(topics: [.init(name: "secret", partitions: [.init(partitionIndex: 0, timestamp: -1)])]), version: 5)
        #expect(listed.topics.first?.partitions.first?.errorCode == .unknownTopicOrPartition)

        // FindCoordinator: this broker for groups; transactions are not coordinated here.
        let (_, coordinator) = try await connection.call(FindCoordinatorRequest(key: "billing"), version: 2)
        #expect(coordinator.errorCode == .noError)
        #expect(coordinator.port == Int32(harness.broker.port))
        let (_, transactions) = try await connection.call(FindCoordinatorRequest(key: "tx", keyType: 1), version: 2)
        #expect(transactions.errorCode == .coordinatorNotAvailable)

        var session = fetchRequest([(0, 0)])
        session.sessionId = 12
        let (_, unknownSession) = try await connection.call(session, version: 11)
        #expect(unknownSession.errorCode == .fetchSessionIdNotFound)
        await connection.close()
        await harness.broker.shutdown()
    }

    @Test func listOffsetsAnswersLatestEarliestAndTheFirstRecordAtATimestamp() async throws {
        let harness = try await BrokerHarness.start()
        let connection = try await harness.authenticatedConnection()
        // Records at t, t+1, t+2 | t+10 ... t+13 (LZ4) | t+20, t+21.
        let t: Int64 = 1_770_000_000_000
        _ = try await produce([try producedBatch(count: 3, timestamp: t), try producedBatch(count: 4, compression: .lz4(), timestamp: t + 10),
                               try producedBatch(count: 2, timestamp: t + 20)], on: connection)
        func list(_ timestamp: Int64, version: Int16 = 5) async throws -> ListOffsetsResponse.Partition {
            let (_, response) = try await connection.call(
                ListOffsetsRequest(topics: [.init(name: "orders", partitions: [.init(partitionIndex: 0, timestamp: timestamp)])]), version: version)
            return try #require(response.topics.first?.partitions.first)
        }
        #expect(try await list(-1).offset == 9)
        #expect(try await list(-2).offset == 0)
        #expect(try await list(-1, version: 1).offset == 9)
        let inside = try await list(t + 12)
        #expect(inside.offset == 5)
        #expect(inside.timestamp == t + 12)
        #expect(try await list(t + 4).offset == 3)
        #expect(try await list(t).offset == 0)
        let none = try await list(t + 100)
        #expect(none.offset == -1)
        #expect(none.errorCode == .noError)
        await connection.close()
        await harness.broker.shutdown()
    }

    /// Producers may stamp records with any int64. PostgreSQL's `timestamp` holds 4714 BC to 294276 AD,
    /// so the `max_timestamp` column is clamped into that range (one value outside it would fail the
    /// COPY of every batch committed beside it); the batch's bytes keep what the producer sent.
    /// Found by the broker fuzzer (`22008 timestamp out of range`, `interval out of range`).
    @Test func timestampsBeyondWhatPostgresHoldsAreStoredFetchedAndListed() async throws {
        let harness = try await BrokerHarness.start(fetch: FetchTests.noCache)
        let connection = try await harness.authenticatedConnection()
        let t: Int64 = 1_770_000_000_000
        let beyondYear294276: Int64 = 9_224_318_100_000_000  // fits int64 microseconds from 2000, past PostgreSQL's end
        let stored = try await produce([try producedBatch(count: 1, timestamp: t),
                                        try producedBatch(count: 1, timestamp: -9_000_000_000_000_000),
                                        try producedBatch(count: 1, timestamp: Int64.max),
                                        try producedBatch(count: 1, timestamp: beyondYear294276),
                                        try producedBatch(count: 1, timestamp: t + 5)], on: connection)
        let (_, all) = try await connection.call(fetchRequest([(0, 0)]), version: 11)
        #expect(all.responses.first?.partitions.first?.highWatermark == 5)
        #expect(records(all) == concatenated(stored))
        let rows = try harness.database().query("SELECT base_offset, max_timestamp::text AS t FROM event_batches ORDER BY base_offset")
        #expect(rows.map { $0["t"] ?? "" } == ["2026-02-02 02:40:00", "4714-11-24 00:00:00 BC", "294276-12-31 23:59:59.999",
                                              "294276-12-31 23:59:59.999", "2026-02-02 02:40:00.005"])

        func list(_ timestamp: Int64) async throws -> ListOffsetsResponse.Partition {
            let (_, response) = try await connection.call(
                ListOffsetsRequest(topics: [.init(name: "orders", partitions: [.init(partitionIndex: 0, timestamp: timestamp)])]), version: 5)
            return try #require(response.topics.first?.partitions.first)
        }
        #expect(try await list(t).offset == 0)
        let future = try await list(t + 1)
        #expect(future.offset == 2)
        #expect(future.timestamp == Int64.max)
        #expect(try await list(BinaryCopyEncoder.timestampMaxUnixMilliseconds).offset == 2)
        // Later than any stored max timestamp can be: no such record (Kafka's answer for a time past the log).
        for beyond in [BinaryCopyEncoder.timestampMaxUnixMilliseconds + 1, Int64.max] {
            let none = try await list(beyond)
            #expect(none.offset == -1)
            #expect(none.errorCode == .noError)
        }
        await connection.close()
        await harness.broker.shutdown()
    }
}

/// EventFlow's own consumer against the real broker: from the cache and from PostgreSQL, and
/// woken by a commit at the tail.
@Suite struct SwiftConsumerTests {
    func configuration(_ harness: BrokerHarness, start: ConsumerConfiguration.StartOffset) -> ConsumerConfiguration {
        ConsumerConfiguration(
            assignment: .partitions([("orders", 0, start)]),
            brokers: [BrokerAddress(host: "localhost", port: harness.broker.port)],
            credentials: APIKeyCredentials(keyID: harness.key.key.id.uuidString, secret: harness.key.secret),
            security: .tls(caFilePath: harness.certificates.certificateAuthority))
    }

    @Test(arguments: [FetchService.Configuration(), FetchTests.noCache])
    func theConsumerReadsEveryRecordFromAnOffsetAndThenWhatIsProducedWhileItWaits(fetch: FetchService.Configuration) async throws {
        let harness = try await BrokerHarness.start(fetch: fetch)
        let connection = try await harness.authenticatedConnection()
        _ = try await FetchTests().produce([try producedBatch(count: 5), try producedBatch(count: 5, compression: .lz4())], on: connection)

        let consumer = try EventFlowConsumer(configuration: configuration(harness, start: .offset(3)), logger: Logger(label: "test.consumer"))
        let running = Task { try await consumer.run() }
        var iterator = consumer.messages.makeAsyncIterator()
        var offsets: [Int64] = []
        var values: [String] = []
        for _ in 0..<7 {
            let message = try #require(try await iterator.next())
            offsets.append(message.offset)
            values.append(String(buffer: try #require(message.value)))
        }
        #expect(offsets == Array(3..<10))
        #expect(values == ["{\"event\":3,\"kind\":\"test\"}", "{\"event\":4,\"kind\":\"test\"}"] + (0..<5).map { "{\"event\":\($0),\"kind\":\"test\"}" })
        // At the tail now: the next record is the one produced after this point.
        _ = try await FetchTests().produce([try producedBatch(count: 1, timestamp: 1_780_000_000_000)], on: connection)
        let late = try #require(try await iterator.next())
        #expect(late.offset == 10)
        #expect(late.timestampMilliseconds == 1_780_000_000_000)
        consumer.triggerGracefulShutdown()
        try await running.value
        await connection.close()
        await harness.broker.shutdown()
    }
}
