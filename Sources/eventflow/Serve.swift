import ArgumentParser
import EventFlowStorage
import Foundation
import Logging

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the broker (embedded PostgreSQL unless DATABASE_URL is set).")

    @OptionGroup var database: DatabaseOptions

    @Option(help: "Daily log partitions created ahead of today.")
    var partitionDaysAhead = TimePartitions.defaultDaysAhead

    @Option(help: "How often partition maintenance runs, in seconds.")
    var maintenanceIntervalSeconds = 3600

    @Option(help: "Log level (trace, debug, info, notice, warning, error).")
    var logLevel = "info"

    func run() async throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = Logger.Level(rawValue: logLevel) ?? .info
            return handler
        }
        let logger = Logger(label: "eventflow.serve")
        let signals = SignalWaiter([SIGINT, SIGTERM])

        let session: DatabaseSession
        do {
            session = try DatabaseSession(database.location, forServe: true)
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

            let maintenance = Task.detached { [url = session.url, interval = maintenanceIntervalSeconds] in
                let log = Logger(label: "eventflow.maintenance")
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(interval))
                    if Task.isCancelled { break }
                    do {
                        let db = try PostgresConnection(url: url)
                        defer { db.close() }
                        let made = try partitions.ensure(db)
                        if !made.isEmpty { log.info("created partitions", metadata: ["names": "\(made)"]) }
                    } catch {
                        log.error("partition maintenance failed; retrying next round", metadata: ["error": "\(error)"])
                    }
                }
            }
            logger.info("EventFlow is ready; stop with Ctrl-C (SIGINT) or SIGTERM")
            let signal = await signals.wait()
            logger.info("stopping", metadata: ["signal": "\(signal)"])
            maintenance.cancel()
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
