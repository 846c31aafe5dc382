import CoreMetrics
import EventFlowProtocol
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import Prometheus

/// The broker's metrics, recorded through swift-metrics into the broker's own Prometheus registry
/// and served as Prometheus text at `/metrics` (`HTTPEndpoint`). Counters and histograms move where
/// things happen; gauges of the current state (connections, batcher memory, cache bytes, consumer lag)
/// are set when a scrape asks (`BrokerMetrics.State`).
///
/// Each broker has its own registry, so brokers in one process (the test suite) do not mix figures.
public final class BrokerMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    private let factory: PrometheusMetricsFactory

    let connectionsOpened: CoreMetrics.Counter
    let connectionsRefused: CoreMetrics.Counter
    private let requests: [EventFlowProtocol.APIKey: CoreMetrics.Counter]
    private let requestDurations: [EventFlowProtocol.APIKey: CoreMetrics.Timer]
    let flushes: CoreMetrics.Counter
    let flushFailures: CoreMetrics.Counter
    let flushedBatches: CoreMetrics.Counter
    let flushedRecords: CoreMetrics.Counter
    let flushedBytes: CoreMetrics.Counter
    let flushDuration: CoreMetrics.Timer
    let fetchesFromCache: CoreMetrics.Counter
    let fetchesFromPostgres: CoreMetrics.Counter
    let retentionLogStartMoves: CoreMetrics.Counter
    let retentionDaysDropped: CoreMetrics.Counter
    let analyticsRows: CoreMetrics.Counter
    let analyticsDeadLetters: CoreMetrics.Counter
    let analyticsStepFailures: CoreMetrics.Counter
    private let ingestStages: [IngestStage: CoreMetrics.Timer]
    /// The stages since the last `takeIngestStageWindow()` (the broker's once-a-second debug log).
    private let ingestStageWindow = NIOLockedValueBox(IngestStageLatencies())
    /// The consumer-lag series of the last scrape, so series of groups gone since are removed.
    private let lagSeries = NIOLockedValueBox<[LagKey: CoreMetrics.Gauge]>([:])

    /// Bound on the consumer-lag series one scrape exports (group × stream × partition).
    public static let lagSeriesMax = 10_000

    /// Histogram buckets of request and flush durations: 0.5 ms to 30 s.
    static let durationBuckets: [Duration] = [
        .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500),
        .seconds(5), .seconds(10), .seconds(30),
    ]

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = Self.durationBuckets
        factory.durationHistogramBuckets[Self.ingestStageLabel] = IngestStageLatencies.bucketUpperBoundsMicroseconds
            .dropLast().map { .microseconds(Int64($0)) }
        self.factory = factory
        connectionsOpened = CoreMetrics.Counter(label: "eventflow_connections_opened_total", factory: factory)
        connectionsRefused = CoreMetrics.Counter(label: "eventflow_connections_refused_total", factory: factory)
        var requests: [EventFlowProtocol.APIKey: CoreMetrics.Counter] = [:]
        var durations: [EventFlowProtocol.APIKey: CoreMetrics.Timer] = [:]
        for key in SupportedAPIVersions.ranges.keys {  // the APIs served: others close the connection
            requests[key] = CoreMetrics.Counter(label: "eventflow_requests_total", dimensions: [("api", "\(key)")], factory: factory)
            durations[key] = CoreMetrics.Timer(label: "eventflow_request_duration_seconds", dimensions: [("api", "\(key)")], factory: factory)
        }
        self.requests = requests
        self.requestDurations = durations
        flushes = CoreMetrics.Counter(label: "eventflow_flushes_total", factory: factory)
        flushFailures = CoreMetrics.Counter(label: "eventflow_flush_failures_total", factory: factory)
        flushedBatches = CoreMetrics.Counter(label: "eventflow_flushed_batches_total", factory: factory)
        flushedRecords = CoreMetrics.Counter(label: "eventflow_flushed_records_total", factory: factory)
        flushedBytes = CoreMetrics.Counter(label: "eventflow_flushed_bytes_total", factory: factory)
        flushDuration = CoreMetrics.Timer(label: "eventflow_flush_duration_seconds", factory: factory)
        fetchesFromCache = CoreMetrics.Counter(label: "eventflow_fetch_reads_total", dimensions: [("source", "cache")], factory: factory)
        fetchesFromPostgres = CoreMetrics.Counter(label: "eventflow_fetch_reads_total", dimensions: [("source", "postgres")], factory: factory)
        retentionLogStartMoves = CoreMetrics.Counter(label: "eventflow_retention_log_start_moves_total", factory: factory)
        retentionDaysDropped = CoreMetrics.Counter(label: "eventflow_retention_days_dropped_total", factory: factory)
        analyticsRows = CoreMetrics.Counter(label: "eventflow_analytics_rows_total", factory: factory)
        analyticsDeadLetters = CoreMetrics.Counter(label: "eventflow_analytics_dead_letters_total", factory: factory)
        analyticsStepFailures = CoreMetrics.Counter(label: "eventflow_analytics_step_failures_total", factory: factory)
        var stages: [IngestStage: CoreMetrics.Timer] = [:]
        for stage in IngestStage.allCases {
            stages[stage] = CoreMetrics.Timer(label: Self.ingestStageLabel, dimensions: [("stage", stage.rawValue)], factory: factory)
        }
        ingestStages = stages
    }

    // MARK: Ingest stages

    static let ingestStageLabel = "eventflow_ingest_stage_seconds"

    /// A produce spent `nanoseconds` in `stage` (see `IngestStage`); `count`: batches that did.
    func ingestStage(_ stage: IngestStage, nanoseconds: UInt64, count: Int = 1) {
        let timer = ingestStages[stage]
        for _ in 0..<max(count, 1) { timer?.recordNanoseconds(Int64(clamping: nanoseconds)) }
        ingestStageWindow.withLockedValue { $0.record(stage, nanoseconds: nanoseconds, count: UInt64(max(count, 1))) }
    }

    /// The stages recorded since the last call, and a fresh window.
    func takeIngestStageWindow() -> IngestStageLatencies {
        ingestStageWindow.withLockedValue { window in
            defer { window = IngestStageLatencies() }
            return window
        }
    }

    // MARK: Requests

    func requestReceived(_ api: EventFlowProtocol.APIKey) {
        requests[api]?.increment()
    }

    /// The time from a request's arrival to its answer being handed to the connection.
    func requestAnswered(_ api: EventFlowProtocol.APIKey, since start: NIODeadlineNanoseconds) {
        requestDurations[api]?.recordNanoseconds(Int64(clamping: Self.now() &- start))
    }

    /// Error codes a response carries (per partition, per group...), each counted under its API.
    func requestErrors(_ api: EventFlowProtocol.APIKey, _ codes: some Sequence<ErrorCode>) {
        for code in codes where code != .noError {
            CoreMetrics.Counter(label: "eventflow_request_errors_total", dimensions: [("api", "\(api)"), ("error", code.name)],
                    factory: factory).increment()
        }
    }

    /// A connection closed because of what it sent or what its request met (undecodable, refused, failed).
    func connectionClosed(reason: String) {
        CoreMetrics.Counter(label: "eventflow_connections_closed_total", dimensions: [("reason", reason)], factory: factory).increment()
    }

    // MARK: Flushes

    func flushCommitted(_ flush: GroupCommit.Flush, since start: NIODeadlineNanoseconds) {
        flushes.increment()
        flushedBatches.increment(by: flush.batches.count)
        flushedRecords.increment(by: flush.batches.reduce(0) { $0 + Int($1.recordCount) })
        flushedBytes.increment(by: flush.byteCount)
        flushDuration.recordNanoseconds(Int64(clamping: Self.now() &- start))
    }

    typealias NIODeadlineNanoseconds = UInt64

    static func now() -> NIODeadlineNanoseconds { NIODeadline.now().uptimeNanoseconds }

    // MARK: Scrapes

    /// What a scrape reads from the broker's state.
    struct State {
        var connectionsOpen: Int
        var batcherMemoryBytes: Int
        var batcherHeldBytes: Int
        var batcherReadingPaused: Bool
        var requestBytesCharged: Int
        var unauthenticatedBytesCharged: Int
        var tailCacheBytes: Int
        var groupsActive: Int
        var lags: [Lag]
    }

    struct Lag {
        var organization: String
        var stream: String
        var group: String
        var partition: Int32
        /// The partition's committed end (high watermark) minus the group's committed offset.
        var messages: Int64
    }

    private struct LagKey: Hashable {
        var organization: String
        var stream: String
        var group: String
        var partition: Int32
    }

    /// Sets the gauges from `state` and returns the registry's Prometheus text.
    func scrape(_ state: State) -> [UInt8] {
        gauge("eventflow_connections_open", state.connectionsOpen)
        gauge("eventflow_batcher_memory_bytes", state.batcherMemoryBytes)
        gauge("eventflow_batcher_held_bytes", state.batcherHeldBytes)
        gauge("eventflow_batcher_reading_paused", state.batcherReadingPaused ? 1 : 0)
        gauge("eventflow_request_bytes_charged", state.requestBytesCharged)
        gauge("eventflow_unauthenticated_bytes_charged", state.unauthenticatedBytesCharged)
        gauge("eventflow_tail_cache_bytes", state.tailCacheBytes)
        gauge("eventflow_groups_active", state.groupsActive)
        lagSeries.withLockedValue { series in
            var current: [LagKey: CoreMetrics.Gauge] = [:]
            for lag in state.lags.prefix(Self.lagSeriesMax) {
                let key = LagKey(organization: lag.organization, stream: lag.stream, group: lag.group, partition: lag.partition)
                let gauge = series[key] ?? CoreMetrics.Gauge(label: "eventflow_consumer_group_lag", dimensions: [
                    ("organization", lag.organization), ("stream", lag.stream), ("group", lag.group), ("partition", "\(lag.partition)"),
                ], factory: factory)
                gauge.record(lag.messages)
                current[key] = gauge
            }
            for (key, gauge) in series where current[key] == nil { gauge.destroy() }
            series = current
        }
        var bytes: [UInt8] = []
        registry.emit(into: &bytes)
        return bytes
    }

    private func gauge(_ label: String, _ value: Int) {
        CoreMetrics.Gauge(label: label, factory: factory).record(value)
    }
}
