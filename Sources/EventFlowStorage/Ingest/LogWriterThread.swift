import Foundation
import Logging

/// The ingest writer's own thread and PostgreSQL connection: flushes run here, never on the
/// network event loops (libpq calls block).
///
/// Jobs run one at a time in submission order. When the database is unreachable the connection
/// is re-opened with exponential backoff; a job submitted while it is down fails at once with a
/// connection error (the batcher fails the flush back, producers retry) instead of queueing.
public final class LogWriterThread: @unchecked Sendable {
    public typealias Job = @Sendable (PostgresConnection) throws -> Void
    public typealias Completion = @Sendable (Result<Void, any Error>) -> Void

    public let url: String
    public let reconnectMillisecondsMin: Int
    public let reconnectMillisecondsMax: Int
    private let logger: Logger

    // Guarded by `condition`.
    private let condition = NSCondition()
    private var queue: [(Job, Completion)] = []
    private var stopping = false
    private var finished = false

    // Touched only by the writer thread.
    private var connection: PostgresConnection?
    private var reconnectDelayMilliseconds = 0
    private var nextConnectAttempt = DispatchTime(uptimeNanoseconds: 0)

    /// Run on each connection the writer opens. `backend_flush_after`: the COPY backend asks the
    /// kernel to start writing back the table pages it wrote every 2 MB, rather than leaving them
    /// dirty for the kernel's periodic write-back (after ~30 s, in bursts), which the next
    /// COMMIT's WAL fsync can wait behind. Measured in BENCHMARKS.md ("Latency stalls"): it
    /// narrowed the slow seconds in three of four paired runs and did not change the max rate;
    /// it does not remove COMMIT stalls altogether.
    public static let sessionSettings = ["SET backend_flush_after = '2MB'"]

    public init(url: String, logger: Logger, reconnectMillisecondsMin: Int = 50, reconnectMillisecondsMax: Int = 2000) {
        self.url = url
        self.logger = logger
        self.reconnectMillisecondsMin = max(reconnectMillisecondsMin, 1)
        self.reconnectMillisecondsMax = max(reconnectMillisecondsMax, reconnectMillisecondsMin)
    }

    public func start() {
        let thread = Thread { [self] in run() }
        thread.name = "eventflow-log-writer"
        thread.start()
    }

    /// Queues a job; `completion` is called on the writer thread.
    public func submit(_ job: @escaping Job, completion: @escaping Completion) {
        condition.lock()
        guard !stopping else {
            condition.unlock()
            completion(.failure(DatabaseError(sqlState: "57P01", message: "log writer stopped")))
            return
        }
        queue.append((job, completion))
        condition.signal()
        condition.unlock()
    }

    /// Runs the queued jobs, closes the connection and ends the thread; returns when it has.
    public func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        while !finished { condition.wait() }
        condition.unlock()
    }

    private func run() {
        while true {
            condition.lock()
            while queue.isEmpty && !stopping { condition.wait() }
            if queue.isEmpty && stopping {
                finished = true
                condition.broadcast()
                condition.unlock()
                break
            }
            let (job, completion) = queue.removeFirst()
            condition.unlock()
            completion(perform(job))
        }
        connection?.close()
        connection = nil
    }

    private func perform(_ job: Job) -> Result<Void, any Error> {
        let db: PostgresConnection
        do {
            db = try connected()
        } catch {
            return .failure(error)
        }
        do {
            try job(db)
            return .success(())
        } catch let error as DatabaseError where error.isConnectionFailure || !db.isHealthy {
            logger.warning("log write failed: database connection lost; reconnecting", metadata: ["error": "\(error)"])
            connection?.close()
            connection = nil
            scheduleReconnect()
            return .failure(error)
        } catch {
            return .failure(error)
        }
    }

    private func connected() throws -> PostgresConnection {
        if let connection, connection.isHealthy { return connection }
        connection?.close()
        connection = nil
        guard DispatchTime.now() >= nextConnectAttempt else {
            throw DatabaseError(sqlState: "08006", message: "database unreachable; reconnecting")
        }
        do {
            let fresh = try PostgresConnection(url: url)
            for setting in Self.sessionSettings { try fresh.execute(setting) }
            if reconnectDelayMilliseconds > 0 { logger.info("log writer reconnected to the database") }
            connection = fresh
            reconnectDelayMilliseconds = 0
            return fresh
        } catch {
            scheduleReconnect()
            logger.warning("log writer cannot reach the database", metadata: [
                "error": "\(error)", "retryInMilliseconds": "\(reconnectDelayMilliseconds)",
            ])
            throw error
        }
    }

    private func scheduleReconnect() {
        reconnectDelayMilliseconds = reconnectDelayMilliseconds == 0
            ? reconnectMillisecondsMin : min(reconnectDelayMilliseconds * 2, reconnectMillisecondsMax)
        nextConnectAttempt = DispatchTime.now() + .milliseconds(reconnectDelayMilliseconds)
    }
}
