@testable import EventFlowBroker
import EventFlowProtocol
import EventFlowStorage
import EventFlowTestSupport
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Testing

/// A real broker on 127.0.0.1 (port 0, TLS with a generated development CA) over a fresh
/// migrated database, with one organization, API key and stream.
final class BrokerHarness: Sendable {
    let databaseURL: String
    let broker: Broker
    let certificates: DevelopmentCertificates.Paths
    let organization: Organization
    let key: CreatedAPIKey
    let stream: EventStream

    static func start(partitions: Int = 2,
                      groupCommit: GroupCommit.Configuration = .init(flushBytesTarget: 1 << 20, lingerMilliseconds: 2),
                      frameBytesMax: Int = 1 << 20, inflightRequestsMax: Int = 64, connectionsMax: Int = 100,
                      revocationCheckMilliseconds: Int64 = 200,
                      requestBytesMax: Int? = nil, connectionRequestBytesMax: Int? = nil,
                      fetch: FetchService.Configuration = .init(),
                      logger: Logger? = nil,
                      prepare: (PostgresConnection, EventStream) throws -> Void = { _, _ in },
                      configure: (inout BrokerConfiguration) -> Void = { _ in }) async throws -> BrokerHarness {
        let url = try TestCluster.freshDatabase()
        let db = try PostgresConnection(url: url)
        defer { db.close() }
        try TimePartitions().ensure(db)
        let organization = try Organizations.create(db, name: "acme")
        let key = try APIKeys.create(db, org: organization, label: "test")
        let stream = try Streams.create(db, org: organization, name: "orders", partitions: partitions)
        try prepare(db, stream)
        let certificates = try DevelopmentCertificates.ensure(in: TestCluster.temporaryDirectory("tls"))
        var configuration = BrokerConfiguration(
            host: "127.0.0.1", port: 0,
            transport: .tls(certificateChainPath: certificates.certificateChain, privateKeyPath: certificates.privateKey),
            frameBytesMax: frameBytesMax, connectionsMax: connectionsMax, inflightRequestsMax: inflightRequestsMax, groupCommit: groupCommit,
            revocationCheckMilliseconds: revocationCheckMilliseconds, shutdownGraceMilliseconds: 5000, eventLoopThreads: 1)
        configuration.clusterID = "test"
        configuration.requestBytesMax = requestBytesMax
        configuration.connectionRequestBytesMax = connectionRequestBytesMax
        configuration.fetch = fetch
        // Dozens of suites start brokers and TLS handshakes at once on a debug build: a client may
        // need seconds to authenticate. Tests of the deadlines set their own.
        configuration.deadlines = .init(authenticationTimeout: .seconds(120))
        configure(&configuration)
        TestLogs.noteSecret(key.secret)
        let logger = logger ?? TestLogs.logger(label: "test.broker")
        let broker = try await Broker.start(configuration: configuration, databaseURL: url, logger: logger)
        return BrokerHarness(databaseURL: url, broker: broker, certificates: certificates, organization: organization,
                             key: key, stream: stream)
    }

    private init(databaseURL: String, broker: Broker, certificates: DevelopmentCertificates.Paths,
                 organization: Organization, key: CreatedAPIKey, stream: EventStream) {
        self.databaseURL = databaseURL
        self.broker = broker
        self.certificates = certificates
        self.organization = organization
        self.key = key
        self.stream = stream
    }

    func database() throws -> PostgresConnection { try PostgresConnection(url: databaseURL) }

    /// A connection that has authenticated with the harness's key (or the given one).
    func authenticatedConnection(keyID: UUID? = nil, secret: String? = nil) async throws -> TestConnection {
        if let secret { TestLogs.noteSecret(secret) }
        let connection = try await TestConnection.connect(port: broker.port, caPath: certificates.certificateAuthority)
        let (_, handshake) = try await connection.call(SaslHandshakeRequest(mechanism: "PLAIN"), version: 1)
        #expect(handshake.errorCode == .noError)
        let credentials = SaslPlainCredentials(username: (keyID ?? key.key.id).uuidString.lowercased(), password: secret ?? key.secret)
        let (_, answer) = try await connection.call(SaslAuthenticateRequest(authBytes: credentials.encoded), version: 1)
        try #require(answer.errorCode == .noError, "authentication failed: \(answer)")
        return connection
    }
}

/// A raw Kafka-protocol client over TLS for tests: writes frames (or any bytes) and reads
/// response frames in order.
final class TestConnection: @unchecked Sendable {
    private let channel: any Channel
    private let frames: AsyncStream<ByteBuffer>
    private var iterator: AsyncStream<ByteBuffer>.Iterator
    private var nextCorrelationID: Int32 = 1
    private static let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    private init(channel: any Channel, frames: AsyncStream<ByteBuffer>) {
        self.channel = channel
        self.frames = frames
        self.iterator = frames.makeAsyncIterator()
    }

    /// `tls`: the client's TLS settings (default: trust `caPath`).
    static func connect(port: Int, caPath: String, tls custom: TLSConfiguration? = nil) async throws -> TestConnection {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .file(caPath)
        if let custom { tls = custom }
        let context = try NIOSSLContext(configuration: tls)
        let (stream, continuation) = AsyncStream<ByteBuffer>.makeStream()
        let channel = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    try pipeline.addHandler(NIOSSLClientHandler(context: context, serverHostname: "localhost"))
                    try pipeline.addHandler(ByteToMessageHandler(KafkaFrameDecoder()))
                    try pipeline.addHandler(FrameCollector(continuation: continuation))
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return TestConnection(channel: channel, frames: stream)
    }

    /// Writes raw bytes (no size prefix added).
    func writeRaw(_ bytes: ByteBuffer) async throws {
        try await channel.writeAndFlush(bytes)
    }

    /// Writes one frame: size prefix + payload.
    func writeFrame(_ payload: ByteBuffer) async throws {
        var frame = ByteBuffer()
        frame.writeInteger(Int32(payload.readableBytes))
        frame.writeImmutableBuffer(payload)
        try await writeRaw(frame)
    }

    func send<Request: KafkaRequestMessage>(_ request: Request, version: Int16) async throws -> Int32 {
        let correlationID = nextCorrelationID
        nextCorrelationID += 1
        try await writeFrame(request.encodedRequest(version: version, correlationId: correlationID, clientId: "test"))
        return correlationID
    }

    /// The next response frame, or nil once the broker has closed the connection.
    func receiveFrame() async -> ByteBuffer? {
        await iterator.next()
    }

    /// The same, but a broker that neither answers nor closes within `timeout` is a test failure
    /// (the connection is then closed so the test goes on).
    func receiveFrame(timeout: Duration, iteration: Int, sent: String = "") async -> ByteBuffer? {
        let channel = self.channel
        let watchdog = Task {
            try await Task.sleep(for: timeout)
            Issue.record("no answer and no close within \(timeout) (frame \(iteration)\(sent))")
            try? await channel.close()
        }
        defer { watchdog.cancel() }
        return await iterator.next()
    }

    /// Sends `request` under a chosen correlation id.
    func send<Request: KafkaRequestMessage>(_ request: Request, version: Int16, correlationID: Int32) async throws -> Int32 {
        try await writeFrame(request.encodedRequest(version: version, correlationId: correlationID, clientId: "test"))
        return correlationID
    }

    func receive<Response: KafkaResponseMessage>(_ type: Response.Type, version: Int16) async throws -> (Int32, Response) {
        guard let frame = await receiveFrame() else { throw TestConnectionError.closed }
        let (header, body) = try Response.decodeResponse(frame: frame, version: version)
        return (header.correlationId, body)
    }

    func call<Request: KafkaRequestMessage>(_ request: Request, version: Int16) async throws -> (Int32, Request.Response) {
        let sent = try await send(request, version: version)
        let (received, response) = try await receive(Request.Response.self, version: version)
        #expect(received == sent, "responses come back in request order")
        return (received, response)
    }

    func close() async {
        try? await channel.close()
    }
}

enum TestConnectionError: Error { case closed }

private final class FrameCollector: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    let continuation: AsyncStream<ByteBuffer>.Continuation

    init(continuation: AsyncStream<ByteBuffer>.Continuation) {
        self.continuation = continuation
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        continuation.yield(unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) {
        continuation.finish()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        continuation.finish()
        context.close(promise: nil)
    }
}

/// A Produce request with one batch for one partition.
func produceRequest(topic: String, partition: Int32 = 0, batch: ByteBuffer, acks: Int16 = -1, timeoutMs: Int32 = 30_000) -> ProduceRequest {
    ProduceRequest(acks: acks, timeoutMs: timeoutMs,
                   topicData: [.init(name: topic, partitionData: [.init(index: partition, records: batch)])])
}

/// Polls until `condition` holds (the batcher flushes after its linger time); fails after `attempts`.
func eventually(attempts: Int = 200, _ condition: () throws -> Bool) async throws -> Bool {
    for _ in 0..<attempts {
        if try condition() { return true }
        try await Task.sleep(for: .milliseconds(25))
    }
    return false
}
