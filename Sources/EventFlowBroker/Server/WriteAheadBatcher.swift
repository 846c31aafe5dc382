import EventFlowProtocol
import EventFlowStorage
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// How a produced batch ended, as the connection answers it.
public enum BatchOutcome: Hashable, Sendable {
    case stored(baseOffset: Int64)
    case failed(ErrorCode)
}

/// Runs the `GroupCommit` machine for the whole broker: connections hand it validated batches
/// from any event loop, it performs the machine's actions (flushes on the log writer thread,
/// linger timers, answers, backpressure).
///
/// The machine sits behind a lock: `accept` is short and allocation-free apart from the buffer
/// append, so contention stays small, and no event-loop hop is needed per batch.
public final class WriteAheadBatcher: Sendable {
    public typealias Completion = @Sendable (BatchOutcome) -> Void

    private struct Waiter {
        var completion: Completion
        /// When the batch was accepted (monotonic ns): the start of its batcher stages.
        var acceptedAt: UInt64
    }

    private struct State {
        var machine: GroupCommit
        var waiters: [RequestToken: Waiter] = [:]
        var drainPromises: [EventLoopPromise<Void>] = []
        var isDrained = false
        /// The last flush failed for lack of a database connection (answered NOT_ENOUGH_REPLICAS).
        var lastFailureWasConnectivity = false
        var highWatermarks: [StreamPartition: Int64] = [:]
    }

    private let state: NIOLockedValueBox<State>
    private let nextToken = NIOLockedValueBox<UInt64>(1)
    private let timerLoop: any EventLoop
    private let writer: LogWriterThread
    private let logger: Logger
    private let metrics: BrokerMetrics?
    private let readingPaused = NIOLockedValueBox(false)
    private let pauseObserver = CallbackSlot<Bool>()
    private let commitObserver = CallbackSlot<GroupCommit.Flush>()
    /// The COPY data's memory, handed from one flush to the next (flushes run one at a time on the
    /// writer thread). A fresh megabyte per flush cost a page fault per 4 KiB written: the broker's
    /// largest source of page faults at max rate. Kept only up to `copyStorageRetainedBytesMax`.
    private let copyStorage = NIOLockedValueBox<[UInt8]>([])
    static let copyStorageRetainedBytesMax = 8 * 1024 * 1024

    /// Bound on a dead-letter batch's decompressed records when the flush reads them (produce
    /// validated each batch against the same bound).
    private let deadLetterDecompressedBytesMax: Int

    public init(configuration: GroupCommit.Configuration, writer: LogWriterThread, timerLoop: any EventLoop, logger: Logger,
                metrics: BrokerMetrics? = nil, deadLetterDecompressedBytesMax: Int = 64 << 20) {
        self.deadLetterDecompressedBytesMax = deadLetterDecompressedBytesMax
        self.state = NIOLockedValueBox(State(machine: GroupCommit(configuration: configuration)))
        self.writer = writer
        self.timerLoop = timerLoop
        self.logger = logger
        self.metrics = metrics
    }

    /// Bytes buffered (filling and in flight) and bytes held beyond the memory bound.
    var memory: (bufferedBytes: Int, heldBytes: Int) {
        state.withLockedValue { ($0.machine.memoryBytes, $0.machine.heldBytes) }
    }

    /// Seeds offsets and idempotence state read back from the log (see `EventBatchLog`).
    public func startup(nextOffsets: [StreamPartition: Int64], producerBatches: [StoredProducerBatch]) {
        let restored = producerBatches.map { stored in
            ProducerIdempotence.RestoredBatch(
                producerID: stored.producerID, epoch: stored.producerEpoch,
                partition: StreamPartition(streamID: stored.streamID, partition: stored.partition),
                baseSequence: stored.baseSequence,
                lastSequence: ProducerIdempotence.lastSequence(baseSequence: stored.baseSequence, recordCount: stored.recordCount),
                baseOffset: stored.baseOffset)
        }
        state.withLockedValue { $0.machine.startup(nextOffsets: nextOffsets, producerState: restored) }
    }

    public func isRegistered(_ partition: StreamPartition) -> Bool {
        state.withLockedValue { $0.machine.nextOffset(of: partition) != nil }
    }

    public func addPartitions(_ nextOffsets: [StreamPartition: Int64]) {
        state.withLockedValue { $0.machine.addPartitions(nextOffsets) }
    }

    public func highWatermark(of partition: StreamPartition) -> Int64? {
        state.withLockedValue { $0.machine.highWatermark(of: partition) }
    }

    public var isReadingPaused: Bool { readingPaused.withLockedValue { $0 } }

    /// Called (from any thread) whenever reading should pause (true) or resume (false).
    public func onReadingPausedChanged(_ observer: @escaping @Sendable (Bool) -> Void) {
        pauseObserver.set(observer)
    }

    /// Called on the writer thread with each flush once it committed, before its produces are
    /// answered (the fetch service's tail cache).
    public func onFlushCommitted(_ observer: @escaping @Sendable (GroupCommit.Flush) -> Void) {
        commitObserver.set(observer)
    }

    public func makeToken() -> RequestToken {
        RequestToken(nextToken.withLockedValue { value in
            defer { value += 1 }
            return value
        })
    }

    /// Hands a validated batch to the machine; `completion` runs once (from any thread) unless
    /// the batch's ack mode is `.none`.
    public func accept(_ batch: ValidatedBatch, completion: @escaping Completion) {
        let now = NIODeadline.now().uptimeNanoseconds
        let actions = state.withLockedValue { state -> [GroupCommit.Action] in
            if batch.ackMode != .none { state.waiters[batch.token] = Waiter(completion: completion, acceptedAt: now) }
            return state.machine.accept(batch, now: now)
        }
        perform(actions)
    }

    /// Stops accepting, flushes what is buffered; the future completes once nothing is buffered.
    public func drain() -> EventLoopFuture<Void> {
        let promise = timerLoop.makePromise(of: Void.self)
        let actions = state.withLockedValue { state -> [GroupCommit.Action] in
            if state.isDrained {
                promise.succeed(())
                return []
            }
            state.drainPromises.append(promise)
            return state.machine.drain()
        }
        perform(actions)
        return promise.futureResult
    }

    // MARK: Actions

    private func perform(_ actions: [GroupCommit.Action]) {
        for action in actions {
            switch action {
            case .ackNow(let token, let baseOffset), .ackDurable(let token, let baseOffset):
                answer(token, .stored(baseOffset: baseOffset))
            case .fail(let token, let failure):
                let code: ErrorCode
                switch failure {
                case .flushFailed, .earlierFlushFailed:
                    code = state.withLockedValue { $0.lastFailureWasConnectivity } ? .notEnoughReplicas : failure.errorCode
                default:
                    code = failure.errorCode
                }
                answer(token, .failed(code))
            case .flushNow(let flush):
                write(flush)
            case .scheduleLinger(let deadline):
                timerLoop.scheduleTask(deadline: .uptimeNanoseconds(deadline)) { [self] in
                    let now = NIODeadline.now().uptimeNanoseconds
                    perform(state.withLockedValue { $0.machine.timerFired(now: now) })
                }
            case .highWatermarksAdvanced(let advanced):
                state.withLockedValue { $0.highWatermarks.merge(advanced) { _, new in new } }
            case .pauseReading:
                setReadingPaused(true)
            case .resumeReading:
                setReadingPaused(false)
            case .drained:
                let promises = state.withLockedValue { state -> [EventLoopPromise<Void>] in
                    state.isDrained = true
                    defer { state.drainPromises.removeAll() }
                    return state.drainPromises
                }
                for promise in promises { promise.succeed(()) }
            }
        }
    }

    private func answer(_ token: RequestToken, _ outcome: BatchOutcome) {
        let waiter = state.withLockedValue { $0.waiters.removeValue(forKey: token) }
        waiter?.completion(outcome)
    }

    private func setReadingPaused(_ paused: Bool) {
        readingPaused.withLockedValue { $0 = paused }
        logger.debug(paused ? "batcher full: pausing socket reads" : "batcher drained: resuming socket reads")
        pauseObserver(paused)
    }

    private func write(_ flush: GroupCommit.Flush) {
        let logger = logger
        let url = writer.url
        let copyStorage = copyStorage
        let submitted = BrokerMetrics.now()
        let deadLetterDecompressedBytesMax = deadLetterDecompressedBytesMax
        // Durable batches (the ones answered after COMMIT): how long each waited for this flush.
        if let metrics {
            let acceptedTimes = state.withLockedValue { state in
                flush.batches.compactMap { $0.ackMode == .durable ? state.waiters[$0.token]?.acceptedAt : nil }
            }
            for acceptedAt in acceptedTimes {
                metrics.ingestStage(.acceptedToFlushStarted, nanoseconds: submitted &- min(acceptedAt, submitted))
            }
        }
        let writeTimes = NIOLockedValueBox<EventBatchWriteTimes?>(nil)
        writer.submit({ db in
            // The storage is handed over as its only reference, so the encoder reuses it in place.
            let copy = Self.copy(of: flush, reusing: copyStorage.withLockedValue { storage in
                defer { storage = [] }
                return storage
            })
            // Only batches of dead-letter streams are decoded; any other flush writes as before.
            let deadLetters = Self.deadLetterRecords(of: flush, decompressedBytesMax: deadLetterDecompressedBytesMax)
            let outcome = Result { try EventBatchLog.write(db, copy, deadLetters: deadLetters) }
            if case .success(let times) = outcome { writeTimes.withLockedValue { $0 = times } }
            let storage = (consume copy).takeStorage()
            if storage.capacity <= Self.copyStorageRetainedBytesMax {
                copyStorage.withLockedValue { $0 = storage }
            }
            switch outcome {
            case .success:
                return
            case .failure(let unknown as CommitOutcomeUnknown):
                try Self.resolve(unknown, of: flush, url: url, logger: logger)
            case .failure(let error):
                throw error
            }
        }, completion: { [self] result in
            switch result {
            case .success:
                commitObserver(flush)
                metrics?.flushCommitted(flush, since: submitted)
            case .failure:
                metrics?.flushFailures.increment()
            }
            let now = NIODeadline.now().uptimeNanoseconds
            let actions = state.withLockedValue { state -> [GroupCommit.Action] in
                switch result {
                case .success:
                    state.lastFailureWasConnectivity = false
                    return state.machine.flushSucceeded(flush.id, now: now)
                case .failure(let error):
                    state.lastFailureWasConnectivity = (error as? DatabaseError)?.isConnectionFailure ?? false
                    return state.machine.flushFailed(flush.id)
                }
            }
            if case .failure(let error) = result {
                logger.error("flush failed; its produces get a retriable error", metadata: [
                    "flush": "\(flush.id)", "batches": "\(flush.batches.count)", "error": "\(error)",
                ])
            }
            perform(actions)
            if case .success = result, let metrics, let times = writeTimes.withLockedValue({ $0 }) {
                let durable = flush.batches.reduce(0) { $0 + ($1.ackMode == .durable ? 1 : 0) }
                if durable > 0 {
                    let answered = BrokerMetrics.now()
                    metrics.ingestStage(.flushStartedToCopySent, nanoseconds: times.copySent &- min(submitted, times.copySent), count: durable)
                    metrics.ingestStage(.copySentToCommitted, nanoseconds: times.committed &- times.copySent, count: durable)
                    metrics.ingestStage(.committedToAnswered, nanoseconds: answered &- min(times.committed, answered), count: durable)
                }
            }
        })
    }

    /// Bound on how long the writer waits for the database to learn an unknown COMMIT outcome.
    static let commitResolutionMilliseconds = 60_000

    /// After the connection broke during COMMIT, waits for the database and looks whether the
    /// flush's first batch is stored: returns if it committed, throws if it did not. Failing it
    /// back without knowing could store its offsets twice (the retry would reuse them).
    static func resolve(_ unknown: CommitOutcomeUnknown, of flush: GroupCommit.Flush, url: String, logger: Logger) throws {
        guard let first = flush.batches.first else { return }
        logger.warning("connection lost during COMMIT; checking whether the flush is stored", metadata: ["flush": "\(flush.id)"])
        var waitedMilliseconds = 0
        var delayMilliseconds = 50
        while waitedMilliseconds < commitResolutionMilliseconds {
            Thread.sleep(forTimeInterval: Double(delayMilliseconds) / 1000)
            waitedMilliseconds += delayMilliseconds
            delayMilliseconds = min(delayMilliseconds * 2, 1000)
            guard let db = try? PostgresConnection(url: url) else { continue }
            defer { db.close() }
            guard let stored = try? EventBatchLog.containsBatch(db, streamID: first.partition.streamID,
                                                                partition: first.partition.partition,
                                                                baseOffset: first.baseOffset) else { continue }
            logger.notice("COMMIT outcome resolved", metadata: ["flush": "\(flush.id)", "stored": "\(stored)"])
            if stored { return }
            throw unknown.underlying
        }
        logger.error("COMMIT outcome still unknown; failing the flush back", metadata: ["flush": "\(flush.id)"])
        throw unknown.underlying
    }

    /// The records of the flush's dead-letter-stream batches, for their `dead_letter_events` rows;
    /// empty (nothing decoded, nothing allocated) when the flush holds none.
    static func deadLetterRecords(of flush: GroupCommit.Flush, decompressedBytesMax: Int) -> [DeadLetterRecord] {
        var records: [DeadLetterRecord] = []
        for batch in flush.batches {
            guard let organizationID = batch.deadLetterOrganizationID else { continue }
            records += DeadLetterHeaders.records(of: batch, organizationID: organizationID, decompressedBytesMax: decompressedBytesMax)
        }
        return records
    }

    /// The flush as binary COPY rows: header columns read from each batch, the batch bytes
    /// copied once with the assigned base offset.
    static func copy(of flush: GroupCommit.Flush, reusing storage: consuming [UInt8] = []) -> EventBatchCopy {
        var copy = EventBatchCopy(createdAt: Date(), reusing: consume storage,
                                  capacity: flush.byteCount + flush.batches.count * 128 + 64)
        for batch in flush.batches {
            let received = batch.receivedBytes
            let header = try? RecordBatchHeader(parsing: received, at: received.readerIndex)
            let row = EventBatchRow(
                streamID: batch.partition.streamID, partition: batch.partition.partition,
                baseOffset: batch.baseOffset, lastOffset: batch.lastOffset, recordCount: batch.recordCount,
                firstTimestampMilliseconds: header?.baseTimestamp ?? 0, maxTimestampMilliseconds: header?.maxTimestamp ?? 0,
                codec: header?.attributes.compressionBits ?? 0,
                producerID: batch.producer?.producerID ?? -1, producerEpoch: batch.producer?.epoch ?? -1,
                baseSequence: batch.producer?.baseSequence ?? -1)
            copy.append(row, batchByteCount: batch.byteCount) { destination in
                // The stored batch is the received one with the assigned base offset (not covered by the CRC).
                let offsetBytes = MemoryLayout<Int64>.size
                destination.storeBytes(of: batch.baseOffset.bigEndian, toByteOffset: 0, as: Int64.self)
                received.withUnsafeReadableBytes { source in
                    UnsafeMutableRawBufferPointer(rebasing: destination[offsetBytes...])
                        .copyMemory(from: UnsafeRawBufferPointer(rebasing: source[offsetBytes...]))
                }
            }
        }
        return copy
    }
}

extension WriteAheadBatcher {
    /// The offset the next accepted batch of `partition` gets.
    public func nextOffset(of partition: StreamPartition) -> Int64? {
        state.withLockedValue { $0.machine.nextOffset(of: partition) }
    }
}
