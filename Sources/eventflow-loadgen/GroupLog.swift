import EventFlowClient
import Synchronization

/// What a group member (`consume --group`) saw, for the rebalance measurement: each assignment and
/// revoke with its time, the first record of each assigned partition after its assignment, and the
/// member's records read over time. Times are CLOCK_MONOTONIC milliseconds (`start_monotonic_ms`
/// plus the relative ones), one clock per machine, so the report can line up the members' files.
final class GroupLog: Sendable {
    struct Event: Encodable, Sendable {
        /// `assigned` or `revoked`.
        var kind: String
        /// Since the member's start.
        var atMilliseconds: Double
        var partitions: [Int32]
        /// assigned: partition → time (since the start) of its first record delivered after this assignment.
        var firstRecordMilliseconds: [String: Double]

        enum CodingKeys: String, CodingKey {
            case kind, atMilliseconds = "at_ms", partitions, firstRecordMilliseconds = "first_record_ms"
        }
    }

    struct Result: Encodable, Sendable {
        var groupId: String
        var startMonotonicMilliseconds: Double
        var heartbeatIntervalMilliseconds: Int
        var sessionTimeoutMilliseconds: Int
        var events: [Event]
        /// [ms since the start, records read so far], every `GroupLog.countInterval`: the report sums
        /// the members' records over a window none of them measured alone.
        var recordsRead: [[Double]]

        enum CodingKeys: String, CodingKey {
            case groupId = "group_id", startMonotonicMilliseconds = "start_monotonic_ms"
            case heartbeatIntervalMilliseconds = "heartbeat_interval_ms", sessionTimeoutMilliseconds = "session_timeout_ms"
            case events, recordsRead = "records_read"
        }
    }

    static let countIntervalNanoseconds: UInt64 = 250_000_000

    private struct State {
        var events: [Event] = []
        var counts: [[Double]] = []
    }

    let startNanoseconds: UInt64
    private let state = Mutex(State())
    /// Index of the latest `assigned` event + 1 (0: none yet); readers compare it per record, so it
    /// is an atomic rather than a read of the locked state.
    let generation = Atomic<Int>(0)

    init(startNanoseconds: UInt64) {
        self.startNanoseconds = startNanoseconds
    }

    private func milliseconds(_ nanoseconds: UInt64) -> Double {
        Double(Int64(bitPattern: nanoseconds &- startNanoseconds)) / 1e6
    }

    func note(_ event: RebalanceEvent, atNanoseconds now: UInt64) {
        let (kind, partitions): (String, [StreamPartition]) = switch event {
        case .assigned(let partitions): ("assigned", partitions)
        case .revoked(let partitions): ("revoked", partitions)
        }
        let index = state.withLock { state in
            state.events.append(Event(kind: kind, atMilliseconds: milliseconds(now),
                                      partitions: partitions.map(\.partition).sorted(), firstRecordMilliseconds: [:]))
            return state.events.count - 1
        }
        if kind == "assigned" { generation.store(index + 1, ordering: .releasing) }
    }

    /// The first record of `partition` a reader saw since `generation` changed to `generation`.
    func firstRecord(partition: Int32, generation: Int, atNanoseconds now: UInt64) {
        guard generation > 0 else { return }
        state.withLock { state in
            let index = generation - 1
            // A record fetched before this member's new assignment reached `note` (a few ms race)
            // is not counted for it: its partition is not in the assignment, or it is counted a
            // record later.
            guard index < state.events.count, state.events[index].partitions.contains(partition) else { return }
            let key = String(partition)
            if state.events[index].firstRecordMilliseconds[key] == nil {
                state.events[index].firstRecordMilliseconds[key] = milliseconds(now)
            }
        }
    }

    func count(_ records: Int, atNanoseconds now: UInt64) {
        state.withLock { $0.counts.append([milliseconds(now), Double(records)]) }
    }

    func result(groupId: String, settings: ConsumerConfiguration.GroupSettings) -> Result {
        state.withLock { state in
            Result(groupId: groupId, startMonotonicMilliseconds: Double(startNanoseconds) / 1e6,
                   heartbeatIntervalMilliseconds: settings.heartbeatIntervalMilliseconds,
                   sessionTimeoutMilliseconds: settings.sessionTimeoutMilliseconds,
                   events: state.events, recordsRead: state.counts)
        }
    }
}
