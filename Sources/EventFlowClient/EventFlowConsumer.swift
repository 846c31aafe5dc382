import EventFlowProtocol
import Logging
import Metrics
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// Reads records from EventFlow streams by offset, over one persistent connection.
///
/// `run()` (a swift-service-lifecycle `Service`) looks up the assigned partitions and their start
/// offsets, then fetches ahead of the application within `prefetchBytesMax`; `messages` hands the
/// records out in offset order per partition.
///
/// ```swift
/// let configuration = ConsumerConfiguration(assignment: .partitions([("orders", 0, .beginning)]),
///     brokers: [BrokerAddress(host: "127.0.0.1", port: 9092)],
///     credentials: APIKeyCredentials(keyID: keyID, secret: secret), security: .tls(caFilePath: caPath))
/// let consumer = try EventFlowConsumer(configuration: configuration, logger: logger)
/// async let running: Void = consumer.run()
/// for try await message in consumer.messages { print(message.offset, String(buffer: message.value!)) }
/// ```
public final class EventFlowConsumer: Service, Sendable {
    public let configuration: ConsumerConfiguration
    /// The records, in offset order per partition. Iterate it once, from one task.
    public let messages: ConsumerMessages
    private let shared: ConsumerShared
    private let logger: Logger
    private let eventLoopGroup: any EventLoopGroup

    public init(configuration: ConsumerConfiguration, logger: Logger) throws(ConsumerError) {
        if let problem = configuration.validationError() { throw .invalidConfiguration(problem) }
        self.configuration = configuration
        self.logger = logger
        self.eventLoopGroup = MultiThreadedEventLoopGroup.singleton
        self.shared = ConsumerShared(pipeline: FetchPipeline(settings: .init(configuration)))
        self.messages = ConsumerMessages(shared: shared, decompressedBytesMax: configuration.batchDecompressedBytesMax)
    }

    /// Stops fetching; `messages` ends at its next element and `run()` returns.
    public func triggerGracefulShutdown() {
        shared.stop()
    }

    public func run() async throws {
        guard shared.start() else { throw ConsumerError.invalidConfiguration("run() may be called only once") }
        await withGracefulShutdownHandler {
            await self.fetchLoop()
        } onGracefulShutdown: {
            self.triggerGracefulShutdown()
        }
        if let failure = shared.finish() { throw failure }
    }

    // MARK: the fetch loop

    private func fetchLoop() async {
        var wakeups = shared.wakeStream.makeAsyncIterator()
        var connection: BrokerConnection?
        var failures = 0
        defer { connection?.close() }
        // A cancelled task stops too: its wakeups would no longer wait.
        while !shared.isStopping && !Task.isCancelled {
            do throws(ConsumerError) {
                if connection?.isActive != true {
                    connection?.close()
                    connection = nil
                    let connected = try await connect()
                    connection = connected
                    // Registered so that a shutdown can cut a parked fetch short.
                    if !shared.register(connected) { return }
                }
                guard let active = connection else { continue }
                if !shared.withPipeline({ $0.isAssigned }) {
                    let assignment = try await resolveAssignment(on: active)
                    shared.withPipeline { $0.assign(assignment) }
                }
                let step = shared.withPipeline { $0.nextStep(now: .now()) }
                switch step {
                case .finished:
                    shared.wakeReader()
                    return
                case .wait(let deadline):
                    let timer = deadline.map { deadline in
                        eventLoopGroup.any().scheduleTask(deadline: deadline) { [shared] in shared.wakeFetchLoop() }
                    }
                    _ = await wakeups.next()
                    timer?.cancel()
                case .listOffsets(let queries):
                    try await listOffsets(queries, on: active)
                case .fetch(let plan):
                    try await fetch(plan, on: active)
                }
                failures = 0
            } catch {
                if shared.isStopping { return }
                failures += 1
                logger.warning("consumer request failed", metadata: ["error": "\(error)", "attempt": "\(failures)"])
                if !error.isRetriable || failures > configuration.retriesMax {
                    shared.fail(error)
                    return
                }
                connection?.close()
                try? await Task.sleep(for: .milliseconds(backoffMilliseconds(attempt: failures)))
            }
        }
    }

    private func connect() async throws(ConsumerError) -> BrokerConnection {
        var lastError = ConsumerError.connection("no broker address")
        for address in configuration.brokers {
            do throws(ProducerError) {
                return try await BrokerConnection.connect(to: address, settings: ConnectionSettings(configuration),
                                                          eventLoopGroup: eventLoopGroup, logger: logger)
            } catch {
                if case .authenticationFailed = error { throw ConsumerError(error) }
                lastError = ConsumerError(error)
            }
        }
        throw lastError
    }

    private func request<Request: KafkaRequestMessage>(_ message: Request, on connection: BrokerConnection)
        async throws(ConsumerError) -> Request.Response {
        do throws(ProducerError) {
            return try await connection.request(message)
        } catch {
            throw ConsumerError(error)
        }
    }

    /// The partitions to read and where each starts, checked against Metadata.
    private func resolveAssignment(on connection: BrokerConnection) async throws(ConsumerError)
        -> [(partition: StreamPartition, start: ConsumerConfiguration.StartOffset)] {
        let wanted: [(stream: String, partition: Int32?, start: ConsumerConfiguration.StartOffset)] = switch configuration.assignment {
        case .partitions(let list): list.map { ($0.stream, Optional($0.partition), $0.start) }
        case .streams(let list): list.map { ($0.stream, nil, $0.start) }
        }
        var names: [String] = []
        for entry in wanted where !names.contains(entry.stream) { names.append(entry.stream) }
        let metadata = try await request(MetadataRequest(topics: names, allowAutoTopicCreation: false), on: connection)
        var counts: [String: Int32] = [:]
        for name in names {
            guard let topic = metadata.topics.first(where: { $0.name == name }) else { throw .unknownStream(name) }
            switch topic.errorCode {
            case .noError: counts[name] = Int32(clamping: topic.partitions.count)
            case .unknownTopicOrPartition: throw .unknownStream(name)
            case let code: throw .broker(code, message: "Metadata of \(name)")
            }
        }
        var assignment: [(partition: StreamPartition, start: ConsumerConfiguration.StartOffset)] = []
        for entry in wanted {
            let count = counts[entry.stream] ?? 0
            if let partition = entry.partition {
                guard partition < count else {
                    throw .unknownPartition(stream: entry.stream, partition: partition, partitionCount: count)
                }
                assignment.append((StreamPartition(stream: entry.stream, partition: partition), entry.start))
            } else {
                for partition in 0 ..< count {
                    assignment.append((StreamPartition(stream: entry.stream, partition: partition), entry.start))
                }
            }
        }
        return assignment
    }

    /// Asks every query; a partition appears at most once per ListOffsets request, so the
    /// queries go out in rounds.
    private func listOffsets(_ queries: [OffsetQuery], on connection: BrokerConnection) async throws(ConsumerError) {
        var rounds: [[OffsetQuery]] = []
        for query in queries {
            if let round = rounds.firstIndex(where: { !$0.contains { $0.partition == query.partition } }) {
                rounds[round].append(query)
            } else {
                rounds.append([query])
            }
        }
        let version = connection.versions[.listOffsets] ?? 0
        var answers: [OffsetQuery: Int64] = [:]
        var failures: [(StreamPartition, ConsumerError)] = []
        for round in rounds {
            var streams: [String] = []
            for query in round where !streams.contains(query.partition.stream) { streams.append(query.partition.stream) }
            let message = ListOffsetsRequest(topics: streams.map { stream in
                ListOffsetsRequest.Topic(name: stream, partitions: round.filter { $0.partition.stream == stream }.map {
                    ListOffsetsRequest.Partition(partitionIndex: $0.partition.partition, timestamp: $0.timestamp)
                })
            })
            let response = try await request(message, on: connection)
            for query in round {
                let answer = response.topics.first { $0.name == query.partition.stream }?
                    .partitions.first { $0.partitionIndex == query.partition.partition }
                guard let answer else {
                    failures.append((query.partition, .connection("the ListOffsets answer does not mention \(query.partition)")))
                    continue
                }
                guard answer.errorCode == .noError else {
                    failures.append((query.partition, .broker(answer.errorCode, message: "ListOffsets of \(query.partition)")))
                    continue
                }
                answers[query] = version == 0 ? answer.oldStyleOffsets.first ?? -1 : answer.offset
            }
        }
        let now = NIODeadline.now()
        shared.withPipeline { pipeline in
            pipeline.offsetsListed(answers, now: now)
            for (partition, error) in failures { pipeline.offsetsFailed(partition, error: error, now: now) }
        }
        shared.wakeReader()
    }

    private func fetch(_ plan: FetchPipeline.FetchPlan, on connection: BrokerConnection) async throws(ConsumerError) {
        var streams: [String] = []
        for entry in plan.partitions where !streams.contains(entry.partition.stream) { streams.append(entry.partition.stream) }
        let message = FetchRequest(
            maxWaitMs: Int32(clamping: configuration.fetchMaxWaitMilliseconds),
            minBytes: Int32(clamping: configuration.fetchMinBytes),
            maxBytes: Int32(clamping: plan.maxBytes),
            topics: streams.map { stream in
                FetchRequest.Topic(topic: stream, partitions: plan.partitions.filter { $0.partition.stream == stream }.map {
                    FetchRequest.Partition(partition: $0.partition.partition, fetchOffset: $0.fetchOffset,
                                           partitionMaxBytes: Int32(clamping: plan.partitionMaxBytes))
                })
            })
        let response = try await request(message, on: connection)
        if response.errorCode != .noError {
            throw .broker(response.errorCode, message: "Fetch")
        }
        // Splitting and CRC checks happen here, on the fetch loop, beside the application's decoding.
        var answers: [StreamPartition: FetchPipeline.PartitionAnswer] = [:]
        var fetchedRecords = 0
        for (key, fetchOffset) in plan.partitions {
            guard let answer = response.responses.first(where: { $0.topic == key.stream })?
                .partitions.first(where: { $0.partitionIndex == key.partition }) else { continue }
            switch answer.errorCode {
            case .noError:
                let fetched = FetchedRecords.parse(answer.records, partition: key, fetchOffset: fetchOffset,
                                                   partitionFetchBytes: plan.partitionMaxBytes)
                for batch in fetched.batches { fetchedRecords += Int(batch.header.recordCount) }
                answers[key] = .records(fetched)
            case .offsetOutOfRange:
                answers[key] = .outOfRange
            case .unknownTopicOrPartition:
                // Metadata listed it at the start: the stream was deleted (or is not this key's to read).
                answers[key] = .failed(.unknownStream(key.stream))
            case let code where code.isRetriable:
                answers[key] = .retriable(.broker(code, message: "Fetch of \(key)"))
            case let code:
                answers[key] = .failed(.broker(code, message: "Fetch of \(key)"))
            }
        }
        ConsumerMetrics.shared.fetches.increment()
        if fetchedRecords > 0 { ConsumerMetrics.shared.recordsFetched.increment(by: fetchedRecords) }
        let now = NIODeadline.now()
        shared.withPipeline { $0.fetchAnswered(plan, answers: answers, now: now) }
        shared.wakeReader()
    }

    private func backoffMilliseconds(attempt: Int) -> Int {
        min(configuration.retryBackoffMilliseconds << min(attempt - 1, 16), configuration.retryBackoffMaxMilliseconds)
    }
}

/// The consumer's counters (swift-metrics; a no-op unless the application bootstraps a backend).
struct ConsumerMetrics: Sendable {
    static let shared = ConsumerMetrics()
    let fetches = Counter(label: "eventflow_consumer_fetches_total")
    let recordsFetched = Counter(label: "eventflow_consumer_records_fetched_total")
}

/// What the fetch loop and the application's iterator share, under one lock.
final class ConsumerShared: Sendable {
    enum Lifecycle {
        case idle
        case running
        /// Shutdown asked: no more fetching, `messages` ends at its next element.
        case stopped
    }

    struct State {
        var pipeline: FetchPipeline
        var lifecycle: Lifecycle = .idle
        var started = false
        /// `run()` returned: what is queued stays readable, then `messages` ends.
        var loopEnded = false
        /// The iterator waiting for a delivery.
        var reader: CheckedContinuation<Void, Never>?
        var connection: BrokerConnection?
    }

    private let state: Mutex<State>
    let wakeStream: AsyncStream<Void>
    private let wakeContinuation: AsyncStream<Void>.Continuation

    init(pipeline: FetchPipeline) {
        state = Mutex(State(pipeline: pipeline))
        (wakeStream, wakeContinuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    func withPipeline<T>(_ body: (inout FetchPipeline) -> T) -> T {
        state.withLock { body(&$0.pipeline) }
    }

    var isStopping: Bool { state.withLock { $0.lifecycle == .stopped } }

    func start() -> Bool {
        state.withLock { state in
            guard !state.started else { return false }
            state.started = true
            if state.lifecycle == .idle { state.lifecycle = .running }
            return true
        }
    }

    /// Keeps the live connection, so that `stop` can close it; false when already stopping.
    func register(_ connection: BrokerConnection) -> Bool {
        let keep = state.withLock { state -> Bool in
            guard state.lifecycle == .running else { return false }
            state.connection = connection
            return true
        }
        if !keep { connection.close() }
        return keep
    }

    func stop() {
        let connection = state.withLock { state -> BrokerConnection? in
            state.lifecycle = .stopped
            defer { state.connection = nil }
            return state.connection
        }
        // Closing cuts a parked fetch short; the loop then sees the shutdown.
        connection?.close()
        wakeContinuation.yield()
        wakeReader()
    }

    func fail(_ error: ConsumerError) {
        withPipeline { $0.fail(error) }
        wakeReader()
    }

    /// `run()` is over: the error it ends with, if any.
    func finish() -> ConsumerError? {
        let failure = state.withLock { state -> ConsumerError? in
            state.loopEnded = true
            state.connection = nil
            return state.pipeline.failure
        }
        wakeReader()
        return failure
    }

    func wakeFetchLoop() {
        wakeContinuation.yield()
    }

    func wakeReader() {
        let reader = state.withLock { state -> CheckedContinuation<Void, Never>? in
            defer { state.reader = nil }
            return state.reader
        }
        reader?.resume()
    }

    private enum Taken {
        case delivery(FetchPipeline.Delivery)
        case ended
        case empty
    }

    private static func take(_ state: inout State, releasing bytes: Int) -> Taken {
        if state.lifecycle == .stopped {
            state.pipeline.release(bytes)
            return .ended
        }
        if let delivery = state.pipeline.take(releasing: bytes) { return .delivery(delivery) }
        return state.loopEnded ? .ended : .empty
    }

    /// The next delivery, waiting for the fetch loop when none is ready; nil once stopped or cancelled.
    /// `releasing` returns the bytes of the delivery the iterator finished to the prefetch budget.
    func next(releasing bytes: Int) async -> FetchPipeline.Delivery? {
        let first = state.withLock { Self.take(&$0, releasing: bytes) }
        if bytes > 0 { wakeContinuation.yield() }
        switch first {
        case .delivery(let delivery): return delivery
        case .ended: return nil
        case .empty: break
        }
        while !Task.isCancelled {
            await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let now = state.withLock { state -> Bool in
                        if state.pipeline.deliveriesWaiting > 0 || state.lifecycle == .stopped || state.loopEnded
                            || Task.isCancelled {
                            return true
                        }
                        state.reader = continuation
                        return false
                    }
                    if now { continuation.resume() }
                }
            } onCancel: {
                self.wakeReader()
            }
            switch state.withLock({ Self.take(&$0, releasing: 0) }) {
            case .delivery(let delivery): return delivery
            case .ended: return nil
            case .empty: continue
            }
        }
        return nil
    }
}

/// The records of an `EventFlowConsumer`, decoded from the fetched batches as they are read.
public struct ConsumerMessages: AsyncSequence, Sendable {
    public typealias Element = ConsumerMessage
    let shared: ConsumerShared
    let decompressedBytesMax: Int

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(shared: shared, decompressedBytesMax: decompressedBytesMax)
    }

    /// Decodes records straight from the batch buffers (key and value are slices), so a record
    /// costs no allocation; the lock is taken once per fetched partition answer, not per record.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let shared: ConsumerShared
        let decompressedBytesMax: Int
        private var partition = StreamPartition(stream: "", partition: -1)
        private var batches: [RecordBatchView] = []
        private var batchIndex = 0
        private var deliverable: Range<Int64> = 0 ..< 0
        private var reader: RecordReader?
        /// Bytes of the current delivery, released to the prefetch budget when it is done.
        private var heldBytes = 0
        private var ended = false

        init(shared: ConsumerShared, decompressedBytesMax: Int) {
            self.shared = shared
            self.decompressedBytesMax = decompressedBytesMax
        }

        public mutating func next() async throws(ConsumerError) -> ConsumerMessage? {
            guard let record = try await nextRecord() else { return nil }
            return ConsumerMessage(stream: partition.stream, partition: partition.partition, offset: record.offset,
                                   key: record.key, value: record.value, headers: record.headers,
                                   timestampMilliseconds: record.timestamp)
        }

        /// The next deliverable record of the current batch, moving on to the next batch and delivery as needed.
        private mutating func nextRecord() async throws(ConsumerError) -> Record? {
            while !ended {
                if reader != nil {
                    let record: Record?
                    do {
                        record = try reader!.next()
                    } catch {
                        throw fail(error)
                    }
                    if let record {
                        if record.offset < deliverable.lowerBound { continue }
                        if record.offset < deliverable.upperBound { return record }
                        // Past the end offset: nothing later in this delivery is wanted either.
                        batchIndex = batches.count
                    }
                    reader = nil
                }
                if batchIndex < batches.count {
                    let batch = batches[batchIndex]
                    batchIndex += 1
                    guard batch.header.lastOffset >= deliverable.lowerBound, batch.header.baseOffset < deliverable.upperBound else { continue }
                    do {
                        reader = try batch.records(decompressedBytesMax: decompressedBytesMax)
                    } catch {
                        throw fail(error, at: batch.header.baseOffset)
                    }
                    continue
                }
                let released = heldBytes
                heldBytes = 0
                batches = []
                guard let delivery = await shared.next(releasing: released) else {
                    ended = true
                    return nil
                }
                switch delivery {
                case .batches(let partition, let batches, let deliverable, let byteCount):
                    self.partition = partition
                    self.batches = batches
                    self.batchIndex = 0
                    self.deliverable = deliverable
                    self.heldBytes = byteCount
                case .failure(let error):
                    ended = true
                    throw error
                case .end:
                    ended = true
                    return nil
                }
            }
            return nil
        }

        /// A batch whose records cannot be read stops the consumer: later offsets would leave a gap.
        private mutating func fail(_ error: any Error, at offset: Int64? = nil) -> ConsumerError {
            let failure = ConsumerError.corruptBatch(stream: partition.stream, partition: partition.partition,
                                                     offset: offset ?? deliverable.lowerBound, detail: "\(error)")
            ended = true
            reader = nil
            shared.fail(failure)
            shared.stop()
            return failure
        }

        /// Reads up to `limit` records without making messages (the consumer benchmarks count
        /// with it); 0 once the messages end.
        @_spi(Benchmarks)
        public mutating func skip(upTo limit: Int) async throws(ConsumerError) -> Int {
            var count = 0
            while count < limit, try await nextRecord() != nil { count += 1 }
            return count
        }
    }
}
