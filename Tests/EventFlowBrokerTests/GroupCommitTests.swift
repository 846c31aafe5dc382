import EventFlowBroker
import EventFlowProtocol
import Foundation
import NIOCore
import Testing

private func streamID(_ n: UInt8) -> UUID {
    UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, n))
}

private let partitionA = StreamPartition(streamID: streamID(0xA), partition: 0)
private let partitionB = StreamPartition(streamID: streamID(0xB), partition: 3)

/// Batch bytes as a producer sends them: base offset 0, then `byteCount - 8` body bytes.
private func batchBytes(byteCount: Int, fill: UInt8 = 0xAB) -> ByteBuffer {
    var buffer = ByteBuffer()
    buffer.writeInteger(Int64(0))
    buffer.writeRepeatingByte(fill, count: byteCount - 8)
    return buffer
}

private func batch(
    _ partition: StreamPartition = partitionA,
    records: Int32 = 1,
    byteCount: Int = 100,
    ack: AckMode = .durable,
    token: UInt64,
    producer: ProducerBatchInfo? = nil
) -> ValidatedBatch {
    ValidatedBatch(partition: partition, recordCount: records, bytes: batchBytes(byteCount: byteCount),
                   producer: producer, ackMode: ack, token: RequestToken(token))
}

private func machine(
    flushBytesTarget: Int = 1_000,
    lingerMilliseconds: Int = 5,
    memoryBytesMax: Int = 10_000,
    memoryBytesPause: Int? = nil,
    memoryBytesResume: Int? = nil,
    nextOffsets: [StreamPartition: Int64] = [partitionA: 0, partitionB: 0]
) -> GroupCommit {
    var groupCommit = GroupCommit(configuration: .init(
        flushBytesTarget: flushBytesTarget, lingerMilliseconds: lingerMilliseconds,
        memoryBytesMax: memoryBytesMax, memoryBytesPause: memoryBytesPause, memoryBytesResume: memoryBytesResume))
    groupCommit.startup(nextOffsets: nextOffsets)
    return groupCommit
}

private let millisecond: UInt64 = 1_000_000

private func flushes(_ actions: [GroupCommit.Action]) -> [GroupCommit.Flush] {
    actions.compactMap { if case .flushNow(let flush) = $0 { flush } else { nil } }
}

private func onlyFlush(_ actions: [GroupCommit.Action]) throws -> GroupCommit.Flush {
    let found = flushes(actions)
    try #require(found.count == 1, "expected exactly one flush in \(actions)")
    return found[0]
}

/// The base offset in the bytes the writer stores.
private func storedBaseOffset(_ batch: GroupCommit.Batch) -> Int64? {
    batch.storedBytes.getInteger(at: 0, as: Int64.self)
}

@Suite struct GroupCommitTests {
    // MARK: Offsets

    @Test func offsetsAreDensePerPartitionStartingFromTheTable() throws {
        var gc = machine(nextOffsets: [partitionA: 10, partitionB: 0])
        _ = gc.accept(batch(records: 2, token: 1), now: 0)
        _ = gc.accept(batch(partitionB, records: 4, token: 2), now: 0)
        _ = gc.accept(batch(records: 3, token: 3), now: 0)
        _ = gc.accept(batch(records: 1, token: 4), now: 0)
        let flush = try onlyFlush(gc.timerFired(now: 5 * millisecond))

        #expect(flush.batches.map(\.baseOffset) == [10, 0, 12, 15])
        #expect(flush.batches.map(\.lastOffset) == [11, 3, 14, 15])
        #expect(flush.batches.map(storedBaseOffset) == [10, 0, 12, 15])
        #expect(gc.nextOffset(of: partitionA) == 16)
        #expect(gc.nextOffset(of: partitionB) == 4)
        #expect(gc.invariantViolations() == [])
    }

    @Test func storedBytesAreTheReceivedBatchWithTheAssignedBaseOffset() throws {
        var gc = machine(nextOffsets: [partitionA: 0x0102_0304_0506_0708])
        let sent = batchBytes(byteCount: 61, fill: 0x5A)
        _ = gc.accept(ValidatedBatch(partition: partitionA, recordCount: 1, bytes: sent, ackMode: .none,
                                     token: RequestToken(1)), now: 0)
        let buffered = try #require(try onlyFlush(gc.drain()).batches.first)

        var copyBuffer = ByteBuffer(bytes: [0xEE])   // e.g. a COPY row already begun
        buffered.writeStoredBytes(into: &copyBuffer)
        #expect(copyBuffer.readableBytes == 62)
        #expect(copyBuffer.getBytes(at: 1, length: 8) == [1, 2, 3, 4, 5, 6, 7, 8])
        #expect(copyBuffer.getBytes(at: 9, length: 53) == Array(repeating: 0x5A, count: 53))
        #expect(buffered.storedBytes == copyBuffer.getSlice(at: 1, length: 61))
        #expect(sent.getInteger(at: 0, as: Int64.self) == 0, "the received buffer is not modified")
    }

    @Test func batchBytesAreNotCopiedWhileBuffered() throws {
        var gc = machine()
        let sent = batchBytes(byteCount: 100)
        _ = gc.accept(ValidatedBatch(partition: partitionA, recordCount: 1, bytes: sent, ackMode: .none,
                                     token: RequestToken(1)), now: 0)
        let buffered = try #require(try onlyFlush(gc.drain()).batches.first)
        let sentAddress = sent.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) }
        let bufferedAddress = buffered.receivedBytes.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) }
        #expect(sentAddress == bufferedAddress)
    }

    // MARK: Flush policy

    @Test func firstBatchSchedulesTheLingerAndTheTimerFlushesIt() throws {
        var gc = machine(lingerMilliseconds: 5)
        let start: UInt64 = 7 * millisecond
        #expect(gc.accept(batch(ack: .durable, token: 1), now: start) == [.scheduleLinger(deadline: start + 5 * millisecond)])
        #expect(gc.accept(batch(ack: .durable, token: 2), now: start + millisecond) == [], "only the first batch schedules")

        #expect(gc.timerFired(now: start + 4 * millisecond) == [.scheduleLinger(deadline: start + 5 * millisecond)],
                "a timer firing early is rescheduled, nothing flushes")
        let flush = try onlyFlush(gc.timerFired(now: start + 5 * millisecond))
        #expect(flush.batches.map(\.token) == [RequestToken(1), RequestToken(2)])
        #expect(flush.byteCount == 200)
    }

    @Test func byteBudgetFlushesBeforeTheLinger() throws {
        var gc = machine(flushBytesTarget: 250, lingerMilliseconds: 1_000)
        #expect(flushes(gc.accept(batch(token: 1), now: 0)).isEmpty)
        #expect(flushes(gc.accept(batch(token: 2), now: 0)).isEmpty)
        let flush = try onlyFlush(gc.accept(batch(token: 3), now: 0))
        #expect(flush.batches.count == 3)
        #expect(gc.bufferedBatchCount == 0)
    }

    @Test func zeroLingerFlushesEachBatchWhenIdle() throws {
        var gc = machine(lingerMilliseconds: 0)
        let flush = try onlyFlush(gc.accept(batch(token: 1), now: 42))
        #expect(flush.batches.count == 1)
    }

    @Test func timerWithNothingBufferedDoesNothing() {
        var gc = machine()
        #expect(gc.timerFired(now: 1_000 * millisecond) == [])
    }

    // MARK: Acks

    @Test func durableProduceIsAnsweredOnlyAfterCommit() throws {
        var gc = machine()
        #expect(gc.accept(batch(records: 3, ack: .durable, token: 1), now: 0) == [.scheduleLinger(deadline: 5 * millisecond)])
        let flush = try onlyFlush(gc.timerFired(now: 5 * millisecond))
        #expect(gc.highWatermark(of: partitionA) == 0, "not visible before commit")

        let actions = gc.flushSucceeded(flush.id, now: 6 * millisecond)
        #expect(actions == [.highWatermarksAdvanced([partitionA: 3]), .ackDurable(RequestToken(1), baseOffset: 0)])
        #expect(gc.highWatermark(of: partitionA) == 3)
        #expect(gc.memoryBytes == 0)
    }

    @Test func memoryAckIsAnsweredOnAcceptanceAndNoneAckNever() throws {
        var gc = machine()
        let first = gc.accept(batch(records: 2, ack: .memory, token: 1), now: 0)
        #expect(first.contains(.ackNow(RequestToken(1), baseOffset: 0)))
        let second = gc.accept(batch(ack: .none, token: 2), now: 0)
        #expect(second == [])

        let flush = try onlyFlush(gc.timerFired(now: 5 * millisecond))
        #expect(gc.flushSucceeded(flush.id, now: 5 * millisecond) == [.highWatermarksAdvanced([partitionA: 3])],
                "no second answer after commit")
    }

    // MARK: Double buffering

    @Test func nextBufferFillsWhileAFlushIsInFlightAndFlushesAtOnceWhenDue() throws {
        var gc = machine(flushBytesTarget: 200)
        _ = gc.accept(batch(token: 1), now: 0)
        let first = try onlyFlush(gc.accept(batch(token: 2), now: 0))

        // The budget is reached again while the first flush commits: no second flush yet.
        let filling = gc.accept(batch(token: 3), now: 0) + gc.accept(batch(token: 4), now: 0) + gc.accept(batch(token: 5), now: 0)
        #expect(flushes(filling).isEmpty)
        #expect(gc.flushInFlight == first.id)
        #expect(gc.bufferedBatchCount == 3)

        let completed = gc.flushSucceeded(first.id, now: 0)
        let second = try onlyFlush(completed)
        #expect(second.id > first.id)
        #expect(second.batches.map(\.baseOffset) == [2, 3, 4])
        #expect(completed.filter { if case .ackDurable = $0 { true } else { false } }.count == 2)
        #expect(gc.invariantViolations() == [])
    }

    @Test func lingerExpiringDuringAFlushFlushesTheNextBufferOnCompletion() throws {
        var gc = machine(flushBytesTarget: 10_000, lingerMilliseconds: 5)
        _ = gc.accept(batch(token: 1), now: 0)
        let first = try onlyFlush(gc.timerFired(now: 5 * millisecond))
        #expect(gc.accept(batch(token: 2), now: 6 * millisecond) == [.scheduleLinger(deadline: 11 * millisecond)])
        #expect(gc.timerFired(now: 11 * millisecond) == [], "one flush in flight at most")

        let second = try onlyFlush(gc.flushSucceeded(first.id, now: 12 * millisecond))
        #expect(second.batches.map(\.token) == [RequestToken(2)])
    }

    @Test func flushCompletionWaitsForABufferThatIsNotDue() throws {
        var gc = machine(flushBytesTarget: 10_000, lingerMilliseconds: 5)
        _ = gc.accept(batch(token: 1), now: 0)
        let first = try onlyFlush(gc.timerFired(now: 5 * millisecond))
        _ = gc.accept(batch(token: 2), now: 6 * millisecond)
        #expect(flushes(gc.flushSucceeded(first.id, now: 7 * millisecond)).isEmpty)
        #expect(try onlyFlush(gc.timerFired(now: 11 * millisecond)).batches.count == 1)
    }

    // MARK: Failure

    @Test func flushFailureWhileNextOneIsFilling() throws {
        var gc = machine(flushBytesTarget: 10_000)
        // Committed history: partition A holds offsets 0...1.
        _ = gc.accept(batch(records: 2, token: 1), now: 0)
        let committed = try onlyFlush(gc.timerFired(now: 5 * millisecond))
        _ = gc.flushSucceeded(committed.id, now: 5 * millisecond)

        _ = gc.accept(batch(records: 3, token: 2), now: 10 * millisecond)             // A 2...4
        _ = gc.accept(batch(partitionB, records: 1, token: 3), now: 10 * millisecond) // B 0
        let failing = try onlyFlush(gc.timerFired(now: 15 * millisecond))
        _ = gc.accept(batch(records: 1, token: 4), now: 16 * millisecond)             // A 5, filling
        _ = gc.accept(batch(records: 1, ack: .memory, token: 5), now: 16 * millisecond) // A 6, answered already
        _ = gc.accept(batch(partitionB, records: 2, ack: .none, token: 6), now: 16 * millisecond)
        #expect(gc.nextOffset(of: partitionA) == 7)

        let actions = gc.flushFailed(failing.id)
        #expect(actions == [
            .fail(RequestToken(2), .flushFailed),
            .fail(RequestToken(3), .flushFailed),
            .fail(RequestToken(4), .earlierFlushFailed),
        ])
        #expect(GroupCommit.Failure.flushFailed.errorCode == .kafkaStorageError)
        #expect(GroupCommit.Failure.flushFailed.errorCode.isRetriable)
        // Offsets are not exposed and will be reassigned densely.
        #expect(gc.highWatermark(of: partitionA) == 2)
        #expect(gc.nextOffset(of: partitionA) == 2)
        #expect(gc.highWatermark(of: partitionB) == 0)
        #expect(gc.nextOffset(of: partitionB) == 0)
        #expect(gc.memoryBytes == 0)
        #expect(gc.flushInFlight == nil)
        #expect(gc.bufferedBatchCount == 0)
        #expect(gc.invariantViolations() == [])

        // The retry gets the first offset after the committed ones: no gap.
        _ = gc.accept(batch(records: 3, token: 7), now: 20 * millisecond)
        let retry = try onlyFlush(gc.timerFired(now: 25 * millisecond))
        #expect(retry.batches.map(\.baseOffset) == [2])
        #expect(gc.flushSucceeded(retry.id, now: 25 * millisecond).first == .highWatermarksAdvanced([partitionA: 5]))
    }

    @Test(arguments: [5_000, 600])
    func committedOffsetsTileEachPartitionThroughSuccessesAndFailures(memoryBytesMax: Int) throws {
        // A deterministic walk through accepts, timers, successes and failures: the committed
        // batches of each partition must cover 0..<highWatermark exactly, in order, and every
        // batch is answered exactly once. With 600 bytes of memory, batches are often held.
        var gc = machine(flushBytesTarget: 700, lingerMilliseconds: 2, memoryBytesMax: memoryBytesMax)
        var random = SplitMix64(seed: 0x5EED)
        var committed: [StreamPartition: [GroupCommit.Batch]] = [:]
        var inFlight: GroupCommit.Flush?
        var now: UInt64 = 0
        var token: UInt64 = 0
        var answers: [RequestToken: Int] = [:]
        var heldAtMost = 0

        func absorb(_ actions: [GroupCommit.Action]) {
            for action in actions {
                switch action {
                case .flushNow(let flush):
                    #expect(inFlight == nil, "two flushes in flight")
                    inFlight = flush
                case .ackDurable(let token, _), .ackNow(let token, _), .fail(let token, _):
                    answers[token, default: 0] += 1
                default:
                    break
                }
            }
            heldAtMost = max(heldAtMost, gc.heldBatchCount)
        }

        for _ in 0..<2_000 {
            now += UInt64(random.next() % 2) * millisecond
            switch random.next() % 10 {
            case 0...5:
                token += 1
                let partition = random.next() % 2 == 0 ? partitionA : partitionB
                absorb(gc.accept(batch(partition, records: Int32(1 + random.next() % 5),
                                       byteCount: 50 + Int(random.next() % 200), token: token), now: now))
            case 6:
                absorb(gc.timerFired(now: now))
            default:
                guard let flush = inFlight else { continue }
                inFlight = nil
                if random.next() % 4 == 0 {
                    absorb(gc.flushFailed(flush.id))
                } else {
                    for batch in flush.batches { committed[batch.partition, default: []].append(batch) }
                    absorb(gc.flushSucceeded(flush.id, now: now))
                }
            }
            #expect(gc.invariantViolations() == [])
        }
        absorb(gc.drain())
        while let flush = inFlight {
            inFlight = nil
            for batch in flush.batches { committed[batch.partition, default: []].append(batch) }
            absorb(gc.flushSucceeded(flush.id, now: now))
        }
        #expect(answers.count == Int(token), "every batch answered")
        #expect(answers.values.allSatisfy { $0 == 1 }, "no batch answered twice")
        #expect(gc.heldBatchCount == 0 && gc.memoryBytes == 0)
        if memoryBytesMax < 1_000 { #expect(heldAtMost > 0, "the walk held batches") }
        for partition in [partitionA, partitionB] {
            var expected: Int64 = 0
            for batch in committed[partition] ?? [] {
                #expect(batch.baseOffset == expected)
                expected = batch.lastOffset + 1
            }
            #expect(gc.highWatermark(of: partition) == expected)
            #expect(expected > 0, "the walk committed something")
        }
    }

    // MARK: Backpressure

    @Test func fullMemoryPausesReadingAndResumesBelowTheLowWaterMark() throws {
        var gc = machine(flushBytesTarget: 10_000, memoryBytesMax: 1_000, memoryBytesPause: 700, memoryBytesResume: 300)
        _ = gc.accept(batch(byteCount: 400, token: 1), now: 0)
        let first = try onlyFlush(gc.timerFired(now: 5 * millisecond))
        #expect(gc.accept(batch(byteCount: 200, token: 2), now: 6 * millisecond).contains(.pauseReading) == false)
        #expect(gc.accept(batch(byteCount: 200, token: 3), now: 6 * millisecond).contains(.pauseReading))
        #expect(gc.isReadingPaused)

        // A batch read before the pause took effect, and that does not fit, is held: no answer, no offsets.
        #expect(gc.accept(batch(records: 2, byteCount: 300, token: 4), now: 6 * millisecond) == [])
        #expect(gc.heldBatchCount == 1 && gc.heldBytes == 300)
        #expect(gc.nextOffset(of: partitionA) == 3)

        // 400 bytes leave: the held batch fits and takes the next offsets; 700 remain, above the low-water mark.
        let afterFirst = gc.flushSucceeded(first.id, now: 7 * millisecond)
        #expect(afterFirst.contains(.ackDurable(RequestToken(1), baseOffset: 0)))
        #expect(!afterFirst.contains(.resumeReading))
        #expect(gc.heldBatchCount == 0 && gc.heldBytes == 0)
        #expect(gc.memoryBytes == 700)
        let second = try onlyFlush(gc.timerFired(now: 11 * millisecond))
        #expect(second.batches.map(\.token) == [RequestToken(2), RequestToken(3), RequestToken(4)])
        #expect(second.batches.map(\.baseOffset) == [1, 2, 3])
        let afterSecond = gc.flushSucceeded(second.id, now: 12 * millisecond)
        #expect(afterSecond.contains(.ackDurable(RequestToken(4), baseOffset: 3)))
        #expect(afterSecond.contains(.resumeReading))
        #expect(gc.memoryBytes == 0)
        #expect(!gc.isReadingPaused)
        #expect(gc.invariantViolations().isEmpty)
    }

    @Test func withoutLingerWhatArrivesDuringACommitIsTheNextFlush() throws {
        var gc = machine(flushBytesTarget: 10_000, lingerMilliseconds: 0)
        let first = try onlyFlush(gc.accept(batch(token: 1), now: 0))
        #expect(first.batches.map(\.token) == [RequestToken(1)], "nothing committing: flushed at once")
        // While it commits, batches gather with no timer.
        #expect(gc.accept(batch(token: 2), now: 1) == [])
        #expect(gc.accept(batch(partitionB, token: 3), now: 2) == [])
        let second = try onlyFlush(gc.flushSucceeded(first.id, now: 3))
        #expect(second.batches.map(\.token) == [RequestToken(2), RequestToken(3)])
        #expect(flushes(gc.flushSucceeded(second.id, now: 4)).isEmpty)
        #expect(gc.flushInFlight == nil)
    }

    @Test func heldBatchesStartAFlushAndAreTakenInArrivalOrder() throws {
        var gc = machine(flushBytesTarget: 10_000, lingerMilliseconds: 1_000, memoryBytesMax: 1_000)
        _ = gc.accept(batch(byteCount: 600, token: 1), now: 0)
        // Nothing in flight: holding a batch flushes the filling buffer at once instead of lingering.
        let hold = gc.accept(batch(partitionB, byteCount: 600, token: 2), now: 0)
        let first = try onlyFlush(hold)
        #expect(first.batches.map(\.token) == [RequestToken(1)])
        #expect(hold.contains(.pauseReading))
        // Behind a held batch, even one that would fit waits, so arrival order is kept.
        #expect(gc.accept(batch(byteCount: 100, token: 3), now: 0) == [])
        #expect(gc.heldBatchCount == 2)

        // Both fit once the flush commits: nothing is held any more, so they linger as usual.
        #expect(flushes(gc.flushSucceeded(first.id, now: 1 * millisecond)).isEmpty)
        #expect(gc.heldBatchCount == 0)
        let second = try onlyFlush(gc.timerFired(now: 1_001 * millisecond))
        #expect(second.batches.map(\.token) == [RequestToken(2), RequestToken(3)])
        #expect(second.batches.map(\.baseOffset) == [0, 1])
        #expect(gc.heldBatchCount == 0)
        #expect(gc.invariantViolations().isEmpty)
    }

    @Test func beyondTheHeldBoundABatchIsRefusedWithARetriableError() throws {
        var gc = GroupCommit(configuration: .init(flushBytesTarget: 10_000, memoryBytesMax: 1_000, heldBytesMax: 500))
        gc.startup(nextOffsets: [partitionA: 0])
        _ = gc.accept(batch(byteCount: 900, token: 1), now: 0)
        #expect(gc.accept(batch(byteCount: 400, token: 2), now: 0).contains(.fail(RequestToken(2), .backpressure)) == false)
        #expect(gc.accept(batch(byteCount: 200, token: 3), now: 0) == [.fail(RequestToken(3), .backpressure)])
        #expect(GroupCommit.Failure.backpressure.errorCode == .requestTimedOut)
        #expect(GroupCommit.Failure.backpressure.errorCode.isRetriable)
        #expect(gc.heldBytes == 400)
        #expect(gc.nextOffset(of: partitionA) == 1, "neither the held nor the refused batch took offsets")
    }

    @Test func pipelinedBatchesOfAnIdempotentProducerHeldForMemoryKeepTheirSequence() throws {
        // A producer's first batch held, its next one behind it: both stored, no sequence error.
        var gc = machine(flushBytesTarget: 10_000, memoryBytesMax: 1_000)
        _ = gc.accept(batch(partitionB, byteCount: 800, token: 1), now: 0)
        let first = try onlyFlush(gc.accept(batch(records: 5, byteCount: 500, token: 2,
                                                  producer: .init(producerID: 9, epoch: 0, baseSequence: 0)), now: 0))
        #expect(gc.accept(batch(records: 5, byteCount: 300, token: 3,
                                producer: .init(producerID: 9, epoch: 0, baseSequence: 5)), now: 0) == [])
        #expect(flushes(gc.flushSucceeded(first.id, now: millisecond)).isEmpty)
        let second = try onlyFlush(gc.timerFired(now: 6 * millisecond))
        #expect(second.batches.map(\.baseOffset) == [0, 5])
        let answers = gc.flushSucceeded(second.id, now: 2 * millisecond)
        #expect(answers.contains(.ackDurable(RequestToken(2), baseOffset: 0)))
        #expect(answers.contains(.ackDurable(RequestToken(3), baseOffset: 5)))
    }

    @Test func aFailedFlushFailsTheBatchesHeldBehindIt() throws {
        var gc = machine(flushBytesTarget: 10_000, memoryBytesMax: 1_000)
        _ = gc.accept(batch(byteCount: 800, token: 1), now: 0)
        let flush = try onlyFlush(gc.accept(batch(byteCount: 500, ack: .memory, token: 2), now: 0))
        _ = gc.accept(batch(byteCount: 100, ack: .none, token: 3), now: 0)
        let actions = gc.flushFailed(flush.id)
        #expect(actions.contains(.fail(RequestToken(1), .flushFailed)))
        #expect(actions.contains(.fail(RequestToken(2), .earlierFlushFailed)), "acks=memory held: never answered yet")
        #expect(!actions.contains { if case .fail(RequestToken(3), _) = $0 { true } else { false } })
        #expect(gc.heldBatchCount == 0 && gc.heldBytes == 0)
        #expect(actions.contains(.resumeReading))
        #expect(gc.nextOffset(of: partitionA) == 0)
    }

    @Test func drainWaitsForHeldBatches() throws {
        var gc = machine(flushBytesTarget: 10_000, memoryBytesMax: 1_000)
        _ = gc.accept(batch(byteCount: 800, token: 1), now: 0)
        let first = try onlyFlush(gc.accept(batch(byteCount: 500, token: 2), now: 0))
        #expect(gc.drain() == [])
        let afterFirst = gc.flushSucceeded(first.id, now: millisecond)
        #expect(!afterFirst.contains(.drained))
        let second = try onlyFlush(afterFirst)
        #expect(second.batches.map(\.token) == [RequestToken(2)])
        #expect(gc.flushSucceeded(second.id, now: 2 * millisecond).last == .drained)
    }

    @Test func failedFlushReleasesAllMemoryAndResumesReading() throws {
        var gc = machine(flushBytesTarget: 10_000, memoryBytesMax: 1_000, memoryBytesPause: 500, memoryBytesResume: 100)
        _ = gc.accept(batch(byteCount: 300, token: 1), now: 0)
        let flush = try onlyFlush(gc.timerFired(now: 5 * millisecond))
        #expect(gc.accept(batch(byteCount: 300, token: 2), now: 6 * millisecond).contains(.pauseReading))
        #expect(gc.flushFailed(flush.id).contains(.resumeReading))
        #expect(gc.memoryBytes == 0)
    }

    // MARK: Refusals

    @Test func batchesThatCannotBeTakenAreRefusedWithTheirKafkaError() {
        var gc = machine(memoryBytesMax: 1_000)
        let unknown = StreamPartition(streamID: streamID(0xC), partition: 0)
        #expect(gc.accept(batch(unknown, token: 1), now: 0) == [.fail(RequestToken(1), .unknownPartition)])
        #expect(gc.accept(batch(byteCount: 1_001, token: 2), now: 0) == [.fail(RequestToken(2), .batchTooLarge)])
        #expect(gc.accept(batch(records: 0, token: 3), now: 0) == [.fail(RequestToken(3), .invalidBatch)])
        #expect(gc.accept(batch(byteCount: 60, token: 4), now: 0) == [.fail(RequestToken(4), .invalidBatch)],
                "shorter than a RecordBatch header")
        #expect(gc.accept(batch(byteCount: 61, token: 5), now: 0) != [.fail(RequestToken(5), .invalidBatch)])
        #expect(GroupCommit.Failure.unknownPartition.errorCode == .unknownTopicOrPartition)
        #expect(GroupCommit.Failure.batchTooLarge.errorCode == .recordListTooLarge)
        #expect(gc.nextOffset(of: partitionA) == 1, "refused batches take no offsets")
    }

    @Test func batchesBeforeStartupAreRefused() {
        var gc = GroupCommit()
        #expect(gc.accept(batch(token: 1), now: 0) == [.fail(RequestToken(1), .notStarted)])
    }

    @Test func partitionsAddedWhileRunningStartAtTheirSeed() throws {
        var gc = machine(nextOffsets: [partitionA: 4])
        gc.addPartitions([partitionB: 0, partitionA: 0])
        _ = gc.accept(batch(partitionB, token: 1), now: 0)
        _ = gc.accept(batch(partitionA, token: 2), now: 0)
        #expect(try onlyFlush(gc.drain()).batches.map(\.baseOffset) == [0, 4], "an existing partition keeps its offsets")
    }

    // MARK: Shutdown

    @Test func drainFlushesWhatIsBufferedThenReportsDrained() throws {
        var gc = machine(lingerMilliseconds: 1_000)
        _ = gc.accept(batch(token: 1), now: 0)
        let flush = try onlyFlush(gc.drain())
        #expect(gc.accept(batch(token: 2), now: 0) == [.fail(RequestToken(2), .shuttingDown)])
        let actions = gc.flushSucceeded(flush.id, now: 0)
        #expect(actions.contains(.ackDurable(RequestToken(1), baseOffset: 0)))
        #expect(actions.last == .drained)
        #expect(gc.drain() == [])
    }

    @Test func drainWithAFlushInFlightFlushesTheRestAfterIt() throws {
        var gc = machine(lingerMilliseconds: 1_000)
        _ = gc.accept(batch(token: 1), now: 0)
        let first = try onlyFlush(gc.timerFired(now: 1_000 * millisecond))
        _ = gc.accept(batch(token: 2), now: 1_000 * millisecond)
        #expect(gc.drain() == [])

        let second = try onlyFlush(gc.flushSucceeded(first.id, now: 1_000 * millisecond))
        #expect(second.batches.map(\.token) == [RequestToken(2)], "flushed without waiting for the linger")
        #expect(gc.flushSucceeded(second.id, now: 1_000 * millisecond).last == .drained)
        #expect(gc.memoryBytes == 0)
    }

    @Test func drainWithNothingBufferedIsImmediate() {
        var gc = machine()
        #expect(gc.drain() == [.drained])
    }

    @Test func failedFlushDuringDrainStillDrains() throws {
        var gc = machine()
        _ = gc.accept(batch(token: 1), now: 0)
        let flush = try onlyFlush(gc.drain())
        #expect(gc.flushFailed(flush.id) == [.fail(RequestToken(1), .flushFailed), .drained])
    }

    // MARK: Idempotent producers

    @Test func retriedBatchIsAcknowledgedOnceAndStoredOnce() throws {
        var gc = machine()
        let producer = ProducerBatchInfo(producerID: 7, epoch: 0, baseSequence: 0)
        _ = gc.accept(batch(records: 2, token: 1, producer: producer), now: 0)
        // The retry arrives before the original committed: it waits for the same outcome.
        #expect(gc.accept(batch(records: 2, token: 2, producer: producer), now: millisecond) == [])
        let flush = try onlyFlush(gc.timerFired(now: 5 * millisecond))
        #expect(flush.batches.count == 1, "stored once")

        let actions = gc.flushSucceeded(flush.id, now: 5 * millisecond)
        #expect(actions == [
            .highWatermarksAdvanced([partitionA: 2]),
            .ackDurable(RequestToken(1), baseOffset: 0),
            .ackDurable(RequestToken(2), baseOffset: 0),
        ])

        // A retry after the commit is answered at once with the original offset.
        #expect(gc.accept(batch(records: 2, token: 3, producer: producer), now: 6 * millisecond)
            == [.ackDurable(RequestToken(3), baseOffset: 0)])
        #expect(gc.bufferedBatchCount == 0)
        #expect(gc.nextOffset(of: partitionA) == 2)
    }

    @Test func retryWaitingOnAFailedFlushGetsTheSameErrorAndMayThenBeStored() throws {
        var gc = machine()
        let producer = ProducerBatchInfo(producerID: 7, epoch: 0, baseSequence: 0)
        _ = gc.accept(batch(token: 1, producer: producer), now: 0)
        _ = gc.accept(batch(token: 2, producer: producer), now: 0)
        let flush = try onlyFlush(gc.timerFired(now: 5 * millisecond))
        #expect(gc.flushFailed(flush.id) == [.fail(RequestToken(1), .flushFailed), .fail(RequestToken(2), .flushFailed)])

        // Nothing was stored, so the next retry is a new batch at the same offset.
        _ = gc.accept(batch(token: 3, producer: producer), now: 6 * millisecond)
        let retry = try onlyFlush(gc.timerFired(now: 11 * millisecond))
        #expect(retry.batches.map(\.token) == [RequestToken(3)])
        #expect(retry.batches.map(\.baseOffset) == [0])
    }

    @Test func pipelinedBatchesOfOneProducerFailTogetherAndAreResentInOrder() throws {
        var gc = machine(flushBytesTarget: 10_000)
        _ = gc.accept(batch(records: 2, token: 1, producer: .init(producerID: 9, epoch: 1, baseSequence: 0)), now: 0)
        let flush = try onlyFlush(gc.timerFired(now: 5 * millisecond))
        _ = gc.accept(batch(records: 2, token: 2, producer: .init(producerID: 9, epoch: 1, baseSequence: 2)), now: 6 * millisecond)
        _ = gc.flushFailed(flush.id)

        // Sequence 2 cannot be stored before sequence 0 is.
        let early = gc.accept(batch(records: 2, token: 3, producer: .init(producerID: 9, epoch: 1, baseSequence: 2)), now: 7 * millisecond)
        #expect(early == [.fail(RequestToken(3), .sequence(.outOfOrder(expectedSequence: 0)))])
        #expect(GroupCommit.Failure.sequence(.outOfOrder(expectedSequence: 0)).errorCode.rawValue == 45)
        #expect(flushes(gc.accept(batch(records: 2, token: 4, producer: .init(producerID: 9, epoch: 1, baseSequence: 0)), now: 7 * millisecond)).isEmpty)
        #expect(!gc.accept(batch(records: 2, token: 5, producer: .init(producerID: 9, epoch: 1, baseSequence: 2)), now: 7 * millisecond)
            .contains { if case .fail = $0 { true } else { false } })
        #expect(gc.invariantViolations() == [])
    }

    @Test func sequenceGapAndStaleEpochAreRefused() {
        var gc = machine()
        _ = gc.accept(batch(token: 1, producer: .init(producerID: 3, epoch: 2, baseSequence: 0)), now: 0)
        #expect(gc.accept(batch(token: 2, producer: .init(producerID: 3, epoch: 2, baseSequence: 5)), now: 0)
            == [.fail(RequestToken(2), .sequence(.outOfOrder(expectedSequence: 1)))])
        let stale = GroupCommit.Failure.sequence(.staleEpoch(currentEpoch: 2))
        #expect(gc.accept(batch(token: 3, producer: .init(producerID: 3, epoch: 1, baseSequence: 1)), now: 0)
            == [.fail(RequestToken(3), stale)])
        #expect(stale.errorCode.rawValue == 47)
    }

    @Test func idempotenceStateIsRestoredAtStartup() {
        var gc = GroupCommit()
        gc.startup(nextOffsets: [partitionA: 12], producerState: [
            .init(producerID: 5, epoch: 0, partition: partitionA, baseSequence: 0, lastSequence: 9, baseOffset: 2),
        ])
        #expect(gc.accept(batch(records: 10, token: 1, producer: .init(producerID: 5, epoch: 0, baseSequence: 0)), now: 0)
            == [.ackDurable(RequestToken(1), baseOffset: 2)])
        #expect(gc.nextOffset(of: partitionA) == 12)
    }
}

/// A small deterministic generator so the walk above is the same on every run.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
