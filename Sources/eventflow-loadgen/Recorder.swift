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
    /// The producer's stages in this second (p99 of each, ms), for the breakdown of the worst second.
    var stagesP99Milliseconds: ProducerStageSummary?

    enum CodingKeys: String, CodingKey {
        case second, eventsPerSecond = "events_per_second", megabytesPerSecond = "mb_per_second"
        case p50Milliseconds = "p50_ms", p99Milliseconds = "p99_ms", inflight, errors
        case stagesP99Milliseconds = "stages_p99_ms"
    }
}

/// The producer's stages of an acknowledged event, which add up to its latency (but for the
/// delivery report's hand-over): send → batch sealed (waiting in the open batch: linger, or a full
/// producer with no free in-flight slot), sealed → request written (built, compressed, written),
/// written → answered (network, broker, PostgreSQL: the broker's own stages explain this one).
struct ProducerStageHistograms: Sendable {
    var sendToSealed = makeLatencyHistogram()
    var sealedToWritten = makeLatencyHistogram()
    var writtenToAnswered = makeLatencyHistogram()

    mutating func reset() {
        sendToSealed.reset()
        sealedToWritten.reset()
        writtenToAnswered.reset()
    }
}

/// One number per producer stage (a percentile, in ms).
struct ProducerStageSummary: Encodable, Sendable {
    var sendToSealed: Double
    var sealedToWritten: Double
    var writtenToAnswered: Double

    init(_ stages: ProducerStageHistograms, percentile: Double) {
        func ms(_ histogram: Histogram<UInt64>) -> Double { Double(histogram.valueAtPercentile(percentile)) / 1_000 }
        sendToSealed = ms(stages.sendToSealed)
        sealedToWritten = ms(stages.sealedToWritten)
        writtenToAnswered = ms(stages.writtenToAnswered)
    }

    enum CodingKeys: String, CodingKey {
        case sendToSealed = "send_to_sealed", sealedToWritten = "sealed_to_written", writtenToAnswered = "written_to_answered"
    }
}

/// The stages over the measured window: p50, p99, p99.9 and max of each, in ms.
struct ProducerStagesResult: Encodable, Sendable {
    var p50: ProducerStageSummary
    var p99: ProducerStageSummary
    var p999: ProducerStageSummary
    var max: ProducerStageSummary

    init(_ stages: ProducerStageHistograms) {
        p50 = ProducerStageSummary(stages, percentile: 50)
        p99 = ProducerStageSummary(stages, percentile: 99)
        p999 = ProducerStageSummary(stages, percentile: 99.9)
        max = ProducerStageSummary(stages, percentile: 100)
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
        /// The producer's stage breakdown (nil in modes without the producer).
        var stages: ProducerStageHistograms?
        var intervalStages: ProducerStageHistograms?
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

    /// The stages of one acknowledged batch (`EventFlowProducer.observeBatchStages`): its events'
    /// send times (intended ones with --rate), when it was sealed, written and answered.
    func batchStages(sendNanoseconds: [UInt64], sealed: UInt64, written: UInt64, answered: UInt64) {
        func micros(_ from: UInt64, _ to: UInt64) -> UInt64 { max((to &- min(from, to)) / 1_000, 1) }
        let sealedToWritten = micros(sealed, written)
        let writtenToAnswered = micros(written, answered)
        state.withLock { state in
            if state.stages == nil {
                state.stages = ProducerStageHistograms()
                state.intervalStages = ProducerStageHistograms()
            }
            var measured = 0
            for sent in sendNanoseconds {
                let waited = micros(sent, sealed)
                _ = state.intervalStages?.sendToSealed.record(waited)
                if sent >= measureStartNanoseconds {
                    _ = state.stages?.sendToSealed.record(waited)
                    measured += 1
                }
            }
            let count = UInt64(sendNanoseconds.count)
            _ = state.intervalStages?.sealedToWritten.record(sealedToWritten, count: count)
            _ = state.intervalStages?.writtenToAnswered.record(writtenToAnswered, count: count)
            if measured > 0 {
                _ = state.stages?.sealedToWritten.record(sealedToWritten, count: UInt64(measured))
                _ = state.stages?.writtenToAnswered.record(writtenToAnswered, count: UInt64(measured))
            }
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
                errors: state.errors,
                stagesP99Milliseconds: state.intervalStages.map { ProducerStageSummary($0, percentile: 99) })
            state.intervalEvents = 0
            state.interval.reset()
            state.intervalStages?.reset()
            return sample
        }
    }
}
