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

/// A record batch built and sealed: its bytes are final (sequence and CRC included), so a retry
/// resends exactly them and an idempotent broker recognises the duplicate.
struct SealedBatch: Sendable {
    var streamPartition: StreamPartition
    var bytes: ByteBuffer
    var messageIDs: [MessageID]
    var baseSequence: Int32
    var bufferedBytes: Int
    var attempts: Int = 0
    var notBefore: NIODeadline?

    var recordCount: Int { messageIDs.count }
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
        var builder: RecordBatchBuilder
        var openMessageIDs: [MessageID] = []
        var openBufferedBytes = 0
        var lingerDeadline: NIODeadline?
        /// Sealed, not in flight, ordered by sequence (retries go back in order).
        var ready: [SealedBatch] = []
        var inflightSequences: [Int32] = []
        var nextSequence: Int32 = 0

        var hasOpenRecords: Bool { !openMessageIDs.isEmpty }
    }

    struct StreamState {
        var partitionCount: Int32
        var stickyPartition: Int32
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
    private(set) var streams: [String: StreamState] = [:]
    private(set) var partitions: [StreamPartition: PartitionState] = [:]
    /// Messages for streams whose metadata is being fetched.
    private(set) var pending: [String: [PendingMessage]] = [:]
    private(set) var bufferedBytes = 0
    /// Messages accepted and not yet reported.
    private(set) var outstandingCount = 0
    private(set) var producerIdentity: (id: Int64, epoch: Int16)?
    private var nextMessageID: UInt64 = 0

    init(settings: Settings) {
        self.settings = settings
    }

    var streamsAwaitingMetadata: [String] { Array(pending.keys) }
    var isIdle: Bool { outstandingCount == 0 }
    var canSeal: Bool { !settings.idempotent || producerIdentity != nil }

    // MARK: events

    mutating func append(_ message: ProducerMessage, timestamp: Int64, now: NIODeadline) throws(ProducerError) -> (MessageID, AppendResult) {
        let size = message.estimatedByteCount
        guard size <= settings.batchBytesMax else { throw .messageTooLarge(bytes: size, max: settings.batchBytesMax) }
        guard bufferedBytes + size <= settings.bufferedBytesMax else { throw .bufferFull }
        guard let stream = streams[message.stream] else {
            let id = takeMessageID(size)
            let first = pending[message.stream] == nil
            pending[message.stream, default: []].append(PendingMessage(id: id, message: message, timestamp: timestamp))
            return (id, .awaitingMetadata(wake: first))
        }
        let partition = try choosePartition(message, stream)
        let id = takeMessageID(size)
        let streamPartition = StreamPartition(stream: message.stream, partition: partition)
        let wake = appendToOpenBatch(streamPartition, id: id, message: message, timestamp: timestamp, size: size, now: now)
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
        if streams[name] == nil {
            streams[name] = StreamState(partitionCount: partitionCount, stickyPartition: 0)
        } else {
            streams[name]?.partitionCount = partitionCount
        }
        var failed: [DeliveryReport] = []
        for pendingMessage in waiting {
            let size = pendingMessage.message.estimatedByteCount
            guard let stream = streams[name] else { break }
            do {
                let partition = try choosePartition(pendingMessage.message, stream)
                _ = appendToOpenBatch(StreamPartition(stream: name, partition: partition), id: pendingMessage.id,
                                      message: pendingMessage.message, timestamp: pendingMessage.timestamp, size: size, now: now)
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
    /// until `batchCompleted`. Also returns reports of batches that could not be built.
    mutating func drain(now: NIODeadline, force: Bool) -> (batches: [SealedBatch], failed: [DeliveryReport]) {
        var failed: [DeliveryReport] = []
        var batches: [SealedBatch] = []
        for key in partitions.keys {
            guard var state = partitions[key] else { continue }
            if canSeal, state.hasOpenRecords, force || (state.lingerDeadline.map { $0 <= now } ?? true) {
                failed += seal(key, &state)
            }
            // Ordering: with idempotence, a partition sends its batches one request after another in sequence order.
            if let head = state.ready.first, head.notBefore.map({ $0 <= now }) ?? true {
                var batch = state.ready.removeFirst()
                batch.attempts += 1
                state.inflightSequences.append(batch.baseSequence)
                batches.append(batch)
            }
            partitions[key] = state
        }
        return (batches, failed)
    }

    /// A sent batch came back. Returns its reports, or nil when it was put back to be retried.
    mutating func batchCompleted(_ batch: SealedBatch, outcome: BatchOutcome, now: NIODeadline) -> [DeliveryReport]? {
        let key = batch.streamPartition
        guard var state = partitions[key] else { return nil }
        if let index = state.inflightSequences.firstIndex(of: batch.baseSequence) {
            state.inflightSequences.remove(at: index)
        }
        defer { partitions[key] = state }
        switch outcome {
        case .acknowledged(let baseOffset):
            finish(bufferedBytes: batch.bufferedBytes, count: batch.recordCount)
            return batch.messageIDs.enumerated().map { index, id in
                DeliveryReport(id: id, stream: key.stream, partition: key.partition,
                               offset: baseOffset.map { $0 + Int64(index) }, error: nil)
            }
        case .failed(let error):
            if shouldRetry(batch, error: error, state: state) {
                var retry = batch
                let shift = min(retry.attempts - 1, 16)
                let backoff = min(settings.retryBackoffMilliseconds << Int64(shift), settings.retryBackoffMaxMilliseconds)
                retry.notBefore = now + .milliseconds(backoff)
                let position = state.ready.firstIndex { sequenceIsAfter($0.baseSequence, retry.baseSequence) } ?? state.ready.endIndex
                state.ready.insert(retry, at: position)
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
        for state in partitions.values {
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
        partitions.values.contains { state in
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
        for key in partitions.keys {
            guard var state = partitions[key] else { continue }
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
            partitions[key] = state
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

    private func choosePartition(_ message: ProducerMessage, _ stream: StreamState) throws(ProducerError) -> Int32 {
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

    /// Returns whether the sender must wake up.
    private mutating func appendToOpenBatch(_ key: StreamPartition, id: MessageID, message: ProducerMessage,
                                            timestamp: Int64, size: Int, now: NIODeadline) -> Bool {
        var state = partitions.removeValue(forKey: key) ?? PartitionState(builder: makeBuilder())
        var wake = false
        if state.hasOpenRecords && state.openBufferedBytes + size > settings.batchBytesMax {
            // The record does not fit: the open batch is full, send it.
            if canSeal {
                // Sealing reports failures only if the codec fails; those are delivered on the next drain.
                sealedFailures += seal(key, &state)
            }
            wake = true
        }
        if !state.hasOpenRecords {
            state.lingerDeadline = now + .milliseconds(settings.lingerMilliseconds)
            wake = true
        }
        state.builder.append(timestamp: timestamp, key: message.key, value: message.value, headers: message.headers)
        state.openMessageIDs.append(id)
        state.openBufferedBytes += size
        partitions[key] = state
        return wake
    }

    /// Reports of batches that failed to build while appending, handed out by `takeSealFailures`.
    private(set) var sealedFailures: [DeliveryReport] = []

    mutating func takeSealFailures() -> [DeliveryReport] {
        defer { sealedFailures.removeAll() }
        return sealedFailures
    }

    private func makeBuilder() -> RecordBatchBuilder {
        let compression: RecordBatchBuilder.Compression = settings.compression == .lz4 ? .lz4() : .none
        return RecordBatchBuilder(configuration: .init(compression: compression),
                                  initialCapacity: min(settings.batchBytesMax, 16 * 1024))
    }

    private mutating func seal(_ key: StreamPartition, _ state: inout PartitionState) -> [DeliveryReport] {
        let count = Int32(truncatingIfNeeded: state.openMessageIDs.count)
        if let identity = producerIdentity, settings.idempotent {
            state.builder.configuration.producerId = identity.id
            state.builder.configuration.producerEpoch = identity.epoch
            state.builder.configuration.baseSequence = state.nextSequence
        }
        let ids = state.openMessageIDs
        let buffered = state.openBufferedBytes
        state.openMessageIDs = []
        state.openMessageIDs.reserveCapacity(ids.count)
        state.openBufferedBytes = 0
        state.lingerDeadline = nil
        // The next keyless record starts a batch elsewhere, spreading load over partitions.
        if let stream = streams[key.stream], stream.stickyPartition == key.partition, stream.partitionCount > 1 {
            streams[key.stream]?.stickyPartition = (key.partition + 1) % stream.partitionCount
        }
        do {
            let bytes = try state.builder.build()
            let baseSequence = settings.idempotent ? state.nextSequence : -1
            if settings.idempotent { state.nextSequence = Self.sequence(state.nextSequence, plus: count) }
            state.ready.append(SealedBatch(streamPartition: key, bytes: bytes, messageIDs: ids,
                                           baseSequence: baseSequence, bufferedBytes: buffered))
            return []
        } catch {
            state.builder.reset()
            finish(bufferedBytes: buffered, count: ids.count)
            let failure = ProducerError.connection("could not encode the batch: \(error)")
            return ids.map { DeliveryReport(id: $0, stream: key.stream, partition: key.partition, offset: nil, error: failure) }
        }
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
