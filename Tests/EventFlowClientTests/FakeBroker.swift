import EventFlowClient
import EventFlowProtocol
import NIOCore
import NIOPosix
import Synchronization

/// A broker stand-in on a loopback socket, built from EventFlowProtocol's own messages: it
/// records every request as decoded from the wire and answers ApiVersions, SASL PLAIN, Metadata,
/// InitProducerId and Produce (validating each batch's CRC, assigning offsets, deduplicating
/// idempotent retries by sequence), and the read side: ListOffsets and Fetch over a per-partition
/// log of batch bytes (produced ones, or appended by a test), with a log start offset and a
/// parked (delayed) empty answer like the broker's long poll.
final class FakeBroker: Sendable {
    struct Stored: Sendable {
        var stream: String
        var partition: Int32
        var baseOffset: Int64
        var batch: RecordBatchView
    }

    /// One partition's log: batches as stored (base offset rewritten), in offset order.
    struct PartitionLog: Sendable {
        var batches: [(baseOffset: Int64, lastOffset: Int64, bytes: ByteBuffer)] = []
        var logStartOffset: Int64 = 0
        var highWatermark: Int64 = 0
    }

    /// One Fetch as answered: what was asked and how many record bytes went back.
    struct FetchAnswer: Sendable {
        var request: FetchRequest
        var recordBytes: Int
    }

    struct State: Sendable {
        var streams: [String: Int32]
        var logs: [StreamPartition: PartitionLog] = [:]
        var fetchAnswers: [FetchAnswer] = []
        /// Fetch answers end with the first bytes of the batch that did not fit, as Kafka may send them.
        var sendsPartialTrailingBatch = false
        var keyID = "key-1"
        var secret = "secret-1"
        var requests: [DecodedRequest] = []
        var stored: [Stored] = []
        var nextOffsets: [StreamPartition: Int64] = [:]
        /// Produce answers to replace with this error, one per partition answer, first come first served.
        var injectedProduceErrors: [ErrorCode] = []
        var authenticated = false
        var port = 0
        var group = FakeGroup()
    }

    /// A single consumer group's coordinator, as far as the group consumer's tests need: every
    /// JoinGroup completes a generation at once (no waiting for other members), with the joiner as
    /// leader; `phantomMembers` are members that only exist here (their subscription is handed to
    /// the leader, their assignment is recorded); a test forces a rebalance or an error.
    struct FakeGroup: Sendable {
        var generationId: Int32 = 0
        var members: [String: ByteBuffer] = [:]
        var phantomMembers: [String: ByteBuffer] = [:]
        var protocolName = ""
        var leader = ""
        var assignments: [String: ByteBuffer] = [:]
        var committed: [StreamPartition: Int64] = [:]
        var nextMemberNumber = 1
        /// Heartbeats are answered REBALANCE_IN_PROGRESS until the next JoinGroup.
        var rebalancePending = false
    }

    final class Shared: Sendable {
        let mutex: Mutex<State>
        init(_ state: State) { mutex = Mutex(state) }
    }

    private let shared: Shared
    private let channel: any Channel
    let port: Int

    static let producerId: Int64 = 4242

    init(streams: [String: Int32]) async throws {
        let state = Shared(State(streams: streams))
        self.shared = state
        channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { child in
                child.eventLoop.makeCompletedFuture {
                    try child.pipeline.syncOperations.addHandlers(
                        ByteToMessageHandler(KafkaFrameDecoder()),
                        MessageToByteHandler(KafkaFrameEncoder()),
                        FakeBrokerHandler(broker: state))
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        port = channel.localAddress?.port ?? 0
        let bound = port
        state.mutex.withLock { $0.port = bound }
    }

    func requests<T>(_ pick: (KafkaRequest) -> T?) -> [T] { requests.compactMap { pick($0.body) } }

    var joinGroupRequests: [JoinGroupRequest] { requests { if case .joinGroup(let r) = $0 { r } else { nil } } }
    var offsetCommitRequests: [OffsetCommitRequest] { requests { if case .offsetCommit(let r) = $0 { r } else { nil } } }
    var leaveGroupRequests: [LeaveGroupRequest] { requests { if case .leaveGroup(let r) = $0 { r } else { nil } } }
    var syncGroupRequests: [SyncGroupRequest] { requests { if case .syncGroup(let r) = $0 { r } else { nil } } }
    var committed: [StreamPartition: Int64] { withState { $0.group.committed } }

    func close() async {
        try? await channel.close()
    }

    func withState<T>(_ body: (inout State) -> T) -> T { shared.mutex.withLock { body(&$0) } }

    var requests: [DecodedRequest] { shared.mutex.withLock { $0.requests } }
    var stored: [Stored] { shared.mutex.withLock { $0.stored } }

    var fetchAnswers: [FetchAnswer] { shared.mutex.withLock { $0.fetchAnswers } }

    var listOffsetsRequests: [ListOffsetsRequest] {
        requests.compactMap { if case .listOffsets(let request) = $0.body { request } else { nil } }
    }

    /// Appends a batch (bytes as built, any base offset) to the partition's log at its high watermark;
    /// the bytes are stored as given, so a test can store a batch whose CRC is wrong. Returns the base offset.
    @discardableResult
    func append(stream: String, partition: Int32, batch: ByteBuffer) -> Int64 {
        withState { state in Self.appendToLog(batch, key: StreamPartition(stream: stream, partition: partition), state: &state) }
    }

    /// Builds a batch of `records` (key, value, timestamp) and appends it; returns its base offset.
    @discardableResult
    func append(stream: String, partition: Int32, compression: RecordBatchBuilder.Compression = .none,
                records: [(key: String?, value: String, timestamp: Int64)], headers: [RecordHeader] = []) throws -> Int64 {
        append(stream: stream, partition: partition, batch: try Self.batch(records, compression: compression, headers: headers))
    }

    static func batch(_ records: [(key: String?, value: String, timestamp: Int64)], compression: RecordBatchBuilder.Compression = .none,
                      headers: [RecordHeader] = []) throws -> ByteBuffer {
        var builder = RecordBatchBuilder(configuration: .init(compression: compression))
        for record in records {
            builder.append(timestamp: record.timestamp, key: record.key.map { ByteBuffer(string: $0) },
                           value: ByteBuffer(string: record.value), headers: headers)
        }
        var bytes = ByteBuffer()
        try builder.build(into: &bytes)
        return bytes
    }

    /// Moves the partition's log start offset (as retention would): earlier offsets are out of range.
    func setLogStartOffset(stream: String, partition: Int32, _ offset: Int64) {
        withState { $0.logs[StreamPartition(stream: stream, partition: partition), default: PartitionLog()].logStartOffset = offset }
    }

    private static func appendToLog(_ batch: ByteBuffer, key: StreamPartition, state: inout State) -> Int64 {
        var log = state.logs[key, default: PartitionLog()]
        var bytes = batch
        let baseOffset = log.highWatermark
        bytes.setInteger(baseOffset, at: bytes.readerIndex + RecordBatchHeader.baseOffsetIndex)
        let lastOffsetDelta = bytes.getInteger(at: bytes.readerIndex + RecordBatchHeader.lastOffsetDeltaIndex, as: Int32.self) ?? 0
        log.batches.append((baseOffset, baseOffset + Int64(lastOffsetDelta), bytes))
        log.highWatermark = baseOffset + Int64(lastOffsetDelta) + 1
        state.logs[key] = log
        return baseOffset
    }

    /// Whether a Fetch would find records now (otherwise the broker parks it for maxWaitMs).
    static func hasRecords(for fetch: FetchRequest, state: State) -> Bool {
        fetch.topics.contains { topic in
            topic.partitions.contains { partition in
                let log = state.logs[StreamPartition(stream: topic.topic, partition: partition.partition)]
                return partition.fetchOffset < (log?.highWatermark ?? 0)
            }
        }
    }

    private static func answerFetch(_ fetch: FetchRequest, state: inout State) -> FetchResponse {
        var remaining = Int(fetch.maxBytes)
        var recordBytes = 0
        let topics = fetch.topics.map { topic in
            FetchResponse.Topic(topic: topic.topic, partitions: topic.partitions.map { request in
                let key = StreamPartition(stream: topic.topic, partition: request.partition)
                guard let count = state.streams[topic.topic], request.partition < count else {
                    return .init(partitionIndex: request.partition, errorCode: .unknownTopicOrPartition, highWatermark: -1, records: nil)
                }
                let log = state.logs[key] ?? PartitionLog()
                guard request.fetchOffset >= log.logStartOffset, request.fetchOffset <= log.highWatermark else {
                    return .init(partitionIndex: request.partition, errorCode: .offsetOutOfRange, highWatermark: log.highWatermark,
                                 lastStableOffset: log.highWatermark, logStartOffset: log.logStartOffset, records: nil)
                }
                var records = ByteBuffer()
                // From the batch holding fetchOffset; the first batch of the answer always goes whole.
                for batch in log.batches where batch.lastOffset >= request.fetchOffset {
                    let size = batch.bytes.readableBytes
                    let fits = records.readableBytes + size <= Int(request.partitionMaxBytes) && size <= remaining
                    if !fits && (records.readableBytes > 0 || recordBytes > 0) {
                        if state.sendsPartialTrailingBatch, records.readableBytes > 0 {
                            let room = min(remaining, Int(request.partitionMaxBytes) - records.readableBytes)
                            if room > 0, let part = batch.bytes.getSlice(at: batch.bytes.readerIndex, length: min(room, size - 1)) {
                                records.writeImmutableBuffer(part)
                                remaining -= part.readableBytes
                            }
                        }
                        break
                    }
                    records.writeImmutableBuffer(batch.bytes)
                    remaining -= size
                }
                recordBytes += records.readableBytes
                return .init(partitionIndex: request.partition, highWatermark: log.highWatermark, lastStableOffset: log.highWatermark,
                             logStartOffset: log.logStartOffset, records: records)
            })
        }
        state.fetchAnswers.append(FetchAnswer(request: fetch, recordBytes: recordBytes))
        return FetchResponse(responses: topics)
    }

    private static func answerListOffsets(_ request: ListOffsetsRequest, version: Int16, state: State) -> ListOffsetsResponse {
        ListOffsetsResponse(topics: request.topics.map { topic in
            .init(name: topic.name, partitions: topic.partitions.map { partition in
                guard let count = state.streams[topic.name], partition.partitionIndex < count else {
                    return .init(partitionIndex: partition.partitionIndex, errorCode: .unknownTopicOrPartition)
                }
                let log = state.logs[StreamPartition(stream: topic.name, partition: partition.partitionIndex)] ?? PartitionLog()
                let offset: Int64 = switch partition.timestamp {
                case ListOffsetsRequest.latestTimestamp: log.highWatermark
                case ListOffsetsRequest.earliestTimestamp: log.logStartOffset
                default: firstOffset(atOrAfter: partition.timestamp, in: log)
                }
                return version == 0
                    ? .init(partitionIndex: partition.partitionIndex, oldStyleOffsets: offset >= 0 ? [offset] : [])
                    : .init(partitionIndex: partition.partitionIndex, timestamp: -1, offset: offset)
            })
        })
    }

    /// The first record at or after `timestamp`, read from the stored records; -1 when none is.
    private static func firstOffset(atOrAfter timestamp: Int64, in log: PartitionLog) -> Int64 {
        for batch in log.batches {
            guard let view = try? RecordBatchView(validating: batch.bytes),
                  var reader = try? view.records(decompressedBytesMax: 1 << 24) else { continue }
            while let record = try? reader.next() {
                if record.offset >= log.logStartOffset && record.timestamp >= timestamp { return record.offset }
            }
        }
        return -1
    }

    var produceRequests: [ProduceRequest] {
        requests.compactMap { if case .produce(let request) = $0.body { request } else { nil } }
    }

    /// Answers one request, as the broker would.
    static func answer(_ request: DecodedRequest, state: inout State) -> KafkaResponse? {
        switch request.body {
        case .apiVersions:
            return .apiVersions(ApiVersionsResponse())
        case .saslHandshake(let handshake):
            return .saslHandshake(SaslHandshakeResponse(errorCode: handshake.mechanism == "PLAIN" ? .noError : .unsupportedSaslMechanism,
                                                        mechanisms: ["PLAIN"]))
        case .saslAuthenticate(let authenticate):
            let credentials = try? SaslPlainCredentials(parsing: authenticate.authBytes)
            guard credentials?.username == state.keyID, credentials?.password == state.secret else {
                return .saslAuthenticate(SaslAuthenticateResponse(errorCode: .saslAuthenticationFailed,
                                                                  errorMessage: "invalid API key or secret"))
            }
            state.authenticated = true
            return .saslAuthenticate(SaslAuthenticateResponse())
        case .metadata(let metadata):
            let names = metadata.topics ?? Array(state.streams.keys)
            return .metadata(MetadataResponse(
                brokers: [.init(nodeId: 1, host: "127.0.0.1", port: 0)], controllerId: 1,
                topics: names.map { name in
                    guard let count = state.streams[name] else {
                        return .init(errorCode: .unknownTopicOrPartition, name: name, partitions: [])
                    }
                    return .init(name: name, partitions: (0..<count).map {
                        .init(partitionIndex: $0, leaderId: 1, replicaNodes: [1], isrNodes: [1])
                    })
                }))
        case .fetch(let fetch):
            return .fetch(answerFetch(fetch, state: &state))
        case .listOffsets(let listOffsets):
            return .listOffsets(answerListOffsets(listOffsets, version: request.header.apiVersion, state: state))
        case .initProducerId:
            return .initProducerId(InitProducerIdResponse(producerId: producerId, producerEpoch: 0))
        case .findCoordinator:
            return .findCoordinator(FindCoordinatorResponse(nodeId: 1, host: "127.0.0.1", port: Int32(state.port)))
        case .joinGroup(let join):
            return .joinGroup(answerJoin(join, state: &state.group))
        case .syncGroup(let sync):
            var group = state.group
            defer { state.group = group }
            guard sync.generationId == group.generationId else { return .syncGroup(SyncGroupResponse(errorCode: .illegalGeneration, assignment: ByteBuffer())) }
            guard group.members[sync.memberId] != nil else { return .syncGroup(SyncGroupResponse(errorCode: .unknownMemberId, assignment: ByteBuffer())) }
            if sync.memberId == group.leader {
                for assignment in sync.assignments { group.assignments[assignment.memberId] = assignment.assignment }
            }
            return .syncGroup(SyncGroupResponse(assignment: group.assignments[sync.memberId] ?? ByteBuffer()))
        case .heartbeat(let heartbeat):
            let code: ErrorCode = if state.group.members[heartbeat.memberId] == nil { .unknownMemberId }
                else if heartbeat.generationId != state.group.generationId { .illegalGeneration }
                else if state.group.rebalancePending { .rebalanceInProgress }
                else { .noError }
            return .heartbeat(HeartbeatResponse(errorCode: code))
        case .offsetCommit(let commit):
            let code: ErrorCode = commit.generationId == state.group.generationId ? .noError : .illegalGeneration
            if code == .noError {
                for topic in commit.topics {
                    for partition in topic.partitions {
                        state.group.committed[StreamPartition(stream: topic.name, partition: partition.partitionIndex)] = partition.committedOffset
                    }
                }
            }
            return .offsetCommit(OffsetCommitResponse(topics: commit.topics.map { topic in
                .init(name: topic.name, partitions: topic.partitions.map { .init(partitionIndex: $0.partitionIndex, errorCode: code) })
            }))
        case .offsetFetch(let fetch):
            return .offsetFetch(OffsetFetchResponse(topics: (fetch.topics ?? []).map { topic in
                .init(name: topic.name, partitions: topic.partitionIndexes.map { partition in
                    .init(partitionIndex: partition,
                          committedOffset: state.group.committed[StreamPartition(stream: topic.name, partition: partition)] ?? -1)
                })
            }))
        case .leaveGroup(let leave):
            let known = state.group.members.removeValue(forKey: leave.memberId) != nil
            return .leaveGroup(LeaveGroupResponse(errorCode: known ? .noError : .unknownMemberId))
        case .produce(let produce):
            let responses = produce.topicData.map { topic in
                ProduceResponse.TopicResponse(name: topic.name, partitionResponses: topic.partitionData.map { data in
                    .init(index: data.index, errorCode: .noError,
                          baseOffset: -1).with { store(topic.name, data, state: &state, into: &$0) }
                })
            }
            return produce.acks == 0 ? nil : .produce(ProduceResponse(responses: responses))
        default:
            return nil
        }
    }

    private static func answerJoin(_ join: JoinGroupRequest, state group: inout FakeGroup) -> JoinGroupResponse {
        // KIP-394, as the broker does from v4: a first join gets its member id and must come back with it.
        if join.memberId.isEmpty {
            let id = "consumer-\(group.nextMemberNumber)"
            group.nextMemberNumber += 1
            return JoinGroupResponse(errorCode: .memberIdRequired, generationId: -1, protocolName: "", leader: "",
                                     memberId: id, members: [])
        }
        guard let chosen = join.protocols.first(where: { proto in
            group.phantomMembers.isEmpty || group.protocolName.isEmpty || proto.name == group.protocolName
        }) ?? join.protocols.first else {
            return JoinGroupResponse(errorCode: .inconsistentGroupProtocol, generationId: -1, protocolName: "", leader: "",
                                     memberId: join.memberId, members: [])
        }
        group.members[join.memberId] = chosen.metadata
        group.generationId += 1
        group.protocolName = chosen.name
        group.leader = join.memberId
        group.rebalancePending = false
        group.assignments = [:]
        let everyone = group.members.merging(group.phantomMembers) { mine, _ in mine }
        return JoinGroupResponse(generationId: group.generationId, protocolName: chosen.name, leader: join.memberId,
                                 memberId: join.memberId,
                                 members: everyone.keys.sorted().map { .init(memberId: $0, metadata: everyone[$0]!) })
    }

    private static func store(_ stream: String, _ data: ProduceRequest.PartitionData, state: inout State,
                              into answer: inout ProduceResponse.PartitionResponse) {
        if !state.injectedProduceErrors.isEmpty {
            answer.errorCode = state.injectedProduceErrors.removeFirst()
            return
        }
        guard let records = data.records, let batch = try? RecordBatchView(validating: records) else {
            answer.errorCode = .corruptMessage
            return
        }
        // An idempotent retry of a stored batch gets its original offset.
        if let original = state.stored.first(where: {
            $0.stream == stream && $0.partition == data.index && $0.batch.header.producerId == batch.header.producerId
                && $0.batch.header.baseSequence == batch.header.baseSequence && batch.header.producerId >= 0
        }) {
            answer.baseOffset = original.baseOffset
            return
        }
        let key = StreamPartition(stream: stream, partition: data.index)
        let offset = state.nextOffsets[key, default: 0]
        state.nextOffsets[key] = offset + Int64(batch.header.recordCount)
        state.stored.append(Stored(stream: stream, partition: data.index, baseOffset: offset, batch: batch))
        _ = appendToLog(records, key: key, state: &state)
        answer.baseOffset = offset
    }
}

extension ProduceResponse.PartitionResponse {
    fileprivate func with(_ change: (inout Self) -> Void) -> Self {
        var copy = self
        change(&copy)
        return copy
    }
}

private final class FakeBrokerHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let broker: FakeBroker.Shared
    /// Answers leave in request order: each waits for the one before (a parked Fetch delays those behind it).
    private var previousAnswer: EventLoopFuture<Void>?

    init(broker: FakeBroker.Shared) {
        self.broker = broker
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard let request = try? KafkaRequest.decode(frame: frame) else {
            context.close(promise: nil)
            return
        }
        let park = broker.mutex.withLock { state -> TimeAmount? in
            state.requests.append(request)
            guard case .fetch(let fetch) = request.body, !FakeBroker.hasRecords(for: fetch, state: state) else { return nil }
            return .milliseconds(Int64(fetch.maxWaitMs))
        }
        let loop = context.eventLoop
        let bound = NIOLoopBound((handler: self, context: context), eventLoop: loop)
        let answered = loop.makePromise(of: Void.self)
        let previous = previousAnswer ?? loop.makeSucceededVoidFuture()
        previousAnswer = answered.futureResult
        let shared = broker
        previous.whenComplete { _ in
            let answer: @Sendable () -> Void = {
                let (handler, context) = bound.value
                _ = handler
                let response = shared.mutex.withLock { FakeBroker.answer(request, state: &$0) }
                if let response, context.channel.isActive {
                    context.writeAndFlush(NIOAny(response.encoded(version: request.header.apiVersion,
                                                                  correlationId: request.header.correlationId)),
                                          promise: nil)
                }
                answered.succeed()
            }
            if let park { loop.scheduleTask(in: park) { answer() } } else { answer() }
        }
    }
}
