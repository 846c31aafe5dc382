import EventFlowProtocol
import EventFlowStorage
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// One client connection, after TLS: cuts frames, decodes requests, drives the
/// `SessionStateMachine`, serves each API, and writes responses in request order.
///
/// Frames are cut here rather than by a separate decoder because their bound and their budget
/// depend on the session: before authentication a frame may be at most
/// `unauthenticatedFrameBytesMax`, after it `frameBytesMax`. Once a frame's size prefix is read
/// its whole size is reserved in the request-bytes budgets (the pre-authentication budget before
/// authentication) and the frame is then read to its end within `ConnectionDeadlines`'
/// `frameReadTimeout`; a new frame is reserved only while the budget has room, so bytes a
/// connection is still receiving count like bytes it holds.
///
/// Reading is paused (outbound `read` withheld, which is what `autoRead` drives) while the
/// session has `inflightRequestsMax` requests outstanding, the batcher is full, or the request
/// bytes read ahead of the batcher reach the broker's or this connection's `RequestBytesBudget`.
final class KafkaConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let services: BrokerServices
    private var session: SessionStateMachine
    private var logger: Logger
    private var context: ChannelHandlerContext?
    private var readPending = false
    private var batcherPaused = false
    private var registered = false
    /// Bytes of this connection's frames read and not yet handed to or refused by the batcher;
    /// every charge and release is mirrored in the broker-wide `services.requestBytes`.
    private var connectionBytes: RequestBytesBudget
    /// The frame being handled, until a request takes over releasing it (see `takeFrameBytes`).
    private var frameBytesUnclaimed = 0
    /// Produce requests accept their batches in arrival order (idempotent sequences depend on it),
    /// even when one of them waits for a stream lookup.
    private var produceChain: EventLoopFuture<Void>?
    /// After SaslHandshake v0 the PLAIN message arrives as a bare frame without a request header.
    private var expectsBareSaslToken = false
    /// The frame being received: its size prefix and the bytes of it read so far, in memory of its
    /// own (see `channelRead`). Never shares memory with a frame already cut.
    private var cumulation = ByteBuffer()
    /// What the incomplete frame at the head of `cumulation` reserved once its size prefix was read.
    private var reservation = Reservation.none
    /// Of `services.unauthenticatedBytes`, what this connection holds.
    private var unauthenticatedBytesCharged = 0
    private var deadlines: ConnectionDeadlines
    private var deadlineTimer: Scheduled<Void>?
    /// Numbers the broker's connections in the order they open: the `connection` of every log line.
    private static let connectionsOpened = NIOLockedValueBox<UInt64>(0)

    private enum Reservation: Equatable {
        case none
        /// Charged to this connection's and the broker's request-bytes budgets.
        case requests(Int)
        /// Charged to the pre-authentication budget.
        case unauthenticated(Int)
    }

    init(services: BrokerServices, authentication: SessionStateMachine.Authentication) {
        self.services = services
        self.session = SessionStateMachine(configuration: .init(
            authentication: authentication, inflightRequestsMax: services.configuration.inflightRequestsMax))
        self.logger = services.logger
        logger[metadataKey: "connection"] = "\(Self.connectionsOpened.withLockedValue { opened in opened += 1; return opened })"
        self.connectionBytes = RequestBytesBudget(configuration: .init(bytesMax: services.configuration.effectiveConnectionRequestBytesMax))
        self.deadlines = ConnectionDeadlines(configuration: services.configuration.deadlines, openedAt: .now(),
                                             authenticated: session.principal != nil)
    }

    private var id: ObjectIdentifier { ObjectIdentifier(self) }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if let remote = context.channel.remoteAddress { logger[metadataKey: "peer"] = "\(remote)" }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        let entry = ConnectionRegistry.Entry(handler: NIOLoopBound(self, eventLoop: context.eventLoop),
                                             eventLoop: context.eventLoop, apiKeyID: nil,
                                             peer: context.channel.remoteAddress?.ipAddress ?? "")
        if let refusal = services.registry.register(id, entry, connectionsMax: services.configuration.connectionsMax,
                                                    connectionsPerPeerMax: services.configuration.connectionsPerPeerMax) {
            logger.warning("connection refused", metadata: ["reason": "\(refusal)"])
            services.metrics.connectionsRefused.increment()
            session.connectionClosed()
            context.close(promise: nil)
            return
        }
        registered = true
        services.metrics.connectionsOpened.increment()
        batcherPaused = services.batcher.isReadingPaused
        run(deadlines.opened())
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        session.connectionClosed()
        // Requests still waiting die with the connection; their later completions release nothing.
        releaseRequestBytes(connectionBytes.chargedBytes)
        services.unauthenticatedBytes.release(unauthenticatedBytesCharged)
        unauthenticatedBytesCharged = 0
        reservation = .none
        deadlineTimer?.cancel()
        deadlineTimer = nil
        if cumulation.readableBytes > 0, !deadlines.isExpired {
            logger.notice("connection closed in the middle of a frame", metadata: ["bytes": "\(cumulation.readableBytes)"])
        }
        cumulation = ByteBuffer()
        if registered {
            registered = false
            services.registry.unregister(id)
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Bad frame size, truncated frame at EOF, TLS failure: the stream cannot be trusted any more.
        logger.notice("closing connection", metadata: ["reason": "\(error)"])
        session.connectionClosed()
        context.close(promise: nil)
    }

    func read(context: ChannelHandlerContext) {
        if isReadingPaused {
            readPending = true
        } else {
            context.read()
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // A closed session reads nothing more: bytes still arriving (while TLS says goodbye) are dropped.
        guard !session.isClosed else { return }
        var bytes = unwrapInboundIn(data)
        deadlines.activity(at: .now())
        while bytes.readableBytes > 0, !session.isClosed {
            receive(from: &bytes)
            cutFrames()
        }
    }

    /// A frame up to this size gets its whole buffer when its size prefix arrives; a larger one starts
    /// with this much and grows with its bytes, so a size prefix alone never sets aside more memory.
    static let frameBufferInitialBytesMax = 1 << 20

    /// Copies bytes of `read` into `cumulation`, up to the end of the frame being received.
    ///
    /// Each frame is copied once into a buffer of its own, of exactly its size when its size prefix
    /// is read (up to `frameBufferInitialBytesMax`); its batches travel on as slices of that buffer.
    /// The read's own buffer is not kept: NIO's socket buffer and NIOSSL's plaintext buffer are
    /// reused for the next read only when nothing else holds them. Holding them (slices of the read
    /// itself, until the flush commits) made NIOSSL copy its buffer on every read into fresh memory
    /// of its full capacity (256 KiB once grown): at 350k events/s over TLS that was ~1,000
    /// mmap/munmap pairs and ~80,000 page faults per second, about a third of the broker's CPU. One
    /// copy of the bytes costs far less.
    private func receive(from read: inout ByteBuffer) {
        if cumulation.readableBytes < 4 {
            // The size prefix, possibly split over reads; a fresh buffer, as the last frame's memory is gone with it.
            if cumulation.readableBytes == 0 { cumulation = ByteBuffer() }
            var prefix = read.readSlice(length: min(4 - cumulation.readableBytes, read.readableBytes))!
            cumulation.writeBuffer(&prefix)
            // Until the prefix is whole, and for a size the decoder refuses: nothing more (`cutFrames`
            // then closes the connection).
            guard let length = try? frameDecoder.frameLength(of: cumulation) else { return }
            var frame = ByteBufferAllocator().buffer(capacity: min(length, Self.frameBufferInitialBytesMax))
            frame.writeBuffer(&cumulation)
            cumulation = frame
        }
        guard let length = try? frameDecoder.frameLength(of: cumulation) else { return }
        let missing = length - cumulation.readableBytes
        guard missing > 0 else { return }
        var part = read.readSlice(length: min(missing, read.readableBytes))!
        cumulation.writeBuffer(&part)
    }

    // MARK: Broker-wide events (called on this connection's event loop)

    func batcherReadingPaused(_ paused: Bool) {
        batcherPaused = paused
        resumeReadingIfPossible()
    }

    func keyRevoked(_ apiKeyID: UUID) {
        let actions = session.keyRevoked(apiKeyID: apiKeyID)
        if !actions.isEmpty { logger.notice("API key revoked; closing connection", metadata: ["apiKeyID": "\(apiKeyID)"]) }
        apply(actions)
    }

    /// Broker shutdown: answer what is outstanding, then close.
    func shutdown() {
        apply(session.shutdown())
    }

    func forceClose() {
        session.connectionClosed()
        context?.close(promise: nil)
    }

    func requestBytesPauseChanged() {
        resumeReadingIfPossible()
    }

    private var isReadingPaused: Bool {
        if session.isClosed { return true }
        // A reserved frame is read to its end: its bytes are already counted.
        if reservation != .none { return false }
        let paused = session.isReadingPaused || batcherPaused || connectionBytes.isReadingPaused || services.requestBytes.isReadingPaused
        return paused || (isUnauthenticated && services.unauthenticatedBytes.isReadingPaused)
    }

    private var isUnauthenticated: Bool { session.principal == nil }

    private func resumeReadingIfPossible() {
        guard readPending, !isReadingPaused, let context else { return }
        readPending = false
        context.read()
    }

    // MARK: Requests

    /// The APIs this broker answers today. Advertising one before it is served would make
    /// clients call it and be cut off.
    static let servedAPIs: Set<EventFlowProtocol.APIKey> = [
        .apiVersions, .saslHandshake, .saslAuthenticate, .metadata, .createTopics, .deleteTopics,
        .initProducerId, .produce, .fetch, .listOffsets, .findCoordinator, .joinGroup, .syncGroup, .heartbeat,
        .leaveGroup, .offsetCommit, .offsetFetch, .listGroups, .describeGroups, .deleteGroups,
        .describeConfigs, .alterConfigs, .incrementalAlterConfigs, .createPartitions,
    ]

    static let servedAPIVersions = SupportedAPIVersions.apiVersionsEntries.filter { entry in
        EventFlowProtocol.APIKey(rawValue: entry.apiKey).map { servedAPIs.contains($0) } ?? false
    }

    // MARK: Frames

    /// Frames under the session's bound: small until SASL authentication succeeded.
    private var frameDecoder: KafkaFrameDecoder {
        KafkaFrameDecoder(frameBytesMax: isUnauthenticated ? services.configuration.unauthenticatedFrameBytesMax
                                                           : services.configuration.frameBytesMax)
    }

    private func cutFrames() {
        while !session.isClosed {
            let frame: ByteBuffer?
            do {
                frame = try frameDecoder.nextFrame(from: &cumulation)
            } catch {
                let bound = isUnauthenticated ? "unauthenticatedFrameBytesMax" : "frameBytesMax"
                logger.notice("closing connection: bad frame size", metadata: ["error": "\(error)", "bound": "\(bound)"])
                cumulation = ByteBuffer()
                session.connectionClosed()
                context?.close(promise: nil)
                return
            }
            guard let frame else {
                reserveIncompleteFrame()
                return
            }
            let reserved = reservation
            if reserved != .none {
                reservation = .none
                deadlines.frameCompleted()
            }
            handle(frame: frame, reserved: reserved)
        }
    }

    /// Reserves the size of the frame whose prefix (and maybe part of its body) is read, if the
    /// budget has room; otherwise reads stay paused until it has, and the frame waits.
    private func reserveIncompleteFrame() {
        guard reservation == .none,
              let size = cumulation.getInteger(at: cumulation.readerIndex, as: Int32.self).map(Int.init) else { return }
        if isUnauthenticated {
            guard !services.unauthenticatedBytes.isReadingPaused else { return }
            unauthenticatedBytesCharged += size
            services.unauthenticatedBytes.charge(size)
            reservation = .unauthenticated(size)
        } else {
            guard !connectionBytes.isReadingPaused, !services.requestBytes.isReadingPaused else { return }
            chargeRequestBytes(size)
            reservation = .requests(size)
        }
        run(deadlines.frameStarted(at: .now()))
        resumeReadingIfPossible()
    }

    private func releaseUnauthenticatedBytes(_ bytes: Int) {
        let released = min(bytes, unauthenticatedBytesCharged)
        guard released > 0 else { return }
        unauthenticatedBytesCharged -= released
        services.unauthenticatedBytes.release(released)
    }

    // MARK: Deadlines

    private func run(_ action: ConnectionDeadlines.Action) {
        guard let context else { return }
        switch action {
        case .none:
            break
        case .schedule(let deadline):
            deadlineTimer?.cancel()
            let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
            deadlineTimer = context.eventLoop.scheduleTask(deadline: deadline) { bound.value.deadlineReached() }
        case .close(let reason):
            if reason == .idle {
                logger.info("closing connection", metadata: ["reason": "\(reason)"])
            } else {
                logger.notice("closing connection", metadata: ["reason": "\(reason)"])
            }
            session.connectionClosed()
            context.close(promise: nil)
        }
    }

    private func deadlineReached() {
        deadlineTimer = nil
        run(deadlines.timerFired(at: .now(), requestsOutstanding: session.outstandingRequestCount))
    }

    // MARK: Request bytes

    private func chargeRequestBytes(_ bytes: Int) {
        _ = connectionBytes.charge(bytes)
        services.requestBytes.charge(bytes)
    }

    /// Releases at most what this connection still has charged, so a release after the
    /// connection closed (which released everything) does not count twice broker-wide.
    private func releaseRequestBytes(_ bytes: Int) {
        let released = min(bytes, connectionBytes.chargedBytes)
        guard released > 0 else { return }
        let action = connectionBytes.release(released)
        services.requestBytes.release(released)
        if action == .resumeReading { resumeReadingIfPossible() }
    }

    /// The current frame's charge, for a request that releases it later itself.
    private func takeFrameBytes() -> Int {
        defer { frameBytesUnclaimed = 0 }
        return frameBytesUnclaimed
    }

    /// `reserved`: what the frame reserved while it was being received; a frame that arrived
    /// within one read is charged now. Frames before authentication are only bounded in size
    /// (a frame in hand is already in memory); their reservation is released once handled.
    private func handle(frame: ByteBuffer, reserved: Reservation) {
        switch reserved {
        case .requests(let bytes):
            frameBytesUnclaimed = bytes
        case .unauthenticated:
            frameBytesUnclaimed = 0
        case .none:
            frameBytesUnclaimed = isUnauthenticated ? 0 : frame.readableBytes
            chargeRequestBytes(frameBytesUnclaimed)
        }
        // Requests answered synchronously (or refused) release their frame here.
        defer {
            releaseRequestBytes(takeFrameBytes())
            if case .unauthenticated(let bytes) = reserved { releaseUnauthenticatedBytes(bytes) }
        }
        if expectsBareSaslToken {
            expectsBareSaslToken = false
            authenticateBareToken(frame)
            return
        }
        let decoded: DecodedRequest
        do {
            decoded = try KafkaRequest.decode(frame: frame)
        } catch {
            if error.kind == .unsupportedVersion, error.context.apiKey == APIKey.apiVersions.rawValue,
               let correlationId = error.correlationId {
                // Clients probe with their newest ApiVersions; the v0 answer lists what EventFlow serves.
                let decision = session.requestReceived(.apiVersions)
                if case .process(let sequence, _) = decision.action {
                    respond(sequence, ApiVersionsResponse(errorCode: .unsupportedVersion, apiKeys: Self.servedAPIVersions)
                        .encodedResponse(version: 0, correlationId: correlationId))
                }
                return
            }
            logger.notice("undecodable request; closing connection", metadata: ["error": "\(error)"])
            services.metrics.connectionClosed(reason: "undecodable")
            session.connectionClosed()
            context?.close(promise: nil)
            return
        }
        let header = decoded.header
        services.metrics.requestReceived(header.apiKey)
        logger.debug("request", metadata: [
            "api": "\(header.apiKey)", "version": "\(header.apiVersion)", "correlationId": "\(header.correlationId)",
        ])
        var mechanism = ""
        if case .saslHandshake(let request) = decoded.body { mechanism = request.mechanism }
        let decision = session.requestReceived(.init(apiKey: header.apiKey, saslMechanism: mechanism))
        switch decision.action {
        case .process(let sequence, let principal):
            serve(decoded, sequence: sequence, principal: principal)
        case .acceptSaslHandshake(let sequence):
            expectsBareSaslToken = header.apiVersion == 0
            respond(sequence, SaslHandshakeResponse(mechanisms: SessionStateMachine.saslMechanisms)
                .encodedResponse(version: header.apiVersion, correlationId: header.correlationId))
        case .authenticate(let sequence):
            guard case .saslAuthenticate(let request) = decoded.body else { return }
            authenticate(request, header: header, sequence: sequence)
        case .answerErrorThenClose(let sequence, let code):
            logger.notice("request refused; closing connection", metadata: ["api": "\(header.apiKey)", "error": "\(code)"])
            services.metrics.connectionClosed(reason: "refused")
            switch decoded.body {
            case .saslHandshake:
                respond(sequence, SaslHandshakeResponse(errorCode: code, mechanisms: SessionStateMachine.saslMechanisms)
                    .encodedResponse(version: header.apiVersion, correlationId: header.correlationId))
            case .saslAuthenticate:
                respond(sequence, SaslAuthenticateResponse(errorCode: code, errorMessage: "authentication failed")
                    .encodedResponse(version: header.apiVersion, correlationId: header.correlationId))
            default:
                // Before authentication only ApiVersions and SASL are answered; anything else closes.
                respond(sequence, nil)
            }
        case .ignore:
            break
        }
    }

    private func serve(_ decoded: DecodedRequest, sequence: SessionStateMachine.RequestSequence,
                       principal: SessionStateMachine.Principal?) {
        let header = decoded.header
        let received = BrokerMetrics.now()
        let metrics = services.metrics
        if case .apiVersions = decoded.body {
            respond(sequence, ApiVersionsResponse(apiKeys: Self.servedAPIVersions)
                .encodedResponse(version: header.apiVersion, correlationId: header.correlationId))
            return
        }
        guard let principal, let context else {
            respond(sequence, nil)
            return
        }
        let requests = RequestServer(services: services, principal: principal, eventLoop: context.eventLoop, logger: logger)
        let response: EventLoopFuture<ByteBuffer?>
        /// A durable or memory produce: when its batches were accepted (the ingest stages).
        var produceAcceptedAt: NIOLockedValueBox<UInt64>?
        // Every answer is encoded at the request's version under its correlation id.
        func encoded<Body: KafkaResponseMessage>(_ body: EventLoopFuture<Body>) -> EventLoopFuture<ByteBuffer?> {
            body.map { $0.encodedResponse(version: header.apiVersion, correlationId: header.correlationId) }
        }
        func encoded<Body: KafkaResponseMessage>(_ body: Body) -> EventLoopFuture<ByteBuffer?> {
            context.eventLoop.makeSucceededFuture(body.encodedResponse(version: header.apiVersion, correlationId: header.correlationId))
        }
        switch decoded.body {
        case .metadata(let request): response = encoded(requests.metadata(request))
        case .createTopics(let request): response = encoded(requests.createTopics(request))
        case .deleteTopics(let request): response = encoded(requests.deleteTopics(request))
        case .describeConfigs(let request): response = encoded(requests.describeConfigs(request))
        case .alterConfigs(let request): response = encoded(requests.alterConfigs(request))
        case .incrementalAlterConfigs(let request): response = encoded(requests.incrementalAlterConfigs(request))
        case .createPartitions(let request): response = encoded(requests.createPartitions(request))
        case .findCoordinator(let request): response = encoded(requests.findCoordinator(request))
        case .joinGroup(let request):
            let clientHost = context.channel.remoteAddress?.ipAddress ?? ""
            response = encoded(requests.joinGroup(request, version: header.apiVersion, clientID: header.clientId, clientHost: clientHost).map {
                metrics.requestErrors(.joinGroup, CollectionOfOne($0.errorCode))
                return $0
            })
        case .syncGroup(let request):
            response = encoded(requests.syncGroup(request).map {
                metrics.requestErrors(.syncGroup, CollectionOfOne($0.errorCode))
                return $0
            })
        case .heartbeat(let request):
            let answer = requests.heartbeat(request)
            metrics.requestErrors(.heartbeat, CollectionOfOne(answer.errorCode))
            response = encoded(answer)
        case .leaveGroup(let request): response = encoded(requests.leaveGroup(request))
        case .offsetCommit(let request): response = encoded(requests.offsetCommit(request))
        case .offsetFetch(let request): response = encoded(requests.offsetFetch(request))
        case .listGroups: response = encoded(requests.listGroups())
        case .describeGroups(let request): response = encoded(requests.describeGroups(request))
        case .deleteGroups(let request): response = encoded(requests.deleteGroups(request))
        case .fetch(let request):
            response = encoded(requests.fetch(request).map { body in
                metrics.requestErrors(.fetch, CollectionOfOne(body.errorCode))
                for topic in body.responses { metrics.requestErrors(.fetch, topic.partitions.lazy.map(\.errorCode)) }
                return body
            })
        case .listOffsets(let request): response = encoded(requests.listOffsets(request))
        case .initProducerId(let request): response = encoded(requests.initProducerId(request))
        case .produce(let request):
            let (accepted, answered) = requests.produce(request, after: produceChain ?? context.eventLoop.makeSucceededVoidFuture())
            produceChain = accepted
            // Once accepted the batcher's own bound holds the batches; refused ones are answered.
            let frameBytes = takeFrameBytes()
            let owner = NIOLoopBound(self, eventLoop: context.eventLoop)
            accepted.whenComplete { _ in owner.value.releaseRequestBytes(frameBytes) }
            if request.acks == 0 {
                // acks=0: no response at all; the next response on the wire is the next request's.
                // A refused batch closes the connection instead, the only way the producer can notice.
                let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
                answered.whenSuccess { body in
                    for topic in body.responses { metrics.requestErrors(.produce, topic.partitionResponses.lazy.map(\.errorCode)) }
                    metrics.requestAnswered(.produce, since: received)
                    let refused = body.responses.contains { $0.partitionResponses.contains { $0.errorCode != .noError } }
                    bound.value.respond(sequence, nil)
                    if refused {
                        bound.value.logger.notice("acks=0 produce refused; closing connection")
                        bound.value.apply(bound.value.session.shutdown())
                    }
                }
                return
            }
            let acceptedAt = NIOLockedValueBox<UInt64>(0)
            accepted.whenComplete { _ in
                let now = BrokerMetrics.now()
                acceptedAt.withLockedValue { $0 = now }
                metrics.ingestStage(.frameToAccepted, nanoseconds: now &- min(received, now))
            }
            produceAcceptedAt = acceptedAt
            response = answered.map { body in
                for topic in body.responses { metrics.requestErrors(.produce, topic.partitionResponses.lazy.map(\.errorCode)) }
                return body.encodedResponse(version: header.apiVersion, correlationId: header.correlationId)
            }
        default:
            // No answer exists for an API this broker does not serve: close once earlier answers are out.
            logger.notice("API not served by this broker yet; closing connection", metadata: ["api": "\(header.apiKey)"])
            metrics.connectionClosed(reason: "unserved")
            respond(sequence, nil)
            apply(session.shutdown())
            return
        }
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let logger = logger
        let frameBytes = takeFrameBytes()
        let produceAccepted = produceAcceptedAt
        response.whenComplete { result in
            let answeredAt = BrokerMetrics.now()
            bound.value.releaseRequestBytes(frameBytes)
            metrics.requestAnswered(header.apiKey, since: received)
            switch result {
            case .success(let buffer):
                bound.value.respond(sequence, buffer)
                if let produceAccepted {
                    // Written: handed to the connection in request order and flushed (or queued
                    // behind an earlier answer of this connection, whose write then carries it).
                    let writtenAt = BrokerMetrics.now()
                    // A produce refused at acceptance (unknown partition, sequence error) is answered
                    // before `accepted` completes: its accepted → answered is 0.
                    let acceptedAt = produceAccepted.withLockedValue { $0 }
                    let answeredSince = acceptedAt > 0 ? min(acceptedAt, answeredAt) : answeredAt
                    metrics.ingestStage(.acceptedToAnswered, nanoseconds: answeredAt &- answeredSince)
                    metrics.ingestStage(.answeredToWritten, nanoseconds: writtenAt &- answeredAt)
                    metrics.ingestStage(.frameToWritten, nanoseconds: writtenAt &- min(received, writtenAt))
                }
            case .failure(let error):
                logger.error("request failed; closing connection", metadata: ["api": "\(header.apiKey)", "error": "\(error)"])
                metrics.connectionClosed(reason: "failed")
                bound.value.respond(sequence, nil)
                bound.value.context?.close(promise: nil)
            }
        }
    }

    private func authenticate(_ request: SaslAuthenticateRequest, header: RequestHeader, sequence: SessionStateMachine.RequestSequence) {
        guard let context else { return }
        let failed = SaslAuthenticateResponse(errorCode: .saslAuthenticationFailed, errorMessage: "authentication failed")
            .encodedResponse(version: header.apiVersion, correlationId: header.correlationId)
        guard let credentials = try? SaslPlainCredentials(parsing: request.authBytes),
              credentials.authorizationId.isEmpty || credentials.authorizationId == credentials.username else {
            session.authenticationFailed(sequence)
            respond(sequence, failed)
            return
        }
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        services.controlPlane.run(on: context.eventLoop) { db in
            try APIKeys.authenticate(db, id: credentials.username, secret: credentials.password)
        }.whenComplete { result in
            let handler = bound.value
            switch result {
            case .success(let key):
                handler.authenticated(sequence, key: key)
                handler.respond(sequence, SaslAuthenticateResponse()
                    .encodedResponse(version: header.apiVersion, correlationId: header.correlationId))
            case .failure(let error):
                if handler.credentialsUncheckable(sequence, error) { return }
                handler.logger.notice("authentication failed", metadata: ["reason": "\(error)"])
                handler.session.authenticationFailed(sequence)
                handler.respond(sequence, failed)
            }
        }
    }

    /// SASL after a v0 handshake: the frame is the PLAIN message itself. Success is answered
    /// with an empty frame, failure by closing (protocol/README.md §5).
    private func authenticateBareToken(_ token: ByteBuffer) {
        guard let context else { return }
        let decision = session.requestReceived(.saslAuthenticate)
        guard case .authenticate(let sequence) = decision.action else {
            if case .answerErrorThenClose(let sequence, _) = decision.action { respond(sequence, nil) }
            return
        }
        guard let credentials = try? SaslPlainCredentials(parsing: token),
              credentials.authorizationId.isEmpty || credentials.authorizationId == credentials.username else {
            session.authenticationFailed(sequence)
            respond(sequence, nil)
            return
        }
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        services.controlPlane.run(on: context.eventLoop) { db in
            try APIKeys.authenticate(db, id: credentials.username, secret: credentials.password)
        }.whenComplete { result in
            let handler = bound.value
            switch result {
            case .success(let key):
                handler.authenticated(sequence, key: key)
                handler.respond(sequence, ByteBuffer())
            case .failure(let error):
                if handler.credentialsUncheckable(sequence, error) { return }
                handler.logger.notice("authentication failed", metadata: ["reason": "\(error)"])
                handler.session.authenticationFailed(sequence)
                handler.respond(sequence, nil)
            }
        }
    }

    /// The credentials could not be checked because the database is unreachable: that is not a
    /// wrong key, so no SASL_AUTHENTICATION_FAILED (which clients treat as fatal). The connection
    /// closes unanswered and the client reconnects and authenticates again. True when handled.
    private func credentialsUncheckable(_ sequence: SessionStateMachine.RequestSequence, _ error: any Error) -> Bool {
        guard let database = error as? DatabaseError, database.isConnectionFailure else { return false }
        logger.warning("cannot check credentials: the database is unreachable; closing the connection so the client retries",
                       metadata: ["error": "\(error)"])
        session.authenticationFailed(sequence)
        respond(sequence, nil)
        return true
    }

    private func authenticated(_ sequence: SessionStateMachine.RequestSequence, key: EventFlowStorage.APIKey) {
        session.authenticationSucceeded(sequence, principal: .init(organizationID: key.orgID, apiKeyID: key.id, isAdmin: key.isAdmin))
        run(deadlines.authenticated(at: .now()))
        services.registry.authenticated(id, apiKeyID: key.id)
        logger[metadataKey: "apiKeyID"] = "\(key.id)"
    }

    // MARK: Responses

    private func respond(_ sequence: SessionStateMachine.RequestSequence, _ response: ByteBuffer?) {
        apply(session.responseReady(sequence, response: response))
    }

    private func apply(_ actions: [SessionStateMachine.Action]) {
        guard let context else { return }
        var wrote = false
        for action in actions {
            switch action {
            case .write(let buffer):
                context.write(wrapOutboundOut(buffer), promise: nil)
                wrote = true
            case .resumeReading:
                resumeReadingIfPossible()
            case .close:
                if wrote { context.flush() }
                wrote = false
                deadlineTimer?.cancel()
                context.close(promise: nil)
            }
        }
        if wrote {
            context.flush()
            deadlines.activity(at: .now())
        }
    }
}
