import Foundation

/// The stages of a durable produce inside the broker, in the order a batch passes them.
///
/// Per produce request (the connection handler): `frameToAccepted`, `acceptedToAnswered`,
/// `answeredToWritten` and their sum `frameToWritten`. Per batch (the write-ahead batcher), the
/// parts of `acceptedToAnswered`: `acceptedToFlushStarted` (waiting in the filling buffer while
/// the previous flush commits), `flushStartedToCopySent` (the writer's queue, BEGIN and the COPY),
/// `copySentToCommitted` (COMMIT: the WAL flush) and `committedToAnswered` (the tail cache fed,
/// the flush's answers handed over and the next flush submitted: no I/O, so its time is CPU). What `acceptedToAnswered` has beyond the batcher's stages is the hop from the
/// writer thread back to the connection's event loop.
public enum IngestStage: String, CaseIterable, Hashable, Sendable {
    case frameToAccepted = "frame_to_accepted"
    case acceptedToFlushStarted = "accepted_to_flush_started"
    case flushStartedToCopySent = "flush_started_to_copy_sent"
    case copySentToCommitted = "copy_sent_to_committed"
    case committedToAnswered = "committed_to_answered"
    case acceptedToAnswered = "accepted_to_answered"
    case answeredToWritten = "answered_to_written"
    case frameToWritten = "frame_to_written"
}

/// Fixed-bucket histograms of the ingest stages over a window (the broker logs one per second at
/// debug level). Bounded: `IngestStage.allCases.count × bucketUpperBoundsMicroseconds.count`
/// counters, whatever the load. Pure value: durations are passed in.
public struct IngestStageLatencies: Sendable {
    /// Upper bounds of the buckets in µs (the last one catches everything longer). The same bounds
    /// as the `eventflow_ingest_stage_seconds` Prometheus histogram, fine where the targets are
    /// (1–25 ms).
    public static let bucketUpperBoundsMicroseconds: [UInt64] = [
        50, 100, 250, 500, 750, 1_000, 1_500, 2_000, 3_000, 4_000, 5_000, 6_000, 8_000, 10_000, 12_500, 15_000,
        20_000, 25_000, 30_000, 40_000, 50_000, 75_000, 100_000, 150_000, 200_000, 300_000, 500_000, 750_000,
        1_000_000, 2_000_000, 5_000_000, 10_000_000, 30_000_000, UInt64.max,
    ]

    private var counts: [[UInt64]]
    private var maxima: [UInt64]

    public init() {
        counts = Array(repeating: Array(repeating: 0, count: Self.bucketUpperBoundsMicroseconds.count),
                       count: IngestStage.allCases.count)
        maxima = Array(repeating: 0, count: IngestStage.allCases.count)
    }

    private static func index(of stage: IngestStage) -> Int {
        IngestStage.allCases.firstIndex(of: stage) ?? 0
    }

    public mutating func record(_ stage: IngestStage, nanoseconds: UInt64, count: UInt64 = 1) {
        let micros = nanoseconds / 1_000
        let row = Self.index(of: stage)
        let bucket = Self.bucketUpperBoundsMicroseconds.firstIndex { micros <= $0 } ?? Self.bucketUpperBoundsMicroseconds.count - 1
        counts[row][bucket] &+= count
        maxima[row] = max(maxima[row], micros)
    }

    public func count(_ stage: IngestStage) -> UInt64 {
        counts[Self.index(of: stage)].reduce(0, &+)
    }

    /// The upper bound (µs) of the bucket holding the `percentile`-th value, capped at the largest
    /// value seen; nil when nothing was recorded.
    public func percentileMicroseconds(_ stage: IngestStage, _ percentile: Double) -> UInt64? {
        let row = Self.index(of: stage)
        let total = counts[row].reduce(0, &+)
        guard total > 0 else { return nil }
        let rank = max(UInt64((Double(total) * percentile / 100).rounded(.up)), 1)
        var seen: UInt64 = 0
        for (bucket, count) in counts[row].enumerated() {
            seen &+= count
            if seen >= rank { return min(Self.bucketUpperBoundsMicroseconds[bucket], maxima[row]) }
        }
        return maxima[row]
    }

    public func maxMicroseconds(_ stage: IngestStage) -> UInt64 { maxima[Self.index(of: stage)] }

    public var isEmpty: Bool { IngestStage.allCases.allSatisfy { count($0) == 0 } }

    /// One line per stage that saw values: count, p50, p99 and max in ms (log metadata).
    public func summary() -> [String: String] {
        var lines: [String: String] = [:]
        for stage in IngestStage.allCases where count(stage) > 0 {
            func ms(_ micros: UInt64?) -> String {
                let value = Double(micros ?? 0) / 1_000
                return value < 10 ? String(format: "%.2f", value) : String(format: "%.1f", value)
            }
            lines[stage.rawValue] = "n=\(count(stage)) p50=\(ms(percentileMicroseconds(stage, 50)))"
                + " p99=\(ms(percentileMicroseconds(stage, 99))) max=\(ms(maxMicroseconds(stage)))ms"
        }
        return lines
    }
}
