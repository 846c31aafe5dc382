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
    /// Group mode: the partitions assigned to and revoked from this member, as they happen
    /// (at most `group.rebalanceEventsBufferedMax` unread ones are kept). Ends when `run()` does;
    /// in assign mode it carries nothing.
    public let events: AsyncStream<RebalanceEvent>
    private let shared: ConsumerShared
    private let logger: Logger
    private let eventLoopGroup: any EventLoopGroup
    /// The producer `deadLetter(_:reason:)` sends with, started on first use (see DeadLetters.swift).
    let deadLetters = Mutex<DeadLetterSender?>(nil)

    public init(configuration: ConsumerConfiguration, logger: Logger) throws(ConsumerError) {
        if let problem = configuration.validationError() { throw .invalidConfiguration(problem) }
        self.configuration = configuration
        self.logger = logger
        self.eventLoopGroup = MultiThreadedEventLoopGroup.singleton
        var membership: GroupMembership?
        if case .group(let id, let streams) = configuration.assignment {
            membership = GroupMembership(settings: .init(
                groupId: id, streams: streams, group: configuration.group, retriesMax: configuration.retriesMax,
                retryBackoffMilliseconds: configuration.retryBackoffMilliseconds,
                retryBackoffMaxMilliseconds: configuration.retryBackoffMaxMilliseconds))
        }
        let (events, eventsContinuation) = AsyncStream.makeStream(
            of: RebalanceEvent.self, bufferingPolicy: .bufferingNewest(configuration.group.rebalanceEventsBufferedMax))
        self.events = events
        // Kafka's auto.offset.reset also decides where a partition without a committed offset starts.
        let startWithoutCommit: ConsumerConfiguration.StartOffset? = configuration.group.startWithoutCommittedOffset ?? {
            switch configuration.autoOffsetReset {
            case .earliest: .beginning
            case .latest: .end
            case .error: nil
            }
        }()
        self.shared = ConsumerShared(pipeline: FetchPipeline(settings: .init(configuration)), membership: membership,
                                     events: eventsContinuation, startWithoutCommit: startWithoutCommit)
        self.messages = ConsumerMessages(shared: shared, decompressedBytesMax: configuration.batchDecompressedBytesMax)
    }

    /// Group mode: commits what was delivered (or stored with `storeOffset`) and not yet committed,
    /// and returns once the coordinator acknowledged it.
    public func commit() async throws(ConsumerError) {
        guard shared.isGroupMode else { throw .notInGroup("commit() needs group mode (.group)") }
        if let failure = await shared.commit() { throw failure }
    }

    /// Group mode: the next commit sends `message.offset + 1` for its partition (with
    /// `storesOffsetsOnDelivery` false, this is the only way offsets get committed).
    public func storeOffset(_ message: ConsumerMessage) throws(ConsumerError) {
        guard shared.isGroupMode else { throw .notInGroup("storeOffset needs group mode (.group)") }
        let partition = StreamPartition(stream: message.stream, partition: message.partition)
        guard shared.withMembership({ $0.store(partition, offset: message.offset) }) == true else {
            throw .notInGroup("\(partition) is not assigned to this member")
        }
    }

    /// Stops fetching; `messages` ends at its next element and `run()` returns.
    public func triggerGracefulShutdown() {
        shared.stop()
    }

    public func run() async throws {
        guard shared.start() else { throw ConsumerError.invalidConfiguration("run() may be called only once") }
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { tasks in
                tasks.addTask {
                    await self.fetchLoop()
                    // A failed fetch side ends the membership too: commit what was read, leave.
                    self.shared.shutDownGroup()
                }
                if self.shared.isGroupMode {
                    tasks.addTask { await self.groupLoop() }
                }
            }
        } onGracefulShutdown: {
            self.triggerGracefulShutdown()
        }
        await shutDownDeadLetters()
        if let failure = shared.finish() { throw failure }
    }

    // MARK: the group loop

    /// Performs `GroupMembership`'s actions against the coordinator, over a connection of its own:
    /// a heartbeat must not queue behind a Fetch parked at the tail.
    private func groupLoop() async {
        var wakeups = shared.groupWakeStream.makeAsyncIterator()
        var connection: BrokerConnection?
        var coordinator: BrokerAddress?
        defer {
            connection?.close()
            shared.endEvents()
        }
        while true {
            let action = shared.nextGroupAction(now: .now())
            switch action {
            case .finished:
                if let failure = shared.withMembership({ $0.failure }) ?? nil { shared.fail(failure) }
                return
            case .wait(let deadline):
                let timer = deadline.map { deadline in
                    eventLoopGroup.any().scheduleTask(deadline: deadline) { [shared] in shared.wakeGroupLoop() }
                }
                _ = await wakeups.next()
                timer?.cancel()
                continue
            case .startDelivering, .stopDelivering:
                // Done under the lock by nextGroupAction; the fetch loop and the reader see the change.
                shared.wakeFetchLoop()
                shared.wakeReader()
                continue
            case .announceAssigned(let partitions):
                shared.announce(.assigned(partitions))
                continue
            case .announceRevoked(let partitions):
                shared.announce(.revoked(partitions))
                continue
            default:
                break
            }
            do throws(ConsumerError) {
                if connection?.isActive != true {
                    connection?.close()
                    connection = nil
                    let connected = try await connectToCoordinator(coordinator)
                    connection = connected
                    shared.registerCoordinator(connected)
                }
                guard let active = connection else { continue }
                let now = { NIODeadline.now() }
                switch action {
                case .findCoordinator(let message):
                    let response = try await request(message, on: active)
                    if response.errorCode == .noError {
                        let found = BrokerAddress(host: response.host, port: Int(response.port))
                        if found.host != active.address.host || found.port != active.address.port {
                            coordinator = found
                            connection?.close()
                            connection = nil
                        }
                    }
                    shared.withMembership { $0.coordinatorFound(response, now: now()) }
                case .join(var message, let groupInstanceId):
                    message.groupInstanceId = groupInstanceId
                    let response = try await request(message, on: active)
                    shared.withMembership { $0.joinAnswered(response, now: now()) }
                case .lookUpPartitionCounts(let streams):
                    let response = try await request(MetadataRequest(topics: streams, allowAutoTopicCreation: false), on: active)
                    var counts: [String: Int32] = [:]
                    for topic in response.topics where topic.errorCode == .noError {
                        counts[topic.name] = Int32(clamping: topic.partitions.count)
                    }
                    shared.withMembership { $0.partitionCountsFound(counts) }
                case .sync(let message):
                    let response = try await request(message, on: active)
                    shared.withMembership { $0.syncAnswered(response, now: now()) }
                case .fetchOffsets(let message):
                    let response = try await request(message, on: active)
                    shared.withMembership { $0.offsetsFetched(response, now: now()) }
                case .heartbeat(let message):
                    let response = try await request(message, on: active)
                    shared.withMembership { $0.heartbeatAnswered(response, now: now()) }
                case .commit(let message):
                    let response = try await request(message, on: active)
                    let settled = shared.withMembership { $0.commitAnswered(response, now: now()) } ?? []
                    for (_, error) in settled where error != nil {
                        logger.warning("offset commit failed", metadata: ["error": "\(error!)"])
                    }
                    shared.settleCommits(settled)
                case .leave(let message):
                    let response = try await request(message, on: active)
                    shared.withMembership { $0.leaveAnswered(response) }
                default:
                    break
                }
            } catch {
                logger.warning("group request failed", metadata: ["error": "\(error)"])
                connection?.close()
                connection = nil
                coordinator = nil
                let settled = shared.withMembership { $0.requestFailed(error, now: .now()) } ?? []
                shared.settleCommits(settled)
            }
            shared.settleCommits(shared.withMembership { $0.takeSettledWaiters() } ?? [])
        }
    }

    /// The coordinator FindCoordinator named, else (to ask FindCoordinator) the first reachable broker.
    private func connectToCoordinator(_ coordinator: BrokerAddress?) async throws(ConsumerError) -> BrokerConnection {
        var settings = ConnectionSettings(configuration)
        // A JoinGroup is parked until every member rejoined, up to the rebalance timeout (Kafka's
        // clients allow the same plus a margin).
        settings.requestTimeoutMilliseconds = max(configuration.requestTimeoutMilliseconds,
                                                  configuration.group.rebalanceTimeoutMilliseconds + 5_000)
        let addresses = coordinator.map { [$0] } ?? configuration.brokers
        var lastError = ConsumerError.connection("no broker address")
        for address in addresses {
            do throws(ProducerError) {
                return try await BrokerConnection.connect(to: address, settings: settings,
                                                          eventLoopGroup: eventLoopGroup, logger: logger)
            } catch {
                if case .authenticationFailed = error { throw ConsumerError(error) }
                lastError = ConsumerError(error)
            }
        }
        throw lastError
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
                if !shared.isGroupMode && !shared.withPipeline({ $0.isAssigned }) {
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
        // The group loop assigns group partitions; the fetch loop never resolves them itself.
        case .group: []
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
        /// Group mode: the member's state, beside the pipeline so that a revoke and the commit
        /// snapshot after it happen under the same lock as deliveries.
        var membership: GroupMembership?
        var coordinatorConnection: BrokerConnection?
        /// `commit()` calls waiting for their answer (bounded by the membership's `commitWaitersMax`).
        var commitWaiters: [UInt64: CheckedContinuation<ConsumerError?, Never>] = [:]
        var nextCommitWaiter: UInt64 = 0
    }

    private let state: Mutex<State>
    let wakeStream: AsyncStream<Void>
    private let wakeContinuation: AsyncStream<Void>.Continuation
    let groupWakeStream: AsyncStream<Void>
    private let groupWakeContinuation: AsyncStream<Void>.Continuation
    private let events: AsyncStream<RebalanceEvent>.Continuation?
    let isGroupMode: Bool
    /// Where a group partition without committed offset starts; nil: that is an error.
    private let startWithoutCommit: ConsumerConfiguration.StartOffset?

    init(pipeline: FetchPipeline, membership: GroupMembership? = nil, events: AsyncStream<RebalanceEvent>.Continuation? = nil,
         startWithoutCommit: ConsumerConfiguration.StartOffset? = nil) {
        state = Mutex(State(pipeline: pipeline, membership: membership))
        isGroupMode = membership != nil
        self.events = events
        self.startWithoutCommit = startWithoutCommit
        (wakeStream, wakeContinuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        (groupWakeStream, groupWakeContinuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        if membership == nil { events?.finish() }
    }

    // MARK: group mode

    /// nil in assign mode.
    func withMembership<T>(_ body: (inout GroupMembership) -> T) -> T? {
        state.withLock { state in
            guard state.membership != nil else { return nil }
            return body(&state.membership!)
        }
    }

    /// The membership's next action; starting and stopping partitions is applied to the pipeline
    /// here, under the same lock, so no record of a revoked partition is handed out after it.
    func nextGroupAction(now: NIODeadline) -> GroupMembership.Action {
        state.withLock { state in
            guard state.membership != nil else { return .finished }
            let action = state.membership!.nextAction(now: now)
            switch action {
            case .startDelivering(let starts):
                var assignment: [(partition: StreamPartition, start: ConsumerConfiguration.StartOffset)] = []
                for partition in starts.keys.sorted(by: { ($0.stream, $0.partition) < ($1.stream, $1.partition) }) {
                    if let committed = starts[partition] ?? nil {
                        assignment.append((partition, .offset(committed)))
                    } else if let start = startWithoutCommit {
                        assignment.append((partition, start))
                    } else {
                        state.pipeline.fail(.offsetOutOfRange(stream: partition.stream, partition: partition.partition, offset: -1))
                    }
                }
                state.pipeline.assign(assignment)
            case .stopDelivering(let partitions):
                state.pipeline.revoke(partitions)
            default:
                break
            }
            return action
        }
    }

    /// Kept so that a shutdown can cut a parked JoinGroup short (the leave goes on a new connection).
    func registerCoordinator(_ connection: BrokerConnection) {
        state.withLock { $0.coordinatorConnection = connection }
    }

    /// Ends the membership: commit (auto commit), revoke, LeaveGroup. A JoinGroup or SyncGroup the
    /// coordinator may park for the rebalance timeout is cut short by closing its connection.
    func shutDownGroup() {
        let parked = state.withLock { state -> BrokerConnection? in
            guard state.membership != nil else { return nil }
            state.membership!.shutDown()
            return state.membership!.inFlightMayBeParked ? state.coordinatorConnection : nil
        }
        parked?.close()
        groupWakeContinuation.yield()
    }

    func wakeGroupLoop() {
        groupWakeContinuation.yield()
    }

    func announce(_ event: RebalanceEvent) {
        events?.yield(event)
    }

    func endEvents() {
        events?.finish()
    }

    /// Waits for the commit of what is stored now; the error, if it failed.
    func commit() async -> ConsumerError? {
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<ConsumerError?, Never>) in
            let immediate = state.withLock { state -> ConsumerError?? in
                guard state.membership != nil else { return .some(.notInGroup("not in group mode")) }
                let waiter = state.nextCommitWaiter
                state.nextCommitWaiter += 1
                switch state.membership!.commitRequested(waiter: waiter) {
                case .queued:
                    state.commitWaiters[waiter] = continuation
                    return .none
                case .nothingToCommit: return .some(nil)
                case .rejected(let error): return .some(error)
                }
            }
            if let immediate {
                continuation.resume(returning: immediate)
            } else {
                groupWakeContinuation.yield()
            }
        }
        return result
    }

    func settleCommits(_ settled: [(waiter: UInt64, error: ConsumerError?)]) {
        guard !settled.isEmpty else { return }
        let resumed = state.withLock { state in
            settled.compactMap { entry in state.commitWaiters.removeValue(forKey: entry.waiter).map { ($0, entry.error) } }
        }
        for (continuation, error) in resumed { continuation.resume(returning: error) }
    }

    /// Whether the iterator may hand out this record (group mode: the partition is still owned
    /// under the assignment it was fetched for); counts it as delivered.
    func deliver(_ partition: StreamPartition, offset: Int64, epoch: UInt64) -> Bool {
        state.withLock { $0.membership?.deliver(partition, offset: offset, epoch: epoch) ?? true }
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
        shutDownGroup()
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
        case delivery(FetchPipeline.Delivery, epoch: UInt64)
        case ended
        case empty
    }

    private static func take(_ state: inout State, releasing bytes: Int) -> Taken {
        if state.lifecycle == .stopped {
            state.pipeline.release(bytes)
            return .ended
        }
        var released = bytes
        while let delivery = state.pipeline.take(releasing: released) {
            released = 0
            guard let membership = state.membership, case .batches(let partition, _, _, let byteCount) = delivery else {
                return .delivery(delivery, epoch: 0)
            }
            // A revoke drops queued deliveries; this catches one taken between revoke and reassign.
            guard let epoch = membership.epoch(of: partition) else {
                state.pipeline.release(byteCount)
                continue
            }
            return .delivery(delivery, epoch: epoch)
        }
        return state.loopEnded ? .ended : .empty
    }

    /// The next delivery, waiting for the fetch loop when none is ready; nil once stopped or cancelled.
    /// `releasing` returns the bytes of the delivery the iterator finished to the prefetch budget.
    func next(releasing bytes: Int) async -> (delivery: FetchPipeline.Delivery, epoch: UInt64)? {
        let first = state.withLock { Self.take(&$0, releasing: bytes) }
        if bytes > 0 { wakeContinuation.yield() }
        switch first {
        case .delivery(let delivery, let epoch): return (delivery, epoch)
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
            case .delivery(let delivery, let epoch): return (delivery, epoch)
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
        /// Group mode: the assignment the current delivery belongs to; each record is checked against it.
        private var epoch: UInt64 = 0

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
                        if record.offset < deliverable.upperBound {
                            if !shared.isGroupMode || shared.deliver(partition, offset: record.offset, epoch: epoch) { return record }
                            // Revoked while this delivery was being read: none of the rest is handed out.
                            batchIndex = batches.count
                            reader = nil
                            continue
                        }
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
                guard let (delivery, epoch) = await shared.next(releasing: released) else {
                    ended = true
                    return nil
                }
                self.epoch = epoch
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

/// A change of the partitions a group member reads, in the order it happened.
public enum RebalanceEvent: Sendable, Hashable {
    /// The member reads these partitions now, each from the group's committed offset.
    case assigned([StreamPartition])
    /// These partitions were given up (their offsets committed first, with auto commit): no record
    /// of them is delivered any more, including ones already fetched.
    case revoked([StreamPartition])
}
