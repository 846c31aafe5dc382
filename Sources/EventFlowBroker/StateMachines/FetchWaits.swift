/// Long-poll fetches parked at the tail, and the high watermarks they wait on.
///
/// A fetch that found fewer than `minBytes` is parked as (partitions, bytes found, minBytes,
/// deadline). Commits report the bytes they added per partition; a parked fetch is answered as
/// soon as its partitions gained enough bytes, or at its deadline, never by polling the
/// database. A commit that lands between the fetch's read and its parking is not lost: the park
/// carries the watermarks the read saw, and a partition that moved since is answered at once.
///
/// Pure state machine: no I/O, no clock (monotonic nanoseconds are passed in); the fetch
/// service performs the actions.
public struct FetchWaits: Sendable {
    public struct WaitID: Hashable, Sendable, CustomStringConvertible {
        public var rawValue: UInt64
        public init(_ rawValue: UInt64) { self.rawValue = rawValue }
        public var description: String { "fetch-wait#\(rawValue)" }
    }

    public enum Action: Hashable, Sendable {
        /// Read the parked fetch again and answer it (enough bytes arrived, or its time is up).
        case answer(WaitID)
        /// Call `timerFired` at (or after) this monotonic time.
        case scheduleTimer(deadline: UInt64)
    }

    private struct Waiting: Sendable {
        var partitions: [StreamPartition]
        var bytesAvailable: Int
        var minBytes: Int
        var deadline: UInt64
    }

    /// Bound on parked fetches; beyond it a fetch is answered at once with what it found.
    public let waitsMax: Int
    private var waiting: [WaitID: Waiting] = [:]
    private var waitersByPartition: [StreamPartition: Set<WaitID>] = [:]
    private var highWatermarks: [StreamPartition: Int64] = [:]
    /// The earliest deadline a timer is already scheduled for.
    private var timerDeadline: UInt64?

    public init(waitsMax: Int) {
        self.waitsMax = max(waitsMax, 0)
    }

    public var parkedCount: Int { waiting.count }

    /// The committed end of `partition` as last reported, if any commit was.
    public func highWatermark(of partition: StreamPartition) -> Int64? { highWatermarks[partition] }

    /// Parks a fetch that found `bytesAvailable` (< `minBytes`) when it read the partitions at
    /// `observed` high watermarks. Answers at once if a partition moved since, if the deadline
    /// has passed, or if `waitsMax` fetches are parked already.
    public mutating func park(_ id: WaitID, observed: [StreamPartition: Int64], bytesAvailable: Int, minBytes: Int,
                              deadline: UInt64, now: UInt64) -> [Action] {
        precondition(waiting[id] == nil, "a wait id is parked once")
        let moved = observed.contains { partition, seen in (highWatermarks[partition] ?? seen) > seen }
        guard !moved, bytesAvailable < minBytes, deadline > now, waiting.count < waitsMax else { return [.answer(id)] }
        let partitions = Array(observed.keys)
        waiting[id] = Waiting(partitions: partitions, bytesAvailable: bytesAvailable, minBytes: minBytes, deadline: deadline)
        for partition in partitions { waitersByPartition[partition, default: []].insert(id) }
        if timerDeadline.map({ deadline < $0 }) ?? true {
            timerDeadline = deadline
            return [.scheduleTimer(deadline: deadline)]
        }
        return []
    }

    /// A flush committed: each partition's new high watermark and the bytes it added.
    public mutating func committed(_ advanced: [StreamPartition: (highWatermark: Int64, bytes: Int)]) -> [Action] {
        var answered: [WaitID] = []
        for (partition, advance) in advanced {
            // Commits arrive in offset order, so a watermark never moves back; if one ever did,
            // keeping the higher one is what consumers have already been shown.
            assert(advance.highWatermark >= (highWatermarks[partition] ?? 0), "high watermarks never move back")
            highWatermarks[partition] = max(advance.highWatermark, highWatermarks[partition] ?? 0)
            guard let ids = waitersByPartition[partition] else { continue }
            for id in ids {
                guard var wait = waiting[id] else { continue }
                wait.bytesAvailable += advance.bytes
                if wait.bytesAvailable >= wait.minBytes {
                    remove(id)
                    answered.append(id)
                } else {
                    waiting[id] = wait
                }
            }
        }
        return answered.sorted { $0.rawValue < $1.rawValue }.map { .answer($0) }
    }

    /// Answers the fetches whose deadline has passed; schedules the next deadline.
    public mutating func timerFired(now: UInt64) -> [Action] {
        timerDeadline = nil
        let expired = waiting.filter { $0.value.deadline <= now }.keys.sorted { $0.rawValue < $1.rawValue }
        for id in expired { remove(id) }
        var actions = expired.map { Action.answer($0) }
        if let next = waiting.values.map(\.deadline).min() {
            timerDeadline = next
            actions.append(.scheduleTimer(deadline: next))
        }
        return actions
    }

    /// Every parked fetch, answered now (the broker is shutting down).
    public mutating func answerAll() -> [Action] {
        let ids = waiting.keys.sorted { $0.rawValue < $1.rawValue }
        for id in ids { remove(id) }
        return ids.map { .answer($0) }
    }

    private mutating func remove(_ id: WaitID) {
        guard let wait = waiting.removeValue(forKey: id) else { return }
        for partition in wait.partitions {
            waitersByPartition[partition]?.remove(id)
            if waitersByPartition[partition]?.isEmpty == true { waitersByPartition[partition] = nil }
        }
    }
}
