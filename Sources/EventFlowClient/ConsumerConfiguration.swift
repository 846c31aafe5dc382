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

    /// Which partitions the consumer reads. Assign mode only: no group, no committed offsets.
    /// (The consumer-group mode arrives as its own case with the consumer groups.)
    public enum Assignment: Sendable {
        /// These partitions, each from its start.
        case partitions([(stream: String, partition: Int32, start: StartOffset)])
        /// Every partition of each stream, as Metadata lists them when the consumer starts.
        case streams([(stream: String, start: StartOffset)])
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

    private static func isValid(_ start: StartOffset) -> Bool {
        switch start {
        case .beginning, .end: true
        case .offset(let value), .timestamp(let value), .beforeEnd(let value): value >= 0
        }
    }
}
