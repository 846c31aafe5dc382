import EventFlowProtocol
import EventFlowStorage
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL

/// The EventFlow broker: the Kafka-protocol listener, the write-ahead batcher and its log
/// writer, and the control-plane services, started together and stopped in order.
public final class Broker: Sendable {
    public let configuration: BrokerConfiguration
    private let logger: Logger
    private let group: MultiThreadedEventLoopGroup
    private let writer: LogWriterThread
    private let services: BrokerServices
    private let serverChannel: NIOLockedValueBox<(any Channel)?>
    private let httpChannel = NIOLockedValueBox<(any Channel)?>(nil)
    private let projector: AnalyticsProjector?
    /// The broker's metrics (swift-metrics into its own Prometheus registry), served at `/metrics`.
    public let metrics: BrokerMetrics
    private let revocationTask: NIOLockedValueBox<RepeatedTask?>
    private let stageLogTask: NIOLockedValueBox<RepeatedTask?>
    private let stopped = NIOLockedValueBox(false)

    /// Reads offsets and idempotence state back from the log, then listens.
    public static func start(configuration: BrokerConfiguration, databaseURL: String,
                             logger: Logger = Logger(label: "eventflow.broker")) async throws -> Broker {
        let broker = try Broker(configuration: configuration, databaseURL: databaseURL, logger: logger)
        do {
            try await broker.listen()
            if let http = configuration.http { try await broker.listenHTTP(http) }
            broker.projector?.start()
        } catch {
            await broker.shutdown()
            throw error
        }
        return broker
    }

    private init(configuration: BrokerConfiguration, databaseURL: String, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        let group = MultiThreadedEventLoopGroup(numberOfThreads: configuration.eventLoopThreads)
        self.group = group
        self.serverChannel = NIOLockedValueBox(nil)
        self.revocationTask = NIOLockedValueBox(nil)
        self.stageLogTask = NIOLockedValueBox(nil)

        // Read back what the log already holds before anything is accepted.
        let db = try PostgresConnection(url: databaseURL)
        defer { db.close() }
        var nextOffsets: [StreamPartition: Int64] = [:]
        for entry in try EventBatchLog.nextOffsets(db) {
            nextOffsets[StreamPartition(streamID: entry.streamID, partition: entry.partition)] = entry.next
        }
        let producerBatches = try EventBatchLog.producerBatches(db)

        writer = LogWriterThread(url: databaseURL, logger: Logger(label: "eventflow.log-writer"))
        writer.start()
        let metrics = BrokerMetrics()
        self.metrics = metrics
        let batcher = WriteAheadBatcher(configuration: configuration.groupCommit, writer: writer,
                                        timerLoop: group.next(), logger: logger, metrics: metrics,
                                        deadLetterDecompressedBytesMax: configuration.decompressedBatchBytesMax)
        batcher.startup(nextOffsets: nextOffsets, producerBatches: producerBatches)
        let controlPlane = ControlPlane(databaseURL: databaseURL)
        let fetches = FetchService(configuration: configuration.fetch, databaseURL: databaseURL, batcher: batcher,
                                   timerLoop: group.next(), logger: logger, metrics: metrics)
        batcher.onFlushCommitted { fetches.committed($0) }
        projector = configuration.analytics.map {
            AnalyticsProjector(configuration: $0, databaseURL: databaseURL, control: controlPlane, batcher: batcher, loop: group.next(),
                               logger: logger, metrics: metrics)
        }
        let groups = GroupService(configuration: configuration.groups, controlPlane: controlPlane, timerLoop: group.next(), logger: logger)
        let registry = ConnectionRegistry()
        let requestBytes = RequestBytesGate(configuration: .init(bytesMax: configuration.effectiveRequestBytesMax))
        let unauthenticatedBytes = RequestBytesGate(configuration: .init(bytesMax: max(configuration.unauthenticatedRequestBytesMax, 1)))
        services = BrokerServices(
            configuration: configuration, batcher: batcher, fetches: fetches, groups: groups, requestBytes: requestBytes,
            unauthenticatedBytes: unauthenticatedBytes, controlPlane: controlPlane,
            streams: StreamDirectory(controlPlane: controlPlane, batcher: batcher), registry: registry,
            advertised: NIOLockedValueBox((configuration.advertisedHost ?? Self.defaultAdvertisedHost(configuration.host), Int32(configuration.port))),
            metrics: metrics, logger: logger)
        batcher.onReadingPausedChanged { paused in
            registry.forEach { $0.batcherReadingPaused(paused) }
        }
        requestBytes.onReadingPausedChanged {
            registry.forEach { $0.requestBytesPauseChanged() }
        }
        unauthenticatedBytes.onReadingPausedChanged {
            registry.forEach { $0.requestBytesPauseChanged() }
        }
        logger.info("log read back", metadata: ["partitions": "\(nextOffsets.count)", "producerBatches": "\(producerBatches.count)"])
    }

    static func defaultAdvertisedHost(_ host: String) -> String {
        host == "0.0.0.0" || host == "::" ? "127.0.0.1" : host
    }

    /// Request bytes read and not yet handed to or refused by the batcher (see `RequestBytesBudget`).
    public var requestBytesCharged: Int { services.requestBytes.chargedBytes }

    /// Bytes of frames received before authentication and not yet handled.
    public var unauthenticatedBytesCharged: Int { services.unauthenticatedBytes.chargedBytes }

    /// The port the listener is bound to.
    public var port: Int { services.advertised.withLockedValue { Int($0.port) } }

    /// The TLS 1.2 cipher suites served (OpenSSL names): forward secrecy and AEAD, what current
    /// Kafka clients (librdkafka, Java, kafka-python over OpenSSL) offer first.
    static let tls12CipherSuites = [
        "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    ].joined(separator: ":")

    private func listen() async throws {
        let sslContext: NIOSSLContext?
        switch configuration.transport {
        case .plaintext:
            sslContext = nil
        case .tls(let chainPath, let keyPath):
            let chain = try NIOSSLCertificate.fromPEMFile(chainPath).map { NIOSSLCertificateSource.certificate($0) }
            let key = try NIOSSLPrivateKey(file: keyPath, format: .pem)
            var tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
            // TLS 1.2 and 1.3 only (BoringSSL's default cipher list for them: AEAD suites with forward secrecy first).
            tls.minimumTLSVersion = .tlsv12
            // TLS 1.2 suites: ECDHE key exchange with an AEAD cipher only (no CBC, no static RSA);
            // TLS 1.3's suites are all AEAD and are not configured by this list.
            tls.cipherSuites = Self.tls12CipherSuites
            sslContext = try NIOSSLContext(configuration: tls)
        }
        let services = services
        let authentication = configuration.authentication
        let logger = logger
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    if let sslContext {
                        try pipeline.addHandler(TLSRecordSniffer(logger: logger))
                        try pipeline.addHandler(NIOSSLServerHandler(context: sslContext))
                    }
                    try pipeline.addHandler(MessageToByteHandler(KafkaFrameEncoder()))
                    try pipeline.addHandler(KafkaConnectionHandler(services: services, authentication: authentication))
                }
            }
            .bind(host: configuration.host, port: configuration.port).get()
        serverChannel.withLockedValue { $0 = channel }
        let boundPort = channel.localAddress?.port ?? configuration.port
        services.advertised.withLockedValue { $0.port = Int32(boundPort) }
        logger.info("listening", metadata: [
            "address": "\(configuration.host):\(boundPort)",
            "tls": "\(sslContext != nil)",
        ])
        startRevocationChecks()
        startStageLog()
    }

    /// Once a second, at debug level: where the last second's durable produces spent their time
    /// (`IngestStage`; the same figures, cumulative, are `eventflow_ingest_stage_seconds` at /metrics).
    private func startStageLog() {
        let metrics = metrics
        let logger = logger
        let task = group.next().scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
            let window = metrics.takeIngestStageWindow()
            guard logger.logLevel <= .debug, !window.isEmpty else { return }
            logger.debug("ingest stages (last second)", metadata: window.summary().mapValues { .string($0) })
        }
        stageLogTask.withLockedValue { $0 = task }
    }

    /// Every `revocationCheckMilliseconds`: close connections whose API key was revoked
    /// (or whose organization was deactivated) since they authenticated.
    private func startRevocationChecks() {
        let services = services
        let loop = group.next()
        let task = loop.scheduleRepeatedAsyncTask(initialDelay: .milliseconds(configuration.revocationCheckMilliseconds),
                                                  delay: .milliseconds(configuration.revocationCheckMilliseconds)) { _ in
            let keys = services.registry.apiKeyIDs
            guard !keys.isEmpty else { return loop.makeSucceededVoidFuture() }
            return services.controlPlane.run(on: loop) { db -> Set<UUID> in
                let literal = "{" + keys.map(\.uuidString).joined(separator: ",") + "}"
                let rows = try db.query("""
                    SELECT k.id FROM api_keys k JOIN organizations o ON o.id = k.org_id
                    WHERE k.id = ANY($1::uuid[]) AND (k.revoked_at IS NOT NULL OR NOT o.is_active)
                    """, [literal])
                return Set(rows.compactMap { $0["id"].flatMap(UUID.init(uuidString:)) })
            }.map { revoked in
                guard !revoked.isEmpty else { return }
                services.registry.forEach(apiKeyIDs: revoked) { handler in
                    for key in revoked { handler.keyRevoked(key) }
                }
            }.recover { error in
                services.logger.warning("revocation check failed; retrying", metadata: ["error": "\(error)"])
            }
        }
        revocationTask.withLockedValue { $0 = task }
    }

    /// Graceful stop: no new connections, flush the batcher, answer every in-flight request,
    /// close the connections, stop the writer. Safe to call more than once.
    public func shutdown() async {
        guard stopped.withLockedValue({ state in defer { state = true }; return !state }) else { return }
        logger.info("shutting down: draining")
        let channel = serverChannel.withLockedValue { $0 }
        try? await channel?.close()
        try? await httpChannel.withLockedValue({ $0 })?.close()
        revocationTask.withLockedValue { $0 }?.cancel()
        stageLogTask.withLockedValue { $0 }?.cancel()
        // Durable produces are answered when their flush commits; drain flushes everything buffered.
        try? await services.batcher.drain().get()
        // Long polls are answered now with what they have; nothing more will commit.
        services.fetches.shutdown()
        services.registry.forEach { $0.shutdown() }
        let closed = services.registry.allClosed(on: group.next())
        let graceMilliseconds = configuration.shutdownGraceMilliseconds
        await withTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try? await closed.get() }
            tasks.addTask { try? await Task.sleep(for: .milliseconds(graceMilliseconds)) }
            await tasks.next()
            tasks.cancelAll()
        }
        if services.registry.count > 0 {
            logger.warning("closing connections that did not finish in time", metadata: ["connections": "\(services.registry.count)"])
            services.registry.forEach { $0.forceClose() }
            try? await Task.sleep(for: .milliseconds(100))
        }
        projector?.stop()
        services.controlPlane.shutdown()
        writer.stop()
        try? await group.shutdownGracefully()
        logger.info("broker stopped", metadata: ["openConnections": "\(services.registry.count)"])
    }
}

extension Broker {
    /// The read side, for the retention maintenance (log start offsets, cache trimming).
    var fetchService: FetchService { services.fetches }

    /// The shared services, for tests that look inside.
    var servicesForTests: BrokerServices { services }
}

// MARK: The operators' HTTP listener

/// The HTTP listener's address is taken (the Kafka listener's own failure is an `IOError`).
public struct HTTPPortInUse: Error, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var description: String { "cannot listen for HTTP on \(host):\(port): the port is already in use" }
}

extension Broker {
    /// The port `/metrics`, `/health` and `/ready` are served on, once bound (nil without `http`).
    public var httpPort: Int? { httpChannel.withLockedValue { $0?.localAddress?.port } }

    fileprivate func listenHTTP(_ http: BrokerConfiguration.HTTPListener) async throws {
        let migrator = try http.migrationsDirectory.map { try Migrator(directory: $0) }
        let route: HTTPEndpointHandler.Route = { [self] path, eventLoop in
            switch path {
            case "/metrics": return scrape(on: eventLoop)
            case "/health": return eventLoop.makeSucceededFuture(.text(.ok, "ok\n"))
            case "/ready": return readiness(migrator: migrator, on: eventLoop)
            default: return nil
            }
        }
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(HTTPEndpointHandler(route: route))
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.bind(host: http.host, port: http.port).get()
        } catch let error as IOError where error.errnoCode == EADDRINUSE {
            throw HTTPPortInUse(host: http.host, port: http.port)
        }
        httpChannel.withLockedValue { $0 = channel }
        logger.info("http listening (/metrics, /health, /ready)", metadata: [
            "address": "\(http.host):\(channel.localAddress?.port ?? http.port)",
        ])
    }

    /// The gauges of the moment, consumer lag from the committed positions in PostgreSQL, then the text.
    private func scrape(on eventLoop: any EventLoop) -> EventLoopFuture<HTTPEndpointHandler.Answer> {
        let services = services
        let batcher = services.batcher
        return services.controlPlane.run(on: eventLoop) { db in
            try GroupOffsets.positions(db, limit: BrokerMetrics.lagSeriesMax)
        }.map { positions -> [BrokerMetrics.Lag] in
            positions.map { position in
                let end = batcher.highWatermark(of: StreamPartition(streamID: position.streamID, partition: position.partition)) ?? 0
                return BrokerMetrics.Lag(organization: position.organization, stream: position.stream, group: position.group,
                                         partition: position.partition, messages: max(end - position.committedOffset, 0))
            }
        }.flatMapErrorThrowing { error in
            // The database is away: everything else is still worth scraping; lag series are left out.
            services.logger.warning("metrics: consumer lag unavailable", metadata: ["error": "\(error)"])
            return []
        }.map { [metrics] lags in
            let memory = batcher.memory
            let text = metrics.scrape(.init(
                connectionsOpen: services.registry.count, batcherMemoryBytes: memory.bufferedBytes, batcherHeldBytes: memory.heldBytes,
                batcherReadingPaused: batcher.isReadingPaused, requestBytesCharged: services.requestBytes.chargedBytes,
                unauthenticatedBytesCharged: services.unauthenticatedBytes.chargedBytes,
                tailCacheBytes: services.fetches.tailCacheBytes, groupsActive: services.groups.groupCount, lags: lags))
            return HTTPEndpointHandler.Answer(status: .ok, contentType: "text/plain; version=0.0.4; charset=utf-8", body: text)
        }
    }

    /// Ready: the Kafka listener bound, the database answering, every migration applied.
    private func readiness(migrator: Migrator?, on eventLoop: any EventLoop) -> EventLoopFuture<HTTPEndpointHandler.Answer> {
        guard serverChannel.withLockedValue({ $0 }) != nil else {
            return eventLoop.makeSucceededFuture(.text(.serviceUnavailable, "not ready: the Kafka listener is not bound\n"))
        }
        return services.controlPlane.run(on: eventLoop) { db -> String? in
            try db.execute("SELECT 1")
            guard let migrator else { return nil }
            let pending = try migrator.status(db).filter { $0.appliedAt == nil }.map(\.name)
            return pending.isEmpty ? nil : "migrations not applied: \(pending.joined(separator: ", "))"
        }.map { problem -> HTTPEndpointHandler.Answer in
            problem.map { .text(.serviceUnavailable, "not ready: \($0)\n") } ?? .text(.ok, "ready\n")
        }.recover { error in
            .text(.serviceUnavailable, "not ready: database unreachable: \(error)\n")
        }
    }
}
