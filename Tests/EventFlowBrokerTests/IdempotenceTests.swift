import EventFlowBroker
import EventFlowProtocol
import Foundation
import Testing

private let partition = StreamPartition(streamID: UUID(uuid: (1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1)), partition: 0)
private let otherPartition = StreamPartition(streamID: partition.streamID, partition: 1)

extension ProducerIdempotence {
    /// Accepts and commits a batch, as the batcher does for a successful flush.
    fileprivate mutating func store(_ producerID: Int64, epoch: Int16 = 0, on partition: StreamPartition = partition,
                                    base: Int32, count: Int32, offset: Int64, token: UInt64 = 0) {
        #expect(check(producerID: producerID, epoch: epoch, partition: partition, baseSequence: base, recordCount: count) == .new)
        accepted(producerID: producerID, epoch: epoch, partition: partition, baseSequence: base, recordCount: count,
                 baseOffset: offset, token: RequestToken(token))
        committed(producerID: producerID, partition: partition, token: RequestToken(token))
    }

    fileprivate func check(_ producerID: Int64, epoch: Int16 = 0, on partition: StreamPartition = partition,
                           base: Int32, count: Int32) -> SequenceCheck {
        check(producerID: producerID, epoch: epoch, partition: partition, baseSequence: base, recordCount: count)
    }
}

@Suite struct IdempotenceTests {
    @Test func aNewProducerStartsAtSequenceZero() {
        let table = ProducerIdempotence()
        #expect(table.check(1, base: 0, count: 3) == .new)
        #expect(table.check(1, base: 4, count: 3) == .unknownProducer)
        #expect(ProducerIdempotence.SequenceCheck.unknownProducer.errorCode == .unknownProducerId)
    }

    @Test func theNextBatchMustStartRightAfterTheLastSequence() {
        var table = ProducerIdempotence()
        table.store(1, base: 0, count: 3, offset: 100)
        #expect(table.check(1, base: 3, count: 1) == .new)
        #expect(table.check(1, base: 4, count: 1) == .outOfOrder(expectedSequence: 3))
        #expect(table.check(1, base: 2, count: 2) == .outOfOrder(expectedSequence: 3), "overlapping, not a retry")
        #expect(ProducerIdempotence.SequenceCheck.outOfOrder(expectedSequence: 3).errorCode?.rawValue == 45)
    }

    @Test func sequencesAreTrackedPerPartition() {
        var table = ProducerIdempotence()
        table.store(1, base: 0, count: 3, offset: 0)
        #expect(table.check(1, on: otherPartition, base: 0, count: 1) == .new)
        #expect(table.check(1, on: otherPartition, base: 3, count: 1) == .unknownProducer)
    }

    @Test func aRetryOfACommittedBatchIsADuplicateWithItsOriginalOffset() {
        var table = ProducerIdempotence()
        table.store(1, base: 0, count: 3, offset: 100)
        table.store(1, base: 3, count: 2, offset: 250)
        #expect(table.check(1, base: 0, count: 3) == .duplicate(baseOffset: 100))
        #expect(table.check(1, base: 3, count: 2) == .duplicate(baseOffset: 250))
    }

    @Test func onlyTheLastFiveBatchesAreRememberedForRetries() {
        var table = ProducerIdempotence()
        for n in 0..<6 {
            table.store(1, base: Int32(n), count: 1, offset: Int64(10 * n))
        }
        #expect(table.check(1, base: 0, count: 1) == .outOfOrder(expectedSequence: 6), "the sixth-newest is forgotten")
        #expect(table.check(1, base: 1, count: 1) == .duplicate(baseOffset: 10))
        #expect(table.check(1, base: 5, count: 1) == .duplicate(baseOffset: 50))
    }

    @Test func aRetryOfAnUncommittedBatchWaitsForTheOriginal() {
        var table = ProducerIdempotence()
        table.accepted(producerID: 1, epoch: 0, partition: partition, baseSequence: 0, recordCount: 2,
                       baseOffset: 40, token: RequestToken(77))
        #expect(table.check(1, base: 0, count: 2) == .inFlight(original: RequestToken(77), baseOffset: 40))
        #expect(table.check(1, base: 2, count: 1) == .new, "pipelined batches follow pending ones")
        #expect(table.pendingBatchCount == 1)

        table.committed(producerID: 1, partition: partition, token: RequestToken(77))
        #expect(table.check(1, base: 0, count: 2) == .duplicate(baseOffset: 40))
        #expect(table.pendingBatchCount == 0)
    }

    @Test func abandonedBatchesMustBeResentFromTheLastCommittedSequence() {
        var table = ProducerIdempotence()
        table.store(1, base: 0, count: 2, offset: 0)
        table.accepted(producerID: 1, epoch: 0, partition: partition, baseSequence: 2, recordCount: 2,
                       baseOffset: 2, token: RequestToken(5))
        table.accepted(producerID: 1, epoch: 0, partition: partition, baseSequence: 4, recordCount: 2,
                       baseOffset: 4, token: RequestToken(6))
        table.abandonPending()

        #expect(table.pendingBatchCount == 0)
        #expect(table.check(1, base: 2, count: 2) == .new, "the failed batch is not a duplicate")
        #expect(table.check(1, base: 4, count: 2) == .outOfOrder(expectedSequence: 2))
    }

    @Test func aFreshProducerWhoseFirstBatchFailedStartsAgainAtZero() {
        var table = ProducerIdempotence()
        table.accepted(producerID: 1, epoch: 3, partition: partition, baseSequence: 0, recordCount: 2,
                       baseOffset: 0, token: RequestToken(1))
        table.abandonPending()
        #expect(table.check(1, epoch: 3, base: 0, count: 2) == .new)
        #expect(table.check(1, epoch: 3, base: 2, count: 2) == .outOfOrder(expectedSequence: 0))
        #expect(table.check(1, epoch: 2, base: 0, count: 2) == .staleEpoch(currentEpoch: 3))
    }

    @Test func anOlderEpochIsFenced() {
        var table = ProducerIdempotence()
        table.store(1, epoch: 4, base: 0, count: 1, offset: 0)
        #expect(table.check(1, epoch: 3, base: 1, count: 1) == .staleEpoch(currentEpoch: 4))
        #expect(ProducerIdempotence.SequenceCheck.staleEpoch(currentEpoch: 4).errorCode == .invalidProducerEpoch)
    }

    @Test func aNewEpochRestartsTheSequenceAtZero() {
        var table = ProducerIdempotence()
        table.store(1, epoch: 0, base: 0, count: 10, offset: 0)
        #expect(table.check(1, epoch: 1, base: 10, count: 1) == .outOfOrder(expectedSequence: 0))
        #expect(table.check(1, epoch: 1, base: 0, count: 1) == .new)
        table.store(1, epoch: 1, base: 0, count: 1, offset: 10)
        #expect(table.check(1, epoch: 1, base: 1, count: 1) == .new)
        #expect(table.check(1, epoch: 1, base: 0, count: 10) == .outOfOrder(expectedSequence: 1),
                "the old epoch's batches are no longer duplicates")
        #expect(table.check(1, epoch: 0, base: 10, count: 1) == .staleEpoch(currentEpoch: 1))
    }

    @Test func sequenceWrapsFromInt32MaxToZero() {
        #expect(ProducerIdempotence.lastSequence(baseSequence: Int32.max - 1, recordCount: 2) == Int32.max)
        #expect(ProducerIdempotence.lastSequence(baseSequence: Int32.max - 1, recordCount: 4) == 1)
        #expect(ProducerIdempotence.sequence(Int32.max, plus: 1) == 0)

        var table = ProducerIdempotence()
        table.restore(entries: [.init(producerID: 1, epoch: 0, partition: partition,
                                      baseSequence: Int32.max - 9, lastSequence: Int32.max - 2, baseOffset: 0)])
        table.store(1, base: Int32.max - 1, count: 4, offset: 8)
        #expect(table.check(1, base: 2, count: 1) == .new)
        #expect(table.check(1, base: Int32.max - 1, count: 4) == .duplicate(baseOffset: 8))
    }

    @Test func restoredStateRecognisesRetriesAfterARestart() {
        var table = ProducerIdempotence()
        // Rows as read from the log table, in any order.
        table.restore(entries: [
            .init(producerID: 1, epoch: 2, partition: partition, baseSequence: 5, lastSequence: 9, baseOffset: 105),
            .init(producerID: 1, epoch: 1, partition: partition, baseSequence: 40, lastSequence: 49, baseOffset: 50),
            .init(producerID: 1, epoch: 2, partition: partition, baseSequence: 0, lastSequence: 4, baseOffset: 100),
            .init(producerID: 2, epoch: 0, partition: otherPartition, baseSequence: 0, lastSequence: 0, baseOffset: 7),
        ])
        #expect(table.check(1, epoch: 2, base: 5, count: 5) == .duplicate(baseOffset: 105))
        #expect(table.check(1, epoch: 2, base: 0, count: 5) == .duplicate(baseOffset: 100))
        #expect(table.check(1, epoch: 2, base: 10, count: 1) == .new)
        #expect(table.check(1, epoch: 1, base: 50, count: 1) == .staleEpoch(currentEpoch: 2))
        #expect(table.check(2, on: otherPartition, base: 0, count: 1) == .duplicate(baseOffset: 7))
        #expect(table.trackedCount == 2)
    }

    @Test func theLeastRecentlyUsedProducerIsEvictedAtTheBound() {
        var table = ProducerIdempotence(producerPartitionsMax: 2)
        table.store(1, base: 0, count: 1, offset: 0)
        table.store(2, base: 0, count: 1, offset: 1)
        table.store(1, base: 1, count: 1, offset: 2)   // producer 1 used again: 2 is now the oldest
        table.store(3, base: 0, count: 1, offset: 3)

        #expect(table.trackedCount == 2)
        #expect(!table.isTracked(producerID: 2, partition: partition))
        #expect(table.isTracked(producerID: 1, partition: partition))
        #expect(table.check(2, base: 1, count: 1) == .unknownProducer)
    }

    @Test func aProducerWithUncommittedBatchesIsNotEvicted() {
        var table = ProducerIdempotence(producerPartitionsMax: 1)
        table.accepted(producerID: 1, epoch: 0, partition: partition, baseSequence: 0, recordCount: 1,
                       baseOffset: 0, token: RequestToken(1))
        table.store(2, base: 0, count: 1, offset: 1, token: 2)
        #expect(table.isTracked(producerID: 1, partition: partition))
        table.committed(producerID: 1, partition: partition, token: RequestToken(1))
        #expect(table.check(1, base: 0, count: 1) == .duplicate(baseOffset: 0))

        table.store(3, base: 0, count: 1, offset: 2, token: 3)
        #expect(table.trackedCount == 1, "back within the bound once nothing is pending")
    }

    @Test func negativeSequencesAreOutOfOrder() {
        let table = ProducerIdempotence()
        #expect(table.check(1, base: -1, count: 1) == .outOfOrder(expectedSequence: 0))
    }
}
