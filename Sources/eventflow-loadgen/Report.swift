import Foundation
import Histogram
import Synchronization

/// The settings of a run, written into the result so numbers are never separated from how they were made.
struct RunConfiguration: Encodable, Sendable {
    var connections: Int
    var rate: Int
    var durationSeconds: Double
    var warmupSeconds: Double
    var messageSize: Int
    /// The producing side's settings; nil for `consume`, which reads what others produced.
    var compression: String?
    var batchBytes: Int?
    var seed: UInt64?
    var payloadsDistinct: Int?
    var lingerMilliseconds: Int?
    var acks: Int?
    var idempotent: Bool?
    var stream: String?
    var partitions: Int?
    var brokers: String?
    var tls: Bool?
    var rowsPerStatement: Int?
    var flushBytes: Int?
    var bufferBytes: Int?
    var database: String?
    /// produce: each event's id carries its send time (`--stamp-send-time`).
    var sendTimeStamp: Bool?
    /// consume: where reading starts, when it stops, how records are read, what is fetched at once.
    var from: String?
    var countMax: Int?
    var untilEnd: Bool?
    /// `messages` (every `ConsumerMessage`, as an application iterates) or `skip` (records read and
    /// checked by the consumer's benchmark hook, no message built).
    var read: String?
    /// consume: latency measured from the send time stamped into each event.
    var latencyFromSendTime: Bool?
    var prefetchBytes: Int?
    var fetchBytes: Int?
    var partitionFetchBytes: Int?
    var fetchMaxWaitMilliseconds: Int?

    enum CodingKeys: String, CodingKey {
        case connections, rate, durationSeconds = "duration_seconds", warmupSeconds = "warmup_seconds"
        case messageSize = "message_size", compression, batchBytes = "batch_bytes", seed
        case payloadsDistinct = "payloads_distinct", lingerMilliseconds = "linger_ms", acks, idempotent, stream
        case partitions, brokers, tls, rowsPerStatement = "rows_per_statement", flushBytes = "flush_bytes", bufferBytes = "buffer_bytes", database
        case sendTimeStamp = "send_time_stamp", from, countMax = "count_max", untilEnd = "until_end", read
        case latencyFromSendTime = "latency_from_send_time", prefetchBytes = "prefetch_bytes", fetchBytes = "fetch_bytes"
        case partitionFetchBytes = "partition_fetch_bytes", fetchMaxWaitMilliseconds = "fetch_max_wait_ms"
    }
}

struct LatencySummary: Encodable, Sendable {
    var p50: Double
    var p90: Double
    var p99: Double
    var p999: Double
    var max: Double
    var mean: Double

    init(_ histogram: Histogram<UInt64>) {
        func ms(_ micros: UInt64) -> Double { Double(micros) / 1_000 }
        p50 = ms(histogram.valueAtPercentile(50))
        p90 = ms(histogram.valueAtPercentile(90))
        p99 = ms(histogram.valueAtPercentile(99))
        p999 = ms(histogram.valueAtPercentile(99.9))
        max = ms(histogram.max)
        mean = histogram.mean.rounded() / 1_000
    }
}

/// The result of one run: the same shape for the producer, raw batches, both baselines and the consumer.
struct RunResult: Encodable, Sendable {
    /// `producer` (the headline), `raw-batches`, `baseline-insert`, `baseline-copy` or `consume`.
    var mode: String
    var eventsPerSecond: Double
    var megabytesPerSecond: Double
    /// Events acknowledged inside the measured window.
    var events: Int
    var errors: Int
    var firstError: String?
    var latencyMilliseconds: LatencySummary
    /// Every event acknowledged, warm-up and drain included.
    var eventsAcknowledgedTotal: Int
    var config: RunConfiguration
    var timeline: [IntervalSample]
    /// The measured window in seconds when the run ended before `--duration` (a consumer that read its
    /// `--count` or reached the end); nil when it is `--duration`.
    var measuredSeconds: Double?
    /// consume: from the start (connect, Metadata, ListOffsets included) to the first record.
    var firstRecordMilliseconds: Double?
    /// consume --group: the member's assignments and records over time (nil otherwise, and absent from the JSON).
    var group: GroupLog.Result?
    /// producer: where the measured events' latency went, stage by stage (nil otherwise).
    var producerStages: ProducerStagesResult?
    /// CLOCK_MONOTONIC at the run's start (warm-up included) in ms: `timeline` seconds count from
    /// it, so other samplers on the machine (scripts/stall-monitor.py) line up with them.
    var startMonotonicMilliseconds: Double?

    enum CodingKeys: String, CodingKey {
        case mode, eventsPerSecond = "events_per_second", megabytesPerSecond = "mb_per_second", events, errors
        case firstError = "first_error", latencyMilliseconds = "latency_ms", eventsAcknowledgedTotal = "events_acknowledged_total"
        case config, timeline, measuredSeconds = "measured_seconds", firstRecordMilliseconds = "first_record_ms", group
        case producerStages = "producer_stages_ms", startMonotonicMilliseconds = "start_monotonic_ms"
    }
}

/// Where the result goes at the end of a run.
struct OutputFiles: Sendable {
    var json: String?
    var hgrm: String?
    var plot: String?

    /// Writes nothing at all when the run failed before producing a result.
    func write(_ result: RunResult, histogram: Histogram<UInt64>) throws {
        if let json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(result).write(to: URL(fileURLWithPath: json))
        }
        if let hgrm {
            var text = ""
            histogram.outputPercentileDistribution(to: &text, outputValueUnitScalingRatio: 1_000)
            try Data(text.utf8).write(to: URL(fileURLWithPath: hgrm))
        }
        if let plot {
            try Data(Plot.svg(result).utf8).write(to: URL(fileURLWithPath: plot))
        }
    }
}

/// A hand-written SVG: throughput (left axis) and p99 latency (right axis) per second.
enum Plot {
    static func svg(_ result: RunResult) -> String {
        let width = 800.0, height = 360.0, left = 80.0, right = 80.0, top = 40.0, bottom = 50.0
        let plotWidth = width - left - right, plotHeight = height - top - bottom
        let samples = result.timeline
        let lastSecond = max(samples.last?.second ?? 1, 1)
        let maxRate = niceCeiling(samples.map(\.eventsPerSecond).max() ?? 1)
        let maxP99 = niceCeiling(samples.map(\.p99Milliseconds).max() ?? 1)
        func x(_ second: Double) -> Double { left + second / lastSecond * plotWidth }
        func points(_ value: (IntervalSample) -> Double, scale: Double) -> String {
            samples.map { sample in
                String(format: "%.1f,%.1f", x(sample.second), top + plotHeight - value(sample) / scale * plotHeight)
            }.joined(separator: " ")
        }
        var svg = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(Int(width / 2))" y="22" text-anchor="middle" font-size="14">eventflow-loadgen \(escape(result.mode)): \
            \(formatCount(result.eventsPerSecond)) events/s, p99 \(result.latencyMilliseconds.p99) ms</text>
            <line x1="\(left)" y1="\(top + plotHeight)" x2="\(left + plotWidth)" y2="\(top + plotHeight)" stroke="black"/>
            <line x1="\(left)" y1="\(top)" x2="\(left)" y2="\(top + plotHeight)" stroke="#1f77b4"/>
            <line x1="\(left + plotWidth)" y1="\(top)" x2="\(left + plotWidth)" y2="\(top + plotHeight)" stroke="#d62728"/>

            """
        for tick in 0...4 {
            let fraction = Double(tick) / 4
            let y = top + plotHeight - fraction * plotHeight
            svg += """
                <line x1="\(left)" y1="\(y)" x2="\(left + plotWidth)" y2="\(y)" stroke="#eeeeee"/>
                <text x="\(left - 6)" y="\(y + 4)" text-anchor="end" fill="#1f77b4">\(formatCount(maxRate * fraction))</text>
                <text x="\(left + plotWidth + 6)" y="\(y + 4)" fill="#d62728">\(String(format: "%.1f", maxP99 * fraction))</text>

                """
        }
        svg += """
            <text x="\(left + plotWidth / 2)" y="\(height - 12)" text-anchor="middle">seconds (warm-up included)</text>
            <text x="16" y="\(top + plotHeight / 2)" fill="#1f77b4" transform="rotate(-90 16 \(top + plotHeight / 2))" text-anchor="middle">events/s</text>
            <text x="\(width - 12)" y="\(top + plotHeight / 2)" fill="#d62728" transform="rotate(90 \(width - 12) \(top + plotHeight / 2))" text-anchor="middle">p99 ms</text>
            <polyline fill="none" stroke="#1f77b4" stroke-width="2" points="\(points({ $0.eventsPerSecond }, scale: maxRate))"/>
            <polyline fill="none" stroke="#d62728" stroke-width="2" points="\(points({ $0.p99Milliseconds }, scale: maxP99))"/>
            </svg>

            """
        return svg
    }

    /// 1, 2 or 5 times a power of ten, at least `value`.
    static func niceCeiling(_ value: Double) -> Double {
        guard value > 0 else { return 1 }
        let power = pow(10, floor(log10(value)))
        for step in [1.0, 2.0, 5.0, 10.0] where step * power >= value { return step * power }
        return 10 * power
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
    }
}

/// 1234567 → "1,234,567".
func formatCount(_ value: Double) -> String {
    let digits = String(Int(value.rounded()))
    var out = ""
    for (index, character) in digits.reversed().enumerated() {
        if index > 0, index % 3 == 0, character != "-" { out.append(",") }
        out.append(character)
    }
    return String(out.reversed())
}

func printSummary(_ result: RunResult) {
    let latency = result.latencyMilliseconds
    let rows: [(String, String)] = [
        ("mode", result.mode + (result.mode == "raw-batches" ? " (broker alone: pre-built batches, not the producer API)" : "")),
        ("connections", String(result.config.connections)),
        ("events (measured)", formatCount(Double(result.events))
            + (result.measuredSeconds.map { String(format: " in %.3f s", $0) } ?? "")),
        ("events/s", formatCount(result.eventsPerSecond)),
        ("MB/s (event bytes)", String(format: "%.1f", result.megabytesPerSecond)),
        ("latency p50 / p90 ms", String(format: "%.3f / %.3f", latency.p50, latency.p90)),
        ("latency p99 / p99.9 ms", String(format: "%.3f / %.3f", latency.p99, latency.p999)),
        ("latency max ms", String(format: "%.3f", latency.max)),
        ("errors", String(result.errors) + (result.firstError.map { " (first: \($0))" } ?? "")),
    ]
    let width = rows.map(\.0.count).max() ?? 0
    print(String(repeating: "-", count: 60))
    for (name, value) in rows {
        print(name.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + value)
    }
    print(String(repeating: "-", count: 60))
}

/// Prints a progress line every second and keeps the samples for the result and the plot.
final class ProgressReporter: Sendable {
    private let recorder: Recorder
    private let startNanoseconds: UInt64
    private let warmupSeconds: Double
    private let totalSeconds: Double
    private let isTerminal: Bool
    private let quiet: Bool
    private let state = Mutex<(stop: Bool, samples: [IntervalSample])>((false, []))
    private let done = DispatchSemaphore(value: 0)

    init(recorder: Recorder, startNanoseconds: UInt64, warmupSeconds: Double, totalSeconds: Double, quiet: Bool) {
        self.recorder = recorder
        self.startNanoseconds = startNanoseconds
        self.warmupSeconds = warmupSeconds
        self.totalSeconds = totalSeconds
        self.isTerminal = isatty(STDOUT_FILENO) == 1
        self.quiet = quiet
    }

    func start() {
        let thread = Thread { [self] in
            var tick = 1
            var last = startNanoseconds
            while !state.withLock({ $0.stop }) {
                let deadline = startNanoseconds + UInt64(tick) * 1_000_000_000
                while monotonicNanoseconds() < deadline, !state.withLock({ $0.stop }) {
                    sleep(untilNanoseconds: min(deadline, monotonicNanoseconds() + 50_000_000))
                }
                let now = monotonicNanoseconds()
                let sample = recorder.takeInterval(second: Double(now - startNanoseconds) / 1e9,
                                                   seconds: max(Double(now - last) / 1e9, 0.001))
                last = now
                tick += 1
                state.withLock { $0.samples.append(sample) }
                if !quiet { show(sample) }
            }
            if isTerminal, !quiet { print("") }
            done.signal()
        }
        thread.start()
    }

    /// Stops the reporter (after its current tick) and returns the samples.
    func stop() -> [IntervalSample] {
        state.withLock { $0.stop = true }
        done.wait()
        return state.withLock { $0.samples }
    }

    private func show(_ sample: IntervalSample) {
        let phase = sample.second <= warmupSeconds ? "warm-up" : (sample.second <= totalSeconds ? "measure" : "drain")
        let numbers = String(format: "%@ ev/s  %6.1f MB/s  p50 %7.2f ms  p99 %7.2f ms  in flight %@  errors %d",
                             formatCount(sample.eventsPerSecond), sample.megabytesPerSecond, sample.p50Milliseconds,
                             sample.p99Milliseconds, formatCount(Double(sample.inflight)), sample.errors)
        if isTerminal {
            let barWidth = 20
            let filled = min(Int(sample.second / max(totalSeconds, 0.001) * Double(barWidth)), barWidth)
            let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: barWidth - filled)
            print("\r\u{1B}[2K[\(bar)] \(String(format: "%3.0f", sample.second))s \(phase)  \(numbers)", terminator: "")
            fflush(nil)
        } else {
            print(String(format: "%5.1fs %@  ", sample.second, phase) + numbers)
            fflush(nil)
        }
    }
}
