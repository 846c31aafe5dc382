import EventFlowStorage
import Foundation

/// One retention round, as a pure state machine: which log start offsets move forward and which
/// daily partitions go. No I/O and no clock: the time is an input, the maintenance task performs
/// the actions (`RetentionMaintenance`) and feeds back what it found.
///
/// The rules, Kafka's retention over PostgreSQL's shared daily partitions:
/// - A stream's *cutoff* is `now − retention_hours`; a batch created before it is past retention.
/// - A partition's log start moves to the first batch created at or after the cutoff, or to the
///   partition's next offset when every stored batch is older (Kafka after deleting every segment).
///   It never moves back (a raised retention applies to what is written from then on).
/// - A daily partition of `event_batches` is dropped when every batch in it lies below its
///   partition's (new) log start, so nothing a consumer can fetch is ever dropped; one of `events`
///   when every stream with rows in it has its cutoff at or past the day's end. Days are dropped
///   whole (no row is deleted), and never yesterday, today or later: a flush writes into the day
///   of its own start time, which may be yesterday for a flush that straddles midnight, and the
///   writer recreates a missing partition around that day.
///
/// Transitions: `start` → `.measure`; `measured` → `.advance` (when a log start moves), then
/// `advanced` → one `.drop` per droppable day, each answered by `dropped` or `dropFailed`;
/// the last answer → `.finish` with the report.
public struct RetentionRound: Sendable {
    public static let hourMilliseconds: Int64 = 3_600_000
    public static let dayMilliseconds: Int64 = 86_400_000

    /// A log start offset moving forward.
    public struct LogStartMove: Hashable, Sendable {
        public var partition: StreamPartition
        public var from: Int64
        public var to: Int64

        public init(partition: StreamPartition, from: Int64, to: Int64) {
            self.partition = partition
            self.from = from
            self.to = to
        }
    }

    /// What a daily partition holds, as `.measure` asks for it.
    public struct DayContents: Hashable, Sendable {
        public var day: DayPartition
        /// `event_batches`: the last offset each stream partition has in the day.
        public var lastOffsets: [StreamPartition: Int64]
        /// `events`: the streams with rows in the day.
        public var streams: Set<UUID>

        public init(day: DayPartition, lastOffsets: [StreamPartition: Int64] = [:], streams: Set<UUID> = []) {
            self.day = day
            self.lastOffsets = lastOffsets
            self.streams = streams
        }
    }

    /// A day the round meant to drop and did not.
    public struct KeptDay: Hashable, Sendable {
        public var day: DayPartition
        public var reason: String

        public init(day: DayPartition, reason: String) {
            self.day = day
            self.reason = reason
        }
    }

    /// What the round did.
    public struct Report: Hashable, Sendable {
        public var nowMilliseconds: Int64
        public var moves: [LogStartMove] = []
        public var dropped: [DayPartition] = []
        /// Found still needed under the drop's lock and attached again, or the drop failed.
        public var kept: [KeptDay] = []
        /// Old enough to be dropped but still needed by a stream (the normal case for recent days).
        public var retained: [DayPartition] = []

        public init(nowMilliseconds: Int64) {
            self.nowMilliseconds = nowMilliseconds
        }
    }

    public enum Action: Hashable, Sendable {
        /// Read every partition's log for these cutoffs (`LogRetention.measure`) and what each of
        /// these days holds (the days before yesterday: the only ones that may go), then `measured`.
        case measure(cutoffs: [RetentionCutoff], days: [DayPartition])
        /// Persist these log starts, tell the fetch service, then `advanced` (before any day is
        /// dropped, so no fetch is served from a day that goes).
        case advance([LogStartMove])
        /// Detach and drop this day (`LogRetention.drop`), then `dropped` or `dropFailed`.
        case drop(DayPartition)
        /// The round is over.
        case finish(Report)
    }

    private enum State: Sendable {
        case idle
        case measuring(cutoffs: [UUID: Int64], candidates: Set<DayPartition>)
        case advancing(drops: [DayPartition])
        case dropping(remaining: [DayPartition])
        case finished
    }

    private var state: State = .idle
    private var report = Report(nowMilliseconds: 0)

    public init() {}

    /// Whether the round has handed out its report.
    public var isFinished: Bool {
        if case .finished = state { return true }
        return false
    }

    /// Midnight UTC of the day containing `milliseconds` (unix time has no leap seconds, so a
    /// UTC day is exactly `dayMilliseconds`).
    static func dayStart(_ milliseconds: Int64) -> Int64 {
        milliseconds - ((milliseconds % dayMilliseconds) + dayMilliseconds) % dayMilliseconds
    }

    /// Starts the round at `nowMilliseconds` (unix) over every stream and the existing daily partitions.
    public mutating func start(nowMilliseconds: Int64, streams: [StreamRetention], days: [DayPartition]) -> Action {
        guard case .idle = state else { preconditionFailure("a retention round starts once") }
        report = Report(nowMilliseconds: nowMilliseconds)
        var cutoffs: [UUID: Int64] = [:]
        for stream in streams {
            // retention_hours is a positive int4: at most ~7.7e15 ms, far inside Int64.
            cutoffs[stream.streamID] = nowMilliseconds - Int64(max(stream.retentionHours, 1)) * Self.hourMilliseconds
        }
        // A day may go only if it ended before yesterday began.
        let yesterday = Self.dayStart(nowMilliseconds) - Self.dayMilliseconds
        let candidates = days.filter { $0.dayStartMilliseconds + Self.dayMilliseconds <= yesterday }
        state = .measuring(cutoffs: cutoffs, candidates: Set(candidates))
        return .measure(cutoffs: streams.compactMap { stream in
            cutoffs[stream.streamID].map { RetentionCutoff(streamID: stream.streamID, createdBeforeMilliseconds: $0) }
        }, days: candidates)
    }

    /// What `.measure` found: every partition's log, and the contents of the days it named.
    public mutating func measured(partitions: [PartitionLogExtent], days: [DayContents]) -> Action {
        guard case .measuring(let cutoffs, let candidates) = state else { preconditionFailure("measured answers .measure") }
        var logStarts: [StreamPartition: Int64] = [:]
        var moves: [LogStartMove] = []
        for log in partitions {
            let partition = StreamPartition(streamID: log.streamID, partition: log.partition)
            assert(log.firstRetainedOffset.map { $0 < log.nextOffset } ?? true, "a retained batch lies below the next offset")
            let target = min(log.firstRetainedOffset ?? log.nextOffset, log.nextOffset)
            let start = max(log.logStartOffset, target)
            logStarts[partition] = start
            if start > log.logStartOffset { moves.append(LogStartMove(partition: partition, from: log.logStartOffset, to: start)) }
        }
        var drops: [DayPartition] = []
        for contents in days.sorted(by: { ($0.day.dayStartMilliseconds, $0.day.table) < ($1.day.dayStartMilliseconds, $1.day.table) }) {
            guard candidates.contains(contents.day) else { continue }
            let dayEnd = contents.day.dayStartMilliseconds + Self.dayMilliseconds
            let needed: Bool
            switch contents.day.log {
            case .batches:
                // A partition the round knows nothing of keeps its day.
                needed = contents.lastOffsets.contains { partition, last in last >= (logStarts[partition] ?? 0) }
            case .events:
                needed = contents.streams.contains { stream in (cutoffs[stream] ?? .min) < dayEnd }
            }
            if needed { report.retained.append(contents.day) } else { drops.append(contents.day) }
        }
        report.moves = moves
        if moves.isEmpty { return nextDrop(drops) }
        state = .advancing(drops: drops)
        return .advance(moves)
    }

    /// The `.advance` is persisted and the fetch service knows it.
    public mutating func advanced() -> Action {
        guard case .advancing(let drops) = state else { preconditionFailure("advanced answers .advance") }
        return nextDrop(drops)
    }

    /// How the `.drop` of `day` went.
    public mutating func dropped(_ day: DayPartition, _ outcome: DayPartitionDrop) -> Action {
        guard case .dropping(let remaining) = state, remaining.first == day else { preconditionFailure("dropped answers .drop") }
        switch outcome {
        case .dropped: report.dropped.append(day)
        case .kept(let reason): report.kept.append(KeptDay(day: day, reason: reason))
        case .gone: break
        }
        return nextDrop(Array(remaining.dropFirst()))
    }

    /// The `.drop` of `day` failed (the day stays; the next round tries again); the round goes on
    /// with the other days.
    public mutating func dropFailed(_ day: DayPartition, reason: String) -> Action {
        guard case .dropping(let remaining) = state, remaining.first == day else { preconditionFailure("dropFailed answers .drop") }
        report.kept.append(KeptDay(day: day, reason: reason))
        return nextDrop(Array(remaining.dropFirst()))
    }

    private mutating func nextDrop(_ remaining: [DayPartition]) -> Action {
        guard let day = remaining.first else {
            state = .finished
            return .finish(report)
        }
        state = .dropping(remaining: remaining)
        return .drop(day)
    }
}
