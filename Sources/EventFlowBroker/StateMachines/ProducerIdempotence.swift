import EventFlowProtocol

/// The idempotent-producer table: per (producer id, stream partition) the current epoch and
/// the last `retainedBatchesMax` batches' sequence ranges and offsets.
///
/// Kafka's rules: within an epoch a batch must start at the sequence after the previous one
/// (wrapping from `Int32.max` to 0); a batch equal to a retained one is a retry and is answered
/// with the original offset, never stored again; an older epoch is fenced; a newer epoch starts
/// again at sequence 0.
///
/// A batch goes through two stages. `accepted` records it as *pending* (offsets assigned, not
/// yet committed) so a retry arriving meanwhile is recognised (`.inFlight`) instead of being
/// stored twice; `committed` makes it durable state. When a flush fails, `abandonPending`
/// forgets every pending batch (the batcher fails back all uncommitted batches at once).
public struct ProducerIdempotence: Sendable {
    /// How many recent batches per (producer, partition) are kept for duplicate detection.
    /// Kafka producers keep at most 5 requests in flight per connection when idempotent.
    public static let retainedBatchesMax = 5

    public struct Key: Hashable, Sendable {
        public var producerID: Int64
        public var partition: StreamPartition

        public init(producerID: Int64, partition: StreamPartition) {
            self.producerID = producerID
            self.partition = partition
        }
    }

    /// What to do with an incoming batch of an idempotent producer.
    public enum SequenceCheck: Hashable, Sendable {
        /// The expected next batch: store it.
        case new
        /// A retry of a committed batch: answer with its original base offset, do not store.
        case duplicate(baseOffset: Int64)
        /// A retry of a batch accepted but not yet committed: answer it with the original's
        /// outcome once known (`original` is the first request's token), do not store.
        case inFlight(original: RequestToken, baseOffset: Int64)
        /// A sequence gap (Kafka error 45 OUT_OF_ORDER_SEQUENCE_NUMBER).
        case outOfOrder(expectedSequence: Int32)
        /// The producer has been fenced by a newer epoch (Kafka error 47 INVALID_PRODUCER_EPOCH).
        case staleEpoch(currentEpoch: Int16)
        /// No state for this producer and the sequence is not 0 (Kafka error 59 UNKNOWN_PRODUCER_ID),
        /// e.g. after its state was evicted; Kafka clients answer by bumping their epoch.
        case unknownProducer

        /// The Kafka error to answer with, or nil when the batch is not an error.
        public var errorCode: ErrorCode? {
            switch self {
            case .new, .duplicate, .inFlight: nil
            case .outOfOrder: .outOfOrderSequenceNumber
            case .staleEpoch: .invalidProducerEpoch
            case .unknownProducer: .unknownProducerId
            }
        }
    }

    /// One committed batch as read back from the log table after a restart.
    public struct RestoredBatch: Hashable, Sendable {
        public var producerID: Int64
        public var epoch: Int16
        public var partition: StreamPartition
        public var baseSequence: Int32
        public var lastSequence: Int32
        public var baseOffset: Int64

        public init(producerID: Int64, epoch: Int16, partition: StreamPartition,
                    baseSequence: Int32, lastSequence: Int32, baseOffset: Int64) {
            self.producerID = producerID
            self.epoch = epoch
            self.partition = partition
            self.baseSequence = baseSequence
            self.lastSequence = lastSequence
            self.baseOffset = baseOffset
        }
    }

    struct BatchMetadata: Hashable, Sendable {
        var baseSequence: Int32
        var lastSequence: Int32
        var baseOffset: Int64
    }

    struct PendingBatch: Hashable, Sendable {
        var epoch: Int16
        var metadata: BatchMetadata
        var token: RequestToken
    }

    struct Committed: Hashable, Sendable {
        var epoch: Int16
        /// Oldest first, at most `retainedBatchesMax`; never empty.
        var batches: [BatchMetadata]
    }

    struct State: Hashable, Sendable {
        /// The newest epoch seen (accepted or committed); older epochs are fenced.
        var epoch: Int16
        var committed: Committed?
        /// In offset (= acceptance) order; they commit in this order.
        var pending: [PendingBatch] = []

        /// The last sequence stored (pending or committed) in the current epoch.
        var currentLastSequence: Int32? {
            if let last = pending.last, last.epoch == epoch {
                return last.metadata.lastSequence
            }
            guard let committed, committed.epoch == epoch else { return nil }
            return committed.batches.last?.lastSequence
        }
    }

    /// Bound on tracked (producer, partition) pairs; the least recently used is evicted.
    public let producerPartitionsMax: Int
    private var states: [Key: State] = [:]
    private var useOrder = LeastRecentlyUsedOrder<Key>()
    private var keysWithPending: Set<Key> = []
    public private(set) var pendingBatchCount = 0

    public init(producerPartitionsMax: Int = 100_000) {
        precondition(producerPartitionsMax > 0, "producerPartitionsMax must be positive")
        self.producerPartitionsMax = producerPartitionsMax
    }

    /// Number of (producer, partition) pairs tracked.
    public var trackedCount: Int { states.count }

    /// Whether any state is kept for this (producer, partition).
    public func isTracked(producerID: Int64, partition: StreamPartition) -> Bool {
        states[Key(producerID: producerID, partition: partition)] != nil
    }

    // MARK: Sequences

    /// The last sequence of a batch of `recordCount` records starting at `baseSequence`,
    /// wrapping past `Int32.max` to 0 as Kafka does.
    public static func lastSequence(baseSequence: Int32, recordCount: Int32) -> Int32 {
        sequence(baseSequence, plus: max(recordCount - 1, 0))
    }

    /// `sequence + increment` modulo the wrap at `Int32.max` (increment >= 0).
    public static func sequence(_ sequence: Int32, plus increment: Int32) -> Int32 {
        if sequence > Int32.max - increment {
            return increment - (Int32.max - sequence) - 1
        }
        return sequence + increment
    }

    // MARK: Events

    /// Classifies an incoming batch. Does not change the table; call `accepted` once the
    /// batcher has taken a `.new` batch.
    public func check(producerID: Int64, epoch: Int16, partition: StreamPartition,
                      baseSequence: Int32, recordCount: Int32) -> SequenceCheck {
        guard baseSequence >= 0, recordCount > 0 else { return .outOfOrder(expectedSequence: 0) }
        let key = Key(producerID: producerID, partition: partition)
        guard let state = states[key] else {
            return baseSequence == 0 ? .new : .unknownProducer
        }
        let currentEpoch = state.epoch
        if epoch < currentEpoch {
            return .staleEpoch(currentEpoch: currentEpoch)
        }
        if epoch > currentEpoch {
            // A new epoch restarts the sequence.
            return baseSequence == 0 ? .new : .outOfOrder(expectedSequence: 0)
        }
        let lastSequence = Self.lastSequence(baseSequence: baseSequence, recordCount: recordCount)
        for pending in state.pending where pending.epoch == epoch
            && pending.metadata.baseSequence == baseSequence && pending.metadata.lastSequence == lastSequence {
            return .inFlight(original: pending.token, baseOffset: pending.metadata.baseOffset)
        }
        if let committed = state.committed, committed.epoch == epoch {
            for batch in committed.batches
            where batch.baseSequence == baseSequence && batch.lastSequence == lastSequence {
                return .duplicate(baseOffset: batch.baseOffset)
            }
        }
        guard let currentLast = state.currentLastSequence else {
            return baseSequence == 0 ? .new : .outOfOrder(expectedSequence: 0)
        }
        let expected = Self.sequence(currentLast, plus: 1)
        return baseSequence == expected ? .new : .outOfOrder(expectedSequence: expected)
    }

    /// Records a batch the batcher accepted (offsets assigned, not yet committed).
    public mutating func accepted(producerID: Int64, epoch: Int16, partition: StreamPartition,
                                  baseSequence: Int32, recordCount: Int32,
                                  baseOffset: Int64, token: RequestToken) {
        assert(check(producerID: producerID, epoch: epoch, partition: partition,
                     baseSequence: baseSequence, recordCount: recordCount) == .new,
               "accepted a batch that is not the expected next one")
        let key = Key(producerID: producerID, partition: partition)
        let metadata = BatchMetadata(
            baseSequence: baseSequence,
            lastSequence: Self.lastSequence(baseSequence: baseSequence, recordCount: recordCount),
            baseOffset: baseOffset)
        insertIfAbsent(key, epoch: epoch)
        guard var state = states[key] else { return }
        state.epoch = max(state.epoch, epoch)
        state.pending.append(PendingBatch(epoch: epoch, metadata: metadata, token: token))
        states[key] = state
        keysWithPending.insert(key)
        pendingBatchCount += 1
        useOrder.touch(key)
    }

    /// The oldest pending batch of this (producer, partition) has committed.
    public mutating func committed(producerID: Int64, partition: StreamPartition, token: RequestToken) {
        let key = Key(producerID: producerID, partition: partition)
        guard var state = states[key], !state.pending.isEmpty else {
            assertionFailure("committed a batch that was never accepted")
            return
        }
        let batch = state.pending.removeFirst()
        assert(batch.token == token, "batches of one producer must commit in acceptance order")
        pendingBatchCount -= 1
        Self.append(batch.metadata, epoch: batch.epoch, to: &state)
        states[key] = state
        if state.pending.isEmpty { keysWithPending.remove(key) }
        useOrder.touch(key)
    }

    /// Forgets every pending batch: none of them will commit (the batcher failed them back),
    /// so their producers must resend from the last committed sequence of the current epoch
    /// (0 when nothing of this epoch committed). The epoch itself stays: it was already
    /// handed out, so older producers remain fenced.
    public mutating func abandonPending() {
        for key in keysWithPending {
            states[key]?.pending.removeAll()
        }
        keysWithPending.removeAll()
        pendingBatchCount = 0
    }

    /// Records a committed batch directly (used when restoring from the log table).
    /// A row of an older epoch than the one tracked is ignored.
    public mutating func record(producerID: Int64, epoch: Int16, partition: StreamPartition,
                                baseSequence: Int32, lastSequence: Int32, baseOffset: Int64) {
        let key = Key(producerID: producerID, partition: partition)
        if let currentEpoch = states[key]?.epoch, epoch < currentEpoch { return }
        insertIfAbsent(key, epoch: epoch)
        guard var state = states[key] else { return }
        state.epoch = epoch
        Self.append(BatchMetadata(baseSequence: baseSequence, lastSequence: lastSequence, baseOffset: baseOffset),
                    epoch: epoch, to: &state)
        states[key] = state
        useOrder.touch(key)
    }

    /// Rebuilds the table after a restart from the log table's rows of idempotent batches
    /// (only the last `retainedBatchesMax` per producer and partition matter; more are fine).
    public mutating func restore(entries: [RestoredBatch]) {
        for entry in entries.sorted(by: { $0.baseOffset < $1.baseOffset }) {
            record(producerID: entry.producerID, epoch: entry.epoch, partition: entry.partition,
                   baseSequence: entry.baseSequence, lastSequence: entry.lastSequence,
                   baseOffset: entry.baseOffset)
        }
    }

    // MARK: Internals

    private static func append(_ metadata: BatchMetadata, epoch: Int16, to state: inout State) {
        if var committed = state.committed, committed.epoch == epoch {
            committed.batches.append(metadata)
            if committed.batches.count > retainedBatchesMax {
                committed.batches.removeFirst(committed.batches.count - retainedBatchesMax)
            }
            state.committed = committed
        } else {
            state.committed = Committed(epoch: epoch, batches: [metadata])
        }
    }

    /// Creates an empty state for `key`, evicting the least recently used pair without
    /// pending batches when the table is full. Pairs with pending batches are never evicted
    /// (their count is bounded by the batcher's memory), so the table may briefly exceed its
    /// bound when every tracked pair has a batch in flight.
    private mutating func insertIfAbsent(_ key: Key, epoch: Int16) {
        guard states[key] == nil else { return }
        while states.count >= producerPartitionsMax,
              let victim = useOrder.oldestKey(where: { states[$0]?.pending.isEmpty ?? true }) {
            states[victim] = nil
            useOrder.remove(victim)
        }
        states[key] = State(epoch: epoch)
        useOrder.touch(key)
    }
}
