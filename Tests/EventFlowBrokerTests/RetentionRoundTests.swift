import EventFlowBroker
import EventFlowStorage
import Foundation
import Testing

private let streamA = UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xA))
private let streamB = UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xB))
private let hour = RetentionRound.hourMilliseconds
private let day = RetentionRound.dayMilliseconds
/// 2026-12-03 12:00 UTC.
private let now: Int64 = 1_796_256_000_000 + 12 * hour
private let today = now - 12 * hour

private func batchesDay(_ daysAgo: Int64) -> DayPartition {
    DayPartition(log: .batches, day: Date(timeIntervalSince1970: Double(today - daysAgo * day) / 1000))
}

private func eventsDay(_ daysAgo: Int64) -> DayPartition {
    DayPartition(log: .events, day: Date(timeIntervalSince1970: Double(today - daysAgo * day) / 1000))
}

private func partition(_ stream: UUID, _ index: Int32 = 0) -> StreamPartition {
    StreamPartition(streamID: stream, partition: index)
}

private func log(_ stream: UUID, _ index: Int32 = 0, start: Int64 = 0, retained: Int64?, next: Int64) -> PartitionLogExtent {
    PartitionLogExtent(streamID: stream, partition: index, logStartOffset: start, firstRetainedOffset: retained, nextOffset: next)
}

@Suite struct RetentionRoundTests {
    @Test func dayPartitionNamesAndDaysRoundTrip() {
        let day = batchesDay(0)
        #expect(day.table == "event_batches_p20261203")
        #expect(day.dayStartMilliseconds == today)
        #expect(DayPartition(log: .batches, table: "event_batches_p20261203") == day)
        #expect(DayPartition(log: .events, table: "events_p20261130") == eventsDay(3))
        #expect(DayPartition(log: .events, table: "event_batches_p20261203") == nil)
        #expect(DayPartition(log: .batches, table: "event_batches_p20261332") == nil)
        #expect(DayPartition(log: .batches, table: "event_batches_p2026120") == nil)
    }

    @Test func startMeasuresEveryStreamAtNowMinusItsRetentionAndOnlyTheDaysBeforeYesterday() {
        var round = RetentionRound()
        let action = round.start(nowMilliseconds: now, streams: [
            StreamRetention(streamID: streamA, partitions: 2, retentionHours: 24),
            StreamRetention(streamID: streamB, partitions: 1, retentionHours: 168),
        ], days: [batchesDay(3), eventsDay(3), batchesDay(2), batchesDay(1), batchesDay(0), batchesDay(-1)])
        #expect(action == .measure(cutoffs: [
            RetentionCutoff(streamID: streamA, createdBeforeMilliseconds: now - 24 * hour),
            RetentionCutoff(streamID: streamB, createdBeforeMilliseconds: now - 168 * hour),
        ], days: [batchesDay(3), eventsDay(3), batchesDay(2)]))
        #expect(!round.isFinished)
    }

    @Test func aLogStartMovesToTheFirstRetainedBatchOrToTheEndWhenEverythingIsOlder() {
        var round = RetentionRound()
        _ = round.start(nowMilliseconds: now, streams: [StreamRetention(streamID: streamA, partitions: 3, retentionHours: 24)], days: [])
        let action = round.measured(partitions: [
            log(streamA, 0, retained: 40, next: 55),     // batches from 40 on are young
            log(streamA, 1, start: 3, retained: nil, next: 9),  // everything is older: the log starts at its end
            log(streamA, 2, retained: nil, next: 0),     // empty: stays at 0
        ], days: [])
        #expect(action == .advance([
            .init(partition: partition(streamA, 0), from: 0, to: 40),
            .init(partition: partition(streamA, 1), from: 3, to: 9),
        ]))
        guard case .finish(let report) = round.advanced() else {
            Issue.record("no day to drop: the round ends")
            return
        }
        #expect(report.moves.map(\.to) == [40, 9])
        #expect(report.dropped.isEmpty)
        #expect(round.isFinished)
    }

    @Test func aLogStartNeverMovesBackAndUnmovedLogsSkipTheAdvance() {
        var round = RetentionRound()
        _ = round.start(nowMilliseconds: now, streams: [StreamRetention(streamID: streamA, partitions: 2, retentionHours: 1000)], days: [])
        // Retention was raised after the log start reached 50: older batches stay out of reach.
        let action = round.measured(partitions: [log(streamA, 0, start: 50, retained: 10, next: 60),
                                                 log(streamA, 1, start: 0, retained: 0, next: 5)], days: [])
        guard case .finish(let report) = action else {
            Issue.record("nothing moves: no .advance, the round ends; got \(action)")
            return
        }
        #expect(report.moves.isEmpty)
    }

    @Test func aSharedDayGoesOnlyWhenEveryBatchInItLiesBelowItsPartitionsLogStart() {
        var round = RetentionRound()
        _ = round.start(nowMilliseconds: now, streams: [
            StreamRetention(streamID: streamA, partitions: 1, retentionHours: 48),
            StreamRetention(streamID: streamB, partitions: 1, retentionHours: 120),
        ], days: [batchesDay(6), batchesDay(4), batchesDay(2)])
        // A: 0...9 six days ago, 10...19 four days ago, 20...29 two days ago (at noon: inside 48 h).
        // B: 0...4 four days ago (inside 120 h), nothing six days ago.
        let action = round.measured(partitions: [log(streamA, retained: 20, next: 30), log(streamB, retained: 0, next: 5)], days: [
            .init(day: batchesDay(6), lastOffsets: [partition(streamA): 9]),
            .init(day: batchesDay(4), lastOffsets: [partition(streamA): 19, partition(streamB): 4]),
            .init(day: batchesDay(2), lastOffsets: [partition(streamA): 29]),
        ])
        #expect(action == .advance([.init(partition: partition(streamA), from: 0, to: 20)]))
        #expect(round.advanced() == .drop(batchesDay(6)))
        guard case .finish(let report) = round.dropped(batchesDay(6), .dropped) else {
            Issue.record("one day to drop")
            return
        }
        #expect(report.dropped == [batchesDay(6)])
        #expect(report.retained == [batchesDay(4), batchesDay(2)], "B still needs four days ago; A two days ago")
    }

    @Test func anEmptyOldDayGoesAndADayWithAPartitionTheRoundDoesNotKnowStays() {
        var round = RetentionRound()
        let unknown = UUID()
        _ = round.start(nowMilliseconds: now, streams: [StreamRetention(streamID: streamA, partitions: 1, retentionHours: 1)],
                        days: [batchesDay(5), batchesDay(4)])
        let action = round.measured(partitions: [log(streamA, start: 7, retained: nil, next: 7)], days: [
            .init(day: batchesDay(5)),
            .init(day: batchesDay(4), lastOffsets: [partition(unknown): 0]),
        ])
        #expect(action == .drop(batchesDay(5)))
        guard case .finish(let report) = round.dropped(batchesDay(5), .dropped) else {
            Issue.record("one day to drop")
            return
        }
        #expect(report.retained == [batchesDay(4)])
    }

    @Test func anEventsDayGoesWhenEveryStreamInItIsPastItsRetentionForTheWholeDay() {
        var round = RetentionRound()
        _ = round.start(nowMilliseconds: now, streams: [
            StreamRetention(streamID: streamA, partitions: 1, retentionHours: 24),
            // Cutoff exactly at the end of four days ago: that whole day is past retention.
            StreamRetention(streamID: streamB, partitions: 1, retentionHours: 3 * 24 + 12),
        ], days: [eventsDay(5), eventsDay(4), eventsDay(3)])
        let action = round.measured(partitions: [], days: [
            .init(day: eventsDay(5), streams: [streamA, streamB]),
            .init(day: eventsDay(4), streams: [streamA, streamB]),
            .init(day: eventsDay(3), streams: [streamB]),
        ])
        #expect(action == .drop(eventsDay(5)))
        #expect(round.dropped(eventsDay(5), .dropped) == .drop(eventsDay(4)))
        guard case .finish(let report) = round.dropped(eventsDay(4), .dropped) else {
            Issue.record("two days to drop")
            return
        }
        #expect(report.dropped == [eventsDay(5), eventsDay(4)])
        #expect(report.retained == [eventsDay(3)])
    }

    @Test func aDropFoundNeededOrFailedIsReportedAndTheRoundGoesOnWithTheNextDay() {
        var round = RetentionRound()
        _ = round.start(nowMilliseconds: now, streams: [], days: [batchesDay(9), batchesDay(8), eventsDay(8)])
        #expect(round.measured(partitions: [], days: [.init(day: batchesDay(9)), .init(day: batchesDay(8)), .init(day: eventsDay(8))])
            == .drop(batchesDay(9)))
        #expect(round.dropped(batchesDay(9), .kept(reason: "holds batches at or after the log start")) == .drop(batchesDay(8)))
        #expect(round.dropFailed(batchesDay(8), reason: "lock timeout") == .drop(eventsDay(8)))
        guard case .finish(let report) = round.dropped(eventsDay(8), .gone) else {
            Issue.record("the last answer ends the round")
            return
        }
        #expect(report.dropped.isEmpty)
        #expect(report.kept == [.init(day: batchesDay(9), reason: "holds batches at or after the log start"),
                                .init(day: batchesDay(8), reason: "lock timeout")])
        #expect(report.nowMilliseconds == now)
    }

    @Test func daysThatMeasuredReportsButStartDidNotAskForAreIgnored() {
        var round = RetentionRound()
        _ = round.start(nowMilliseconds: now, streams: [], days: [batchesDay(1), batchesDay(0)])
        // Yesterday and today are never candidates, whatever they hold.
        let action = round.measured(partitions: [], days: [.init(day: batchesDay(1)), .init(day: batchesDay(0))])
        guard case .finish(let report) = action else {
            Issue.record("nothing to drop; got \(action)")
            return
        }
        #expect(report.dropped.isEmpty && report.retained.isEmpty)
    }
}
