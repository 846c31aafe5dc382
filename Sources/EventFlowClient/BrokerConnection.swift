import EventFlowProtocol
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// What a connection needs from the producer's or the consumer's configuration.
struct ConnectionSettings: Sendable {
    var credentials: APIKeyCredentials?
    var security: TransportSecurity
    var clientID: String
    var requestTimeoutMilliseconds: Int
    var inflightRequestsMax: Int
    var frameBytesMax: Int
    var connectTimeoutMilliseconds: Int

    init(_ configuration: ProducerConfiguration) {
        credentials = configuration.credentials
        security = configuration.security
        clientID = configuration.clientID
        requestTimeoutMilliseconds = configuration.requestTimeoutMilliseconds
        inflightRequestsMax = configuration.inflightRequestsMax
        frameBytesMax = configuration.frameBytesMax
        connectTimeoutMilliseconds = configuration.connectTimeoutMilliseconds
    }

    init(_ configuration: ConsumerConfiguration) {
        credentials = configuration.credentials
        security = configuration.security
        clientID = configuration.clientID
        // A parked fetch is answered after up to maxWait: only a request outliving that is late.
        requestTimeoutMilliseconds = configuration.requestTimeoutMilliseconds + configuration.fetchMaxWaitMilliseconds
        // The fetch loop sends one request at a time: a partition's next offset comes with its answer.
        inflightRequestsMax = 1
        frameBytesMax = configuration.frameBytesMax
        connectTimeoutMilliseconds = configuration.connectTimeoutMilliseconds
    }
}

/// A request on its way to the wire; the handler remembers it to match the answer.
struct OutboundRequest: Sendable {
    var bytes: ByteBuffer
    var correlationId: Int32
    /// nil when no answer comes (Produce with acks 0): the write completing is the result.
    var responsePromise: EventLoopPromise<ByteBuffer>?
    var timeout: TimeAmount
}

/// Matches response frames to requests. Kafka answers a connection's requests in order, so the
/// next answer belongs to the oldest request still waiting; its correlation id must agree.
final class KafkaClientHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = OutboundRequest
    typealias OutboundOut = ByteBuffer

    private struct Waiting {
        var correlationId: Int32
        var promise: EventLoopPromise<ByteBuffer>
        var timeout: Scheduled<Void>
    }

    private var waiting = CircularBuffer<Waiting>(initialCapacity: 8)
    private var failure: ProducerError?

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        if let failure {
            request.responsePromise?.fail(failure)
            promise?.fail(failure)
            return
        }
        if let responsePromise = request.responsePromise {
            let correlationId = request.correlationId
            let bound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
            let timeout = context.eventLoop.scheduleTask(in: request.timeout) {
                // Later answers on this connection cannot be trusted once one is missing: close it.
                let (handler, context) = bound.value
                if handler.waiting.contains(where: { $0.correlationId == correlationId }) {
                    handler.failAll(.requestTimedOut, context: context)
                }
            }
            waiting.append(Waiting(correlationId: correlationId, promise: responsePromise, timeout: timeout))
        }
        context.write(wrapOutboundOut(request.bytes), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard let next = waiting.popFirst() else {
            failAll(.connection("an answer arrived for no request"), context: context)
            return
        }
        next.timeout.cancel()
        guard let correlationId = frame.getInteger(at: frame.readerIndex, as: Int32.self), correlationId == next.correlationId else {
            next.promise.fail(ProducerError.connection("answer out of order (expected correlation id \(next.correlationId))"))
            failAll(.connection("answer out of order"), context: context)
            return
        }
        next.promise.succeed(frame)
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(.connection("connection closed by the broker"), context: nil)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        failAll(.connection("\(error)"), context: context)
    }

    private func failAll(_ error: ProducerError, context: ChannelHandlerContext?) {
        if failure == nil { failure = error }
        while let next = waiting.popFirst() {
            next.timeout.cancel()
            next.promise.fail(error)
        }
        context?.close(promise: nil)
    }
}

/// Counts requests in flight on a connection and suspends callers beyond the limit.
final class InflightLimiter: Sendable {
    private struct State {
        var inflight = 0
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let limit: Int
    private let state = Mutex(State())

    init(limit: Int) {
        self.limit = max(1, limit)
    }

    func acquire() async {
        let acquired = state.withLock { state -> Bool in
            guard state.inflight < limit else { return false }
            state.inflight += 1
            return true
        }
        if acquired { return }
        await withCheckedContinuation { continuation in
            let now = state.withLock { state -> Bool in
                if state.inflight < limit {
                    state.inflight += 1
                    return true
                }
                state.waiters.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }

    func release() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            // The slot passes straight to the first waiter, so the count stays the same.
            if state.waiters.isEmpty {
                state.inflight -= 1
                return nil
            }
            return state.waiters.removeFirst()
        }
        waiter?.resume()
    }
}

/// One connection to a broker: TLS or plaintext, ApiVersions negotiation, SASL PLAIN, then
/// pipelined requests (up to `inflightRequestsMax` unanswered), each awaited by its caller.
public final class BrokerConnection: Sendable {
    public let address: BrokerAddress
    /// The version used per API: the highest both ends support.
    public let versions: [APIKey: Int16]
    private let channel: any Channel
    private let clientID: String
    private let requestTimeout: TimeAmount
    private let limiter: InflightLimiter
    private let nextCorrelationId = Mutex<Int32>(1)

    public var isActive: Bool { channel.isActive }

    private init(address: BrokerAddress, channel: any Channel, versions: [APIKey: Int16], clientID: String,
                 requestTimeout: TimeAmount, inflightRequestsMax: Int) {
        self.address = address
        self.channel = channel
        self.versions = versions
        self.clientID = clientID
        self.requestTimeout = requestTimeout
        self.limiter = InflightLimiter(limit: inflightRequestsMax)
    }

    /// Connects, negotiates versions and authenticates (when credentials are given).
    public static func connect(to address: BrokerAddress, configuration: ProducerConfiguration,
                               eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                               logger: Logger) async throws(ProducerError) -> BrokerConnection {
        try await connect(to: address, settings: ConnectionSettings(configuration), eventLoopGroup: eventLoopGroup,
                          logger: logger)
    }

    /// Connects with the settings the producer and the consumer share.
    static func connect(to address: BrokerAddress, settings configuration: ConnectionSettings,
                        eventLoopGroup: any EventLoopGroup, logger: Logger) async throws(ProducerError) -> BrokerConnection {
        let channel: any Channel
        do {
            let sslContext: NIOSSLContext?
            switch configuration.security {
            case .plaintext:
                sslContext = nil
            case .tls(let caFilePath):
                var tls = TLSConfiguration.makeClientConfiguration()
                if let caFilePath { tls.trustRoots = .file(caFilePath) }
                sslContext = try NIOSSLContext(configuration: tls)
            }
            let frameBytesMax = configuration.frameBytesMax
            let host = address.host
            channel = try await ClientBootstrap(group: eventLoopGroup)
                .connectTimeout(.milliseconds(Int64(configuration.connectTimeoutMilliseconds)))
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let sslContext {
                            let handler = try NIOSSLClientHandler(context: sslContext,
                                                                  serverHostname: Self.isIPAddress(host) ? nil : host)
                            try channel.pipeline.syncOperations.addHandler(handler)
                        }
                        try channel.pipeline.syncOperations.addHandlers(
                            ByteToMessageHandler(KafkaFrameDecoder(frameBytesMax: frameBytesMax)),
                            MessageToByteHandler(KafkaFrameEncoder()),
                            KafkaClientHandler())
                    }
                }
                .connect(host: address.host, port: address.port)
                .get()
        } catch let error as ProducerError {
            throw error
        } catch {
            throw .connection("\(address): \(error)")
        }
        let timeout = TimeAmount.milliseconds(Int64(configuration.requestTimeoutMilliseconds))
        // Before ApiVersions the versions are unknown: ApiVersions v0 is understood by every broker.
        var connection = BrokerConnection(address: address, channel: channel, versions: [.apiVersions: 0],
                                          clientID: configuration.clientID, requestTimeout: timeout,
                                          inflightRequestsMax: configuration.inflightRequestsMax)
        do throws(ProducerError) {
            let versions: [APIKey: Int16]
            do throws(ProducerError) {
                versions = try await connection.negotiateVersions()
            } catch .connection(let detail) {
                // The first answer unreadable usually means one side speaks TLS and the other does not.
                let hint = if case .plaintext = configuration.security { "is the broker using TLS?" } else { "is the broker plaintext?" }
                throw ProducerError.connection("\(address): no Kafka answer to ApiVersions (\(hint)): \(detail)")
            }
            connection = BrokerConnection(address: address, channel: channel, versions: versions,
                                          clientID: configuration.clientID, requestTimeout: timeout,
                                          inflightRequestsMax: configuration.inflightRequestsMax)
            if let credentials = configuration.credentials {
                try await connection.authenticate(credentials)
            }
            logger.debug("connected", metadata: ["broker": "\(address)", "tls": "\(sslTag(configuration.security))"])
            return connection
        } catch {
            connection.close()
            throw error
        }
    }

    private static func sslTag(_ security: TransportSecurity) -> String {
        if case .plaintext = security { return "off" }
        return "on"
    }

    static func isIPAddress(_ host: String) -> Bool {
        (try? SocketAddress(ipAddress: host, port: 0)) != nil
    }

    public func close() {
        channel.close(promise: nil)
    }

    /// The highest version of each API both ends support; APIs without overlap are absent.
    static func negotiate(broker: [ApiVersionsResponse.APIVersionRange]) -> [APIKey: Int16] {
        var versions: [APIKey: Int16] = [:]
        for range in broker {
            guard let key = APIKey(rawValue: range.apiKey), let ours = SupportedAPIVersions.range(for: key) else { continue }
            let high = min(ours.upperBound, range.maxVersion)
            let low = max(ours.lowerBound, range.minVersion)
            if high >= low { versions[key] = high }
        }
        return versions
    }

    private func negotiateVersions() async throws(ProducerError) -> [APIKey: Int16] {
        // Ask at our highest version; a broker that does not know it answers error 35 listing its ranges.
        let ours = SupportedAPIVersions.range(for: .apiVersions)?.upperBound ?? 0
        var response = try await request(ApiVersionsRequest(clientSoftwareName: "eventflow-swift", clientSoftwareVersion: "1"),
                                         version: ours)
        if response.errorCode == .unsupportedVersion {
            let theirs = response.apiKeys.first { $0.apiKey == APIKey.apiVersions.rawValue }?.maxVersion ?? 0
            response = try await request(ApiVersionsRequest(), version: min(ours, theirs))
        }
        guard response.errorCode == .noError else { throw .broker(response.errorCode, message: "ApiVersions") }
        return Self.negotiate(broker: response.apiKeys)
    }

    private func authenticate(_ credentials: APIKeyCredentials) async throws(ProducerError) {
        guard let handshakeVersion = versions[.saslHandshake], handshakeVersion >= 1, versions[.saslAuthenticate] != nil else {
            throw .authenticationFailed("the broker does not offer SaslHandshake v1 and SaslAuthenticate")
        }
        let handshake = try await request(SaslHandshakeRequest(mechanism: "PLAIN"))
        guard handshake.errorCode == .noError else {
            throw .authenticationFailed("mechanism PLAIN refused (\(handshake.errorCode); broker offers \(handshake.mechanisms))")
        }
        let plain = SaslPlainCredentials(username: credentials.keyID, password: credentials.secret)
        let answer = try await request(SaslAuthenticateRequest(authBytes: plain.encoded))
        guard answer.errorCode == .noError else {
            throw .authenticationFailed(answer.errorMessage ?? "\(answer.errorCode)")
        }
    }

    /// Sends `message` at the negotiated version and waits for its answer.
    public func request<Request: KafkaRequestMessage>(_ message: Request) async throws(ProducerError) -> Request.Response {
        guard let version = versions[Request.apiKey] else {
            throw .broker(.unsupportedVersion, message: "the broker serves no version of \(Request.apiKey) this client speaks")
        }
        return try await request(message, version: version)
    }

    func request<Request: KafkaRequestMessage>(_ message: Request, version: Int16) async throws(ProducerError) -> Request.Response {
        guard let frame = try await roundTrip(message, version: version, expectsResponse: true) else {
            throw .connection("no answer")
        }
        return try decode(Request.self, frame: frame, version: version)
    }

    fileprivate func decode<Request: KafkaRequestMessage>(_ request: Request.Type, frame: ByteBuffer,
                                                          version: Int16) throws(ProducerError) -> Request.Response {
        do {
            return try Request.Response.decodeResponse(frame: frame, version: version).1
        } catch {
            close()
            throw .connection("undecodable \(Request.apiKey) answer: \(error)")
        }
    }

    /// A Produce request written to the connection, its answer still to come.
    struct ProduceInFlight: Sendable {
        fileprivate let connection: BrokerConnection
        fileprivate let version: Int16
        fileprivate let exchange: Exchange

        /// The broker's answer (nil with acks 0, once written); frees the request's in-flight slot.
        func answer() async throws(ProducerError) -> ProduceResponse? {
            defer { connection.limiter.release() }
            guard let frame = try await connection.complete(exchange) else { return nil }
            return try connection.decode(ProduceRequest.self, frame: frame, version: version)
        }
    }

    /// Writes a Produce request at once, once an in-flight slot is free, and returns without
    /// waiting for the answer (`ProduceInFlight.answer`). Requests written by one caller leave in
    /// the order of its calls: an idempotent producer's sequence numbers depend on it, so its send
    /// loop writes here and only waits for answers in separate tasks.
    func writeProduce(_ message: ProduceRequest) async throws(ProducerError) -> ProduceInFlight {
        guard let version = versions[.produce] else {
            throw .broker(.unsupportedVersion, message: "the broker serves no Produce version this client speaks")
        }
        await limiter.acquire()
        return ProduceInFlight(connection: self, version: version,
                               exchange: write(message, version: version, expectsResponse: message.acks != 0))
    }

    /// One request on the wire: written (or failing to be) and, unless none is expected, answered.
    fileprivate struct Exchange: Sendable {
        let written: EventLoopFuture<Void>
        let answer: EventLoopFuture<ByteBuffer>?
    }

    private func roundTrip<Request: KafkaRequestMessage>(_ message: Request, version: Int16,
                                                          expectsResponse: Bool) async throws(ProducerError) -> ByteBuffer? {
        await limiter.acquire()
        defer { limiter.release() }
        return try await complete(write(message, version: version, expectsResponse: expectsResponse))
    }

    /// Encodes and writes the request now (NIO keeps the order of writes issued by one caller).
    private func write<Request: KafkaRequestMessage>(_ message: Request, version: Int16, expectsResponse: Bool) -> Exchange {
        let correlationId = nextCorrelationId.withLock { id -> Int32 in
            defer { id = id == Int32.max ? 1 : id + 1 }
            return id
        }
        let bytes = message.encodedRequest(version: version, correlationId: correlationId, clientId: clientID,
                                           allocator: channel.allocator)
        let responsePromise = expectsResponse ? channel.eventLoop.makePromise(of: ByteBuffer.self) : nil
        let request = OutboundRequest(bytes: bytes, correlationId: correlationId, responsePromise: responsePromise,
                                      timeout: requestTimeout)
        let written = channel.eventLoop.makePromise(of: Void.self)
        channel.writeAndFlush(request, promise: written)
        if let responsePromise { written.futureResult.whenFailure { responsePromise.fail($0) } }
        return Exchange(written: written.futureResult, answer: responsePromise?.futureResult)
    }

    /// Waits for the answer (or, when none is expected, for the write).
    fileprivate func complete(_ exchange: Exchange) async throws(ProducerError) -> ByteBuffer? {
        do {
            guard let answer = exchange.answer else {
                try await exchange.written.get()
                return nil
            }
            return try await answer.get()
        } catch let error as ProducerError {
            throw error
        } catch {
            throw .connection("\(address): \(error)")
        }
    }
}
