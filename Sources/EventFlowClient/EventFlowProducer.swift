import EventFlowProtocol
import Foundation
import Logging
import Metrics
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// The delivery reports of an `EventFlowProducer`, one event per acknowledged or failed batch.
public struct ProducerEvents: AsyncSequence, Sendable {
    public typealias Element = ProducerEvent
    let stream: AsyncStream<ProducerEvent>

    public struct AsyncIterator: AsyncIteratorProtocol {
        var iterator: AsyncStream<ProducerEvent>.AsyncIterator
        public mutating func next() async -> ProducerEvent? { await iterator.next() }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(iterator: stream.makeAsyncIterator()) }

    /// The reports one by one.
    public var deliveryReports: some AsyncSequence<DeliveryReport, Never> & Sendable {
        stream.map { event -> [DeliveryReport] in
            switch event { case .deliveryReports(let reports): reports }
        }.flatMap { $0.async }
    }
}

extension Array where Element: Sendable {
    fileprivate var async: AsyncStream<Element> {
        AsyncStream { continuation in
            for element in self { continuation.yield(element) }
            continuation.finish()
        }
    }
}

/// Produces records to EventFlow streams over one persistent, pipelined connection.
///
/// `send` is synchronous: it appends the record to its partition's open batch and returns an
/// id; `run()` (a swift-service-lifecycle `Service`) seals batches on linger or size, sends them,
/// retries retriable errors with the same bytes, and reports each outcome on `events`.
///
/// ```swift
/// var configuration = ProducerConfiguration(brokers: [BrokerAddress(host: "127.0.0.1", port: 9092)],
///     credentials: APIKeyCredentials(keyID: keyID, secret: secret), security: .tls(caFilePath: caPath))
/// let (producer, events) = try EventFlowProducer.makeProducerWithEvents(configuration: configuration, logger: logger)
/// async let running: Void = producer.run()
/// let (partition, offset) = try await producer.sendAndAwait(ProducerMessage(stream: "orders", key: "o-1", value: "{}"))
/// await producer.shutdown(); try await running   // flushes what was sent, then returns
/// ```
public final class EventFlowProducer: Service, Sendable {
    private enum Lifecycle {
        case idle
        case running
        /// Shutdown asked: send what is buffered, then stop.
        case draining
        case finished
    }

    private struct State {
        var accumulator: RecordAccumulator
        var lifecycle: Lifecycle = .idle
        var started = false
        var inflightRequests = 0
        var flushRequests = 0
        var flushWaiters: [CheckedContinuation<Void, Never>] = []
        var finishWaiters: [CheckedContinuation<Void, Never>] = []
        var awaiting: [MessageID: CheckedContinuation<DeliveryReport, Never>] = [:]
        /// Set when the producer cannot go on (wrong credentials, broker unreachable): `send` throws it.
        var fatalError: ProducerError?
        var timer: Scheduled<Void>?
    }

    public let configuration: ProducerConfiguration
    private let logger: Logger
    private let state: Mutex<State>
    private let wakeStream: AsyncStream<Void>
    private let wakeContinuation: AsyncStream<Void>.Continuation
    private let eventsContinuation: AsyncStream<ProducerEvent>.Continuation?
    private let eventLoopGroup: any EventLoopGroup
    private let metrics: ProducerMetrics
    /// Told where each acknowledged batch's time went (`observeBatchStages`), when set.
    private let stageObserver = CallbackSlot<ProducerBatchStages>()

    /// A producer without delivery reports (use `sendAndAwait` or `flush` to learn outcomes).
    public convenience init(configuration: ProducerConfiguration, logger: Logger) throws(ProducerError) {
        try self.init(configuration: configuration, logger: logger, events: nil)
    }

    /// A producer and the sequence of its delivery reports, which must be consumed: reports
    /// are buffered until read.
    public static func makeProducerWithEvents(configuration: ProducerConfiguration,
                                              logger: Logger) throws(ProducerError) -> (EventFlowProducer, ProducerEvents) {
        let (stream, continuation) = AsyncStream.makeStream(of: ProducerEvent.self, bufferingPolicy: .unbounded)
        let producer = try EventFlowProducer(configuration: configuration, logger: logger, events: continuation)
        return (producer, ProducerEvents(stream: stream))
    }

    private init(configuration: ProducerConfiguration, logger: Logger,
                 events: AsyncStream<ProducerEvent>.Continuation?) throws(ProducerError) {
        if let problem = configuration.validationError() { throw .invalidConfiguration(problem) }
        self.configuration = configuration
        self.logger = logger
        self.state = Mutex(State(accumulator: RecordAccumulator(settings: .init(configuration))))
        (wakeStream, wakeContinuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        self.eventsContinuation = events
        self.eventLoopGroup = MultiThreadedEventLoopGroup.singleton
        self.metrics = ProducerMetrics()
    }

    // MARK: sending

    /// Appends the message to its partition's open batch; the outcome arrives as a delivery report.
    /// Throws at once when the message cannot be accepted (buffer full, too large, shut down).
    @discardableResult
    public func send(_ message: ProducerMessage) throws(ProducerError) -> MessageID {
        let timestamp = message.timestampMilliseconds ?? Self.nowMilliseconds()
        let (id, wake) = try state.withLock { state throws(ProducerError) -> (MessageID, Bool) in
            // The monotonic clock is read only when the record opens a batch, not once per record.
            try Self.append(message, timestamp: timestamp, now: NIODeadline.now(), state: &state)
        }
        if wake { wakeContinuation.yield() }
        return id
    }

    private static func append(_ message: ProducerMessage, timestamp: Int64, now: @autoclosure () -> NIODeadline,
                               state: inout State) throws(ProducerError) -> (MessageID, Bool) {
        if let fatal = state.fatalError { throw fatal }
        switch state.lifecycle {
        case .idle, .running: break
        case .draining, .finished: throw .shutDown
        }
        let (id, result) = try state.accumulator.append(message, timestamp: timestamp, now: now())
        switch result {
        case .appended(_, let wake), .awaitingMetadata(let wake): return (id, wake)
        }
    }

    /// Sends the message and waits for its outcome: the partition and offset (nil offset with acks 0).
    public func sendAndAwait(_ message: ProducerMessage) async throws(ProducerError) -> (partition: Int32, offset: Int64?) {
        let timestamp = message.timestampMilliseconds ?? Self.nowMilliseconds()
        let report: DeliveryReport = await withCheckedContinuation { continuation in
            let outcome = state.withLock { state -> Result<Bool, ProducerError> in
                do throws(ProducerError) {
                    let (id, wake) = try Self.append(message, timestamp: timestamp, now: .now(), state: &state)
                    state.awaiting[id] = continuation
                    return .success(wake)
                } catch {
                    return .failure(error)
                }
            }
            switch outcome {
            case .success(let wake):
                if wake { wakeContinuation.yield() }
            case .failure(let error):
                continuation.resume(returning: DeliveryReport(id: MessageID(rawValue: .max), stream: message.stream,
                                                              partition: -1, offset: nil, error: error))
            }
        }
        if let error = report.error { throw error }
        return (report.partition, report.offset)
    }

    /// Sends every buffered record now (without waiting for linger) and returns once every
    /// record accepted so far has its delivery report. Under continuous sending it waits until
    /// the producer is momentarily idle.
    public func flush() async {
        state.withLock { $0.flushRequests += 1 }
        wakeContinuation.yield()
        await withCheckedContinuation { continuation in
            let done = state.withLock { state -> Bool in
                if state.accumulator.isIdle || state.lifecycle == .finished { return true }
                state.flushWaiters.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
        state.withLock { $0.flushRequests -= 1 }
    }

    /// Stops accepting records, sends what is buffered, and returns when `run()` has finished.
    public func shutdown() async {
        triggerGracefulShutdown()
        await withCheckedContinuation { continuation in
            let done = state.withLock { state -> Bool in
                if state.lifecycle == .finished || !state.started { return true }
                state.finishWaiters.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }

    /// Stops accepting records; `run()` returns once everything buffered is acknowledged or failed.
    public func triggerGracefulShutdown() {
        state.withLock { state in
            // Before run() starts too: run() then sends what is buffered and returns.
            if state.lifecycle == .running || state.lifecycle == .idle { state.lifecycle = .draining }
        }
        wakeContinuation.yield()
    }

    // MARK: the sender

    public func run() async throws {
        let started = state.withLock { state -> Bool in
            guard !state.started else { return false }
            state.started = true
            if state.lifecycle == .idle { state.lifecycle = .running }
            return true
        }
        guard started else { throw ProducerError.invalidConfiguration("run() may be called only once") }
        await withGracefulShutdownHandler {
            await self.sendLoop()
        } onGracefulShutdown: {
            self.triggerGracefulShutdown()
        }
        finish()
    }

    private func sendLoop() async {
        await withDiscardingTaskGroup { group in
            var wakeups = wakeStream.makeAsyncIterator()
            var connection: BrokerConnection?
            var failedConnects = 0
            while true {
                if connection?.isActive != true {
                    connection?.close()
                    connection = nil
                    do throws(ProducerError) {
                        connection = try await connect()
                        failedConnects = 0
                    } catch {
                        failedConnects += 1
                        logger.warning("cannot connect", metadata: ["error": "\(error)", "attempt": "\(failedConnects)"])
                        if !error.isRetriable || failedConnects > configuration.retriesMax {
                            stopForGood(error)
                            return
                        }
                        if state.withLock({ $0.lifecycle == .draining }) && failedConnects > 2 {
                            stopForGood(error)
                            return
                        }
                        try? await Task.sleep(for: .milliseconds(backoffMilliseconds(attempt: failedConnects)))
                        continue
                    }
                }
                guard let active = connection else { continue }

                do throws(ProducerError) {
                    try await prepare(active)
                } catch {
                    logger.warning("metadata or producer id failed", metadata: ["error": "\(error)"])
                    if !error.isRetriable { stopForGood(error); return }
                    active.close()
                    continue
                }

                let now = NIODeadline.now()
                let step = state.withLock { state -> (batches: [SealedBatch], done: Bool) in
                    var batches: [SealedBatch] = []
                    if state.inflightRequests < configuration.inflightRequestsMax {
                        let force = state.flushRequests > 0 || state.lifecycle == .draining
                        batches = state.accumulator.drain(now: now, force: force)
                        if !batches.isEmpty { state.inflightRequests += 1 }
                    }
                    let done = state.lifecycle == .draining && state.accumulator.isIdle && state.inflightRequests == 0
                    return (batches, done)
                }
                if step.done { break }
                if !step.batches.isEmpty {
                    // Compression, header and CRC happen here, outside the lock `send` takes.
                    guard let batches = build(step.batches) else { return }
                    await sendBatches(batches, on: active, in: &group)
                    continue
                }
                scheduleTimer()
                _ = await wakeups.next()
            }
            connection?.close()
        }
    }

    /// Builds the drained batches that are not built yet (a retry already is) and hands their
    /// emptied builders back. A batch that cannot be built (the LZ4 codec failed) already holds a
    /// sequence number, so later batches could only be refused as out of order: the producer
    /// stops, failing these batches and everything buffered. Returns nil then.
    private func build(_ drained: [SealedBatch]) -> [SealedBatch]? {
        var batches = drained
        let emptied: [RecordBatchBuilder]
        do {
            emptied = try SealedBatch.build(&batches)
        } catch {
            let failure = ProducerError.invalidConfiguration("could not encode a record batch: \(error)")
            let reports = state.withLock { state -> [DeliveryReport] in
                state.inflightRequests -= 1
                var reports: [DeliveryReport] = []
                for batch in batches {
                    reports += state.accumulator.batchCompleted(batch, outcome: .failed(failure), now: .now()) ?? []
                }
                return reports
            }
            deliver(reports)
            stopForGood(failure)
            return nil
        }
        if !emptied.isEmpty {
            state.withLock { $0.accumulator.recycle(emptied) }
        }
        return batches
    }

    private func connect() async throws(ProducerError) -> BrokerConnection {
        var lastError = ProducerError.connection("no broker address")
        for address in configuration.brokers {
            do throws(ProducerError) {
                return try await BrokerConnection.connect(to: address, configuration: configuration,
                                                          eventLoopGroup: eventLoopGroup, logger: logger)
            } catch {
                if case .authenticationFailed = error { throw error }
                lastError = error
            }
        }
        throw lastError
    }

    /// Fetches what sealing and partitioning need: the producer id, and metadata of new streams.
    private func prepare(_ connection: BrokerConnection) async throws(ProducerError) {
        if configuration.idempotent, state.withLock({ $0.accumulator.producerIdentity == nil }) {
            let answer = try await connection.request(InitProducerIdRequest(transactionTimeoutMs: 60_000))
            guard answer.errorCode == .noError else { throw .broker(answer.errorCode, message: "InitProducerId") }
            logger.debug("producer id", metadata: ["id": "\(answer.producerId)", "epoch": "\(answer.producerEpoch)"])
            state.withLock { $0.accumulator.producerIdentityReceived(id: answer.producerId, epoch: answer.producerEpoch) }
        }
        let streams = state.withLock { $0.accumulator.streamsAwaitingMetadata }
        guard !streams.isEmpty else { return }
        let metadata = try await connection.request(MetadataRequest(topics: streams, allowAutoTopicCreation: false))
        let now = NIODeadline.now()
        let reports = state.withLock { state -> [DeliveryReport] in
            var reports: [DeliveryReport] = []
            for name in streams {
                let topic = metadata.topics.first { $0.name == name }
                let error: ProducerError? = switch topic?.errorCode {
                case nil, .unknownTopicOrPartition?: .unknownStream(name)
                case .noError?: nil
                case let code?: .broker(code, message: "metadata of \(name)")
                }
                let count = error == nil ? Int32(clamping: topic?.partitions.count ?? 0) : nil
                reports += state.accumulator.metadataReceived(stream: name, partitionCount: count, error: error, now: now)
            }
            return reports
        }
        deliver(reports)
    }

    /// Writes the batches' Produce request now, from the send loop, so requests leave in the
    /// order the loop drained them (sequence order per partition); a task then waits for the answer.
    private func sendBatches(_ batches: [SealedBatch], on connection: BrokerConnection,
                             in group: inout DiscardingTaskGroup) async {
        let request = produceRequest(batches)
        metrics.batchesSent.increment(by: batches.count)
        do throws(ProducerError) {
            let inFlight = try await connection.writeProduce(request)
            let writtenAt = NIODeadline.now()
            group.addTask {
                do throws(ProducerError) {
                    let answer = try await inFlight.answer()
                    self.completeBatches(batches, response: .success(answer), writtenAt: writtenAt, answeredAt: .now())
                } catch {
                    self.completeBatches(batches, response: .failure(error))
                }
            }
        } catch {
            completeBatches(batches, response: .failure(error))
        }
    }

    private func produceRequest(_ batches: [SealedBatch]) -> ProduceRequest {
        var byStream: [String: [ProduceRequest.PartitionData]] = [:]
        var order: [String] = []
        for batch in batches {
            if byStream[batch.streamPartition.stream] == nil { order.append(batch.streamPartition.stream) }
            byStream[batch.streamPartition.stream, default: []].append(
                .init(index: batch.streamPartition.partition, records: batch.bytes))
        }
        return ProduceRequest(acks: configuration.acks.rawValue,
                              timeoutMs: Int32(clamping: configuration.requestTimeoutMilliseconds),
                              topicData: order.map { .init(name: $0, partitionData: byStream[$0] ?? []) })
    }

    /// What a v8+ answer says about a refused partition: its message and each record it names.
    static func refusal(_ answer: ProduceResponse.PartitionResponse) -> String? {
        // EventFlow's message already names the first record: list only the ones it does not.
        let records = answer.recordErrors.map { "record \($0.batchIndex): \($0.message ?? "refused")" }
            .filter { answer.errorMessage?.contains($0) != true }
        let parts = (answer.errorMessage.map { [$0] } ?? []) + records
        return parts.isEmpty ? nil : parts.joined(separator: "; ")
    }

    /// The answer (nil with acks 0) or the failure of a request: each batch is acknowledged, put
    /// back to be retried, or failed.
    private func completeBatches(_ batches: [SealedBatch], response result: Result<ProduceResponse?, ProducerError>,
                                 writtenAt: NIODeadline? = nil, answeredAt: NIODeadline? = nil) {
        let outcomes: [RecordAccumulator.BatchOutcome]
        switch result {
        case .success(let response):
            outcomes = batches.map { batch in
                guard let response else { return .acknowledged(baseOffset: nil) }
                let key = batch.streamPartition
                guard let answer = response.responses.first(where: { $0.name == key.stream })?
                    .partitionResponses.first(where: { $0.index == key.partition }) else {
                    return .failed(.connection("the answer does not mention \(key)"))
                }
                switch answer.errorCode {
                case .noError: return .acknowledged(baseOffset: answer.baseOffset)
                // The broker already stored this batch; its offset is not in this answer.
                case .duplicateSequenceNumber: return .acknowledged(baseOffset: nil)
                default: return .failed(.broker(answer.errorCode, message: Self.refusal(answer)))
                }
            }
        case .failure(let error):
            outcomes = batches.map { _ in .failed(error) }
        }
        if let writtenAt, let answeredAt, stageObserver.isSet {
            for (batch, outcome) in zip(batches, outcomes) {
                guard case .acknowledged = outcome else { continue }
                stageObserver(ProducerBatchStages(messageIDs: batch.messageIDs, sealedAt: batch.sealedAt,
                                                  writtenAt: writtenAt, answeredAt: answeredAt))
            }
        }
        let now = NIODeadline.now()
        let reports = state.withLock { state -> [DeliveryReport] in
            state.inflightRequests -= 1
            var reports: [DeliveryReport] = []
            for (batch, outcome) in zip(batches, outcomes) {
                if let done = state.accumulator.batchCompleted(batch, outcome: outcome, now: now) {
                    // Usually one batch per request: take its array instead of copying every report into a new one.
                    if reports.isEmpty { reports = done } else { reports += done }
                } else {
                    metrics.retries.increment()
                    logger.debug("retrying batch", metadata: ["partition": "\(batch.streamPartition)",
                                                             "sequence": "\(batch.baseSequence)", "outcome": "\(outcome)"])
                }
            }
            return reports
        }
        deliver(reports)
        wakeContinuation.yield()
    }

    // MARK: reports and lifecycle

    /// Hands reports to their readers; wakes `sendAndAwait` callers and, when idle, `flush` callers.
    private func deliver(_ reports: [DeliveryReport]) {
        guard !reports.isEmpty else { return }
        var delivered = 0
        for report in reports where report.error == nil { delivered += 1 }
        if delivered > 0 { metrics.recordsDelivered.increment(by: delivered) }
        if reports.count > delivered { metrics.recordsFailed.increment(by: reports.count - delivered) }
        let (awaiting, flushed) = state.withLock { state in
            var awaiting: [(CheckedContinuation<DeliveryReport, Never>, DeliveryReport)] = []
            if !state.awaiting.isEmpty {
                for report in reports {
                    if let continuation = state.awaiting.removeValue(forKey: report.id) {
                        awaiting.append((continuation, report))
                    }
                }
            }
            var flushed: [CheckedContinuation<Void, Never>] = []
            if state.accumulator.isIdle { swap(&flushed, &state.flushWaiters) }
            return (awaiting, flushed)
        }
        eventsContinuation?.yield(.deliveryReports(reports))
        for (continuation, report) in awaiting { continuation.resume(returning: report) }
        for continuation in flushed { continuation.resume() }
    }

    /// The producer cannot continue: every buffered record fails with `error`, later sends throw it.
    private func stopForGood(_ error: ProducerError) {
        logger.error("producer stopped", metadata: ["error": "\(error)"])
        let reports = state.withLock { state -> [DeliveryReport] in
            state.fatalError = error
            return state.accumulator.failUnsent(error)
        }
        deliver(reports)
    }

    private func finish() {
        let (waiters, awaiting) = state.withLock { state in
            state.lifecycle = .finished
            state.timer?.cancel()
            let waiters = state.finishWaiters + state.flushWaiters
            state.finishWaiters = []
            state.flushWaiters = []
            let awaiting = state.awaiting
            state.awaiting = [:]
            return (waiters, awaiting)
        }
        for (id, continuation) in awaiting {
            continuation.resume(returning: DeliveryReport(id: id, stream: "", partition: -1, offset: nil, error: .shutDown))
        }
        eventsContinuation?.finish()
        for waiter in waiters { waiter.resume() }
    }

    /// Wakes the loop when the next linger or backoff expires.
    private func scheduleTimer() {
        let wake = wakeContinuation
        let loop = eventLoopGroup.any()
        state.withLock { state in
            state.timer?.cancel()
            state.timer = state.accumulator.nextDeadline().map { deadline in
                loop.scheduleTask(deadline: deadline) { wake.yield() }
            }
        }
    }

    private func backoffMilliseconds(attempt: Int) -> Int {
        min(configuration.retryBackoffMilliseconds << min(attempt - 1, 16), configuration.retryBackoffMaxMilliseconds)
    }

    /// Wall-clock milliseconds since the epoch, for records sent without a timestamp (once per `send`):
    /// one `clock_gettime`, without `Date`'s floating-point round trip.
    static func nowMilliseconds() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return Int64(time.tv_sec) * 1000 + Int64(time.tv_nsec) / 1_000_000
    }
}

/// The producer's counters (swift-metrics; a no-op unless the application bootstraps a backend).
struct ProducerMetrics: Sendable {
    let recordsDelivered = Counter(label: "eventflow_producer_records_delivered_total")
    let recordsFailed = Counter(label: "eventflow_producer_records_failed_total")
    let batchesSent = Counter(label: "eventflow_producer_batches_sent_total")
    let retries = Counter(label: "eventflow_producer_batch_retries_total")
}

/// Where one acknowledged batch's time went: its records were sent (each at its own time) until
/// `sealedAt`, its request was written to the connection at `writtenAt` (built, compressed, an
/// in-flight slot free) and answered at `answeredAt`. `NIODeadline`s: the monotonic clock.
@_spi(Benchmarks)
public struct ProducerBatchStages: Sendable {
    public var messageIDs: [MessageID]
    public var sealedAt: NIODeadline
    public var writtenAt: NIODeadline
    public var answeredAt: NIODeadline
}

/// Hooks for the client micro-benchmarks (`Benchmarks/`) and the load generator.
@_spi(Benchmarks)
extension EventFlowProducer {
    /// Calls `observer` (from the producer's tasks, before the batch's delivery reports) with the
    /// stage times of every acknowledged batch: the load generator's per-stage latency breakdown.
    public func observeBatchStages(_ observer: @escaping @Sendable (ProducerBatchStages) -> Void) {
        stageObserver.set(observer)
    }

    /// Makes `stream` known with `partitionCount` partitions and gives the producer an id, as a broker would.
    public func benchmarkPrime(stream: String, partitionCount: Int32) {
        state.withLock { state in
            state.accumulator.producerIdentityReceived(id: 1, epoch: 0)
            _ = state.accumulator.metadataReceived(stream: stream, partitionCount: partitionCount, error: nil, now: .now())
        }
    }

    /// Seals every open batch and acknowledges all of them without sending; returns the records acknowledged.
    @discardableResult
    public func benchmarkAcknowledgeAll() -> Int {
        state.withLock { state in
            var records = 0
            while true {
                let now = NIODeadline.now()
                var batches = state.accumulator.drain(now: now, force: true)
                if batches.isEmpty { return records }
                // Built as the send loop would, so the builders are recycled as they are in a real run.
                if let emptied = try? SealedBatch.build(&batches) { state.accumulator.recycle(emptied) }
                for batch in batches {
                    records += state.accumulator.batchCompleted(batch, outcome: .acknowledged(baseOffset: 0), now: now)?.count ?? 0
                }
            }
        }
    }
}
