import EventFlowClient
import EventFlowProtocol
import NIOCore
import NIOPosix
import Synchronization

/// A broker stand-in on a loopback socket, built from EventFlowProtocol's own messages: it
/// records every request as decoded from the wire and answers ApiVersions, SASL PLAIN, Metadata,
/// InitProducerId and Produce (validating each batch's CRC, assigning offsets, deduplicating
/// idempotent retries by sequence).
final class FakeBroker: Sendable {
    struct Stored: Sendable {
        var stream: String
        var partition: Int32
        var baseOffset: Int64
        var batch: RecordBatchView
    }

    struct State: Sendable {
        var streams: [String: Int32]
        var keyID = "key-1"
        var secret = "secret-1"
        var requests: [DecodedRequest] = []
        var stored: [Stored] = []
        var nextOffsets: [StreamPartition: Int64] = [:]
        /// Produce answers to replace with this error, one per partition answer, first come first served.
        var injectedProduceErrors: [ErrorCode] = []
        var authenticated = false
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
    }

    func close() async {
        try? await channel.close()
    }

    func withState<T>(_ body: (inout State) -> T) -> T { shared.mutex.withLock { body(&$0) } }

    var requests: [DecodedRequest] { shared.mutex.withLock { $0.requests } }
    var stored: [Stored] { shared.mutex.withLock { $0.stored } }

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
        case .initProducerId:
            return .initProducerId(InitProducerIdResponse(producerId: producerId, producerEpoch: 0))
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

    init(broker: FakeBroker.Shared) {
        self.broker = broker
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard let request = try? KafkaRequest.decode(frame: frame) else {
            context.close(promise: nil)
            return
        }
        let response = broker.mutex.withLock { state -> KafkaResponse? in
            state.requests.append(request)
            return FakeBroker.answer(request, state: &state)
        }
        if let response {
            context.writeAndFlush(wrapOutboundOut(response.encoded(version: request.header.apiVersion,
                                                                   correlationId: request.header.correlationId)),
                                  promise: nil)
        }
    }
}
