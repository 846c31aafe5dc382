import EventFlowProtocol
import EventFlowStorage
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// One partition of a Fetch request, resolved against the organization's streams.
struct FetchPartitionPlan: Sendable {
    var topicIndex: Int
    var partitionIndex: Int32
    /// nil: no such stream or partition in the key's organization.
    var partition: StreamPartition?
    var fetchOffset: Int64
    var partitionMaxBytes: Int
}

/// A Fetch request as the fetch service serves it.
struct FetchPlan: Sendable {
    var topics: [String]
    var partitions: [FetchPartitionPlan]
    var minBytes: Int
    var maxBytes: Int
    var maxWaitMilliseconds: Int64
}

/// Serves Fetch and ListOffsets from committed data: the tail cache (filled by the commit path)
/// for recent batches, catch-up reads from PostgreSQL (on their own threads and connections)
/// for older ones, and `FetchWaits` for long polls parked at the tail.
///
/// The high watermark a consumer sees advances only when a committed flush has been put into
/// the tail cache, so a consumer at the tail always finds its batches there.
public final class FetchService: Sendable {
    public struct Configuration: Hashable, Sendable {
        /// Bound on the tail cache's batch bytes (0 disables it: every read goes to PostgreSQL).
        public var tailCacheBytesMax: Int
        /// Cap on a fetch's `maxWaitMs`.
        public var waitMillisecondsMax: Int64
        /// Cap on a fetch response's batch bytes (the first batch is sent whole regardless).
        public var responseBytesMax: Int
        /// Bound on long polls parked at once; beyond it a fetch is answered at once.
        public var waitsMax: Int
        /// Threads (each with its own PostgreSQL connection) serving catch-up reads.
        public var catchUpThreads: Int

        public init(tailCacheBytesMax: Int = 256 << 20, waitMillisecondsMax: Int64 = 30_000,
                    responseBytesMax: Int = 16 << 20, waitsMax: Int = 10_000, catchUpThreads: Int = 2) {
            self.tailCacheBytesMax = max(tailCacheBytesMax, 0)
            self.waitMillisecondsMax = max(waitMillisecondsMax, 0)
            self.responseBytesMax = max(responseBytesMax, 1)
            self.waitsMax = max(waitsMax, 0)
            self.catchUpThreads = max(catchUpThreads, 1)
        }
    }

    /// Where a partition's offsets are stored: the offset → day index of catch-up reads.
    struct DayIndex: Sendable {
        var ranges: [StoredDayRange]
        /// False when days overlap in offsets (a clock that went back): then reads go through
        /// the parent table instead of one daily partition.
        var isOrdered: Bool

        init(_ ranges: [StoredDayRange]) {
            self.ranges = ranges
            self.isOrdered = zip(ranges, ranges.dropFirst()).allSatisfy { $0.lastOffset < $1.firstOffset }
        }

        /// Without the days that hold only offsets below `logStart` (retention may drop them).
        func trimmed(below logStart: Int64) -> DayIndex {
            DayIndex(ranges.filter { $0.lastOffset >= logStart })
        }

        /// The daily partition holding `offset` and the first offset of the next one (nil: the
        /// last known day, open-ended); table nil reads through the parent table.
        func locate(_ offset: Int64) -> (table: String?, endOffset: Int64?) {
            guard isOrdered, let index = ranges.lastIndex(where: { $0.firstOffset <= offset }) else { return (nil, nil) }
            let next = ranges.index(after: index)
            return (ranges[index].table, next < ranges.endIndex ? ranges[next].firstOffset : nil)
        }
    }

    private struct State: Sendable {
        var cache: TailCache
        var waits: FetchWaits
        var parked: [FetchWaits.WaitID: @Sendable () -> Void] = [:]
        var nextWaitID: UInt64 = 1
        var dayIndexes: [StreamPartition: DayIndex] = [:]
        /// Kafka's logStartOffset per partition (0 when absent): persisted by retention
        /// (`log_start_offsets`), read once before the first answer that depends on it.
        var logStartOffsets: [StreamPartition: Int64] = [:]
        var logStartsLoaded = false
        var isShutDown = false
    }

    public let configuration: Configuration
    private let state: NIOLockedValueBox<State>
    private let reads: ControlPlane
    private let batcher: WriteAheadBatcher
    private let timerLoop: any EventLoop
    private let logger: Logger
    private let metrics: BrokerMetrics?

    public init(configuration: Configuration, databaseURL: String, batcher: WriteAheadBatcher,
                timerLoop: any EventLoop, logger: Logger, metrics: BrokerMetrics? = nil) {
        self.configuration = configuration
        self.state = NIOLockedValueBox(State(cache: TailCache(bytesMax: configuration.tailCacheBytesMax),
                                             waits: FetchWaits(waitsMax: configuration.waitsMax)))
        self.reads = ControlPlane(databaseURL: databaseURL, threads: configuration.catchUpThreads)
        self.batcher = batcher
        self.timerLoop = timerLoop
        self.logger = logger
        self.metrics = metrics
    }

    /// Bytes the tail cache holds.
    var tailCacheBytes: Int { state.withLockedValue { $0.cache.bytes } }

    /// Answers every parked fetch and stops the catch-up threads.
    public func shutdown() {
        let actions = state.withLockedValue { state -> [FetchWaits.Action] in
            state.isShutDown = true
            return state.waits.answerAll()
        }
        perform(actions)
        reads.shutdown()
    }

    // MARK: Commits

    /// A flush committed (called on the writer thread, before its produces are answered, so a
    /// producer that got its ack finds its batches on a fetch, as with Kafka's acks=all): its
    /// batches go into the tail cache and the watermarks move, waking the fetches parked on them.
    /// Costs one copy of the flush's bytes; parked fetches are answered on their own event loops.
    public func committed(_ flush: GroupCommit.Flush) {
        let (segment, batches, advanced) = Self.segment(of: flush)
        let actions = state.withLockedValue { state -> [FetchWaits.Action] in
            state.cache.insert(segment: segment, batches: batches)
            return state.waits.committed(advanced)
        }
        perform(actions)
    }

    // MARK: Retention

    /// Retention moved these partitions' log start offsets forward (already persisted): fetches
    /// below them are OFFSET_OUT_OF_RANGE from now on, ListOffsets earliest answers them, and the
    /// tail cache and the day index forget what lies below, before retention drops any day.
    public func logStartsAdvanced(_ starts: [StreamPartition: Int64]) {
        state.withLockedValue { state in
            for (partition, offset) in starts {
                let start = max(state.logStartOffsets[partition] ?? 0, offset)
                state.logStartOffsets[partition] = start
                state.cache.discard(partition, below: start)
                state.dayIndexes[partition] = state.dayIndexes[partition]?.trimmed(below: start)
            }
        }
    }

    /// The log start offset fetches and ListOffsets answer with now (tests and tools).
    public func logStartOffset(of partition: StreamPartition) -> Int64 {
        state.withLockedValue { $0.logStartOffsets[partition] ?? 0 }
    }

    /// Reads the persisted log start offsets once (on a catch-up thread), merged with any that
    /// retention reported meanwhile (the larger wins: a log start never moves back).
    private func loadLogStartsIfNeeded(_ db: PostgresConnection) throws {
        guard !state.withLockedValue({ $0.logStartsLoaded }) else { return }
        let stored = try LogStartOffsets.all(db)
        state.withLockedValue { state in
            for entry in stored {
                let partition = StreamPartition(streamID: entry.streamID, partition: entry.partition)
                state.logStartOffsets[partition] = max(state.logStartOffsets[partition] ?? 0, entry.offset)
            }
            state.logStartsLoaded = true
        }
    }

    /// The flush's batches as stored (assigned base offsets), grouped by partition in offset
    /// order, in one buffer; each partition's new high watermark and added bytes.
    static func segment(of flush: GroupCommit.Flush)
        -> (ByteBuffer, [TailCache.CachedBatch], [StreamPartition: (highWatermark: Int64, bytes: Int)]) {
        var order: [StreamPartition] = []
        var byPartition: [StreamPartition: [Int]] = [:]
        for (index, batch) in flush.batches.enumerated() {
            if byPartition[batch.partition] == nil { order.append(batch.partition) }
            byPartition[batch.partition, default: []].append(index)
        }
        var segment = ByteBuffer()
        segment.reserveCapacity(flush.byteCount)
        var cached: [TailCache.CachedBatch] = []
        cached.reserveCapacity(flush.batches.count)
        var advanced: [StreamPartition: (highWatermark: Int64, bytes: Int)] = [:]
        for partition in order {
            var bytes = 0
            for index in byPartition[partition] ?? [] {
                let batch = flush.batches[index]
                let start = segment.writerIndex - segment.readerIndex
                batch.writeStoredBytes(into: &segment)
                cached.append(.init(partition: partition, baseOffset: batch.baseOffset, lastOffset: batch.lastOffset,
                                    range: start..<(segment.writerIndex - segment.readerIndex)))
                bytes += batch.byteCount
                advanced[partition] = (batch.lastOffset + 1, bytes)
            }
        }
        return (segment, cached, advanced)
    }

    // MARK: Fetch

    /// Answers `plan`: at once when `minBytes` are available (or an error, or no wait asked),
    /// else when commits bring them or the wait ends.
    func fetch(_ plan: FetchPlan, on eventLoop: any EventLoop) -> EventLoopFuture<FetchResponse> {
        let promise = eventLoop.makePromise(of: FetchResponse.self)
        attempt(plan, promise: promise, mayPark: true)
        return promise.futureResult
    }

    private struct Assembled: Sendable {
        var response: FetchResponse
        var bytes: Int
        var hasError: Bool
        var observed: [StreamPartition: Int64]
    }

    private func attempt(_ plan: FetchPlan, promise: EventLoopPromise<FetchResponse>, mayPark: Bool) {
        let eventLoop = promise.futureResult.eventLoop
        // The tail: everything from the cache, on the event loop, never touching PostgreSQL.
        let fromCache = state.withLockedValue { state -> Assembled? in
            // Until the persisted log starts are read, only the catch-up path (which reads them) answers.
            guard state.logStartsLoaded else { return nil }
            return Self.assemble(plan, configuration: configuration,
                                 highWatermark: { self.highWatermark(of: $0, state.waits) },
                                 logStartOffset: { state.logStartOffsets[$0] ?? 0 },
                                 read: { partition, offset, budget, whole in
                                     guard case .batches(let records, let count, _) = state.cache.read(partition, from: offset, bytesMax: budget,
                                                                                                       firstBatchWhole: whole),
                                           count > 0 || budget == 0 || !whole else { return nil }
                                     return records
                                 })
        }
        if let fromCache {
            metrics?.fetchesFromCache.increment()
            finish(fromCache, plan: plan, promise: promise, mayPark: mayPark)
            return
        }
        metrics?.fetchesFromPostgres.increment()
        reads.run(on: eventLoop) { [self] db in
            try loadLogStartsIfNeeded(db)
            let snapshot = state.withLockedValue { state in
                (watermarks: plan.partitions.compactMap(\.partition).map { ($0, self.highWatermark(of: $0, state.waits)) },
                 starts: state.logStartOffsets)
            }
            let watermarks = Dictionary(snapshot.watermarks, uniquingKeysWith: { first, _ in first })
            return try Self.assemble(plan, configuration: configuration,
                                     highWatermark: { watermarks[$0] ?? 0 },
                                     logStartOffset: { snapshot.starts[$0] ?? 0 },
                                     read: { partition, offset, budget, whole in
                                         try self.catchUp(db, partition, from: offset, highWatermark: watermarks[partition] ?? 0,
                                                          bytesMax: budget, firstBatchWhole: whole)
                                     })
        }.whenComplete { [self] result in
            switch result {
            case .success(let assembled?):
                finish(assembled, plan: plan, promise: promise, mayPark: mayPark)
            case .success(nil):
                promise.fail(DatabaseError(message: "catch-up read found no answer"))
            case .failure(let error):
                logger.error("catch-up read failed", metadata: ["error": "\(error)"])
                promise.succeed(Self.everyPartition(plan, .kafkaStorageError))
            }
        }
    }

    private func finish(_ assembled: Assembled, plan: FetchPlan, promise: EventLoopPromise<FetchResponse>, mayPark: Bool) {
        let waitMilliseconds = min(plan.maxWaitMilliseconds, configuration.waitMillisecondsMax)
        guard mayPark, !assembled.hasError, assembled.bytes < plan.minBytes, waitMilliseconds > 0, !assembled.observed.isEmpty else {
            promise.succeed(assembled.response)
            return
        }
        let now = NIODeadline.now().uptimeNanoseconds
        let deadline = now + UInt64(waitMilliseconds) * 1_000_000
        let actions = state.withLockedValue { state -> [FetchWaits.Action] in
            guard !state.isShutDown else { return [] }
            let id = FetchWaits.WaitID(state.nextWaitID)
            state.nextWaitID += 1
            state.parked[id] = { [self] in
                promise.futureResult.eventLoop.execute { self.attempt(plan, promise: promise, mayPark: false) }
            }
            return state.waits.park(id, observed: assembled.observed, bytesAvailable: assembled.bytes,
                                    minBytes: plan.minBytes, deadline: deadline, now: now)
        }
        if actions.isEmpty && state.withLockedValue({ $0.isShutDown }) {
            promise.succeed(assembled.response)
            return
        }
        perform(actions)
    }

    private func perform(_ actions: [FetchWaits.Action]) {
        for action in actions {
            switch action {
            case .answer(let id):
                let answer = state.withLockedValue { $0.parked.removeValue(forKey: id) }
                answer?()
            case .scheduleTimer(let deadline):
                timerLoop.scheduleTask(deadline: .uptimeNanoseconds(deadline)) { [self] in
                    let now = NIODeadline.now().uptimeNanoseconds
                    perform(state.withLockedValue { $0.waits.timerFired(now: now) })
                }
            }
        }
    }

    /// Committed end as consumers see it: moved by the cache fill; before a partition's first
    /// commit since start, the batcher's (what the log held at start).
    private func highWatermark(of partition: StreamPartition, _ waits: borrowing FetchWaits) -> Int64 {
        waits.highWatermark(of: partition) ?? batcher.highWatermark(of: partition) ?? 0
    }

    /// The response for `plan`, reading each partition with `read` (nil from `read`: this path
    /// cannot serve the partition, the whole assembly is nil). Response budget rule (Kafka's):
    /// batches are whole; a partition gets at most `partitionMaxBytes` and what is left of
    /// `maxBytes`, except that the first batch of the response is sent even if larger, so a
    /// consumer always progresses.
    private static func assemble(_ plan: FetchPlan, configuration: Configuration,
                                 highWatermark: (StreamPartition) -> Int64, logStartOffset: (StreamPartition) -> Int64,
                                 read: (StreamPartition, Int64, Int, Bool) throws -> ByteBuffer?) rethrows -> Assembled? {
        var topics = plan.topics.map { FetchResponse.Topic(topic: $0, partitions: []) }
        var responseBytesLeft = min(plan.maxBytes, configuration.responseBytesMax)
        var bytes = 0
        var hasError = false
        var observed: [StreamPartition: Int64] = [:]
        for entry in plan.partitions {
            guard let partition = entry.partition else {
                hasError = true
                topics[entry.topicIndex].partitions.append(.init(partitionIndex: entry.partitionIndex, errorCode: .unknownTopicOrPartition,
                                                                 highWatermark: -1, lastStableOffset: -1, logStartOffset: -1,
                                                                 records: ByteBuffer()))
                continue
            }
            let highWatermark = highWatermark(partition)
            let logStart = min(logStartOffset(partition), highWatermark)
            var answer = FetchResponse.Partition(partitionIndex: entry.partitionIndex, highWatermark: highWatermark,
                                                 lastStableOffset: highWatermark, logStartOffset: logStart, records: ByteBuffer())
            observed[partition] = highWatermark
            if entry.fetchOffset < logStart || entry.fetchOffset > highWatermark {
                answer.errorCode = .offsetOutOfRange
                hasError = true
            } else if entry.fetchOffset < highWatermark {
                let budget = max(min(entry.partitionMaxBytes, responseBytesLeft), 0)
                guard let records = try read(partition, entry.fetchOffset, budget, bytes == 0) else { return nil }
                answer.records = records
                bytes += records.readableBytes
                responseBytesLeft -= records.readableBytes
            }
            topics[entry.topicIndex].partitions.append(answer)
        }
        return Assembled(response: FetchResponse(responses: topics), bytes: bytes, hasError: hasError, observed: observed)
    }

    static func everyPartition(_ plan: FetchPlan, _ code: ErrorCode) -> FetchResponse {
        var topics = plan.topics.map { FetchResponse.Topic(topic: $0, partitions: []) }
        for entry in plan.partitions {
            topics[entry.topicIndex].partitions.append(.init(partitionIndex: entry.partitionIndex, errorCode: code, highWatermark: -1,
                                                             lastStableOffset: -1, logStartOffset: -1, records: ByteBuffer()))
        }
        return FetchResponse(responses: topics)
    }

    /// Batches of `partition` from `offset` below `highWatermark`, from the tail cache where it
    /// holds them, else from PostgreSQL, one daily partition at a time (the day index says which).
    private func catchUp(_ db: PostgresConnection, _ partition: StreamPartition, from offset: Int64, highWatermark: Int64,
                         bytesMax: Int, firstBatchWhole: Bool) throws -> ByteBuffer {
        var records = ByteBuffer()
        var next = offset
        var budget = bytesMax
        var whole = firstBatchWhole
        var rebuilt = false
        func append(_ more: ByteBuffer) {
            if records.readableBytes == 0 { records = more } else { records.writeImmutableBuffer(more) }
            budget -= more.readableBytes
            whole = false
        }
        while next < highWatermark, budget > 0 || whole {
            let cached = state.withLockedValue { $0.cache.read(partition, from: next, bytesMax: budget, firstBatchWhole: whole) }
            if case .batches(let more, _, _) = cached {
                append(more)
                break
            }
            let index = try dayIndex(db, partition, rebuild: false)
            let (table, endOffset) = index.locate(next)
            let bound = min(endOffset ?? highWatermark, highWatermark)
            let read: StoredBatches
            do {
                read = try EventBatchReads.batches(db, table: table, streamID: partition.streamID, partition: partition.partition,
                                                   containing: next, below: bound, bytesMax: budget, firstBatchWhole: whole)
            } catch let error as DatabaseError where error.sqlState == "42P01" && !rebuilt {
                // Retention dropped the day this read was sent to (it started before the log
                // start moved past it): read the index again, without that day.
                _ = try dayIndex(db, partition, rebuild: true)
                rebuilt = true
                continue
            }
            if read.batchCount > 0 {
                append(read.records)
                next = read.nextOffset
            }
            if read.stoppedAtBudget { break }
            if next < bound {
                // The day index did not know where these offsets are (a day added since it was read).
                guard !rebuilt, table != nil else { break }
                _ = try dayIndex(db, partition, rebuild: true)
                rebuilt = true
            }
        }
        return records
    }

    private func dayIndex(_ db: PostgresConnection, _ partition: StreamPartition, rebuild: Bool) throws -> DayIndex {
        if !rebuild, let index = state.withLockedValue({ $0.dayIndexes[partition] }) { return index }
        let ranges = try EventBatchReads.dayRanges(db, streamID: partition.streamID, partition: partition.partition)
        return state.withLockedValue { state in
            // The log starts at the first stored offset, or later where retention moved it (its
            // day may still be stored, shared with streams that keep it).
            let start = max(state.logStartOffsets[partition] ?? 0, ranges.first?.firstOffset ?? 0)
            state.logStartOffsets[partition] = start
            let index = DayIndex(ranges).trimmed(below: start)
            state.dayIndexes[partition] = index
            return index
        }
    }

    // MARK: ListOffsets

    /// One partition of a ListOffsets request, resolved.
    struct OffsetQuery: Sendable {
        var topicIndex: Int
        var partitionIndex: Int32
        var partition: StreamPartition?
        var timestamp: Int64
    }

    func listOffsets(topics: [String], queries: [OffsetQuery], on eventLoop: any EventLoop) -> EventLoopFuture<ListOffsetsResponse> {
        let needsDatabase = queries.contains { $0.partition != nil && $0.timestamp >= 0 }
            || (queries.contains { $0.partition != nil } && !state.withLockedValue { $0.logStartsLoaded })
        let answer: @Sendable (PostgresConnection?) throws -> ListOffsetsResponse = { [self] db in
            if let db { try loadLogStartsIfNeeded(db) }
            var result = topics.map { ListOffsetsResponse.Topic(name: $0, partitions: []) }
            for query in queries {
                result[query.topicIndex].partitions.append(try offset(for: query, db))
            }
            return ListOffsetsResponse(topics: result)
        }
        guard needsDatabase else { return eventLoop.makeCompletedFuture(withResultOf: { try answer(nil) }) }
        let logger = logger
        return reads.run(on: eventLoop) { db in try answer(db) }.recover { error in
            logger.error("ListOffsets by timestamp failed", metadata: ["error": "\(error)"])
            var result = topics.map { ListOffsetsResponse.Topic(name: $0, partitions: []) }
            for query in queries {
                result[query.topicIndex].partitions.append(.init(partitionIndex: query.partitionIndex, errorCode: .kafkaStorageError))
            }
            return ListOffsetsResponse(topics: result)
        }
    }

    private func offset(for query: OffsetQuery, _ db: PostgresConnection?) throws -> ListOffsetsResponse.Partition {
        guard let partition = query.partition else {
            return .init(partitionIndex: query.partitionIndex, errorCode: .unknownTopicOrPartition)
        }
        let (highWatermark, logStart) = state.withLockedValue { state in
            (self.highWatermark(of: partition, state.waits), state.logStartOffsets[partition] ?? 0)
        }
        switch query.timestamp {
        case ListOffsetsRequest.latestTimestamp:
            return .init(partitionIndex: query.partitionIndex, oldStyleOffsets: [highWatermark], offset: highWatermark, leaderEpoch: 0)
        case ListOffsetsRequest.earliestTimestamp:
            let earliest = min(logStart, highWatermark)
            return .init(partitionIndex: query.partitionIndex, oldStyleOffsets: [earliest], offset: earliest, leaderEpoch: 0)
        case ..<0:
            return .init(partitionIndex: query.partitionIndex, errorCode: .invalidRequest)
        default:
            guard let db, let batch = try EventBatchReads.firstBatch(db, streamID: partition.streamID, partition: partition.partition,
                                                                     from: min(logStart, highWatermark), timestampAtLeast: query.timestamp),
                  batch.baseOffset < highWatermark else {
                return .init(partitionIndex: query.partitionIndex)
            }
            // The batch's max timestamp reaches the target; the answer is its first record that does.
            var found = (offset: batch.baseOffset, timestamp: batch.maxTimestampMilliseconds)
            if let view = try? RecordBatchView(validating: batch.bytes),
               var records = try? view.records(decompressedBytesMax: Self.timestampSearchBytesMax) {
                while let record = try? records.next() {
                    if record.timestamp >= query.timestamp {
                        found = (record.offset, record.timestamp)
                        break
                    }
                }
            }
            return .init(partitionIndex: query.partitionIndex, oldStyleOffsets: [found.offset], timestamp: found.timestamp,
                         offset: found.offset, leaderEpoch: 0)
        }
    }

    /// Bound on the memory one batch's decompression may take while looking up a timestamp.
    static let timestampSearchBytesMax = 64 << 20
}
