@testable import EventFlowClient
import EventFlowProtocol
import NIOCore
import Testing

/// The consumer's fetch state machine without sockets: what it asks next, what it hands out, and the budget.
struct FetchPipelineTests {
    let orders0 = StreamPartition(stream: "orders", partition: 0)
    let orders1 = StreamPartition(stream: "orders", partition: 1)
    let now = NIODeadline.uptimeNanoseconds(1_000_000_000)

    func settings(prefetchBytesMax: Int = 10_000, fetchBytesMax: Int = 4_000, reset: ConsumerConfiguration.AutoOffsetReset = .latest,
                  finish: Bool = false, retriesMax: Int = 2) -> FetchPipeline.Settings {
        var configuration = ConsumerConfiguration(assignment: .partitions([("orders", 0, .beginning)]),
                                                  brokers: [BrokerAddress(host: "h", port: 1)], credentials: nil, security: .plaintext)
        configuration.prefetchBytesMax = prefetchBytesMax
        configuration.fetchBytesMax = fetchBytesMax
        configuration.partitionFetchBytesMax = 3_000
        configuration.autoOffsetReset = reset
        configuration.finishAtHighWatermark = finish
        configuration.retriesMax = retriesMax
        configuration.retryBackoffMilliseconds = 100
        return FetchPipeline.Settings(configuration)
    }

    func plan(_ partitions: [(StreamPartition, Int64)], maxBytes: Int = 4_000, partitionMaxBytes: Int = 3_000) -> FetchPipeline.Step {
        .fetch(FetchPipeline.FetchPlan(partitions: partitions.map { (partition: $0.0, fetchOffset: $0.1) }, maxBytes: maxBytes,
                                       partitionMaxBytes: partitionMaxBytes))
    }

    /// A fetched answer of `count` records from `base`, in one uncompressed batch.
    func records(base: Int64, count: Int, partition: StreamPartition, fetchOffset: Int64? = nil) throws -> FetchedRecords {
        var bytes = try FakeBroker.batch((0 ..< count).map { (nil, "value-\($0)", 1_000 + Int64($0)) })
        bytes.setInteger(base, at: RecordBatchHeader.baseOffsetIndex)
        return FetchedRecords.parse(bytes, partition: partition, fetchOffset: fetchOffset ?? base, partitionFetchBytes: 3_000)
    }

    @Test func startOffsetsAreLookedUpThenFetchedFromTogether() {
        var pipeline = FetchPipeline(settings: settings())
        pipeline.assign([(orders0, .beginning), (orders1, .timestamp(5_000))])
        #expect(pipeline.nextStep(now: now) == .listOffsets([
            .earliest(orders0), OffsetQuery(partition: orders1, timestamp: 5_000), .latest(orders1),
        ]))
        // No record at or after the time: partition 1 starts at the end.
        pipeline.offsetsListed([.earliest(orders0): 7, OffsetQuery(partition: orders1, timestamp: 5_000): -1, .latest(orders1): 40],
                               now: now)
        #expect(pipeline.nextStep(now: now) == plan([(orders0, 7), (orders1, 40)]))
    }

    @Test func anExplicitOffsetNeedsNoLookupAndBeforeEndStopsAtTheBeginning() {
        var pipeline = FetchPipeline(settings: settings())
        pipeline.assign([(orders0, .offset(12)), (orders1, .beforeEnd(100))])
        #expect(pipeline.nextStep(now: now) == .listOffsets([.earliest(orders1), .latest(orders1)]))
        pipeline.offsetsListed([.earliest(orders1): 5, .latest(orders1): 60], now: now)
        guard case .fetch(let plan) = pipeline.nextStep(now: now) else { Issue.record("expected a fetch"); return }
        #expect(plan.partitions.map(\.fetchOffset) == [12, 5])
    }

    @Test func fetchingWaitsWhileTheUnreadAnswersFillTheBudget() throws {
        var pipeline = FetchPipeline(settings: settings(prefetchBytesMax: 4_100, fetchBytesMax: 4_000))
        pipeline.assign([(orders0, .offset(0))])
        guard case .fetch(let first) = pipeline.nextStep(now: now) else { Issue.record("expected a fetch"); return }
        let fetched = try records(base: 0, count: 10, partition: orders0)
        pipeline.fetchAnswered(first, answers: [orders0: .records(fetched)], now: now)
        #expect(pipeline.bufferedBytes == fetched.byteCount)
        // Another 4,000-byte answer would not fit beside the unread one: nothing is sent until it is read.
        #expect(fetched.byteCount + 4_000 > 4_100)
        #expect(pipeline.nextStep(now: now) == .wait(until: nil))
        guard case .batches(let partition, let batches, let deliverable, let byteCount)? = pipeline.take(releasing: 0) else {
            Issue.record("expected batches"); return
        }
        #expect(partition == orders0 && batches.count == 1 && deliverable == 0 ..< .max)
        #expect(pipeline.nextStep(now: now) == .wait(until: nil))
        #expect(pipeline.take(releasing: byteCount) == nil)
        #expect(pipeline.bufferedBytes == 0)
        #expect(pipeline.nextStep(now: now) == plan([(orders0, 10)]))
    }

    @Test func aBudgetSmallerThanAFetchStillFetchesWhenNothingIsBuffered() {
        var pipeline = FetchPipeline(settings: settings(prefetchBytesMax: 1_000, fetchBytesMax: 4_000))
        pipeline.assign([(orders0, .offset(3))])
        #expect(pipeline.nextStep(now: now) == plan([(orders0, 3)], maxBytes: 1_000, partitionMaxBytes: 1_000))
    }

    @Test func outOfRangeFollowsTheResetPolicy() {
        for (policy, query) in [(ConsumerConfiguration.AutoOffsetReset.earliest, OffsetQuery.earliest(orders0)), (.latest, .latest(orders0))] {
            var pipeline = FetchPipeline(settings: settings(reset: policy))
            pipeline.assign([(orders0, .offset(99))])
            guard case .fetch(let plan) = pipeline.nextStep(now: now) else { Issue.record("expected a fetch"); return }
            pipeline.fetchAnswered(plan, answers: [orders0: .outOfRange], now: now)
            #expect(pipeline.nextStep(now: now) == .listOffsets([query]))
            pipeline.offsetsListed([query: 4], now: now)
            #expect(pipeline.nextStep(now: now) == self.plan([(orders0, 4)]))
        }
        var failing = FetchPipeline(settings: settings(reset: .error))
        failing.assign([(orders0, .offset(99))])
        guard case .fetch(let plan) = failing.nextStep(now: now) else { Issue.record("expected a fetch"); return }
        failing.fetchAnswered(plan, answers: [orders0: .outOfRange], now: now)
        #expect(failing.nextStep(now: now) == .finished)
        guard case .failure(let error)? = failing.take(releasing: 0) else { Issue.record("expected the failure"); return }
        #expect(error == .offsetOutOfRange(stream: "orders", partition: 0, offset: 99))
    }

    @Test func finishingAtTheHighWatermarkDeliversOnlyOffsetsBeforeIt() throws {
        var pipeline = FetchPipeline(settings: settings(finish: true))
        pipeline.assign([(orders0, .offset(2)), (orders1, .end)])
        #expect(pipeline.nextStep(now: now) == .listOffsets([.latest(orders0), .latest(orders1)]))
        pipeline.offsetsListed([.latest(orders0): 5, .latest(orders1): 8], now: now)
        // Partition 1 starts at its end: only partition 0 is fetched.
        guard case .fetch(let plan) = pipeline.nextStep(now: now) else { Issue.record("expected a fetch"); return }
        #expect(plan.partitions.map(\.partition) == [orders0])
        pipeline.fetchAnswered(plan, answers: [orders0: .records(try records(base: 0, count: 9, partition: orders0, fetchOffset: 2))],
                               now: now)
        guard case .batches(_, _, let deliverable, _)? = pipeline.take(releasing: 0) else { Issue.record("expected batches"); return }
        #expect(deliverable == 2 ..< 5)
        #expect(pipeline.nextStep(now: now) == .finished)
        guard case .end? = pipeline.take(releasing: 0) else { Issue.record("expected the end"); return }
    }

    @Test func retriableErrorsBackOffThenFail() {
        var pipeline = FetchPipeline(settings: settings(retriesMax: 1))
        pipeline.assign([(orders0, .offset(0))])
        guard case .fetch(let plan) = pipeline.nextStep(now: now) else { Issue.record("expected a fetch"); return }
        let error = ConsumerError.broker(.notLeaderOrFollower, message: nil)
        pipeline.fetchAnswered(plan, answers: [orders0: .retriable(error)], now: now)
        #expect(pipeline.nextStep(now: now) == .wait(until: now + .milliseconds(100)))
        #expect(pipeline.nextStep(now: now + .milliseconds(100)) == .fetch(plan))
        pipeline.fetchAnswered(plan, answers: [orders0: .retriable(error)], now: now)
        #expect(pipeline.failure == error)
        #expect(pipeline.nextStep(now: now) == .finished)
    }

    @Test func parsingSkipsBatchesBeforeTheOffsetAndAPartialTrailingBatch() throws {
        var bytes = ByteBuffer()
        for (index, base) in [Int64(0), 3, 6].enumerated() {
            var batch = try FakeBroker.batch((0 ..< 3).map { (nil, "v\(index)-\($0)", 1_000) })
            batch.setInteger(base, at: RecordBatchHeader.baseOffsetIndex)
            if index == 2 { batch = batch.getSlice(at: 0, length: batch.readableBytes - 5)! }
            bytes.writeImmutableBuffer(batch)
        }
        let fetched = FetchedRecords.parse(bytes, partition: orders0, fetchOffset: 4, partitionFetchBytes: 3_000)
        #expect(fetched.corruption == nil)
        #expect(fetched.batches.map(\.header.baseOffset) == [3])
        #expect(fetched.nextOffset == 6)
        #expect(fetched.byteCount == bytes.readableBytes)
    }

    @Test func parsingReportsACorruptBatchAfterTheGoodOnes() throws {
        var good = try FakeBroker.batch([(nil, "good", 1_000)])
        var bad = try FakeBroker.batch([(nil, "bad", 1_000)])
        bad.setInteger(Int64(1), at: RecordBatchHeader.baseOffsetIndex)
        bad.setInteger(UInt8(ascii: "B"), at: bad.writerIndex - 2)
        good.writeImmutableBuffer(bad)
        let fetched = FetchedRecords.parse(good, partition: orders0, fetchOffset: 0, partitionFetchBytes: 3_000)
        #expect(fetched.batches.count == 1)
        #expect(fetched.nextOffset == 1)
        guard case .corruptBatch(_, _, let offset, let detail)? = fetched.corruption else { Issue.record("expected corruption"); return }
        #expect(offset == 1)
        #expect(detail.contains("crc"))
    }

    @Test func aBatchLargerThanAFetchIsAnError() throws {
        let batch = try FakeBroker.batch([(nil, String(repeating: "x", count: 500), 1_000)])
        let cut = batch.getSlice(at: 0, length: 100)
        let fetched = FetchedRecords.parse(cut, partition: orders0, fetchOffset: 0, partitionFetchBytes: 100)
        #expect(fetched.corruption == .batchTooLarge(stream: "orders", partition: 0, offset: 0, fetchBytes: 100))
    }

    @Test func aRevokedPartitionsFetchedRecordsAreDroppedAndItsBytesReleased() throws {
        var pipeline = FetchPipeline(settings: settings())
        pipeline.assign([(orders0, .offset(0)), (orders1, .offset(0))])
        let step = pipeline.nextStep(now: now)
        guard case .fetch(let fetchPlan) = step else { Issue.record("expected a fetch, got \(step)"); return }
        let first = try records(base: 0, count: 3, partition: orders0)
        let second = try records(base: 0, count: 2, partition: orders1)
        pipeline.fetchAnswered(fetchPlan, answers: [orders0: .records(first), orders1: .records(second)], now: now)
        #expect(pipeline.bufferedBytes == first.byteCount + second.byteCount)
        pipeline.revoke([orders0])
        #expect(pipeline.bufferedBytes == second.byteCount)
        #expect(pipeline.deliveriesWaiting == 1)
        guard case .batches(let partition, _, _, _)? = pipeline.take(releasing: 0) else { Issue.record("expected orders/1's batch"); return }
        #expect(partition == orders1)
        // orders/0 is no longer fetched.
        #expect(pipeline.nextStep(now: now) == plan([(orders1, 2)]))
    }
}
