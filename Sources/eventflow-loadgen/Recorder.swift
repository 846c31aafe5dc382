import Foundation
import Histogram
import Synchronization

/// Nanoseconds of the monotonic clock (unaffected by wall-clock changes).
@inline(__always)
func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
}

/// Sleeps until the monotonic clock reaches `deadline` (returns at once when it has).
func sleep(untilNanoseconds deadline: UInt64) {
    let now = monotonicNanoseconds()
    guard deadline > now else { return }
    let wait = deadline - now
    var request = timespec(tv_sec: Int(wait / 1_000_000_000), tv_nsec: Int(wait % 1_000_000_000))
    var remaining = timespec()
    while nanosleep(&request, &remaining) != 0, errno == EINTR { request = remaining }
}

/// Latency histograms in microseconds, 1 µs to 1 hour, 3 significant digits.
func makeLatencyHistogram() -> Histogram<UInt64> {
    Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)
}

/// One second of the run, for the live line and the plot.
struct IntervalSample: Sendable, Encodable {
    var second: Double
    var eventsPerSecond: Double
    var megabytesPerSecond: Double
    var p50Milliseconds: Double
    var p99Milliseconds: Double
    var inflight: Int
    var errors: Int

    enum CodingKeys: String, CodingKey {
        case second, eventsPerSecond = "events_per_second", megabytesPerSecond = "mb_per_second"
        case p50Milliseconds = "p50_ms", p99Milliseconds = "p99_ms", inflight, errors
    }
}

/// Counts acknowledgements and errors and keeps the latency histograms of one run.
///
/// Writers record whole batches under one lock, so the lock is taken per batch, not per event.
/// Events sent during the warm-up are acknowledged and counted as in flight, but only events
/// sent (intended) after it enter the latency histogram, and only acknowledgements inside the
/// measured window count for throughput.
final class Recorder: Sendable {
    struct State {
        var measured = makeLatencyHistogram()
        var interval = makeLatencyHistogram()
        var sent = 0
        var acknowledged = 0
        var measuredEvents = 0
        var intervalEvents = 0
        var errors = 0
        var firstError: String?
        /// Set when the run cannot go on (authentication, unreachable): no result is reported.
        var fatalError: String?
    }

    let measureStartNanoseconds: UInt64
    let measureEndNanoseconds: UInt64
    let eventBytes: Int
    let state = Mutex(State())

    init(measureStartNanoseconds: UInt64, measureEndNanoseconds: UInt64, eventBytes: Int) {
        self.measureStartNanoseconds = measureStartNanoseconds
        self.measureEndNanoseconds = measureEndNanoseconds
        self.eventBytes = eventBytes
    }

    func sent(_ count: Int) {
        state.withLock { $0.sent += count }
    }

    /// Records the acknowledgement at `ackNanoseconds` of events sent (or due) at `sendNanoseconds`.
    func acknowledged<Times: Sequence<UInt64>>(sendNanoseconds: Times, ackNanoseconds: UInt64) {
        let inWindow = ackNanoseconds >= measureStartNanoseconds && ackNanoseconds <= measureEndNanoseconds
        state.withLock { state in
            var count = 0
            for sent in sendNanoseconds {
                count += 1
                let micros = max((ackNanoseconds &- min(sent, ackNanoseconds)) / 1_000, 1)
                // The live line and the plot show the warm-up too; the result does not.
                _ = state.interval.record(micros)
                if sent >= measureStartNanoseconds { _ = state.measured.record(micros) }
            }
            state.acknowledged += count
            state.intervalEvents += count
            if inWindow { state.measuredEvents += count }
        }
    }

    /// A consumer read `count` events at `atNanoseconds` (no latency: throughput only).
    func received(_ count: Int, atNanoseconds: UInt64) {
        let inWindow = atNanoseconds >= measureStartNanoseconds && atNanoseconds <= measureEndNanoseconds
        state.withLock { state in
            state.acknowledged += count
            state.intervalEvents += count
            if inWindow { state.measuredEvents += count }
        }
    }

    /// A consumer read events sent at `sentNanoseconds[i]` at `receivedNanoseconds[i]` (the same clock).
    func received(sentNanoseconds: [UInt64], receivedNanoseconds: [UInt64]) {
        precondition(sentNanoseconds.count == receivedNanoseconds.count, "one receive time per send time")
        state.withLock { state in
            for (sent, received) in zip(sentNanoseconds, receivedNanoseconds) {
                let micros = max((received &- min(sent, received)) / 1_000, 1)
                _ = state.interval.record(micros)
                if sent >= measureStartNanoseconds { _ = state.measured.record(micros) }
                if received >= measureStartNanoseconds && received <= measureEndNanoseconds { state.measuredEvents += 1 }
            }
            state.acknowledged += sentNanoseconds.count
            state.intervalEvents += sentNanoseconds.count
        }
    }

    func failed(_ count: Int, error: String) {
        state.withLock { state in
            state.errors += count
            if state.firstError == nil { state.firstError = error }
        }
    }

    func fatal(_ error: String) {
        state.withLock { state in
            if state.fatalError == nil { state.fatalError = error }
        }
    }

    var fatalError: String? { state.withLock { $0.fatalError } }

    /// Takes the last interval's numbers and starts the next interval.
    func takeInterval(second: Double, seconds: Double) -> IntervalSample {
        state.withLock { state in
            let events = state.intervalEvents
            let sample = IntervalSample(
                second: second,
                eventsPerSecond: Double(events) / seconds,
                megabytesPerSecond: Double(events * eventBytes) / seconds / 1_000_000,
                p50Milliseconds: Double(state.interval.valueAtPercentile(50)) / 1_000,
                p99Milliseconds: Double(state.interval.valueAtPercentile(99)) / 1_000,
                inflight: max(state.sent - state.acknowledged - state.errors, 0),
                errors: state.errors)
            state.intervalEvents = 0
            state.interval.reset()
            return sample
        }
    }
}
