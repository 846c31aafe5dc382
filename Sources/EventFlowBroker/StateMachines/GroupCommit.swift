import EventFlowProtocol
import struct Foundation.UUID
import NIOCore

/// The write-ahead batcher: one per broker, the single owner of every partition's next offset.
///
/// It accepts validated batches, assigns dense offsets (the writer stores each batch with its
/// assigned base offset, see `Batch.writeStoredBytes`), collects batches of many producers and
/// partitions into a *flush* (one transaction), and decides when to flush: when
/// `flushBytesTarget` is reached or `lingerMilliseconds` after the first batch arrived,
/// whichever comes first. At most one flush is in flight; while it commits, the next one fills
/// (double buffering). With a linger of 0 (the default) a batch arriving while nothing commits is
/// flushed at once, and the flush size adapts to the load: whatever arrived during one commit is
/// the next.
///
/// Memory rule: buffered bytes (filling + in flight) never exceed `memoryBytesMax`. A batch that
/// does not fit is *held*, unanswered and without offsets, in arrival order, and taken (sequence
/// check, offsets) as flushes commit and free memory; reads pause at `memoryBytesPause` of
/// buffered + held bytes, so only batches already read when the pause took effect are held.
/// Held bytes have their own bound, `heldBytesMax`; only beyond it is a batch refused
/// (retriable `REQUEST_TIMED_OUT`).
///
/// Failure rule: when a flush fails, that flush's batches *and every batch filled or held after
/// it* are failed back (retriable error), and each partition's next offset is reset to its high
/// watermark. Later batches hold offsets after the failed ones, so committing them would leave
/// a gap; failing them too keeps committed order equal to offset order, readers never see a
/// gap, and the retries get dense offsets again.
///
/// Pure state machine: no I/O, no clock. Time is passed in as monotonic nanoseconds. Every
/// event returns the actions the I/O layer must perform, in order.
public struct GroupCommit: Sendable {
    public struct Configuration: Hashable, Sendable {
        /// A flush starts as soon as this many bytes are buffered.
        public var flushBytesTarget: Int
        /// A flush starts at the latest this long after the first batch entered an empty buffer.
        public var lingerMilliseconds: Int
        /// Hard bound on buffered batch bytes (filling + in flight); a batch beyond it is held.
        public var memoryBytesMax: Int
        /// Hard bound on held batch bytes (read, waiting for memory); a batch beyond it is refused.
        public var heldBytesMax: Int
        /// Reading from sockets pauses once buffered + held bytes reach this (high-water mark)...
        public var memoryBytesPause: Int
        /// ...and resumes once they drain to this (low-water mark).
        public var memoryBytesResume: Int
        /// Bound on (producer, partition) pairs in the idempotence table.
        public var producerPartitionsMax: Int

        public init(
            flushBytesTarget: Int = 1 << 20,
            lingerMilliseconds: Int = 0,
            memoryBytesMax: Int = 64 << 20,
            memoryBytesPause: Int? = nil,
            memoryBytesResume: Int? = nil,
            heldBytesMax: Int? = nil,
            producerPartitionsMax: Int = 100_000
        ) {
            self.flushBytesTarget = flushBytesTarget
            self.lingerMilliseconds = lingerMilliseconds
            self.memoryBytesMax = memoryBytesMax
            self.heldBytesMax = heldBytesMax ?? memoryBytesMax
            self.memoryBytesPause = memoryBytesPause ?? memoryBytesMax / 4 * 3
            self.memoryBytesResume = memoryBytesResume ?? memoryBytesMax / 2
            self.producerPartitionsMax = producerPartitionsMax
        }

        var lingerNanoseconds: UInt64 { UInt64(max(lingerMilliseconds, 0)) * 1_000_000 }
    }

    /// Identifies one flush (one transaction) so its outcome can be reported back.
    public struct FlushID: Hashable, Comparable, Sendable, CustomStringConvertible {
        public var rawValue: UInt64
        public init(_ rawValue: UInt64) { self.rawValue = rawValue }
        public static func < (lhs: FlushID, rhs: FlushID) -> Bool { lhs.rawValue < rhs.rawValue }
        public var description: String { "flush#\(rawValue)" }
    }

    /// One batch with its assigned offsets, as buffered and as written.
    public struct Batch: Hashable, Sendable {
        public var partition: StreamPartition
        public var baseOffset: Int64
        public var lastOffset: Int64
        public var recordCount: Int32
        /// The bytes exactly as received (base offset still as the producer sent it). They are
        /// not rewritten here: a rewrite of a shared buffer would copy it, while the writer
        /// copies the bytes into its COPY buffer anyway and can patch the offset on the way.
        public var receivedBytes: ByteBuffer
        public var producer: ProducerBatchInfo?
        public var ackMode: AckMode
        public var token: RequestToken
        /// Set for a batch of a dead-letter stream (see `ValidatedBatch.deadLetterOrganizationID`).
        public var deadLetterOrganizationID: UUID? = nil

        public var byteCount: Int { receivedBytes.readableBytes }

        /// Appends the bytes to store: the received batch with its base offset replaced by the
        /// assigned one (the CRC does not cover it). One copy, straight into `buffer`.
        public func writeStoredBytes(into buffer: inout ByteBuffer) {
            let offsetBytes = RecordBatchHeader.baseOffsetIndex + MemoryLayout<Int64>.size
            buffer.writeInteger(baseOffset)
            buffer.writeImmutableBuffer(receivedBytes.getSlice(at: receivedBytes.readerIndex + offsetBytes,
                                                               length: byteCount - offsetBytes) ?? ByteBuffer())
        }

        /// The bytes to store, as a new buffer (see `writeStoredBytes` for the copy-once path).
        public var storedBytes: ByteBuffer {
            var buffer = ByteBuffer()
            buffer.reserveCapacity(byteCount)
            writeStoredBytes(into: &buffer)
            return buffer
        }
    }

    /// The batches to write in one transaction, in offset order within each partition.
    public struct Flush: Hashable, Sendable {
        public var id: FlushID
        public var batches: [Batch]
        public var byteCount: Int
    }

    /// Why a batch was not accepted, or not committed.
    public enum Failure: Hashable, Sendable {
        /// The batcher's memory and its held bytes are full; retry later.
        case backpressure
        /// The batch alone is larger than `memoryBytesMax`.
        case batchTooLarge
        /// The partition is not registered (unknown stream or partition).
        case unknownPartition
        /// The batch is shorter than a RecordBatch header, or has no records.
        case invalidBatch
        /// `startup` has not run yet.
        case notStarted
        /// The broker is draining for shutdown.
        case shuttingDown
        /// The flush holding the batch failed to commit.
        case flushFailed
        /// An earlier flush failed; the batch was buffered or held behind it and was failed with it.
        case earlierFlushFailed
        /// The idempotence table refused the batch.
        case sequence(ProducerIdempotence.SequenceCheck)

        /// The Kafka error code to answer the produce with.
        public var errorCode: ErrorCode {
            switch self {
            case .backpressure: .requestTimedOut
            case .batchTooLarge: .recordListTooLarge
            case .unknownPartition: .unknownTopicOrPartition
            case .invalidBatch: .corruptMessage
            case .notStarted: .leaderNotAvailable
            case .shuttingDown: .notLeaderOrFollower
            case .flushFailed, .earlierFlushFailed: .kafkaStorageError
            case .sequence(let check): check.errorCode ?? .unknownServerError
            }
        }
    }

    public enum Action: Hashable, Sendable {
        /// Answer the produce now with this base offset (acks=memory, or a retry of a
        /// committed batch).
        case ackNow(RequestToken, baseOffset: Int64)
        /// Answer the produce: its batch is committed at this base offset (acks=durable).
        case ackDurable(RequestToken, baseOffset: Int64)
        /// Answer the produce with this error.
        case fail(RequestToken, Failure)
        /// Write this flush in one transaction, then report `flushSucceeded` / `flushFailed`.
        case flushNow(Flush)
        /// Call `timerFired` at (or after) this monotonic time.
        case scheduleLinger(deadline: UInt64)
        /// Committed data is visible up to these high watermarks (next offset to commit).
        case highWatermarksAdvanced([StreamPartition: Int64])
        /// Stop reading from sockets (memory high-water mark reached).
        case pauseReading
        /// Reading may resume (memory drained to the low-water mark).
        case resumeReading
        /// `drain` finished: nothing is buffered or in flight.
        case drained
    }

    private enum Lifecycle: Hashable, Sendable {
        case notStarted
        case running
        case draining
        case drained
    }

    private struct PartitionOffsets: Hashable, Sendable {
        /// The offset the next accepted batch gets.
        var next: Int64
        /// One past the last committed offset: readers may see offsets below it.
        var highWatermark: Int64
    }

    private struct FillingBuffer: Sendable {
        var batches: [Batch] = []
        var byteCount = 0
        var lingerDeadline: UInt64?
    }

    public let configuration: Configuration
    private var lifecycle = Lifecycle.notStarted
    private var partitions: [StreamPartition: PartitionOffsets] = [:]
    private var filling = FillingBuffer()
    private var inFlight: Flush?
    private var nextFlushID: UInt64 = 1
    /// Bytes of batches buffered (filling + in flight).
    public private(set) var memoryBytes = 0
    /// Batches that did not fit in memory, in arrival order (see the memory rule).
    private var held = CircularBuffer<ValidatedBatch>()
    /// Bytes of `held`.
    public private(set) var heldBytes = 0
    public private(set) var isReadingPaused = false
    /// Durable retries of uncommitted batches, answered with their original's outcome.
    private var retriesWaiting: [RequestToken: [RequestToken]] = [:]
    public private(set) var producers: ProducerIdempotence

    public init(configuration: Configuration = Configuration()) {
        precondition(configuration.flushBytesTarget > 0, "flushBytesTarget must be positive")
        precondition(configuration.memoryBytesResume <= configuration.memoryBytesPause
                     && configuration.memoryBytesPause <= configuration.memoryBytesMax,
                     "memory marks must satisfy resume <= pause <= max")
        self.configuration = configuration
        self.producers = ProducerIdempotence(producerPartitionsMax: configuration.producerPartitionsMax)
    }

    // MARK: Queries

    public func highWatermark(of partition: StreamPartition) -> Int64? { partitions[partition]?.highWatermark }
    public func nextOffset(of partition: StreamPartition) -> Int64? { partitions[partition]?.next }
    public var flushInFlight: FlushID? { inFlight?.id }
    public var bufferedBatchCount: Int { filling.batches.count }
    public var heldBatchCount: Int { held.count }

    // MARK: Events

    /// Seeds each partition's next offset (read back from the log table: max(last offset) + 1,
    /// 0 for an empty partition) and the idempotence table, then starts accepting.
    public mutating func startup(nextOffsets: [StreamPartition: Int64],
                                 producerState: [ProducerIdempotence.RestoredBatch] = []) {
        precondition(lifecycle == .notStarted, "startup runs once")
        for (partition, next) in nextOffsets {
            precondition(next >= 0, "offsets are non-negative")
            partitions[partition] = PartitionOffsets(next: next, highWatermark: next)
        }
        producers.restore(entries: producerState)
        lifecycle = .running
    }

    /// Registers partitions created while running (a new stream or more partitions);
    /// existing partitions keep their offsets.
    public mutating func addPartitions(_ nextOffsets: [StreamPartition: Int64]) {
        for (partition, next) in nextOffsets where partitions[partition] == nil {
            precondition(next >= 0, "offsets are non-negative")
            partitions[partition] = PartitionOffsets(next: next, highWatermark: next)
        }
    }

    /// Takes a validated batch: assigns its offsets and buffers it, holds it until memory frees,
    /// or answers it at once (refused, or a retry of a known batch).
    public mutating func accept(_ batch: ValidatedBatch, now: UInt64) -> [Action] {
        switch lifecycle {
        case .notStarted: return [.fail(batch.token, .notStarted)]
        case .draining, .drained: return [.fail(batch.token, .shuttingDown)]
        case .running: break
        }
        guard partitions[batch.partition] != nil else {
            return [.fail(batch.token, .unknownPartition)]
        }
        guard batch.recordCount > 0, batch.byteCount >= RecordBatchHeader.byteCount else {
            return [.fail(batch.token, .invalidBatch)]
        }
        guard batch.byteCount <= configuration.memoryBytesMax else {
            return [.fail(batch.token, .batchTooLarge)]
        }
        if held.isEmpty, memoryBytes + batch.byteCount <= configuration.memoryBytesMax {
            return admit(batch, now: now)
        }
        return hold(batch, now: now)
    }

    /// A batch that does not fit (or arrives behind held ones) waits its turn; beyond
    /// `heldBytesMax` it is refused. Reading should already be paused: held batches were read
    /// before the pause took effect.
    private mutating func hold(_ batch: ValidatedBatch, now: UInt64) -> [Action] {
        var actions: [Action] = []
        if heldBytes + batch.byteCount <= configuration.heldBytesMax {
            held.append(batch)
            heldBytes += batch.byteCount
        } else {
            actions.append(.fail(batch.token, .backpressure))
        }
        if !isReadingPaused {
            isReadingPaused = true
            actions.append(.pauseReading)
        }
        if inFlight == nil, isFillingDue(now: now) {
            actions.append(.flushNow(startFlush()))
        }
        return actions
    }

    /// Takes held batches, oldest first, while they fit in memory.
    private mutating func admitHeld(now: UInt64) -> [Action] {
        // Take out all that fit first: a flush starts early only for batches still held after them.
        var fitting: [ValidatedBatch] = []
        var bytes = memoryBytes
        while let next = held.first, bytes + next.byteCount <= configuration.memoryBytesMax {
            fitting.append(held.removeFirst())
            heldBytes -= next.byteCount
            bytes += next.byteCount
        }
        return fitting.flatMap { admit($0, now: now) }
    }

    /// Sequence check, offsets, buffer: the batch fits in memory and nothing is held before it.
    private mutating func admit(_ batch: ValidatedBatch, now: UInt64) -> [Action] {
        guard let offsets = partitions[batch.partition] else {
            return [.fail(batch.token, .unknownPartition)]
        }
        if let producer = batch.producer {
            let check = producers.check(producerID: producer.producerID, epoch: producer.epoch,
                                        partition: batch.partition, baseSequence: producer.baseSequence,
                                        recordCount: batch.recordCount)
            switch check {
            case .new:
                break
            case .duplicate(let baseOffset):
                return Self.answerRetry(batch, baseOffset: baseOffset, durable: true)
            case .inFlight(let original, let baseOffset):
                if batch.ackMode == .durable {
                    retriesWaiting[original, default: []].append(batch.token)
                    return []
                }
                return Self.answerRetry(batch, baseOffset: baseOffset, durable: false)
            case .outOfOrder, .staleEpoch, .unknownProducer:
                return [.fail(batch.token, .sequence(check))]
            }
        }

        let baseOffset = offsets.next
        let lastOffset = baseOffset + Int64(batch.recordCount) - 1
        partitions[batch.partition]?.next = lastOffset + 1
        if let producer = batch.producer {
            producers.accepted(producerID: producer.producerID, epoch: producer.epoch, partition: batch.partition,
                               baseSequence: producer.baseSequence, recordCount: batch.recordCount,
                               baseOffset: baseOffset, token: batch.token)
        }
        let wasEmpty = filling.batches.isEmpty
        filling.batches.append(Batch(partition: batch.partition, baseOffset: baseOffset, lastOffset: lastOffset,
                                     recordCount: batch.recordCount, receivedBytes: batch.bytes, producer: batch.producer,
                                     ackMode: batch.ackMode, token: batch.token,
                                     deadLetterOrganizationID: batch.deadLetterOrganizationID))
        filling.byteCount += batch.byteCount
        memoryBytes += batch.byteCount

        var actions: [Action] = []
        if batch.ackMode == .memory {
            actions.append(.ackNow(batch.token, baseOffset: baseOffset))
        }
        if wasEmpty {
            filling.lingerDeadline = now &+ configuration.lingerNanoseconds
        }
        if inFlight == nil, isFillingDue(now: now) {
            actions.append(.flushNow(startFlush()))
        } else if wasEmpty, configuration.lingerMilliseconds > 0, let deadline = filling.lingerDeadline {
            // With no linger the flush in flight starts this one on completion; no timer needed.
            actions.append(.scheduleLinger(deadline: deadline))
        }
        if !isReadingPaused, memoryBytes + heldBytes >= configuration.memoryBytesPause {
            isReadingPaused = true
            actions.append(.pauseReading)
        }
        return actions
    }

    /// The linger timer fired. Flushes the filling buffer if it is due and nothing is in
    /// flight; a flush in flight re-checks on completion.
    public mutating func timerFired(now: UInt64) -> [Action] {
        guard lifecycle == .running || lifecycle == .draining, inFlight == nil, !filling.batches.isEmpty else {
            return []
        }
        if isFillingDue(now: now) {
            return [.flushNow(startFlush())]
        }
        // Fired early: ask again for the real deadline.
        if let deadline = filling.lingerDeadline { return [.scheduleLinger(deadline: deadline)] }
        return []
    }

    /// The flush committed: high watermarks advance, durable produces are answered, and the
    /// next buffer is flushed at once if it is due.
    public mutating func flushSucceeded(_ id: FlushID, now: UInt64) -> [Action] {
        guard let flush = inFlight, flush.id == id else {
            assertionFailure("\(id) is not the flush in flight")
            return []
        }
        inFlight = nil
        memoryBytes -= flush.byteCount

        var advanced: [StreamPartition: Int64] = [:]
        var answers: [Action] = []
        for batch in flush.batches {
            if let hw = partitions[batch.partition]?.highWatermark {
                // Committed order equals offset order: each batch starts at the high watermark.
                assert(batch.baseOffset == hw, "batch at \(batch.baseOffset) commits with \(batch.partition) at \(hw)")
                assert(batch.lastOffset + 1 > hw, "high watermark must not move back")
            }
            partitions[batch.partition]?.highWatermark = batch.lastOffset + 1
            advanced[batch.partition] = batch.lastOffset + 1
            if let producer = batch.producer {
                producers.committed(producerID: producer.producerID, partition: batch.partition, token: batch.token)
            }
            if batch.ackMode == .durable {
                answers.append(.ackDurable(batch.token, baseOffset: batch.baseOffset))
            }
            for retry in retriesWaiting.removeValue(forKey: batch.token) ?? [] {
                answers.append(.ackDurable(retry, baseOffset: batch.baseOffset))
            }
        }

        var actions: [Action] = [.highWatermarksAdvanced(advanced)]
        actions.append(contentsOf: answers)
        actions.append(contentsOf: admitHeld(now: now))
        actions.append(contentsOf: resumeReadingIfDrained())
        if inFlight == nil {
            actions.append(contentsOf: continueAfterFlush(now: now))
        }
        assert(invariantViolations().isEmpty, "\(invariantViolations())")
        return actions
    }

    /// The flush did not commit. Its batches and every batch filled after it are failed back
    /// (see the failure rule above); next offsets return to the high watermarks.
    public mutating func flushFailed(_ id: FlushID) -> [Action] {
        guard let flush = inFlight, flush.id == id else {
            assertionFailure("\(id) is not the flush in flight")
            return []
        }
        var actions: [Action] = []
        for (batches, failure) in [(flush.batches, Failure.flushFailed), (filling.batches, .earlierFlushFailed)] {
            for batch in batches {
                // acks=memory produces were answered at acceptance; acks=none never are.
                if batch.ackMode == .durable {
                    actions.append(.fail(batch.token, failure))
                }
                for retry in retriesWaiting.removeValue(forKey: batch.token) ?? [] {
                    actions.append(.fail(retry, failure))
                }
            }
        }
        // Held batches were never answered, whatever their ack mode (acks=none: never are).
        for batch in held where batch.ackMode != .none {
            actions.append(.fail(batch.token, .earlierFlushFailed))
        }
        assert(retriesWaiting.isEmpty, "every waiting retry belongs to a buffered batch")
        inFlight = nil
        filling = FillingBuffer()
        held.removeAll()
        heldBytes = 0
        memoryBytes = 0
        for (partition, offsets) in partitions {
            partitions[partition]?.next = offsets.highWatermark
        }
        producers.abandonPending()
        actions.append(contentsOf: resumeReadingIfDrained())
        if lifecycle == .draining {
            lifecycle = .drained
            actions.append(.drained)
        }
        assert(invariantViolations().isEmpty, "\(invariantViolations())")
        return actions
    }

    /// Shutdown: stop accepting, flush whatever is buffered, report `.drained` once nothing
    /// is buffered or in flight.
    public mutating func drain() -> [Action] {
        switch lifecycle {
        case .draining, .drained: return []
        case .notStarted:
            lifecycle = .drained
            return [.drained]
        case .running:
            lifecycle = .draining
        }
        guard inFlight == nil else { return [] }
        return continueAfterFlush(now: 0)
    }

    // MARK: Invariants

    /// Broken invariants, described; empty when the machine is consistent. Checked after
    /// every flush outcome in debug builds and by the tests.
    public func invariantViolations() -> [String] {
        var violations: [String] = []
        let buffered = (inFlight?.batches ?? []) + filling.batches
        let bufferedBytes = buffered.reduce(0) { $0 + $1.byteCount }
        if memoryBytes != bufferedBytes {
            violations.append("memoryBytes \(memoryBytes) != buffered bytes \(bufferedBytes)")
        }
        if heldBytes != held.reduce(0, { $0 + $1.byteCount }) {
            violations.append("heldBytes \(heldBytes) does not match the held batches")
        }
        if !held.isEmpty, inFlight == nil, filling.batches.isEmpty {
            violations.append("batches held while nothing is buffered to free memory")
        }
        if let inFlight, inFlight.byteCount != inFlight.batches.reduce(0, { $0 + $1.byteCount }) {
            violations.append("\(inFlight.id) byteCount does not match its batches")
        }
        if filling.byteCount != filling.batches.reduce(0, { $0 + $1.byteCount }) {
            violations.append("filling byteCount does not match its batches")
        }
        var expected = partitions.mapValues(\.highWatermark)
        for batch in buffered {
            guard let offset = expected[batch.partition] else {
                violations.append("batch for unregistered partition \(batch.partition)")
                continue
            }
            if batch.baseOffset != offset {
                violations.append("\(batch.partition): batch at \(batch.baseOffset), expected \(offset) (gap or overlap)")
            }
            if batch.lastOffset != batch.baseOffset + Int64(batch.recordCount) - 1 {
                violations.append("\(batch.partition): batch at \(batch.baseOffset) has a wrong last offset")
            }
            expected[batch.partition] = batch.lastOffset + 1
        }
        for (partition, offsets) in partitions {
            if offsets.highWatermark > offsets.next {
                violations.append("\(partition): high watermark \(offsets.highWatermark) > next \(offsets.next)")
            }
            if expected[partition] != offsets.next {
                violations.append("\(partition): buffered batches end at \(expected[partition] ?? -1), next is \(offsets.next)")
            }
        }
        let idempotentBatches = buffered.filter { $0.producer != nil }.count
        if producers.pendingBatchCount != idempotentBatches {
            violations.append("idempotence table has \(producers.pendingBatchCount) pending, buffer has \(idempotentBatches)")
        }
        return violations
    }

    // MARK: Internals

    private static func answerRetry(_ batch: ValidatedBatch, baseOffset: Int64, durable: Bool) -> [Action] {
        switch batch.ackMode {
        case .none: []
        case .memory: [.ackNow(batch.token, baseOffset: baseOffset)]
        case .durable: [durable ? .ackDurable(batch.token, baseOffset: baseOffset) : .ackNow(batch.token, baseOffset: baseOffset)]
        }
    }

    private func isFillingDue(now: UInt64) -> Bool {
        guard !filling.batches.isEmpty else { return false }
        // Held batches wait for memory, which only a committed flush frees: no lingering then.
        if lifecycle == .draining || !held.isEmpty || filling.byteCount >= configuration.flushBytesTarget { return true }
        guard let deadline = filling.lingerDeadline else { return false }
        return now >= deadline
    }

    private mutating func startFlush() -> Flush {
        assert(inFlight == nil, "at most one flush in flight")
        let flush = Flush(id: FlushID(nextFlushID), batches: filling.batches, byteCount: filling.byteCount)
        nextFlushID += 1
        filling = FillingBuffer()
        inFlight = flush
        return flush
    }

    /// After a flush (or on drain): flush the filling buffer if due, or report drained.
    private mutating func continueAfterFlush(now: UInt64) -> [Action] {
        if isFillingDue(now: now) {
            return [.flushNow(startFlush())]
        }
        if lifecycle == .draining, filling.batches.isEmpty, inFlight == nil, held.isEmpty {
            lifecycle = .drained
            return [.drained]
        }
        return []
    }

    private mutating func resumeReadingIfDrained() -> [Action] {
        guard isReadingPaused, memoryBytes + heldBytes <= configuration.memoryBytesResume else { return [] }
        isReadingPaused = false
        return [.resumeReading]
    }
}
