import ArgumentParser
import EventFlowBroker
import EventFlowStorage
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the broker (embedded PostgreSQL unless DATABASE_URL is set).")

    @OptionGroup var database: DatabaseOptions

    @Option(help: "Daily log partitions created ahead of today.")
    var partitionDaysAhead = TimePartitions.defaultDaysAhead

    @Option(help: "How often maintenance runs (daily partitions ahead, retention: log start offsets, dropping days no stream needs), in seconds.")
    var maintenanceIntervalSeconds = 3600

    @Option(help: "Log level (trace, debug, info, notice, warning, error).")
    var logLevel = "info"

    @Option(help: "Log format: text (one readable line per event) or json (one JSON object per line, for log shippers).")
    var logFormat: LogFormat = .text

    @Option(help: "Address the Kafka-protocol listener binds to.")
    var host = "0.0.0.0"

    @Option(help: "Port of the Kafka-protocol listener.")
    var port = 9092

    @Option(help: "Address of the HTTP listener for /metrics (Prometheus), /health and /ready. Loopback by default: metrics name organizations, streams and groups.")
    var httpHost = "127.0.0.1"

    @Option(help: "Port of the HTTP listener (0: any free port).")
    var httpPort = BrokerConfiguration.HTTPListener.defaultPort

    @Flag(help: "No HTTP listener (no /metrics, /health, /ready).")
    var noHTTP = false

    @Option(help: "Host announced to clients in Metadata (default: the bind address, or 127.0.0.1 for 0.0.0.0).")
    var advertisedHost: String?

    @Option(help: "TLS certificate chain (PEM). Without it, a development CA and certificate are made in <data-dir>/tls.")
    var tlsCert: String?

    @Option(help: "TLS private key (PEM), with --tls-cert.")
    var tlsKey: String?

    @Flag(help: "Listen without TLS (development only).")
    var plaintext = false

    @Option(help: "Largest request frame accepted, in bytes.")
    var frameBytesMax = 100 * 1024 * 1024

    @Option(help: "Largest frame accepted before SASL authentication, in bytes.")
    var unauthenticatedFrameBytesMax = BrokerConfiguration.defaultUnauthenticatedFrameBytesMax

    @Option(help: "Open client connections accepted at once.")
    var connectionsMax = 10_000

    @Option(help: "Open client connections accepted from one IP address.")
    var connectionsPerPeerMax = 1_000

    @Option(help: "A connection that has not finished its TLS handshake and SASL authentication this long after it opened is closed, in milliseconds.")
    var authenticationTimeoutMilliseconds: Int64 = 30_000

    @Option(help: "A request frame must arrive whole within this long of its size prefix, in milliseconds.")
    var frameReadTimeoutMilliseconds: Int64 = 60_000

    @Option(help: "A connection with nothing read, written or outstanding this long is closed, in milliseconds (Kafka's connections.max.idle.ms).")
    var idleTimeoutMilliseconds: Int64 = 600_000

    @Option(help: "Requests in flight per connection before its socket reads pause.")
    var inflightRequestsMax = 64

    @Option(help: "Group commit: flush once this many batch bytes are buffered.")
    var flushBytesTarget = 1 << 20

    @Option(help: "Group commit: flush at the latest this long after the first buffered batch, in milliseconds (0: at once when no flush is committing; batches arriving meanwhile form the next flush).")
    var lingerMilliseconds = 0

    @Option(help: "Batcher memory bound in bytes; socket reads pause at 3/4 of it and resume at 1/2.")
    var memoryBytesMax = 64 << 20

    @Option(help: "Request bytes read but not yet taken by the batcher, all connections together, in bytes; socket reads pause at it and resume at 1/2. Default: --memory-bytes-max.")
    var requestBytesMax: Int?

    @Option(help: "The same bound for one connection, in bytes. Default: 1/4 of --request-bytes-max.")
    var connectionRequestBytesMax: Int?

    @Option(help: "Partitions of a stream created by CreateTopics without a count.")
    var defaultPartitions = 1

    @Option(help: "Tail cache: recently committed batches kept in memory for consumers at the tail, in bytes (0: every fetch reads PostgreSQL).")
    var tailCacheBytesMax = 256 << 20

    @Option(help: "Longest a fetch waits for minBytes (its maxWaitMs is capped to this), in milliseconds.")
    var fetchWaitMillisecondsMax: Int64 = 30_000

    @Option(help: "Largest fetch response, in batch bytes (the first batch is sent whole regardless).")
    var fetchResponseBytesMax = 16 << 20

    @Option(help: "Threads (each with its own database connection) serving catch-up reads below the tail cache.")
    var fetchCatchUpThreads = 2

    @Option(help: "Share of the time the analytics projection (streams with --analytics on) may work while it is behind, in percent; beyond it, it falls behind instead of taking CPU and database time from ingest.")
    var analyticsBusyPercentMax = 25

    @Flag(inversion: .prefixedNo, help: "Write the log's PostgreSQL settings (WAL, checkpoints, autovacuum, shared_buffers for this machine; docs/postgres-tuning.md) into the embedded cluster's configuration at start. --no-postgres-tuning leaves the cluster as initdb made it.")
    var postgresTuning = true

    func run() async throws {
        Self.boundAllocatorRetention()
        let level = Logger.Level(rawValue: logLevel) ?? .info  // validated
        switch logFormat {
        case .text:
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            }
        case .json:
            LoggingSystem.bootstrap { label in
                var handler = JSONLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            }
        }
        let logger = Logger(label: "eventflow.serve")
        let signals = SignalWaiter([SIGINT, SIGTERM])

        let session: DatabaseSession
        do {
            session = try DatabaseSession(database.location, forServe: true,
                                          tuning: postgresTuning ? .forThisMachine() : PostgresLogTuning(settings: []))
        } catch {
            throw cleanExit(error)
        }
        do {
            if let embedded = session.embedded {
                logger.info("embedded PostgreSQL", metadata: [
                    "data": "\(embedded.dataDirectory)", "port": "\(embedded.port ?? 0)",
                ])
            }
            logger.info("database", metadata: ["url": "\(maskedDatabaseURL(session.url))"])
            let connection = try session.connect()
            let applied = try Migrator(directory: try Migrator.locateDirectory()).migrate(connection)
            logger.info("migrations", metadata: ["applied": "\(applied.count)"])
            let partitions = TimePartitions(daysAhead: partitionDaysAhead)
            let created = try partitions.ensure(connection)
            logger.info("partitions ensured", metadata: ["created": "\(created.count)", "daysAhead": "\(partitionDaysAhead)"])
            connection.close()

            let transport = try transport(session: session, logger: logger)
            var configuration = BrokerConfiguration(
                host: host, port: port, advertisedHost: advertisedHost, transport: transport,
                defaultPartitions: defaultPartitions, frameBytesMax: frameBytesMax, connectionsMax: connectionsMax,
                inflightRequestsMax: inflightRequestsMax)
            configuration.unauthenticatedFrameBytesMax = unauthenticatedFrameBytesMax
            configuration.connectionsPerPeerMax = connectionsPerPeerMax
            configuration.deadlines = ConnectionDeadlines.Configuration(
                authenticationTimeout: .milliseconds(authenticationTimeoutMilliseconds),
                frameReadTimeout: .milliseconds(frameReadTimeoutMilliseconds),
                idleTimeout: .milliseconds(idleTimeoutMilliseconds))
            configuration.requestBytesMax = requestBytesMax
            configuration.connectionRequestBytesMax = connectionRequestBytesMax
            configuration.groupCommit = GroupCommit.Configuration(
                flushBytesTarget: flushBytesTarget, lingerMilliseconds: lingerMilliseconds, memoryBytesMax: memoryBytesMax)
            configuration.fetch = FetchService.Configuration(
                tailCacheBytesMax: tailCacheBytesMax, waitMillisecondsMax: fetchWaitMillisecondsMax,
                responseBytesMax: fetchResponseBytesMax, catchUpThreads: fetchCatchUpThreads)
            configuration.analytics = ProjectionPlan.Configuration(busyPercentMax: analyticsBusyPercentMax)
            if !noHTTP {
                configuration.http = .init(host: httpHost, port: httpPort, migrationsDirectory: try Migrator.locateDirectory())
            }
            let broker: Broker
            do {
                broker = try await Broker.start(configuration: configuration, databaseURL: session.url,
                                                logger: Logger(label: "eventflow.broker"))
            } catch let error as IOError where error.errnoCode == EADDRINUSE {
                throw CommandFailure(description: "cannot listen on \(host):\(port): the port is already in use; choose another with --port")
            } catch let error as HTTPPortInUse {
                throw CommandFailure(description: "\(error); choose another with --http-port, or --no-http")
            }
            let maintenance = Self.startMaintenance(url: session.url, intervalSeconds: maintenanceIntervalSeconds,
                                                    partitions: partitions, broker: broker)
            var ready: Logger.Metadata = ["port": "\(broker.port)"]
            if let httpPort = broker.httpPort { ready["httpPort"] = "\(httpPort)" }
            logger.info("EventFlow is ready; stop with Ctrl-C (SIGINT) or SIGTERM", metadata: ready)
            let signal = await signals.wait()
            logger.info("stopping", metadata: ["signal": "\(signal)"])
            maintenance.cancel()
            // A round already running finishes first, so it never meets a stopped broker or database.
            await maintenance.value
            await broker.shutdown()
        } catch {
            try? session.close()
            throw cleanExit(error)
        }
        do {
            try session.close()
            logger.info("stopped cleanly")
        } catch {
            throw cleanExit(error)
        }
    }
}

extension Serve {
    /// Every `intervalSeconds`: the daily partitions ahead, then a retention round. The work blocks
    /// on libpq (a detach waits for the queries using its table), so it runs on a Dispatch queue,
    /// not on the Swift concurrency pool.
    static func startMaintenance(url: String, intervalSeconds: Int, partitions: TimePartitions, broker: Broker) -> Task<Void, Never> {
        Task.detached {
            let log = Logger(label: "eventflow.maintenance")
            let queue = DispatchQueue(label: "eventflow.maintenance")
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(intervalSeconds))
                if Task.isCancelled { break }
                await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                    queue.async {
                        defer { done.resume() }
                        do {
                            let db = try PostgresConnection(url: url)
                            defer { db.close() }
                            let made = try partitions.ensure(db)
                            if !made.isEmpty { log.info("created partitions", metadata: ["names": "\(made)"]) }
                            let report = try broker.enforceRetention(db, now: Date(), logger: log)
                            if !report.moves.isEmpty || !report.dropped.isEmpty || !report.kept.isEmpty {
                                log.info("retention round", metadata: [
                                    "logStartsMoved": "\(report.moves.count)", "dropped": "\(report.dropped.map(\.table))",
                                    "kept": "\(report.kept.map(\.day.table))",
                                ])
                            }
                        } catch {
                            log.error("maintenance failed; retrying next round", metadata: ["error": "\(error)"])
                        }
                    }
                }
            }
        }
    }

    func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard (0...65535).contains(httpPort) else { throw ValidationError("--http-port must be 0…65535") }
        guard (tlsCert == nil) == (tlsKey == nil) else { throw ValidationError("--tls-cert and --tls-key go together") }
        guard !(plaintext && tlsCert != nil) else { throw ValidationError("--plaintext and --tls-cert exclude each other") }
        guard frameBytesMax > 0, connectionsMax > 0, inflightRequestsMax > 0, flushBytesTarget > 0, memoryBytesMax > 0,
              lingerMilliseconds >= 0, (1...Streams.partitionsMax).contains(defaultPartitions),
              (requestBytesMax ?? 1) > 0, (connectionRequestBytesMax ?? 1) > 0,
              unauthenticatedFrameBytesMax > 0, connectionsPerPeerMax > 0, authenticationTimeoutMilliseconds > 0,
              frameReadTimeoutMilliseconds > 0, idleTimeoutMilliseconds > 0, maintenanceIntervalSeconds > 0,
              tailCacheBytesMax >= 0, (1...100).contains(analyticsBusyPercentMax), fetchWaitMillisecondsMax >= 0, fetchResponseBytesMax > 0, (1...64).contains(fetchCatchUpThreads) else {
            throw ValidationError("limits must be positive")
        }
    }

    /// TLS unless --plaintext: the given certificate, or a development CA + certificate made
    /// once in the embedded data folder (the CA path is logged for clients).
    func transport(session: DatabaseSession, logger: Logger) throws -> BrokerConfiguration.Transport {
        if plaintext {
            logger.warning("listening WITHOUT TLS (--plaintext): API key secrets travel in clear text")
            return .plaintext
        }
        if let tlsCert, let tlsKey {
            return .tls(certificateChainPath: tlsCert, privateKeyPath: tlsKey)
        }
        let folder = (session.embedded?.dataDirectory ?? database.dataDir ?? DatabaseLocation.defaultDataDirectory) + "/tls"
        let paths = try DevelopmentCertificates.ensure(in: folder)
        logger.info("TLS with the development certificate; clients trust this CA", metadata: ["ca": "\(paths.certificateAuthority)"])
        return .tls(certificateChainPath: paths.certificateChain, privateKeyPath: paths.privateKey)
    }
}

/// Turns SIGINT/SIGTERM into an awaitable event (the default action would kill the process
/// before the database is stopped).
final class SignalWaiter: @unchecked Sendable {
    private var sources: [DispatchSourceSignal] = []
    private let queue = DispatchQueue(label: "eventflow.signals")
    private var received: Int32?
    private var waiter: CheckedContinuation<Int32, Never>?

    init(_ signals: [Int32]) {
        for number in signals {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler { [weak self] in self?.deliver(number) }
            source.resume()
            sources.append(source)
        }
    }

    private func deliver(_ number: Int32) {
        if received == nil { received = number }
        if let waiter {
            self.waiter = nil
            waiter.resume(returning: number)
        }
    }

    func wait() async -> Int32 {
        await withCheckedContinuation { continuation in
            queue.async {
                if let received = self.received {
                    continuation.resume(returning: received)
                } else {
                    self.waiter = continuation
                }
            }
        }
    }
}

extension Serve {
    /// Request buffers are around a megabyte each. glibc's adaptive mmap threshold would move
    /// them onto per-thread heaps that keep freed memory, so RSS would follow the offered load
    /// rather than the broker's bounds: a fixed threshold returns them to the system on free.
    static func boundAllocatorRetention() {
        #if canImport(Glibc)
        // mallopt is declared in malloc.h, which the Glibc module does not export.
        typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return }
        let mallopt = unsafeBitCast(symbol, to: Mallopt.self)
        let mmapThreshold: Int32 = -3, arenaMax: Int32 = -8  // M_MMAP_THRESHOLD, M_ARENA_MAX
        _ = mallopt(mmapThreshold, 128 * 1024)
        _ = mallopt(arenaMax, 2)
        #endif
    }
}

enum LogFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json
}
