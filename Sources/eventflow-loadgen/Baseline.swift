import ArgumentParser
import EventFlowProtocol
import EventFlowStorage
import Foundation
import NIOCore

/// `eventflow-loadgen baseline --mode insert|copy`: the same events written to PostgreSQL
/// without EventFlow, to put the broker's numbers in proportion.
///
/// - `insert`: what a well-written application does: multi-row INSERTs of the JSON events into
///   the `events` table (JSONB, GIN-indexed), `--rows-per-statement` rows per statement, one
///   autocommitted (durable) statement at a time per connection.
/// - `copy`: the physical limit of the log table: LZ4 record batches, built ahead, written by
///   binary COPY straight into `event_batches` (one transaction per `--flush-bytes`), no broker.
struct Baseline: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "baseline",
        abstract: "Measure PostgreSQL without EventFlow: multi-row INSERT into events, or binary COPY into event_batches.")

    enum Mode: String, ExpressibleByArgument, CaseIterable, Sendable {
        case insert, copy
    }

    @Option(help: "insert (JSONB rows, multi-row INSERT) or copy (record batches, binary COPY).")
    var mode: Mode

    @Option(help: "PostgreSQL URL (default: $DATABASE_URL; unset: the embedded cluster in --data-dir).")
    var databaseURL: String?

    @Option(help: "Data folder of the embedded PostgreSQL (default: $EVENTFLOW_DATA_DIR or ./eventflow-data).")
    var dataDir: String?

    @Option(help: "Port for the embedded PostgreSQL (default: a free port).")
    var dbPort: Int?

    @Option(help: "insert: rows per INSERT statement.")
    var rowsPerStatement = 1_000

    @Option(help: "copy: batch bytes per COPY transaction (the broker's group-commit target).")
    var flushBytes = 1 << 20

    @OptionGroup var load: LoadOptions

    mutating func validate() throws {
        guard (1...10_000).contains(rowsPerStatement) else { throw ValidationError("--rows-per-statement must be 1 to 10000") }
        guard flushBytes >= 1 else { throw ValidationError("--flush-bytes must be positive") }
        guard load.connections <= Streams.partitionsMax || mode == .insert else {
            throw ValidationError("--mode copy writes one partition per connection: at most \(Streams.partitionsMax) connections")
        }
    }

    func run() throws {
        let location = DatabaseLocation.resolve(databaseURL: databaseURL, dataDirectory: dataDir, port: dbPort)
        let session: DatabaseSession
        let stream: EventStream
        do {
            session = try DatabaseSession(location)
            let db = try session.connect()
            defer { db.close() }
            try Migrator(directory: try Migrator.locateDirectory()).migrate(db)
            try TimePartitions().ensure(db)
            let organization = try (try? Organizations.find(db, "loadgen")) ?? Organizations.create(db, name: "loadgen")
            let name = "baseline-\(mode.rawValue)-\(Int(Date().timeIntervalSince1970 * 1000))"
            stream = try Streams.create(db, org: organization, name: name, partitions: min(load.connections, Streams.partitionsMax))
        } catch {
            throw LoadgenFailure("database: \(error)")
        }
        defer { try? session.close() }

        var configuration = load.configuration()
        configuration.database = location.isEmbedded ? "embedded" : "external"
        configuration.stream = stream.name
        switch mode {
        case .insert: configuration.rowsPerStatement = rowsPerStatement
        case .copy: configuration.flushBytes = flushBytes
        }

        let payloads = PayloadRing(eventBytes: load.messageSize, count: load.payloads, seed: load.seed)
        let connections = load.connections
        // Per-connection share of --rate; 0 stays 0 (as fast as possible).
        let ratePerConnection = Double(load.rate) / Double(connections)
        let workers: [BaselineWorker]
        do {
            workers = try (0..<connections).map { index in
                let db = try PostgresConnection(url: session.url)
                switch mode {
                case .insert:
                    return InsertWorker(db: db, index: index, streamID: stream.id, payloads: payloads,
                                        rowsPerStatement: rowsPerStatement, ratePerSecond: ratePerConnection)
                case .copy:
                    return try CopyWorker(db: db, index: index, streamID: stream.id, payloads: payloads,
                                          compression: load.compression == "lz4", batchBytes: load.batchBytes,
                                          flushBytes: flushBytes, ratePerSecond: ratePerConnection)
                }
            }
        } catch {
            throw LoadgenFailure("database: \(error)")
        }

        // The clock starts once the connections are open and the batches built.
        let timing = RunTiming(load)
        let recorder = Recorder(measureStartNanoseconds: timing.measureStartNanoseconds,
                                measureEndNanoseconds: timing.measureEndNanoseconds, eventBytes: load.messageSize)
        let reporter = ProgressReporter(recorder: recorder, startNanoseconds: timing.startNanoseconds,
                                        warmupSeconds: load.warmup.value,
                                        totalSeconds: load.warmup.value + load.duration.value, quiet: load.quiet)
        reporter.start()
        let group = DispatchGroup()
        for worker in workers {
            group.enter()
            let thread = Thread {
                worker.run(timing: timing, recorder: recorder)
                group.leave()
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
        group.wait()
        let samples = reporter.stop()
        try RunTiming.finish(mode: "baseline-\(mode.rawValue)", recorder: recorder, samples: samples,
                             options: load, configuration: configuration)
    }
}

extension DatabaseLocation {
    var isEmbedded: Bool {
        if case .embedded = self { return true }
        return false
    }
}

/// One database connection's loop, on its own thread (libpq calls block).
protocol BaselineWorker: Sendable {
    func run(timing: RunTiming, recorder: Recorder)
}

/// When the `count` events starting at `first` are due: at once (as fast as possible), or
/// spread at the connection's share of `--rate`, measured from the run's start.
struct Pacer: Sendable {
    let ratePerSecond: Double
    let startNanoseconds: UInt64

    func due(_ event: Int) -> UInt64? {
        guard ratePerSecond > 0 else { return nil }
        return startNanoseconds + UInt64(Double(event) / ratePerSecond * 1e9)
    }
}

/// Multi-row INSERT of JSON events into `events`; each statement commits on its own.
final class InsertWorker: BaselineWorker, @unchecked Sendable {
    // One owner: the worker's thread (PostgresConnection is not thread-safe).
    private let db: PostgresConnection
    private let index: Int
    private let payloads: [String]
    private let sql: String
    private let rowsPerStatement: Int
    private let ratePerSecond: Double

    init(db: PostgresConnection, index: Int, streamID: UUID, payloads: PayloadRing, rowsPerStatement: Int, ratePerSecond: Double) {
        self.db = db
        self.index = index
        self.payloads = payloads.payloads.map { String(buffer: $0) }
        self.rowsPerStatement = rowsPerStatement
        self.ratePerSecond = ratePerSecond
        // The server generates the ids; created_at defaults to now (today's partition).
        let stream = PostgresConnection.quoteLiteral(streamID.uuidString.lowercased())
        sql = "INSERT INTO events (id, stream_id, payload) VALUES "
            + (1...rowsPerStatement).map { "(gen_random_uuid(), \(stream), $\($0)::jsonb)" }.joined(separator: ", ")
    }

    func run(timing: RunTiming, recorder: Recorder) {
        let pacer = Pacer(ratePerSecond: ratePerSecond, startNanoseconds: timing.startNanoseconds)
        var next = index * 7_919  // each connection starts elsewhere in the ring
        var event = 0
        var sendTimes = [UInt64](repeating: 0, count: rowsPerStatement)
        var parameters = [String?](repeating: nil, count: rowsPerStatement)
        while monotonicNanoseconds() < timing.measureEndNanoseconds {
            let now = monotonicNanoseconds()
            for row in 0..<rowsPerStatement {
                sendTimes[row] = pacer.due(event + row) ?? now
                parameters[row] = payloads[(next + row) % payloads.count]
            }
            if let lastDue = pacer.due(event + rowsPerStatement - 1) { sleep(untilNanoseconds: lastDue) }
            event += rowsPerStatement
            next += rowsPerStatement
            recorder.sent(rowsPerStatement)
            do {
                try db.execute(sql, parameters)
                recorder.acknowledged(sendNanoseconds: sendTimes, ackNanoseconds: monotonicNanoseconds())
            } catch {
                recorder.failed(rowsPerStatement, error: "\(error)")
                if !db.isHealthy { return }
            }
        }
        db.close()
    }
}

/// Binary COPY of pre-built record batches into `event_batches`, one partition per connection.
final class CopyWorker: BaselineWorker, @unchecked Sendable {
    /// Distinct batches per connection, cycled (only the base offset changes, outside the CRC).
    static let batchesBuiltAhead = 8

    private let db: PostgresConnection
    private let streamID: UUID
    private let partition: Int32
    private let batches: [[UInt8]]
    private let recordsPerBatch: Int
    private let codec: Int16
    private let flushBytes: Int
    private let ratePerSecond: Double

    init(db: PostgresConnection, index: Int, streamID: UUID, payloads: PayloadRing, compression: Bool,
         batchBytes: Int, flushBytes: Int, ratePerSecond: Double) throws {
        self.db = db
        self.streamID = streamID
        self.partition = Int32(index)
        self.flushBytes = flushBytes
        self.ratePerSecond = ratePerSecond
        codec = compression ? 3 : 0
        // As many records as the producer puts in a full batch (value plus a record's ~21 bytes of framing).
        recordsPerBatch = max(batchBytes / (payloads.byteCount + 21), 1)
        var builder = RecordBatchBuilder(configuration: .init(compression: compression ? .lz4() : .none))
        let timestamp = Int64(Date().timeIntervalSince1970 * 1000)
        var next = index * 7_919
        var batches: [[UInt8]] = []
        for _ in 0..<Self.batchesBuiltAhead {
            for _ in 0..<recordsPerBatch {
                builder.append(timestamp: timestamp, key: nil, value: payloads[next])
                next += 1
            }
            var batch = try builder.build()
            batches.append(batch.readBytes(length: batch.readableBytes) ?? [])
        }
        self.batches = batches
    }

    func run(timing: RunTiming, recorder: Recorder) {
        let pacer = Pacer(ratePerSecond: ratePerSecond, startNanoseconds: timing.startNanoseconds)
        var nextOffset: Int64
        do {
            nextOffset = try EventBatchLog.nextOffsets(db, streamID: streamID).first { $0.partition == partition }?.next ?? 0
        } catch {
            recorder.fatal("database: \(error)")
            return
        }
        var batchIndex = 0
        var event = 0
        var sendTimes: [UInt64] = []
        // Each flush is encoded in the previous one's memory, as the broker's writer does.
        var storage: [UInt8] = []
        while monotonicNanoseconds() < timing.measureEndNanoseconds {
            let now = monotonicNanoseconds()
            let timestamp = Int64(Date().timeIntervalSince1970 * 1000)
            var copy = EventBatchCopy(reusing: consume storage, capacity: flushBytes + 4096)
            var flushOffset = nextOffset
            sendTimes.removeAll(keepingCapacity: true)
            repeat {
                let batch = batches[batchIndex % batches.count]
                batchIndex += 1
                let row = EventBatchRow(streamID: streamID, partition: partition, baseOffset: flushOffset,
                                        lastOffset: flushOffset + Int64(recordsPerBatch) - 1, recordCount: Int32(recordsPerBatch),
                                        firstTimestampMilliseconds: timestamp, maxTimestampMilliseconds: timestamp, codec: codec)
                let baseOffset = flushOffset
                copy.append(row, batchByteCount: batch.count) { target in
                    target.copyBytes(from: batch)
                    // The base offset (first 8 bytes, big-endian) is what the broker rewrites too.
                    withUnsafeBytes(of: baseOffset.bigEndian) { target.copyMemory(from: $0) }
                }
                for record in 0..<recordsPerBatch { sendTimes.append(pacer.due(event + record) ?? now) }
                event += recordsPerBatch
                flushOffset += Int64(recordsPerBatch)
            } while copy.encodedByteCount < flushBytes
            if let lastDue = pacer.due(event - 1) { sleep(untilNanoseconds: lastDue) }
            recorder.sent(sendTimes.count)
            let outcome = Result { try EventBatchLog.write(db, copy) }
            storage = (consume copy).takeStorage()
            switch outcome {
            case .success:
                nextOffset = flushOffset
                recorder.acknowledged(sendNanoseconds: sendTimes, ackNanoseconds: monotonicNanoseconds())
            case .failure(let error):
                recorder.failed(sendTimes.count, error: "\(error)")
                if !db.isHealthy { return }
            }
        }
        db.close()
    }
}
