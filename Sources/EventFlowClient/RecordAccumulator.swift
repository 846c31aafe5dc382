import EventFlowProtocol
import NIOCore

/// A stream's partition.
public struct StreamPartition: Sendable, Hashable, CustomStringConvertible {
    public var stream: String
    public var partition: Int32

    public init(stream: String, partition: Int32) {
        self.stream = stream
        self.partition = partition
    }

    public var description: String { "\(stream)/\(partition)" }
}

/// A sealed record batch: its records and sequence number are fixed. It is sealed under the
/// producer's lock (cheap: the open builder is swapped out) and built — LZ4, header, CRC — by the
/// producer's send loop outside the lock, so neither `send` nor the loop waits for a compression.
/// Once built its bytes are final, so a retry resends exactly them and an idempotent broker
/// recognises the duplicate.
struct SealedBatch: Sendable {
    enum Content: Sendable {
        /// Sealed, not built yet: the records with the batch's producer id, epoch and sequence.
        case records(RecordBatchBuilder)
        case built(ByteBuffer)
    }

    var streamPartition: StreamPartition
    private(set) var content: Content
    var messageIDs: [MessageID]
    var baseSequence: Int32
    var bufferedBytes: Int
    var attempts: Int = 0
    var notBefore: NIODeadline?
    /// When the batch was sealed (closed to new records): the end of its records' wait for a batch.
    let sealedAt: NIODeadline

    init(streamPartition: StreamPartition, records: RecordBatchBuilder, messageIDs: [MessageID],
         baseSequence: Int32, bufferedBytes: Int, sealedAt: NIODeadline) {
        self.sealedAt = sealedAt
        self.streamPartition = streamPartition
        self.content = .records(records)
        self.messageIDs = messageIDs
        self.baseSequence = baseSequence
        self.bufferedBytes = bufferedBytes
    }

    var recordCount: Int { messageIDs.count }

    /// The bytes to send; only a built batch is sent (`build()` first).
    var bytes: ByteBuffer {
        guard case .built(let bytes) = content else { preconditionFailure("a sealed batch is built before it is sent") }
        return bytes
    }

    /// Builds the batch if it is not built yet; returns the emptied builder, for `recycle`.
    mutating func build() throws -> RecordBatchBuilder? {
        guard case .records(var builder) = content else { return nil }
        // Drop `content`'s reference first: the builder's buffer is then unique, and resetting it
        // after the build keeps its memory for `recycle` instead of allocating anew.
        content = .built(ByteBuffer())
        do {
            content = .built(try builder.build())
        } catch {
            content = .records(builder)  // a failed build leaves the records in place
            throw error
        }
        return builder
    }

    /// Builds every batch not built yet, as the send loop does before sending (outside the
    /// producer's lock); returns the emptied builders, for `RecordAccumulator.recycle`.
    static func build(_ batches: inout [SealedBatch]) throws -> [RecordBatchBuilder] {
        var emptied: [RecordBatchBuilder] = []
        for index in batches.indices {
            if let builder = try batches[index].build() { emptied.append(builder) }
        }
        return emptied
    }
}

/// The producer's batching and idempotence logic, without I/O: records go into per-partition
/// open batches; batches are sealed on size, linger or flush, get their sequence numbers, are
/// handed out to be sent, and come back acknowledged, to retry, or failed.
struct RecordAccumulator {
    struct Settings {
        var lingerMilliseconds: Int64
        var batchBytesMax: Int
        var bufferedBytesMax: Int
        var compression: ProducerConfiguration.Compression
        var idempotent: Bool
        var retriesMax: Int
        var retryBackoffMilliseconds: Int64
        var retryBackoffMaxMilliseconds: Int64

        init(_ configuration: ProducerConfiguration) {
            lingerMilliseconds = Int64(configuration.lingerMilliseconds)
            batchBytesMax = configuration.batchBytesMax
            bufferedBytesMax = configuration.bufferedBytesMax
            compression = configuration.compression
            idempotent = configuration.idempotent
            retriesMax = configuration.retriesMax
            retryBackoffMilliseconds = Int64(configuration.retryBackoffMilliseconds)
            retryBackoffMaxMilliseconds = Int64(configuration.retryBackoffMaxMilliseconds)
        }
    }

    struct PartitionState {
        let key: StreamPartition
        /// Index of the partition's stream in `streamStates`.
        let streamSlot: Int
        var builder: RecordBatchBuilder
        var openMessageIDs: [MessageID] = []
        var openBufferedBytes = 0
        var lingerDeadline: NIODeadline?
        /// Sealed, not in flight, ordered by sequence (retries go back in order).
        var ready: [SealedBatch] = []
        var inflightSequences: [Int32] = []
        var nextSequence: Int32 = 0
        /// The base sequence of the last batch put back to be retried: a later batch that was
        /// refused as out of order while it was away is retried too, even if the earlier one was
        /// resent and acknowledged before the refusal was handled (answers are handled in any order).
        var lastRetriedSequence: Int32?

        var hasOpenRecords: Bool { !openMessageIDs.isEmpty }

        /// Queues the open batch as ready, with its sequence and producer id when `identity` is
        /// given, and continues with `fresh` as the open builder. Builds nothing (see `SealedBatch`).
        mutating func seal(identity: (id: Int64, epoch: Int16)?, idempotent: Bool, fresh: RecordBatchBuilder, now: NIODeadline) {
            let count = Int32(truncatingIfNeeded: openMessageIDs.count)
            var full = fresh
            swap(&full, &builder)
            if let identity, idempotent {
                full.configuration.producerId = identity.id
                full.configuration.producerEpoch = identity.epoch
                full.configuration.baseSequence = nextSequence
            }
            let ids = openMessageIDs
            openMessageIDs = []
            openMessageIDs.reserveCapacity(ids.count)
            let baseSequence = idempotent ? nextSequence : -1
            if idempotent { nextSequence = RecordAccumulator.sequence(nextSequence, plus: count) }
            ready.append(SealedBatch(streamPartition: key, records: full, messageIDs: ids,
                                     baseSequence: baseSequence, bufferedBytes: openBufferedBytes, sealedAt: now))
            openBufferedBytes = 0
            lingerDeadline = nil
        }
    }

    struct StreamState {
        var partitionCount: Int32
        var stickyPartition: Int32
        /// Index in `partitionStates` of each partition's state, -1 until the partition gets a record;
        /// at least `partitionCount` long.
        var partitionSlots: [Int]
    }

    struct PendingMessage {
        var id: MessageID
        var message: ProducerMessage
        var timestamp: Int64
    }

    enum AppendResult: Equatable {
        /// Added to an open batch; `wake` when the sender must look again (a new linger deadline or a sealed batch).
        case appended(StreamPartition, wake: Bool)
        /// The stream's partitions are not known yet; the sender must fetch metadata.
        case awaitingMetadata(wake: Bool)
    }

    enum BatchOutcome {
        /// The broker stored the batch (offset nil with acks 0).
        case acknowledged(baseOffset: Int64?)
        case failed(ProducerError)
    }

    let settings: Settings
    // Streams and partitions live in arrays addressed by slot, so the per-record path finds its
    // partition without hashing: the last stream's slot is remembered, then it is two array reads.
    private(set) var streamStates: [StreamState] = []
    private var streamSlots: [String: Int] = [:]
    private var lastStream: (name: String, slot: Int)?
    private(set) var partitionStates: [PartitionState] = []
    /// Slot in `partitionStates` by partition, for completed batches (once per batch, not per record).
    private var partitionSlots: [StreamPartition: Int] = [:]
    /// Messages for streams whose metadata is being fetched.
    private(set) var pending: [String: [PendingMessage]] = [:]
    private(set) var bufferedBytes = 0
    /// Messages accepted and not yet reported.
    private(set) var outstandingCount = 0
    private(set) var producerIdentity: (id: Int64, epoch: Int16)?
    private var nextMessageID: UInt64 = 0
    /// Builders emptied by `SealedBatch.build`, handed back by `recycle`.
    private var spareBuilders: [RecordBatchBuilder] = []

    init(settings: Settings) {
        self.settings = settings
    }

    var streamsAwaitingMetadata: [String] { Array(pending.keys) }
    var isIdle: Bool { outstandingCount == 0 }
    var canSeal: Bool { !settings.idempotent || producerIdentity != nil }

    // MARK: events

    /// `now` is evaluated only when the record opens a batch (its linger starts), so most appends read no clock.
    mutating func append(_ message: ProducerMessage, timestamp: Int64,
                         now: @autoclosure () -> NIODeadline) throws(ProducerError) -> (MessageID, AppendResult) {
        let size = message.estimatedByteCount
        guard size <= settings.batchBytesMax else { throw .messageTooLarge(bytes: size, max: settings.batchBytesMax) }
        guard bufferedBytes + size <= settings.bufferedBytesMax else { throw .bufferFull }
        guard let streamSlot = streamSlot(message.stream) else {
            let id = takeMessageID(size)
            let first = pending[message.stream] == nil
            pending[message.stream, default: []].append(PendingMessage(id: id, message: message, timestamp: timestamp))
            return (id, .awaitingMetadata(wake: first))
        }
        let partition = try Self.choosePartition(message, streamStates[streamSlot])
        let id = takeMessageID(size)
        let streamPartition = StreamPartition(stream: message.stream, partition: partition)
        let wake = appendToOpenBatch(streamPartition, streamSlot: streamSlot, id: id, message: message,
                                     timestamp: timestamp, size: size, now: now)
        return (id, .appended(streamPartition, wake: wake))
    }

    /// Metadata arrived for a stream (partitionCount nil: the broker does not know it).
    /// Returns the reports of pending messages that failed.
    mutating func metadataReceived(stream name: String, partitionCount: Int32?, error: ProducerError?, now: NIODeadline) -> [DeliveryReport] {
        let waiting = pending.removeValue(forKey: name) ?? []
        guard let partitionCount, partitionCount > 0 else {
            let failure = error ?? .unknownStream(name)
            return waiting.map { pendingMessage in
                finish(bufferedBytes: pendingMessage.message.estimatedByteCount, count: 1)
                return DeliveryReport(id: pendingMessage.id, stream: name, partition: -1, offset: nil, error: failure)
            }
        }
        let streamSlot: Int
        if let slot = streamSlots[name] {
            streamSlot = slot
            streamStates[slot].partitionCount = partitionCount
            let missing = Int(partitionCount) - streamStates[slot].partitionSlots.count
            if missing > 0 { streamStates[slot].partitionSlots += repeatElement(-1, count: missing) }
        } else {
            streamSlot = streamStates.count
            streamStates.append(StreamState(partitionCount: partitionCount, stickyPartition: 0,
                                            partitionSlots: Array(repeating: -1, count: Int(partitionCount))))
            streamSlots[name] = streamSlot
        }
        var failed: [DeliveryReport] = []
        for pendingMessage in waiting {
            let size = pendingMessage.message.estimatedByteCount
            do {
                let partition = try Self.choosePartition(pendingMessage.message, streamStates[streamSlot])
                _ = appendToOpenBatch(StreamPartition(stream: name, partition: partition), streamSlot: streamSlot,
                                      id: pendingMessage.id, message: pendingMessage.message,
                                      timestamp: pendingMessage.timestamp, size: size, now: { now })
            } catch {
                finish(bufferedBytes: size, count: 1)
                failed.append(DeliveryReport(id: pendingMessage.id, stream: name, partition: -1, offset: nil, error: error))
            }
        }
        return failed
    }

    mutating func producerIdentityReceived(id: Int64, epoch: Int16) {
        producerIdentity = (id, epoch)
    }

    /// Seals every batch whose linger expired (all of them when `force`), then hands out, per
    /// partition, the first ready batch whose backoff has passed. Returned batches are in flight
    /// until `batchCompleted`; the caller builds them (`SealedBatch.build`) before sending.
    mutating func drain(now: NIODeadline, force: Bool) -> [SealedBatch] {
        var batches: [SealedBatch] = []
        for slot in partitionStates.indices {
            if canSeal, partitionStates[slot].hasOpenRecords,
               force || (partitionStates[slot].lingerDeadline.map { $0 <= now } ?? true) {
                seal(slot, now: now)
            }
            // Ordering: with idempotence, a partition sends its batches one request after another in sequence order.
            if let head = partitionStates[slot].ready.first, head.notBefore.map({ $0 <= now }) ?? true {
                var batch = partitionStates[slot].ready.removeFirst()
                batch.attempts += 1
                partitionStates[slot].inflightSequences.append(batch.baseSequence)
                batches.append(batch)
            }
        }
        return batches
    }

    /// Takes back a builder emptied by `SealedBatch.build`, so the next sealed batch's successor
    /// starts with its capacity instead of growing a new buffer (at most `spareBuildersMax` kept).
    mutating func recycle(_ builders: [RecordBatchBuilder]) {
        for var builder in builders where spareBuilders.count < Self.spareBuildersMax {
            builder.configuration = Self.builderConfiguration(settings)
            spareBuilders.append(builder)
        }
    }

    static let spareBuildersMax = 4

    /// A sent batch came back. Returns its reports, or nil when it was put back to be retried.
    mutating func batchCompleted(_ batch: SealedBatch, outcome: BatchOutcome, now: NIODeadline) -> [DeliveryReport]? {
        let key = batch.streamPartition
        guard let slot = partitionSlots[key] else { return nil }
        if let index = partitionStates[slot].inflightSequences.firstIndex(of: batch.baseSequence) {
            partitionStates[slot].inflightSequences.remove(at: index)
        }
        switch outcome {
        case .acknowledged(let baseOffset):
            finish(bufferedBytes: batch.bufferedBytes, count: batch.recordCount)
            // One allocation of the final size (mapping `enumerated()` grew the array step by step,
            // copying every report each time); this runs under the producer's lock, once per record.
            var reports: [DeliveryReport] = []
            reports.reserveCapacity(batch.messageIDs.count)
            for index in batch.messageIDs.indices {
                reports.append(DeliveryReport(id: batch.messageIDs[index], stream: key.stream, partition: key.partition,
                                              offset: baseOffset.map { $0 + Int64(index) }, error: nil))
            }
            return reports
        case .failed(let error):
            if shouldRetry(batch, error: error, state: partitionStates[slot]) {
                var retry = batch
                let shift = min(retry.attempts - 1, 16)
                let backoff = min(settings.retryBackoffMilliseconds << Int64(shift), settings.retryBackoffMaxMilliseconds)
                retry.notBefore = now + .milliseconds(backoff)
                let position = partitionStates[slot].ready.firstIndex { sequenceIsAfter($0.baseSequence, retry.baseSequence) }
                    ?? partitionStates[slot].ready.endIndex
                partitionStates[slot].ready.insert(retry, at: position)
                partitionStates[slot].lastRetriedSequence = retry.baseSequence
                return nil
            }
            finish(bufferedBytes: batch.bufferedBytes, count: batch.recordCount)
            return batch.messageIDs.map {
                DeliveryReport(id: $0, stream: key.stream, partition: key.partition, offset: nil, error: error)
            }
        }
    }

    /// The earliest moment `drain` has something new to do: a linger or backoff expiring.
    func nextDeadline() -> NIODeadline? {
        var earliest: NIODeadline?
        for state in partitionStates {
            if canSeal, state.hasOpenRecords, let deadline = state.lingerDeadline {
                earliest = earliest.map { min($0, deadline) } ?? deadline
            }
            if let notBefore = state.ready.first?.notBefore {
                earliest = earliest.map { min($0, notBefore) } ?? notBefore
            }
        }
        return earliest
    }

    /// Whether some batch is ready to send now (after sealing what `force` or linger allows).
    func hasSendableBatch(now: NIODeadline, force: Bool) -> Bool {
        partitionStates.contains { state in
            if let head = state.ready.first { return head.notBefore.map { $0 <= now } ?? true }
            return canSeal && state.hasOpenRecords && (force || (state.lingerDeadline.map { $0 <= now } ?? true))
        }
    }

    /// Fails every message not yet in flight (used when the producer stops for good).
    mutating func failUnsent(_ error: ProducerError) -> [DeliveryReport] {
        var reports: [DeliveryReport] = []
        for (name, messages) in pending {
            for message in messages {
                finish(bufferedBytes: message.message.estimatedByteCount, count: 1)
                reports.append(DeliveryReport(id: message.id, stream: name, partition: -1, offset: nil, error: error))
            }
        }
        pending.removeAll()
        for slot in partitionStates.indices {
            let key = partitionStates[slot].key
            var state = partitionStates[slot]
            for id in state.openMessageIDs {
                reports.append(DeliveryReport(id: id, stream: key.stream, partition: key.partition, offset: nil, error: error))
            }
            finish(bufferedBytes: state.openBufferedBytes, count: state.openMessageIDs.count)
            state.openMessageIDs.removeAll()
            state.openBufferedBytes = 0
            state.builder.reset()
            for batch in state.ready {
                finish(bufferedBytes: batch.bufferedBytes, count: batch.recordCount)
                reports += batch.messageIDs.map {
                    DeliveryReport(id: $0, stream: key.stream, partition: key.partition, offset: nil, error: error)
                }
            }
            state.ready.removeAll()
            partitionStates[slot] = state
        }
        return reports.sorted { $0.id < $1.id }
    }

    // MARK: internals

    private mutating func takeMessageID(_ size: Int) -> MessageID {
        let id = MessageID(rawValue: nextMessageID)
        nextMessageID &+= 1
        bufferedBytes += size
        outstandingCount += 1
        return id
    }

    private mutating func finish(bufferedBytes size: Int, count: Int) {
        bufferedBytes -= size
        outstandingCount -= count
        assert(bufferedBytes >= 0 && outstandingCount >= 0, "accounting went negative")
    }

    /// Static, so the per-record path does not need `self` as a whole: calling an instance method from
    /// `append` made the optimizer copy the accumulator (every array it holds retained and released) per record.
    private static func choosePartition(_ message: ProducerMessage, _ stream: StreamState) throws(ProducerError) -> Int32 {
        if let partition = message.partition {
            guard partition >= 0, partition < stream.partitionCount else {
                throw .broker(.unknownTopicOrPartition, message: "\(message.stream) has \(stream.partitionCount) partitions, not \(partition)")
            }
            return partition
        }
        if let key = message.key {
            let hash = key.withUnsafeReadableBytes { Murmur2.hash($0) }
            return (hash & 0x7fff_ffff) % stream.partitionCount
        }
        return stream.stickyPartition
    }

    /// The stream's slot in `streamStates`, nil while its metadata is unknown.
    private mutating func streamSlot(_ name: String) -> Int? {
        // Usually the same String as last time, which compares equal without reading its bytes.
        if let last = lastStream, last.name == name { return last.slot }
        guard let slot = streamSlots[name] else { return nil }
        lastStream = (name, slot)
        return slot
    }

    /// The partition's slot in `partitionStates`, created on its first record.
    private mutating func partitionSlot(_ key: StreamPartition, streamSlot: Int) -> Int {
        let existing = streamStates[streamSlot].partitionSlots[Int(key.partition)]
        if existing >= 0 { return existing }
        let slot = partitionStates.count
        partitionStates.append(PartitionState(key: key, streamSlot: streamSlot, builder: Self.makeBuilder(settings)))
        streamStates[streamSlot].partitionSlots[Int(key.partition)] = slot
        partitionSlots[key] = slot
        return slot
    }

    /// Returns whether the sender must wake up. The partition's state is mutated in place (no copy of its buffers).
    private mutating func appendToOpenBatch(_ key: StreamPartition, streamSlot: Int, id: MessageID, message: ProducerMessage,
                                            timestamp: Int64, size: Int, now: () -> NIODeadline) -> Bool {
        let slot = partitionSlot(key, streamSlot: streamSlot)
        var wake = false
        var clock: NIODeadline?
        if partitionStates[slot].hasOpenRecords && partitionStates[slot].openBufferedBytes + size > settings.batchBytesMax {
            // The record does not fit: the open batch is full, send it.
            if canSeal {
                let sealedAt = now()
                clock = sealedAt
                seal(slot, now: sealedAt)
            }
            wake = true
        }
        if !partitionStates[slot].hasOpenRecords {
            partitionStates[slot].lingerDeadline = (clock ?? now()) + .milliseconds(settings.lingerMilliseconds)
            wake = true
        }
        partitionStates[slot].builder.append(timestamp: timestamp, key: message.key, value: message.value,
                                             headers: message.headers)
        partitionStates[slot].openMessageIDs.append(id)
        partitionStates[slot].openBufferedBytes += size
        return wake
    }

    private static func builderConfiguration(_ settings: Settings) -> RecordBatchBuilder.Configuration {
        .init(compression: settings.compression == .lz4 ? .lz4() : .none)
    }

    private static func makeBuilder(_ settings: Settings) -> RecordBatchBuilder {
        RecordBatchBuilder(configuration: builderConfiguration(settings),
                           initialCapacity: min(settings.batchBytesMax, 16 * 1024))
    }

    private mutating func seal(_ slot: Int, now: NIODeadline) {
        let key = partitionStates[slot].key
        // The next keyless record starts a batch elsewhere, spreading load over partitions.
        let streamSlot = partitionStates[slot].streamSlot
        let stream = streamStates[streamSlot]
        if stream.stickyPartition == key.partition, stream.partitionCount > 1 {
            streamStates[streamSlot].stickyPartition = (key.partition + 1) % stream.partitionCount
        }
        let fresh = spareBuilders.popLast() ?? Self.makeBuilder(settings)
        partitionStates[slot].seal(identity: producerIdentity, idempotent: settings.idempotent, fresh: fresh, now: now)
    }

    private func shouldRetry(_ batch: SealedBatch, error: ProducerError, state: PartitionState) -> Bool {
        guard batch.attempts <= settings.retriesMax else { return false }
        if error.isRetriable { return true }
        // A batch behind one that failed arrives with a sequence gap; it succeeds once the earlier one is resent.
        // When the failed one was the partition's first, the broker has no sequence state yet and says
        // UNKNOWN_PRODUCER_ID instead of OUT_OF_ORDER_SEQUENCE_NUMBER: the same situation.
        if case .broker(let code, _) = error, code == .outOfOrderSequenceNumber || code == .unknownProducerId,
           settings.idempotent {
            let earlier = state.inflightSequences.contains { sequenceIsAfter(batch.baseSequence, $0) }
                || state.ready.contains { sequenceIsAfter(batch.baseSequence, $0.baseSequence) }
                || state.lastRetriedSequence.map { sequenceIsAfter(batch.baseSequence, $0) } ?? false
            return earlier
        }
        return false
    }

    /// Kafka's sequence arithmetic: after Int32.max comes 0.
    static func sequence(_ sequence: Int32, plus increment: Int32) -> Int32 {
        if sequence > Int32.max - increment { return increment - (Int32.max - sequence) - 1 }
        return sequence + increment
    }

    /// Whether sequence `a` comes after `b` (ignoring wrap-around, which takes 2^31 records per partition).
    private func sequenceIsAfter(_ a: Int32, _ b: Int32) -> Bool { a > b }
}
