import EventFlowStorage
import Foundation
import Logging

/// Performs a `RetentionRound`'s actions: the storage statements (`LogRetention`,
/// `LogStartOffsets`) on the maintenance task's connection, and the new log starts handed to
/// the fetch service before any day is dropped. Blocking (libpq): run it off the event loops.
enum RetentionMaintenance {
    static func run(_ db: PostgresConnection, now: Date, fetches: FetchService, logger: Logger,
                    metrics: BrokerMetrics? = nil) throws -> RetentionRound.Report {
        let nowMilliseconds = Int64((now.timeIntervalSince1970 * 1000).rounded(.down))
        let repaired = try LogRetention.repairInterruptedDrops(db)
        if !repaired.isEmpty {
            logger.notice("retention: attached again the days an interrupted drop had detached",
                          metadata: ["tables": "\(repaired.map(\.table))"])
        }
        var round = RetentionRound()
        var action = round.start(nowMilliseconds: nowMilliseconds, streams: try LogRetention.streams(db),
                                 days: try LogRetention.dayPartitions(db))
        while true {
            switch action {
            case .measure(let cutoffs, let days):
                let partitions = try LogRetention.measure(db, cutoffs: cutoffs)
                let contents = try days.map { day -> RetentionRound.DayContents in
                    switch day.log {
                    case .batches:
                        let last = try LogRetention.lastOffsets(db, in: day).map {
                            (StreamPartition(streamID: $0.streamID, partition: $0.partition), $0.offset)
                        }
                        return .init(day: day, lastOffsets: Dictionary(last, uniquingKeysWith: max))
                    case .events:
                        return .init(day: day, streams: try LogRetention.streamsPresent(db, in: day))
                    }
                }
                action = round.measured(partitions: partitions, days: contents)
            case .advance(let moves):
                try LogStartOffsets.advance(db, moves.map {
                    StoredPartitionOffset(streamID: $0.partition.streamID, partition: $0.partition.partition, offset: $0.to)
                })
                fetches.logStartsAdvanced(Dictionary(moves.map { ($0.partition, $0.to) }, uniquingKeysWith: max))
                metrics?.retentionLogStartMoves.increment(by: moves.count)
                for move in moves {
                    logger.info("retention: log start moved", metadata: [
                        "partition": "\(move.partition)", "from": "\(move.from)", "to": "\(move.to)",
                    ])
                }
                action = round.advanced()
            case .drop(let day):
                do {
                    let outcome = try LogRetention.drop(db, day, now: now)
                    switch outcome {
                    case .dropped:
                        logger.info("retention: dropped daily partition", metadata: ["table": "\(day.table)"])
                        metrics?.retentionDaysDropped.increment()
                    case .kept(let reason):
                        logger.warning("retention: daily partition still needed; attached again", metadata: [
                            "table": "\(day.table)", "reason": "\(reason)",
                        ])
                    case .gone: break
                    }
                    action = round.dropped(day, outcome)
                } catch {
                    logger.error("retention: dropping a daily partition failed; the next round tries again", metadata: [
                        "table": "\(day.table)", "error": "\(error)",
                    ])
                    action = round.dropFailed(day, reason: "\(error)")
                }
            case .finish(let report):
                return report
            }
        }
    }
}

extension Broker {
    /// One retention round at `now` on `db` (the maintenance task's connection): moves log start
    /// offsets forward past what is older than each stream's retention, tells the fetch service,
    /// then drops the daily partitions no stream needs. Blocking (libpq): call it off the event loops.
    public func enforceRetention(_ db: PostgresConnection, now: Date = Date(),
                                 logger: Logger = Logger(label: "eventflow.retention")) throws -> RetentionRound.Report {
        try RetentionMaintenance.run(db, now: now, fetches: fetchService, logger: logger, metrics: metrics)
    }

    /// The log start offset Fetch and ListOffsets answer for `partition` now.
    public func logStartOffset(of partition: StreamPartition) -> Int64 {
        fetchService.logStartOffset(of: partition)
    }
}
