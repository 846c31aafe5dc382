import EventFlowProtocol

/// The consumer's settings, with EventFlow's defaults.
public struct ConsumerConfiguration: Sendable {
    /// Where a partition's reading starts.
    public enum StartOffset: Sendable, Hashable {
        /// The earliest offset still stored (ListOffsets −2).
        case beginning
        /// The high watermark when the consumer starts: only records produced from then on (ListOffsets −1).
        case end
        /// This offset; one outside the stored range is handled by `autoOffsetReset`.
        case offset(Int64)
        /// The first record at or after this time, in milliseconds since the epoch; the end when none is.
        case timestamp(Int64)
        /// This many records before the end, but not before the beginning.
        case beforeEnd(Int64)
    }

    /// Which partitions the consumer reads.
    public enum Assignment: Sendable {
        /// These partitions, each from its start (assign mode: no group, no committed offsets).
        case partitions([(stream: String, partition: Int32, start: StartOffset)])
        /// Every partition of each stream, as Metadata lists them when the consumer starts (assign mode).
        case streams([(stream: String, start: StartOffset)])
        /// Member of consumer group `id`, which shares the partitions of `streams` among its members
        /// (Kafka's classic group protocol); each partition starts at the group's committed offset.
        /// Settings in `group`.
        case group(id: String, streams: [String])
    }

    /// The group mode's settings, with the defaults of Kafka 3.x's Java consumer.
    public struct GroupSettings: Sendable {
        /// Without a heartbeat for this long the coordinator removes the member (6 s–30 min on EventFlow).
        public var sessionTimeoutMilliseconds: Int = 45_000
        /// How long the coordinator waits for every member to rejoin during a rebalance (`max.poll.interval.ms`).
        public var rebalanceTimeoutMilliseconds: Int = 300_000
        /// Below a third of the session timeout, so two heartbeats may be lost before the member is.
        public var heartbeatIntervalMilliseconds: Int = 3_000
        /// Static membership (KIP-345): a member with an instance id keeps its partitions over a
        /// restart within the session timeout, and sends no LeaveGroup on shutdown.
        public var groupInstanceId: String?
        /// Offered in this order of preference; the coordinator picks one every member offers.
        /// Kafka's default is [range, cooperative-sticky]; EventFlow has no cooperative assignor.
        public var assignors: [GroupAssignor] = [.range, .roundRobin]
        /// Commit the stored offsets every `autoCommitIntervalMilliseconds`, on a revoke and on shutdown.
        public var autoCommit: Bool = true
        public var autoCommitIntervalMilliseconds: Int = 5_000
        /// Each delivered message marks its offset for the next commit (librdkafka's
        /// `enable.auto.offset.store`); when false, only `storeOffset(_:)` does.
        public var storesOffsetsOnDelivery: Bool = true
        /// Where a partition the group has no committed offset for starts; nil: by `autoOffsetReset`
        /// (`.earliest` the beginning, `.latest` the end, `.error` fails), as Kafka does.
        public var startWithoutCommittedOffset: StartOffset?
        /// Rebalance events (assigned / revoked) kept for the application; when it does not read
        /// `events`, the oldest are dropped beyond this.
        public var rebalanceEventsBufferedMax: Int = 64

        public init() {}
    }

    /// What to do when a fetch offset is outside the stored range (OFFSET_OUT_OF_RANGE), as
    /// Kafka's `auto.offset.reset`.
    public enum AutoOffsetReset: Sendable, Hashable {
        /// Go on from the earliest stored offset.
        case earliest
        /// Go on from the high watermark.
        case latest
        /// Fail: `messages` throws `ConsumerError.offsetOutOfRange`.
        case error
    }

    public var assignment: Assignment
    public var brokers: [BrokerAddress]
    /// nil: no SASL (only for brokers that do not require it).
    public var credentials: APIKeyCredentials?
    public var security: TransportSecurity
    public var clientID: String = "eventflow-swift"
    /// Used with `.group` only.
    public var group = GroupSettings()

    public var autoOffsetReset: AutoOffsetReset = .latest
    /// End `messages` (and `run()`) once every assigned partition was read up to the high
    /// watermark it had when the consumer started; records beyond it are not delivered.
    public var finishAtHighWatermark: Bool = false

    /// Fetched bytes held for the application (answers not yet read plus the answer asked for):
    /// no Fetch is sent that could take the total beyond it, so a slow reader stops the fetching.
    public var prefetchBytesMax: Int = 64 * 1024 * 1024
    /// `maxBytes` of one Fetch (the broker still returns a first batch larger than this whole).
    public var fetchBytesMax: Int = 16 * 1024 * 1024
    /// `partitionMaxBytes` of one Fetch, per partition.
    public var partitionFetchBytesMax: Int = 8 * 1024 * 1024
    /// How long the broker may park a Fetch that found less than `fetchMinBytes` (long poll).
    public var fetchMaxWaitMilliseconds: Int = 500
    public var fetchMinBytes: Int = 1
    /// The most one LZ4 batch may decompress to; a larger one fails as corrupt.
    public var batchDecompressedBytesMax: Int = 64 * 1024 * 1024

    /// Consecutive failed connects or requests before the consumer gives up.
    public var retriesMax: Int = 10
    /// First retry waits this long; each further retry doubles it, up to `retryBackoffMaxMilliseconds`.
    public var retryBackoffMilliseconds: Int = 100
    public var retryBackoffMaxMilliseconds: Int = 2_000
    /// A request (other than a Fetch's parked wait) unanswered after this long closes the connection.
    public var requestTimeoutMilliseconds: Int = 30_000
    /// The largest response frame accepted from a broker; must hold a whole Fetch answer.
    public var frameBytesMax: Int = KafkaFrameDecoder.defaultFrameBytesMax
    public var connectTimeoutMilliseconds: Int = 10_000

    public init(assignment: Assignment, brokers: [BrokerAddress], credentials: APIKeyCredentials?,
                security: TransportSecurity) {
        self.assignment = assignment
        self.brokers = brokers
        self.credentials = credentials
        self.security = security
    }

    /// The first inconsistency, if any.
    func validationError() -> String? {
        if brokers.isEmpty { return "no broker address" }
        switch assignment {
        case .partitions(let list):
            if list.isEmpty { return "no partition assigned" }
            if let bad = list.first(where: { $0.partition < 0 }) { return "partition \(bad.partition) of \(bad.stream) is negative" }
            var seen = Set<StreamPartition>()
            for entry in list where !seen.insert(StreamPartition(stream: entry.stream, partition: entry.partition)).inserted {
                return "\(entry.stream)/\(entry.partition) is assigned twice"
            }
            if let bad = list.first(where: { !Self.isValid($0.start) }) { return "start \(bad.start) of \(bad.stream)/\(bad.partition) is negative" }
        case .streams(let list):
            if list.isEmpty { return "no stream assigned" }
            if let bad = list.first(where: { !Self.isValid($0.start) }) { return "start \(bad.start) of \(bad.stream) is negative" }
        case .group(let id, let streams):
            if id.isEmpty { return "the group id is empty" }
            if streams.isEmpty { return "the group subscribes to no stream" }
            if Set(streams).count != streams.count { return "a stream is subscribed twice" }
            if let problem = group.validationError() { return problem }
            if finishAtHighWatermark { return "finishAtHighWatermark is for assign mode: a group's partitions move between members" }
        }
        if prefetchBytesMax < 1 { return "prefetchBytesMax must be positive" }
        if fetchBytesMax < 1 || partitionFetchBytesMax < 1 { return "fetchBytesMax and partitionFetchBytesMax must be positive" }
        // The answer carries up to fetchBytesMax of records plus the response's own fields.
        if fetchBytesMax > frameBytesMax - 64 * 1024 { return "fetchBytesMax must be at least 64 KiB below frameBytesMax" }
        if fetchBytesMax > Int(Int32.max) || partitionFetchBytesMax > Int(Int32.max) { return "fetch sizes must fit in 32 bits" }
        if fetchMaxWaitMilliseconds < 0 || fetchMaxWaitMilliseconds > Int(Int32.max) { return "fetchMaxWaitMilliseconds out of range" }
        if fetchMinBytes < 0 || fetchMinBytes > Int(Int32.max) { return "fetchMinBytes out of range" }
        if batchDecompressedBytesMax < 1 { return "batchDecompressedBytesMax must be positive" }
        if retriesMax < 0 { return "retriesMax must not be negative" }
        if requestTimeoutMilliseconds < 1 { return "requestTimeoutMilliseconds must be positive" }
        return nil
    }

    static func isValid(_ start: StartOffset) -> Bool {
        switch start {
        case .beginning, .end: true
        case .offset(let value), .timestamp(let value), .beforeEnd(let value): value >= 0
        }
    }
}

extension ConsumerConfiguration.GroupSettings {
    func validationError() -> String? {
        if sessionTimeoutMilliseconds < 1 || sessionTimeoutMilliseconds > Int(Int32.max) { return "sessionTimeoutMilliseconds out of range" }
        if rebalanceTimeoutMilliseconds < 1 || rebalanceTimeoutMilliseconds > Int(Int32.max) { return "rebalanceTimeoutMilliseconds out of range" }
        if heartbeatIntervalMilliseconds < 1 || heartbeatIntervalMilliseconds >= sessionTimeoutMilliseconds {
            return "heartbeatIntervalMilliseconds must be positive and below sessionTimeoutMilliseconds"
        }
        if assignors.isEmpty { return "no assignor" }
        if Set(assignors).count != assignors.count { return "an assignor is listed twice" }
        if autoCommitIntervalMilliseconds < 1 { return "autoCommitIntervalMilliseconds must be positive" }
        if let start = startWithoutCommittedOffset, !ConsumerConfiguration.isValid(start) { return "startWithoutCommittedOffset is negative" }
        if rebalanceEventsBufferedMax < 1 { return "rebalanceEventsBufferedMax must be positive" }
        if let id = groupInstanceId, id.isEmpty { return "groupInstanceId is empty" }
        return nil
    }
}
