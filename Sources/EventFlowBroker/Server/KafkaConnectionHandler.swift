import EventFlowProtocol
import EventFlowStorage
import Foundation
import Logging
import NIOCore

/// One client connection, after framing: decodes requests, drives the `SessionStateMachine`,
/// serves each API, and writes responses in request order.
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

    init(services: BrokerServices, authentication: SessionStateMachine.Authentication) {
        self.services = services
        self.session = SessionStateMachine(configuration: .init(
            authentication: authentication, inflightRequestsMax: services.configuration.inflightRequestsMax))
        self.logger = services.logger
        self.connectionBytes = RequestBytesBudget(configuration: .init(bytesMax: services.configuration.effectiveConnectionRequestBytesMax))
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
                                             eventLoop: context.eventLoop, apiKeyID: nil)
        guard services.registry.register(id, entry, connectionsMax: services.configuration.connectionsMax) else {
            logger.warning("connection refused: connectionsMax reached", metadata: ["connectionsMax": "\(services.configuration.connectionsMax)"])
            context.close(promise: nil)
            return
        }
        registered = true
        batcherPaused = services.batcher.isReadingPaused
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        session.connectionClosed()
        // Requests still waiting die with the connection; their later completions release nothing.
        releaseRequestBytes(connectionBytes.chargedBytes)
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
        handle(frame: unwrapInboundIn(data))
    }

    // MARK: Broker-wide events (called on this connection's event loop)

    func batcherReadingPaused(_ paused: Bool) {
        batcherPaused = paused
        resumeReadingIfPossible()
    }

    func keyRevoked(_ apiKeyID: UUID) {
        let actions = session.keyRevoked(apiKeyID: apiKeyID)
        if !actions.isEmpty { logger.notice("API key revoked; closing connection", metadata: ["apiKey": "\(apiKeyID)"]) }
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
        session.isReadingPaused || batcherPaused || connectionBytes.isReadingPaused || services.requestBytes.isReadingPaused
    }

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
    ]

    static let servedAPIVersions = SupportedAPIVersions.apiVersionsEntries.filter { entry in
        EventFlowProtocol.APIKey(rawValue: entry.apiKey).map { servedAPIs.contains($0) } ?? false
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

    private func handle(frame: ByteBuffer) {
        frameBytesUnclaimed = frame.readableBytes
        chargeRequestBytes(frameBytesUnclaimed)
        // Requests answered synchronously (or refused) release their frame here.
        defer { releaseRequestBytes(takeFrameBytes()) }
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
            session.connectionClosed()
            context?.close(promise: nil)
            return
        }
        let header = decoded.header
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
        case .findCoordinator(let request): response = encoded(requests.findCoordinator(request))
        case .joinGroup(let request):
            let clientHost = context.channel.remoteAddress?.ipAddress ?? ""
            response = encoded(requests.joinGroup(request, version: header.apiVersion, clientID: header.clientId, clientHost: clientHost))
        case .syncGroup(let request): response = encoded(requests.syncGroup(request))
        case .heartbeat(let request): response = encoded(requests.heartbeat(request))
        case .leaveGroup(let request): response = encoded(requests.leaveGroup(request))
        case .offsetCommit(let request): response = encoded(requests.offsetCommit(request))
        case .offsetFetch(let request): response = encoded(requests.offsetFetch(request))
        case .listGroups: response = encoded(requests.listGroups())
        case .describeGroups(let request): response = encoded(requests.describeGroups(request))
        case .deleteGroups(let request): response = encoded(requests.deleteGroups(request))
        case .fetch(let request): response = encoded(requests.fetch(request))
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
                    let refused = body.responses.contains { $0.partitionResponses.contains { $0.errorCode != .noError } }
                    bound.value.respond(sequence, nil)
                    if refused {
                        bound.value.logger.notice("acks=0 produce refused; closing connection")
                        bound.value.apply(bound.value.session.shutdown())
                    }
                }
                return
            }
            response = answered.map { body in
                body.encodedResponse(version: header.apiVersion, correlationId: header.correlationId)
            }
        default:
            // No answer exists for an API this broker does not serve: close once earlier answers are out.
            logger.notice("API not served by this broker yet; closing connection", metadata: ["api": "\(header.apiKey)"])
            respond(sequence, nil)
            apply(session.shutdown())
            return
        }
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let logger = logger
        let frameBytes = takeFrameBytes()
        response.whenComplete { result in
            bound.value.releaseRequestBytes(frameBytes)
            switch result {
            case .success(let buffer):
                bound.value.respond(sequence, buffer)
            case .failure(let error):
                logger.error("request failed; closing connection", metadata: ["api": "\(header.apiKey)", "error": "\(error)"])
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
                handler.logger.notice("authentication failed", metadata: ["reason": "\(error)"])
                handler.session.authenticationFailed(sequence)
                handler.respond(sequence, nil)
            }
        }
    }

    private func authenticated(_ sequence: SessionStateMachine.RequestSequence, key: EventFlowStorage.APIKey) {
        session.authenticationSucceeded(sequence, principal: .init(organizationID: key.orgID, apiKeyID: key.id))
        services.registry.authenticated(id, apiKeyID: key.id)
        logger[metadataKey: "apiKey"] = "\(key.id)"
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
                context.close(promise: nil)
            }
        }
        if wrote { context.flush() }
    }
}
