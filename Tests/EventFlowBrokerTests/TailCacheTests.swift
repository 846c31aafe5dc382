import EventFlowBroker
import Foundation
import NIOCore
import Testing

private let partitionA = StreamPartition(streamID: UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xA)), partition: 0)
private let partitionB = StreamPartition(streamID: UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xB)), partition: 1)

/// One segment: for each (partition, base offset, last offset, byte count) a batch whose bytes
/// are its base offset's low byte repeated, laid out in the given order.
private func segment(_ batches: [(StreamPartition, Int64, Int64, Int)]) -> (ByteBuffer, [TailCache.CachedBatch]) {
    var buffer = ByteBuffer()
    var cached: [TailCache.CachedBatch] = []
    for (partition, base, last, count) in batches {
        let start = buffer.readableBytes
        buffer.writeRepeatingByte(UInt8(truncatingIfNeeded: base), count: count)
        cached.append(.init(partition: partition, baseOffset: base, lastOffset: last, range: start..<buffer.readableBytes))
    }
    return (buffer, cached)
}

private func bytes(_ read: TailCache.Read) -> [UInt8]? {
    guard case .batches(let records, _, _) = read else { return nil }
    return Array(records.readableBytesView)
}

@Suite struct TailCacheTests {
    @Test func aReadStartsAtTheBatchContainingTheOffsetAndReturnsWholeBatches() {
        var cache = TailCache(bytesMax: 1 << 20)
        let (buffer, batches) = segment([(partitionA, 0, 9, 10), (partitionA, 10, 14, 5), (partitionA, 15, 15, 3)])
        cache.insert(segment: buffer, batches: batches)
        let read = cache.read(partitionA, from: 12, bytesMax: 100, firstBatchWhole: false)
        #expect(read == .batches(records: ByteBuffer(bytes: Array(repeating: 10, count: 5) + Array(repeating: 15, count: 3)),
                                 batchCount: 2, nextOffset: 16))
        #expect(cache.read(partitionA, from: 16, bytesMax: 100, firstBatchWhole: true) == .notCached)
        #expect(cache.read(partitionB, from: 0, bytesMax: 100, firstBatchWhole: true) == .notCached)
    }

    @Test func theBudgetStopsBeforeABatchThatDoesNotFitUnlessItIsTheFirstAndMustBeWhole() {
        var cache = TailCache(bytesMax: 1 << 20)
        let (buffer, batches) = segment([(partitionA, 0, 0, 10), (partitionA, 1, 1, 10)])
        cache.insert(segment: buffer, batches: batches)
        guard case .batches(_, let fitting, let next) = cache.read(partitionA, from: 0, bytesMax: 15, firstBatchWhole: false) else {
            Issue.record("cached"); return
        }
        #expect(fitting == 1 && next == 1)
        guard case .batches(let none, let zero, _) = cache.read(partitionA, from: 0, bytesMax: 5, firstBatchWhole: false) else {
            Issue.record("cached"); return
        }
        #expect(zero == 0 && none.readableBytes == 0)
        guard case .batches(let whole, let one, _) = cache.read(partitionA, from: 0, bytesMax: 5, firstBatchWhole: true) else {
            Issue.record("cached"); return
        }
        #expect(one == 1 && whole.readableBytes == 10)
    }

    @Test func partitionsInterleavedInAFlushReadBackOnlyTheirOwnBatchesInOrder() {
        var cache = TailCache(bytesMax: 1 << 20)
        let (first, firstBatches) = segment([(partitionA, 0, 0, 4), (partitionB, 0, 1, 6), (partitionA, 1, 2, 4)])
        cache.insert(segment: first, batches: firstBatches)
        let (second, secondBatches) = segment([(partitionA, 3, 3, 2), (partitionB, 2, 2, 1)])
        cache.insert(segment: second, batches: secondBatches)
        #expect(bytes(cache.read(partitionA, from: 0, bytesMax: 100, firstBatchWhole: true)) == [0, 0, 0, 0, 1, 1, 1, 1, 3, 3])
        #expect(bytes(cache.read(partitionB, from: 1, bytesMax: 100, firstBatchWhole: true)) == [0, 0, 0, 0, 0, 0, 2])
    }

    @Test func theOldestSegmentsAreEvictedWholeAndReadsBelowThemGoToTheDatabase() {
        var cache = TailCache(bytesMax: 25)
        for segmentIndex in 0..<4 {
            let base = Int64(segmentIndex * 2)
            let (buffer, batches) = segment([(partitionA, base, base, 5), (partitionA, base + 1, base + 1, 5)])
            cache.insert(segment: buffer, batches: batches)
        }
        // 40 bytes inserted, 25 allowed: the two oldest segments (offsets 0-3) are gone.
        #expect(cache.bytes == 20)
        #expect(cache.segmentCount == 2)
        #expect(cache.firstCachedOffset(of: partitionA) == 4)
        #expect(cache.read(partitionA, from: 3, bytesMax: 100, firstBatchWhole: true) == .notCached)
        #expect(bytes(cache.read(partitionA, from: 4, bytesMax: 100, firstBatchWhole: true)) == [4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7])
    }

    @Test func aSegmentLargerThanTheWholeCacheLeavesNothingCached() {
        var cache = TailCache(bytesMax: 8)
        let (small, smallBatches) = segment([(partitionA, 0, 0, 4)])
        cache.insert(segment: small, batches: smallBatches)
        let (large, largeBatches) = segment([(partitionA, 1, 1, 9)])
        cache.insert(segment: large, batches: largeBatches)
        #expect(cache.bytes == 0)
        #expect(cache.read(partitionA, from: 1, bytesMax: 100, firstBatchWhole: true) == .notCached)
    }

    @Test func aDisabledCacheHoldsNothing() {
        var cache = TailCache(bytesMax: 0)
        let (buffer, batches) = segment([(partitionA, 0, 0, 4)])
        cache.insert(segment: buffer, batches: batches)
        #expect(cache.read(partitionA, from: 0, bytesMax: 100, firstBatchWhole: true) == .notCached)
    }

    @Test func discardingBelowALogStartLeavesNothingCachedBelowIt() {
        var cache = TailCache(bytesMax: 1 << 20)
        let (buffer, batches) = segment([(partitionA, 0, 9, 10), (partitionB, 0, 0, 4), (partitionA, 10, 14, 5), (partitionA, 15, 15, 3)])
        cache.insert(segment: buffer, batches: batches)
        cache.discard(partitionA, below: 15)
        #expect(cache.firstCachedOffset(of: partitionA) == 15)
        #expect(cache.read(partitionA, from: 12, bytesMax: 100, firstBatchWhole: true) == .notCached)
        #expect(bytes(cache.read(partitionA, from: 15, bytesMax: 100, firstBatchWhole: true)) == Array(repeating: 15, count: 3))
        #expect(bytes(cache.read(partitionB, from: 0, bytesMax: 100, firstBatchWhole: true)) == Array(repeating: 0, count: 4),
                "other partitions of the segment are untouched")
        // A log start inside the cached run keeps the batch that holds it.
        cache.discard(partitionB, below: 0)
        #expect(cache.firstCachedOffset(of: partitionB) == 0)
        // Everything below: the partition's run is gone, later commits continue it.
        cache.discard(partitionA, below: 16)
        #expect(cache.firstCachedOffset(of: partitionA) == nil)
        let (next, nextBatches) = segment([(partitionA, 16, 17, 2)])
        cache.insert(segment: next, batches: nextBatches)
        #expect(bytes(cache.read(partitionA, from: 16, bytesMax: 100, firstBatchWhole: true)) == Array(repeating: 16, count: 2))
        #expect(cache.segmentCount == 2)
    }
}

@Suite struct FetchWaitsTests {
    private let second: UInt64 = 1_000_000_000

    @Test func aParkedFetchIsAnsweredWhenACommitBringsMinBytes() {
        var waits = FetchWaits(waitsMax: 10)
        let id = FetchWaits.WaitID(1)
        #expect(waits.park(id, observed: [partitionA: 5], bytesAvailable: 0, minBytes: 100, deadline: 10 * second, now: 0)
                == [.scheduleTimer(deadline: 10 * second)])
        // Another partition's commit does not wake it; too few bytes do not either.
        #expect(waits.committed([partitionB: (highWatermark: 3, bytes: 500)]).isEmpty)
        #expect(waits.committed([partitionA: (highWatermark: 6, bytes: 60)]).isEmpty)
        #expect(waits.committed([partitionA: (highWatermark: 7, bytes: 40)]) == [.answer(id)])
        #expect(waits.parkedCount == 0)
        #expect(waits.committed([partitionA: (highWatermark: 8, bytes: 40)]).isEmpty)
    }

    @Test func aParkedFetchIsAnsweredAtItsDeadlineAndTheNextDeadlineIsScheduled() {
        var waits = FetchWaits(waitsMax: 10)
        _ = waits.park(FetchWaits.WaitID(1), observed: [partitionA: 0], bytesAvailable: 0, minBytes: 1, deadline: 5 * second, now: 0)
        // A later deadline needs no new timer: the earlier one will reschedule.
        #expect(waits.park(FetchWaits.WaitID(2), observed: [partitionB: 0], bytesAvailable: 0, minBytes: 1, deadline: 9 * second, now: 0).isEmpty)
        #expect(waits.timerFired(now: 4 * second) == [.scheduleTimer(deadline: 5 * second)])
        #expect(waits.timerFired(now: 5 * second) == [.answer(FetchWaits.WaitID(1)), .scheduleTimer(deadline: 9 * second)])
        #expect(waits.timerFired(now: 9 * second) == [.answer(FetchWaits.WaitID(2))])
    }

    @Test func aCommitBetweenTheReadAndTheParkIsNotLost() {
        var waits = FetchWaits(waitsMax: 10)
        _ = waits.committed([partitionA: (highWatermark: 10, bytes: 50)])
        // The fetch read the partition when its high watermark was still 9.
        #expect(waits.park(FetchWaits.WaitID(1), observed: [partitionA: 9], bytesAvailable: 0, minBytes: 1, deadline: second, now: 0)
                == [.answer(FetchWaits.WaitID(1))])
        #expect(waits.parkedCount == 0)
    }

    @Test func beyondTheBoundAFetchIsAnsweredAtOnce() {
        var waits = FetchWaits(waitsMax: 1)
        _ = waits.park(FetchWaits.WaitID(1), observed: [partitionA: 0], bytesAvailable: 0, minBytes: 1, deadline: second, now: 0)
        #expect(waits.park(FetchWaits.WaitID(2), observed: [partitionA: 0], bytesAvailable: 0, minBytes: 1, deadline: second, now: 0)
                == [.answer(FetchWaits.WaitID(2))])
        #expect(waits.answerAll() == [.answer(FetchWaits.WaitID(1))])
    }

    @Test func aFetchWaitingOnTwoPartitionsCountsBytesFromBoth() {
        var waits = FetchWaits(waitsMax: 10)
        _ = waits.park(FetchWaits.WaitID(1), observed: [partitionA: 0, partitionB: 0], bytesAvailable: 10, minBytes: 100, deadline: second, now: 0)
        #expect(waits.committed([partitionA: (highWatermark: 1, bytes: 50)]).isEmpty)
        #expect(waits.committed([partitionB: (highWatermark: 1, bytes: 40)]) == [.answer(FetchWaits.WaitID(1))])
    }
}
