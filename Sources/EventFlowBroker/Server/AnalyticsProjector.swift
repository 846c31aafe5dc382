import EventFlowProtocol
import EventFlowStorage
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// The analytics projection (`eventflow stream alter --analytics on`): an internal consumer of the
/// log that copies each record of a projected stream into `events` — `id` the event's derived id,
/// `payload` its JSON value, `metadata` {partition, offset, key, headers, timestamp, producer} — and
/// sends values that are not JSON to `dead_letter_events`.
///
/// It reads committed batches from PostgreSQL on its own connection (`ControlPlane` with one thread),
/// never from the ingest path: when it cannot keep up it falls behind, ingest does not wait. Each step
/// stores its rows and its position in one transaction (`EventProjection.store`), so after a crash it
/// resumes at the last committed step, neither losing nor duplicating rows. `ProjectionPlan` decides
/// what to read; this class only executes it.
final class AnalyticsProjector: Sendable {
    private let plan: ProjectionPlan
    /// The broker's control plane: the positions are looked up there (one cheap query a round), so a
    /// broker with no projected stream holds no connection of its own for the projector.
    private let control: ControlPlane
    /// The projector's own connection, for the steps (long COPYs must not hold a control-plane thread).
    private let database: ControlPlane
    private let batcher: WriteAheadBatcher
    private let loop: any EventLoop
    private let logger: Logger
    private let metrics: BrokerMetrics
    private let scheduled = NIOLockedValueBox<(stopped: Bool, next: Scheduled<Void>?)>((false, nil))

    /// Largest records section one projected LZ4 batch may decompress to.
    static let decompressedBatchBytesMax = 64 << 20

    init(configuration: ProjectionPlan.Configuration, databaseURL: String, control: ControlPlane, batcher: WriteAheadBatcher,
         loop: any EventLoop, logger: Logger, metrics: BrokerMetrics) {
        self.plan = ProjectionPlan(configuration: configuration)
        self.control = control
        self.database = ControlPlane(databaseURL: databaseURL, threads: 1)
        self.batcher = batcher
        self.loop = loop
        self.logger = logger
        self.metrics = metrics
    }

    func start() {
        schedule(after: 0)
    }

    /// Stops after the step in progress (a step is one transaction: it commits or rolls back whole).
    func stop() {
        let next = scheduled.withLockedValue { state -> Scheduled<Void>? in
            state.stopped = true
            return state.next
        }
        next?.cancel()
        database.shutdown()
    }

    private func schedule(after milliseconds: Int64) {
        scheduled.withLockedValue { state in
            guard !state.stopped else { return }
            state.next = loop.scheduleTask(in: .milliseconds(milliseconds)) { [self] in round() }
        }
    }

    private func round() {
        let plan = plan
        let batcher = batcher
        let started = NIODeadline.now().uptimeNanoseconds
        control.run(on: loop) { db in
            try EventProjection.positions(db)
        }.flatMap { [self] positions -> EventLoopFuture<Int64> in
            let actions = plan.round(positions: positions, committedEnd: {
                batcher.highWatermark(of: StreamPartition(streamID: $0.streamID, partition: $0.partition))
            })
            if case .idle(let milliseconds) = actions.first { return loop.makeSucceededFuture(milliseconds) }
            return database.run(on: loop) { [self] db -> Int64 in
                for case .step(let position, let batchesMax, let bytesMax) in actions {
                    try step(db, position, batchesMax: batchesMax, bytesMax: bytesMax)
                }
                return plan.rest(afterRoundOf: NIODeadline.now().uptimeNanoseconds - started)
            }
        }.whenComplete { [self] result in
            switch result {
            case .success(let idle):
                schedule(after: idle)
            case .failure(let error):
                logger.warning("analytics projection: a step failed; retrying", metadata: ["error": "\(error)"])
                metrics.analyticsStepFailures.increment()
                schedule(after: plan.configuration.idleMilliseconds)
            }
        }
    }

    /// Reads the partition's next batches and stores their records, dead letters and new position in one transaction.
    func step(_ db: PostgresConnection, _ position: EventProjection.Position, batchesMax: Int, bytesMax: Int,
              beforeCommit: () throws -> Void = {}) throws {
        let batches = try EventProjection.batches(db, position, batchesMax: batchesMax, bytesMax: bytesMax)
        guard let last = batches.last else { return }
        let days = try EventProjection.eventDays(db)
        var projected = Self.project(batches, position: position, days: days)
        do {
            try EventProjection.store(db, streamID: position.streamID, partition: position.partition, rows: projected.rows,
                                      deadLetters: projected.deadLetters, next: last.lastOffset + 1, beforeCommit: beforeCommit)
        } catch let error as DatabaseError where error.sqlState?.hasPrefix("22") == true {
            // PostgreSQL refused a value Foundation's parser took (e.g. `\u0000` in a string): find which, dead-letter them.
            let refused = projected.rows.filter { !EventProjection.isStorableJSON(db, String(decoding: $0.payloadJSON, as: UTF8.self)) }
            guard !refused.isEmpty else { throw error }
            let ids = Set(refused.map(\.id))
            projected.rows.removeAll { ids.contains($0.id) }
            projected.deadLetters += refused.map {
                .init(eventID: $0.id, offset: $0.offset, reason: "analytics: PostgreSQL refused the value as jsonb (\(error.message))",
                      payloadJSON: DeadLetters.base64Payload($0.payloadJSON))
            }
            try EventProjection.store(db, streamID: position.streamID, partition: position.partition, rows: projected.rows,
                                      deadLetters: projected.deadLetters, next: last.lastOffset + 1, beforeCommit: beforeCommit)
        }
        metrics.analyticsRows.increment(by: projected.rows.count)
        metrics.analyticsDeadLetters.increment(by: projected.deadLetters.count)
    }

    // MARK: Records to rows

    struct Projected {
        var rows: [EventProjection.EventRow] = []
        var deadLetters: [EventProjection.DeadLetter] = []
    }

    /// The rows of the records at or after `position.offset`. A record's `created_at` is its timestamp
    /// when an `events` partition holds that UTC day, else the time the broker stored its batch (the
    /// record's own time is always in `metadata.timestamp`): a producer's clock cannot make the
    /// projection create or miss daily partitions.
    static func project(_ batches: [EventProjection.StoredBatch], position: EventProjection.Position, days: Set<String>) -> Projected {
        var projected = Projected()
        for batch in batches {
            let id = { (offset: Int64) in EventID.derive(streamID: position.streamID, partition: position.partition, offset: offset) }
            guard let view = try? RecordBatchView(validating: batch.bytes) else {
                projected.deadLetters.append(.init(eventID: id(batch.baseOffset), offset: batch.baseOffset,
                                                   reason: "analytics: the stored batch does not parse",
                                                   payloadJSON: DeadLetters.base64Payload(Array(batch.bytes.readableBytesView))))
                continue
            }
            if view.header.attributes.isControl { continue }
            do {
                var records = try view.records(decompressedBytesMax: decompressedBatchBytesMax)
                while let record = try records.next() {
                    guard record.offset >= position.offset else { continue }
                    let value = record.value.map { Array($0.readableBytesView) }
                    guard let value, isJSON(value) else {
                        projected.deadLetters.append(.init(
                            eventID: id(record.offset), offset: record.offset,
                            reason: value == nil ? "analytics: the record has no value" : "analytics: the value is not JSON",
                            payloadJSON: value.map(DeadLetters.base64Payload) ?? "null"))
                        continue
                    }
                    let day = utcDay(record.timestamp)
                    projected.rows.append(.init(
                        id: id(record.offset), offset: record.offset, payloadJSON: value,
                        metadataJSON: metadata(record, partition: position.partition, header: view.header),
                        createdAtMilliseconds: days.contains(day) ? record.timestamp : batch.createdAtMilliseconds))
                }
            } catch {
                projected.deadLetters.append(.init(eventID: id(batch.baseOffset), offset: batch.baseOffset,
                                                   reason: "analytics: the batch's records do not decode: \(error)",
                                                   payloadJSON: DeadLetters.base64Payload(Array(batch.bytes.readableBytesView))))
            }
        }
        return projected
    }

    static func isJSON(_ bytes: [UInt8]) -> Bool {
        (try? JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])) != nil
    }

    static func metadata(_ record: Record, partition: Int32, header: RecordBatchHeader) -> [UInt8] {
        func text(_ buffer: ByteBuffer?) -> Any {
            guard let buffer else { return NSNull() }
            let bytes = Array(buffer.readableBytesView)
            if let string = String(validating: bytes, as: UTF8.self) { return string }
            return ["base64": Data(bytes).base64EncodedString()]
        }
        var object: [String: Any] = [
            "partition": Int(partition), "offset": record.offset, "timestamp": record.timestamp, "key": text(record.key),
            "headers": record.headers.map { ["key": $0.key, "value": text($0.value)] as [String: Any] },
        ]
        if header.producerId >= 0 { object["producer"] = ["id": header.producerId, "epoch": Int(header.producerEpoch)] }
        return Array((try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8))
    }

    /// `yyyyMMdd` of the UTC day holding `milliseconds`, as the daily partitions are named.
    static func utcDay(_ milliseconds: Int64) -> String {
        var seconds = time_t(clamping: milliseconds / 1000 - (milliseconds % 1000 < 0 ? 1 : 0))
        var parts = tm()
        guard gmtime_r(&seconds, &parts) != nil else { return "" }
        return String(format: "%04d%02d%02d", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday))
    }
}
