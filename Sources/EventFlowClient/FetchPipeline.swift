import EventFlowProtocol
import NIOCore

/// A ListOffsets question about one partition: −1 latest, −2 earliest, otherwise a time in ms.
struct OffsetQuery: Sendable, Hashable {
    var partition: StreamPartition
    var timestamp: Int64

    static func latest(_ partition: StreamPartition) -> OffsetQuery { OffsetQuery(partition: partition, timestamp: ListOffsetsRequest.latestTimestamp) }
    static func earliest(_ partition: StreamPartition) -> OffsetQuery { OffsetQuery(partition: partition, timestamp: ListOffsetsRequest.earliestTimestamp) }
}

/// The whole batches of one partition's Fetch answer, CRC-checked, and where the next fetch starts.
struct FetchedRecords: Sendable {
    /// Data batches in offset order (control batches are left out).
    var batches: [RecordBatchView]
    /// Bytes of the answer's records field: what the prefetch budget accounts for.
    var byteCount: Int
    /// The offset after the last whole batch; the fetch offset when there was none.
    var nextOffset: Int64
    /// A batch that failed its checks; the batches before it are still delivered.
    var corruption: ConsumerError?

    /// Splits a partition's records field into validated batches. A trailing batch cut short by
    /// the size limit is dropped (it is fetched again whole); batches wholly before
    /// `fetchOffset` are dropped too (the broker answers from the batch containing it).
    static func parse(_ records: ByteBuffer?, partition: StreamPartition, fetchOffset: Int64,
                      partitionFetchBytes: Int) -> FetchedRecords {
        guard let records, records.readableBytes > 0 else {
            return FetchedRecords(batches: [], byteCount: 0, nextOffset: fetchOffset)
        }
        var result = FetchedRecords(batches: [], byteCount: records.readableBytes, nextOffset: fetchOffset)
        var sequence = RecordBatchSequence(records, allowsTrailingPartialBatch: true)
        do {
            while let batch = try sequence.next() {
                let header = batch.header
                guard header.lastOffset >= result.nextOffset else { continue }
                guard header.baseOffset >= result.nextOffset || result.batches.isEmpty else {
                    throw ProtocolError(.corruptRecord, field: "RecordBatch.baseOffset", offset: 0,
                                        detail: "batch at \(header.baseOffset) overlaps the one before (next offset \(result.nextOffset))")
                }
                result.nextOffset = header.lastOffset + 1
                if !header.attributes.isControl && header.recordCount > 0 { result.batches.append(batch) }
            }
        } catch {
            result.corruption = .corruptBatch(stream: partition.stream, partition: partition.partition,
                                              offset: result.nextOffset, detail: "\(error)")
            return result
        }
        // Bytes came but no whole batch: the next batch is larger than a partition's share of a fetch.
        if result.nextOffset == fetchOffset && result.batches.isEmpty {
            result.corruption = .batchTooLarge(stream: partition.stream, partition: partition.partition,
                                               offset: fetchOffset, fetchBytes: partitionFetchBytes)
        }
        return result
    }
}

/// The consumer's read side as a value: where each partition stands, what to ask the broker next,
/// and the fetched batches waiting for the application, within `prefetchBytesMax`.
///
/// The fetch loop asks `nextStep`, performs it (one request at a time: a partition's next offset
/// is known only from its last answer) and reports the outcome; the application's iterator takes
/// `Delivery`s in order and releases their bytes. A Fetch is sent only while the answer it asks
/// for fits in the budget beside what is still unread, so a slow reader stops the fetching.
struct FetchPipeline: Sendable {
    struct Settings: Sendable {
        var prefetchBytesMax: Int
        var fetchBytesMax: Int
        var partitionFetchBytesMax: Int
        var autoOffsetReset: ConsumerConfiguration.AutoOffsetReset
        var finishAtHighWatermark: Bool
        var retriesMax: Int
        var retryBackoffMilliseconds: Int
        var retryBackoffMaxMilliseconds: Int

        init(_ configuration: ConsumerConfiguration) {
            prefetchBytesMax = configuration.prefetchBytesMax
            fetchBytesMax = configuration.fetchBytesMax
            partitionFetchBytesMax = configuration.partitionFetchBytesMax
            autoOffsetReset = configuration.autoOffsetReset
            finishAtHighWatermark = configuration.finishAtHighWatermark
            retriesMax = configuration.retriesMax
            retryBackoffMilliseconds = configuration.retryBackoffMilliseconds
            retryBackoffMaxMilliseconds = configuration.retryBackoffMaxMilliseconds
        }
    }

    /// Why a partition's offset is being looked up.
    enum Resolution: Sendable, Hashable {
        case start(ConsumerConfiguration.StartOffset)
        /// After OFFSET_OUT_OF_RANGE, by `autoOffsetReset`.
        case reset(toEarliest: Bool)
    }

    enum Position: Sendable, Hashable {
        case resolving(Resolution)
        /// The next offset to fetch.
        case fetching(Int64)
    }

    struct PartitionState: Sendable {
        var position: Position
        /// With `finishAtHighWatermark`: the high watermark at the start; nothing at or after it is read.
        var endOffset: Int64?
        /// Retriable failures in a row; reset by a good answer.
        var failures = 0
        var notBefore: NIODeadline?

        var isDone: Bool {
            guard case .fetching(let offset) = position, let endOffset else { return false }
            return offset >= endOffset
        }
    }

    struct FetchPlan: Sendable, Equatable {
        var partitions: [(partition: StreamPartition, fetchOffset: Int64)]
        var maxBytes: Int
        var partitionMaxBytes: Int

        static func == (lhs: FetchPlan, rhs: FetchPlan) -> Bool {
            lhs.maxBytes == rhs.maxBytes && lhs.partitionMaxBytes == rhs.partitionMaxBytes
                && lhs.partitions.map(\.partition) == rhs.partitions.map(\.partition)
                && lhs.partitions.map(\.fetchOffset) == rhs.partitions.map(\.fetchOffset)
        }
    }

    enum Step: Sendable, Equatable {
        case listOffsets([OffsetQuery])
        case fetch(FetchPlan)
        /// Nothing to send until woken (bytes released) or, when given, until the deadline (a backoff ends).
        case wait(until: NIODeadline?)
        /// Every partition is done, or the consumer failed: the fetch loop ends.
        case finished
    }

    /// One partition's part of a Fetch answer.
    enum PartitionAnswer: Sendable {
        case records(FetchedRecords)
        case outOfRange
        /// Worth trying again after a backoff (a retriable broker error, a partition missing in the answer).
        case retriable(ConsumerError)
        case failed(ConsumerError)
    }

    /// What the application's iterator receives, in order.
    enum Delivery: Sendable {
        /// Batches of one partition; only offsets in `deliverable` are handed out.
        case batches(partition: StreamPartition, batches: [RecordBatchView], deliverable: Range<Int64>, byteCount: Int)
        case failure(ConsumerError)
        /// Every partition reached its end offset (`finishAtHighWatermark`).
        case end
    }

    let settings: Settings
    private(set) var order: [StreamPartition] = []
    private(set) var partitions: [StreamPartition: PartitionState] = [:]
    /// Fetched bytes not yet released by the iterator.
    private(set) var bufferedBytes = 0
    /// Bounded by `prefetchBytesMax` (every `.batches` entry holds fetched bytes) plus one failure or end.
    private var deliveries = CircularBuffer<Delivery>(initialCapacity: 16)
    private(set) var failure: ConsumerError?
    private var endDelivered = false

    init(settings: Settings) {
        self.settings = settings
    }

    /// The bytes one Fetch may bring: never more than the whole budget.
    var requestBytes: Int { min(settings.fetchBytesMax, settings.prefetchBytesMax) }

    var isAssigned: Bool { !order.isEmpty }
    var deliveriesWaiting: Int { deliveries.count }

    mutating func assign(_ assignment: [(partition: StreamPartition, start: ConsumerConfiguration.StartOffset)]) {
        for (partition, start) in assignment where partitions[partition] == nil {
            order.append(partition)
            // An explicit offset needs no lookup, unless the end offset is wanted too.
            if case .offset(let offset) = start, !settings.finishAtHighWatermark {
                partitions[partition] = PartitionState(position: .fetching(offset))
            } else {
                partitions[partition] = PartitionState(position: .resolving(.start(start)))
            }
        }
    }

    /// The group took these partitions away: they are no longer fetched, and their fetched
    /// records still waiting are dropped (their bytes go back to the budget), never delivered.
    mutating func revoke(_ revoked: [StreamPartition]) {
        let gone = Set(revoked)
        guard !gone.isEmpty else { return }
        order.removeAll { gone.contains($0) }
        for partition in revoked { partitions[partition] = nil }
        var kept = CircularBuffer<Delivery>(initialCapacity: deliveries.count)
        while let delivery = deliveries.popFirst() {
            if case .batches(let partition, _, _, let byteCount) = delivery, gone.contains(partition) {
                release(byteCount)
                continue
            }
            kept.append(delivery)
        }
        deliveries = kept
    }

    // MARK: the fetch loop

    mutating func nextStep(now: NIODeadline) -> Step {
        if failure != nil { return .finished }
        var queries: [OffsetQuery] = []
        var fetchable: [(partition: StreamPartition, fetchOffset: Int64)] = []
        var nextRetry: NIODeadline?
        for key in order {
            guard let state = partitions[key], !state.isDone else { continue }
            if let notBefore = state.notBefore, notBefore > now {
                nextRetry = min(nextRetry ?? notBefore, notBefore)
                continue
            }
            switch state.position {
            case .resolving(let resolution): queries += Self.queries(for: key, resolution, needsEnd: needsEndOffset(state))
            case .fetching(let offset): fetchable.append((key, offset))
            }
        }
        if !queries.isEmpty { return .listOffsets(queries) }
        if !fetchable.isEmpty {
            // The answer may bring up to requestBytes (more only for one oversized first batch).
            guard bufferedBytes == 0 || bufferedBytes + requestBytes <= settings.prefetchBytesMax else { return .wait(until: nil) }
            return .fetch(FetchPlan(partitions: fetchable, maxBytes: requestBytes,
                                    partitionMaxBytes: min(settings.partitionFetchBytesMax, requestBytes)))
        }
        if let nextRetry { return .wait(until: nextRetry) }
        if isAssigned && partitions.values.allSatisfy(\.isDone) {
            if !endDelivered {
                endDelivered = true
                deliveries.append(.end)
            }
            return .finished
        }
        return .wait(until: nil)
    }

    private func needsEndOffset(_ state: PartitionState) -> Bool {
        settings.finishAtHighWatermark && state.endOffset == nil
    }

    private static func queries(for key: StreamPartition, _ resolution: Resolution, needsEnd: Bool) -> [OffsetQuery] {
        var queries: [OffsetQuery] = []
        switch resolution {
        case .start(.beginning), .reset(toEarliest: true): queries = [.earliest(key)]
        case .start(.end), .reset(toEarliest: false): queries = [.latest(key)]
        case .start(.offset): queries = []
        case .start(.timestamp(let milliseconds)):
            // The end too: a time after the last record finds no offset, and reading starts at the end.
            queries = [OffsetQuery(partition: key, timestamp: milliseconds), .latest(key)]
        case .start(.beforeEnd): queries = [.earliest(key), .latest(key)]
        }
        if needsEnd && !queries.contains(.latest(key)) { queries.append(.latest(key)) }
        return queries
    }

    /// The answers to a `.listOffsets` step; −1 means "no such offset". A partition whose answers
    /// are missing is asked again after a backoff.
    mutating func offsetsListed(_ answers: [OffsetQuery: Int64], now: NIODeadline) {
        for key in order {
            guard var state = partitions[key], case .resolving(let resolution) = state.position else { continue }
            let needs = Self.queries(for: key, resolution, needsEnd: needsEndOffset(state))
            guard needs.allSatisfy({ answers[$0] != nil }) else { continue }
            let latest = answers[.latest(key)]
            if settings.finishAtHighWatermark && state.endOffset == nil { state.endOffset = latest }
            let offset: Int64
            switch resolution {
            case .start(.beginning), .reset(toEarliest: true): offset = answers[.earliest(key)] ?? 0
            case .start(.end), .reset(toEarliest: false): offset = latest ?? 0
            case .start(.offset(let value)): offset = value
            case .start(.timestamp(let milliseconds)):
                let found = answers[OffsetQuery(partition: key, timestamp: milliseconds)] ?? -1
                offset = found >= 0 ? found : latest ?? 0
            case .start(.beforeEnd(let count)):
                let end = latest ?? 0
                offset = max(answers[.earliest(key)] ?? 0, end >= count ? end - count : 0)
            }
            state.position = .fetching(max(offset, 0))
            state.failures = 0
            state.notBefore = nil
            partitions[key] = state
        }
    }

    /// A partition's ListOffsets answer carried an error.
    mutating func offsetsFailed(_ key: StreamPartition, error: ConsumerError, now: NIODeadline) {
        guard error.isRetriable else { return fail(error) }
        backOff(key, error: error, now: now)
    }

    /// The answers to a `.fetch` step, by partition; partitions of the plan not listed are asked again.
    mutating func fetchAnswered(_ plan: FetchPlan, answers: [StreamPartition: PartitionAnswer], now: NIODeadline) {
        for (key, fetchOffset) in plan.partitions {
            guard var state = partitions[key], state.position == .fetching(fetchOffset) else { continue }
            switch answers[key] {
            case nil:
                backOff(key, error: .connection("the Fetch answer does not mention \(key)"), now: now)
            case .records(let fetched)?:
                if !fetched.batches.isEmpty {
                    let end = state.endOffset ?? .max
                    deliveries.append(.batches(partition: key, batches: fetched.batches,
                                               deliverable: fetchOffset ..< max(end, fetchOffset), byteCount: fetched.byteCount))
                    bufferedBytes += fetched.byteCount
                }
                assert(fetched.nextOffset >= fetchOffset, "a partition's fetch offset never moves back")
                state.position = .fetching(fetched.nextOffset)
                state.failures = 0
                state.notBefore = nil
                partitions[key] = state
                if let corruption = fetched.corruption { fail(corruption) }
            case .outOfRange?:
                switch settings.autoOffsetReset {
                case .earliest: state.position = .resolving(.reset(toEarliest: true))
                case .latest: state.position = .resolving(.reset(toEarliest: false))
                case .error: fail(.offsetOutOfRange(stream: key.stream, partition: key.partition, offset: fetchOffset))
                }
                partitions[key] = state
            case .retriable(let error)?:
                backOff(key, error: error, now: now)
            case .failed(let error)?:
                fail(error)
            }
            if failure != nil { return }
        }
    }

    private mutating func backOff(_ key: StreamPartition, error: ConsumerError, now: NIODeadline) {
        guard var state = partitions[key] else { return }
        state.failures += 1
        if state.failures > settings.retriesMax { return fail(error) }
        let milliseconds = min(settings.retryBackoffMilliseconds << min(state.failures - 1, 16), settings.retryBackoffMaxMilliseconds)
        state.notBefore = now + .milliseconds(Int64(milliseconds))
        partitions[key] = state
    }

    /// The consumer cannot go on: the error is delivered after what was fetched before it.
    mutating func fail(_ error: ConsumerError) {
        guard failure == nil else { return }
        failure = error
        deliveries.append(.failure(error))
    }

    // MARK: the application's iterator

    /// Releases the bytes of the delivery the iterator finished and hands out the next one, if any.
    mutating func take(releasing bytes: Int) -> Delivery? {
        release(bytes)
        return deliveries.popFirst()
    }

    mutating func release(_ bytes: Int) {
        assert(bytes <= bufferedBytes, "released \(bytes) bytes with only \(bufferedBytes) buffered")
        bufferedBytes -= min(bytes, bufferedBytes)
    }
}
