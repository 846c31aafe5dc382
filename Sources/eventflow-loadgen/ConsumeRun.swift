import ArgumentParser
@_spi(Benchmarks) import EventFlowClient
import EventFlowProtocol
import Foundation
import Logging
import NIOCore
import Synchronization

/// `eventflow-loadgen consume`: reads a stream through the public `EventFlowConsumer`, as an
/// application would, and measures events/s; with `--latency`, produce → consume latency from the
/// send time a `produce --stamp-send-time` run (another process, same machine) wrote into each event.
///
/// A run ends at the end of `--duration` (after `--warmup`), or sooner once `--count` records were
/// read or, with `--until-end`, every partition was read up to the end it had at the start; then the
/// measured window ends at the last record.
///
/// With `--group ID` each consumer is a member of consumer group ID (the broker shares the partitions
/// out), and the JSON gains a `group` object: the member's assignments with their times and the first
/// record of each assigned partition after them, and its records read over time (`GroupLog`), which
/// `scripts/bench_report.py` turns into the group's rate and the rebalance time.
struct ConsumeRun: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "consume",
        abstract: "Read a stream through the EventFlow consumer: events/s, and with --latency produce-to-consume latency.")

    enum ReadMode: String, ExpressibleByArgument, CaseIterable, Sendable {
        /// Every `ConsumerMessage`, as an application iterates `messages`.
        case messages
        /// The consumer's `@_spi(Benchmarks)` hook: every record read and checked, no message built.
        case skip
    }

    @OptionGroup var broker: BrokerOptions

    @Option(help: "Stream to read (every partition).")
    var stream = "loadgen"

    @Option(help: "Where each partition starts: beginning, end, OFFSET, or -N (N records before its end).")
    var from = "end"

    @Option(help: "Stop after this many records over all partitions (0: no limit).")
    var count = 0

    @Flag(help: "Stop once every partition was read up to the end it had at the start.")
    var untilEnd = false

    @Option(help: "Consumers, each with its own connection; the stream's partitions are dealt out among them.")
    var connections = 1

    @Option(help: "Longest measured time after the warm-up (30, 30s, 500ms, 2m); --count and --until-end end a run sooner.")
    var duration = Seconds(30)

    @Option(help: "Time before measuring starts; its records are not counted.")
    var warmup = Seconds(0)

    @Option(help: "Bytes of each event's value: MB/s is events x this; reading messages, a value of another size is an error.")
    var messageSize = 100

    @Flag(help: "Produce-to-consume latency from the send time `produce --stamp-send-time` wrote into each event (needs --read messages).")
    var latency = false

    @Option(help: "messages: every ConsumerMessage, as an application iterates them; skip: records read and checked by the consumer's benchmark hook, no message built.")
    var read = ReadMode.messages

    @Option(help: "Fetched bytes the consumer holds ahead of the reader (default: the consumer's, 64 MiB).")
    var prefetchBytes: Int?

    @Option(help: "maxBytes of one Fetch (default: the consumer's, 16 MiB).")
    var fetchBytes: Int?

    @Option(help: "partitionMaxBytes of one Fetch (default: the consumer's, 8 MiB).")
    var partitionFetchBytes: Int?

    @Option(help: "How long the broker may park a fetch at the tail, in milliseconds (default: the consumer's, 500).")
    var fetchMaxWaitMs: Int?

    @Option(help: "Read as a member of this consumer group (each of --connections is one member); --from applies to partitions the group has no committed offset for.")
    var group: String?

    @Option(help: "Group mode: heartbeat interval in milliseconds (default: the consumer's, 3000); members learn of a rebalance from their next heartbeat.")
    var heartbeatMs: Int?

    @Option(help: "Group mode: session timeout in milliseconds (default: the consumer's, 45000).")
    var sessionTimeoutMs: Int?

    @Option(help: "Write the result as JSON to this file.")
    var json: String?

    @Option(help: "Write the HdrHistogram percentile distribution (milliseconds) to this file (with --latency).")
    var hgrm: String?

    @Option(help: "Write an SVG plot of throughput (and p99 latency) over time to this file.")
    var plot: String?

    @Flag(help: "No per-second progress lines.")
    var quiet = false

    /// Records read between two reports to the recorder (its lock is shared with the progress line).
    static let recordsPerReport = 1_024
    static let connectionsMax = 64

    enum Start: Equatable {
        case beginning, end, offset(Int64), beforeEnd(Int64)

        init?(_ text: String) {
            switch text {
            case "beginning": self = .beginning
            case "end": self = .end
            default:
                if text.hasPrefix("-"), let count = Int64(text.dropFirst()), count >= 0 { self = .beforeEnd(count) }
                else if let offset = Int64(text), offset >= 0 { self = .offset(offset) }
                else { return nil }
            }
        }

        var startOffset: ConsumerConfiguration.StartOffset {
            switch self {
            case .beginning: .beginning
            case .end: .end
            case .offset(let offset): .offset(offset)
            case .beforeEnd(let count): .beforeEnd(count)
            }
        }
    }

    mutating func validate() throws {
        guard Start(from) != nil else { throw ValidationError("--from must be beginning, end, OFFSET or -N, got '\(from)'") }
        guard count >= 0 else { throw ValidationError("--count must not be negative") }
        guard (1...Self.connectionsMax).contains(connections) else {
            throw ValidationError("--connections must be 1 to \(Self.connectionsMax), got \(connections)")
        }
        guard duration.value > 0 else { throw ValidationError("--duration must be positive, got \(duration)") }
        guard warmup.value >= 0 else { throw ValidationError("--warmup must not be negative, got \(warmup)") }
        guard (1...LoadOptions.messageBytesMax).contains(messageSize) else {
            throw ValidationError("--message-size must be 1 to \(LoadOptions.messageBytesMax) bytes")
        }
        if latency, read == .skip { throw ValidationError("--latency reads each event's send time: use --read messages") }
        for (name, value) in [("--prefetch-bytes", prefetchBytes), ("--fetch-bytes", fetchBytes),
                              ("--partition-fetch-bytes", partitionFetchBytes)] {
            if let value, value < 1 { throw ValidationError("\(name) must be positive") }
        }
        if let group {
            guard !group.isEmpty else { throw ValidationError("--group must not be empty") }
            // The rebalance measurement needs each record's partition, which `skip` does not give.
            guard read == .messages else { throw ValidationError("--group reads each record's partition: use --read messages") }
            // A member's partitions change during the run: "the end it had at the start" is not defined.
            guard !untilEnd else { throw ValidationError("--until-end is not available with --group") }
        } else if heartbeatMs != nil || sessionTimeoutMs != nil {
            throw ValidationError("--heartbeat-ms and --session-timeout-ms need --group")
        }
        for (name, value) in [("--heartbeat-ms", heartbeatMs), ("--session-timeout-ms", sessionTimeoutMs)] {
            if let value, value < 1 { throw ValidationError("\(name) must be positive") }
        }
        if let fetchMaxWaitMs, fetchMaxWaitMs < 0 { throw ValidationError("--fetch-max-wait-ms must not be negative") }
        for path in [json, hgrm, plot].compactMap({ $0 }) {
            let folder = URL(fileURLWithPath: path).deletingLastPathComponent().path
            guard FileManager.default.isWritableFile(atPath: folder) else {
                throw ValidationError("cannot write \(path): folder \(folder) is not writable")
            }
        }
    }

    func run() async throws {
        let resolved = try broker.resolve(environment: ProcessInfo.processInfo.environment)
        var logger = Logger(label: "eventflow.loadgen")
        logger.logLevel = .critical
        let partitionCount = try await Self.partitionCount(of: stream, broker: resolved, logger: logger)
        let start = Start(from) ?? .end

        var consumers: [EventFlowConsumer] = []
        for index in 0 ..< min(connections, Int(partitionCount)) {
            let mine = stride(from: Int32(index), to: partitionCount, by: connections).map {
                (stream: stream, partition: $0, start: start.startOffset)
            }
            let assignment: ConsumerConfiguration.Assignment =
                if let group { .group(id: group, streams: [stream]) } else { .partitions(mine) }
            var configuration = ConsumerConfiguration(assignment: assignment, brokers: resolved.brokers,
                                                      credentials: resolved.credentials, security: resolved.security)
            if group != nil {
                // A new group has no committed offsets: its partitions start where --from says.
                configuration.group.startWithoutCommittedOffset = start.startOffset
                if let heartbeatMs { configuration.group.heartbeatIntervalMilliseconds = heartbeatMs }
                if let sessionTimeoutMs { configuration.group.sessionTimeoutMilliseconds = sessionTimeoutMs }
            }
            configuration.clientID = "eventflow-loadgen"
            configuration.finishAtHighWatermark = untilEnd
            // A benchmark must not skip what it was asked to read.
            configuration.autoOffsetReset = .error
            if let prefetchBytes { configuration.prefetchBytesMax = prefetchBytes }
            if let fetchBytes { configuration.fetchBytesMax = fetchBytes }
            if let partitionFetchBytes { configuration.partitionFetchBytesMax = partitionFetchBytes }
            if let fetchMaxWaitMs { configuration.fetchMaxWaitMilliseconds = fetchMaxWaitMs }
            do {
                consumers.append(try EventFlowConsumer(configuration: configuration, logger: logger))
            } catch {
                throw LoadgenFailure("\(error)")
            }
        }
        guard let settings = consumers.first?.configuration else { throw LoadgenFailure("stream \(stream) has no partition") }

        let startNanoseconds = monotonicNanoseconds()
        let measureStart = startNanoseconds + warmup.nanoseconds
        let measureEnd = measureStart + duration.nanoseconds
        let recorder = Recorder(measureStartNanoseconds: measureStart, measureEndNanoseconds: measureEnd, eventBytes: messageSize)
        let reporter = ProgressReporter(recorder: recorder, startNanoseconds: startNanoseconds, warmupSeconds: warmup.value,
                                        totalSeconds: warmup.value + duration.value, quiet: quiet)
        let progress = ReadProgress()
        let groupLog = group != nil ? GroupLog(startNanoseconds: startNanoseconds) : nil
        let reader = RecordCounter(read: read, latency: latency, messageSize: messageSize, countMax: count,
                                   partitionCount: Int(partitionCount), recorder: recorder, progress: progress, groupLog: groupLog)
        let running = consumers
        reporter.start()
        await withTaskGroup(of: Void.self) { group in
            for consumer in running {
                group.addTask {
                    do {
                        try await consumer.run()
                    } catch {
                        recorder.fatal("consumer: \(error)")
                    }
                }
                if let groupLog {
                    // Ends when run() does.
                    group.addTask {
                        for await event in consumer.events { groupLog.note(event, atNanoseconds: monotonicNanoseconds()) }
                    }
                }
            }
            let counting = Task {
                guard let groupLog else { return }
                while !Task.isCancelled {
                    groupLog.count(progress.records, atNanoseconds: monotonicNanoseconds())
                    try? await Task.sleep(for: .nanoseconds(Int64(GroupLog.countIntervalNanoseconds)))
                }
            }
            defer { counting.cancel() }
            await withTaskGroup(of: Void.self) { readers in
                for consumer in running {
                    readers.addTask {
                        await reader.read(consumer)
                        // --count reached: the other consumers stop too.
                        if progress.countReached(count) { for other in running { other.triggerGracefulShutdown() } }
                    }
                }
                let timer = Task {
                    let now = monotonicNanoseconds()
                    if measureEnd > now { try? await Task.sleep(for: .nanoseconds(Int64(measureEnd - now))) }
                    if Task.isCancelled { return }
                    progress.timerFired()
                    for consumer in running { consumer.triggerGracefulShutdown() }
                }
                await readers.waitForAll()
                timer.cancel()
            }
            for consumer in running { consumer.triggerGracefulShutdown() }
        }
        let samples = reporter.stop()

        let (first, last, endedByTimer) = progress.snapshot()
        var seconds = duration.value
        var measuredSeconds: Double?
        if !endedByTimer, first > 0 {
            guard last > measureStart else { throw LoadgenFailure("every record was read during the warm-up; shorten --warmup") }
            seconds = Double(min(last, measureEnd) - measureStart) / 1e9
            measuredSeconds = seconds
        }
        var configuration = RunConfiguration(connections: consumers.count, rate: 0, durationSeconds: duration.value,
                                             warmupSeconds: warmup.value, messageSize: messageSize)
        configuration.stream = stream
        configuration.partitions = Int(partitionCount)
        configuration.brokers = resolved.brokers.map(\.description).joined(separator: ",")
        configuration.tls = !broker.plaintext
        configuration.from = from
        configuration.countMax = count > 0 ? count : nil
        configuration.untilEnd = untilEnd
        configuration.read = read.rawValue
        configuration.latencyFromSendTime = latency
        configuration.prefetchBytes = settings.prefetchBytesMax
        configuration.fetchBytes = settings.fetchBytesMax
        configuration.partitionFetchBytes = settings.partitionFetchBytesMax
        configuration.fetchMaxWaitMilliseconds = settings.fetchMaxWaitMilliseconds
        try RunTiming.finish(mode: "consume", recorder: recorder, samples: samples, seconds: max(seconds, 1e-9),
                             messageSize: messageSize, outputs: OutputFiles(json: json, hgrm: hgrm, plot: plot),
                             configuration: configuration, measuredSeconds: measuredSeconds,
                             firstRecordMilliseconds: first > 0 ? Double(first - startNanoseconds) / 1e6 : nil,
                             group: group.flatMap { groupLog?.result(groupId: $0, settings: settings.group) },
                             nothingDone: "no record was read")
    }

    /// Connects once (so an unreachable broker or a wrong key is one clear error before the run)
    /// and asks Metadata how many partitions the stream has.
    static func partitionCount(of stream: String, broker: BrokerTarget, logger: Logger) async throws -> Int32 {
        guard let address = broker.brokers.first else { throw LoadgenFailure("no broker address") }
        var probe = ProducerConfiguration(brokers: broker.brokers, credentials: broker.credentials, security: broker.security)
        probe.clientID = "eventflow-loadgen"
        let connection: BrokerConnection
        do {
            connection = try await BrokerConnection.connect(to: address, configuration: probe, logger: logger)
        } catch {
            throw LoadgenFailure("cannot use broker \(address): \(error)")
        }
        defer { connection.close() }
        let metadata: MetadataResponse
        do {
            metadata = try await connection.request(MetadataRequest(topics: [stream], allowAutoTopicCreation: false))
        } catch {
            throw LoadgenFailure("Metadata of \(stream): \(error)")
        }
        guard let topic = metadata.topics.first(where: { $0.name == stream }), topic.errorCode == .noError else {
            throw LoadgenFailure("unknown stream \(stream)")
        }
        return Int32(clamping: topic.partitions.count)
    }
}

/// The first and last record times of a run, the records read, and how it ended; shared by the readers.
final class ReadProgress: Sendable {
    private struct State {
        var firstNanoseconds: UInt64 = 0
        var lastNanoseconds: UInt64 = 0
        var records = 0
        var endedByTimer = false
    }

    private let state = Mutex(State())

    /// Adds `count` records read by `atNanoseconds`; returns the total so far.
    func note(_ count: Int, atNanoseconds: UInt64) -> Int {
        state.withLock { state in
            if state.firstNanoseconds == 0 { state.firstNanoseconds = atNanoseconds }
            state.lastNanoseconds = max(state.lastNanoseconds, atNanoseconds)
            state.records += count
            return state.records
        }
    }

    func countReached(_ countMax: Int) -> Bool {
        countMax > 0 && state.withLock { $0.records >= countMax }
    }

    var records: Int { state.withLock { $0.records } }

    func timerFired() { state.withLock { $0.endedByTimer = true } }

    func snapshot() -> (first: UInt64, last: UInt64, endedByTimer: Bool) {
        state.withLock { ($0.firstNanoseconds, $0.lastNanoseconds, $0.endedByTimer) }
    }
}

/// One consumer's reading loop: counts records (and their latency) into the recorder in chunks.
struct RecordCounter: Sendable {
    let read: ConsumeRun.ReadMode
    let latency: Bool
    let messageSize: Int
    let countMax: Int
    let partitionCount: Int
    let recorder: Recorder
    let progress: ReadProgress
    /// Group mode: where the first record of each partition after an assignment is noted.
    let groupLog: GroupLog?

    func read(_ consumer: EventFlowConsumer) async {
        var iterator = consumer.messages.makeAsyncIterator()
        do throws(ConsumerError) {
            switch read {
            case .skip: try await skipRecords(&iterator)
            case .messages: try await readMessages(&iterator)
            }
        } catch {
            recorder.fatal("consumer: \(error)")
        }
    }

    /// How many more records this reader may take before --count is reached (everything without --count).
    private func allowance(total: Int) -> Int {
        countMax > 0 ? max(countMax - total, 0) : .max
    }

    private func skipRecords(_ iterator: inout ConsumerMessages.AsyncIterator) async throws(ConsumerError) {
        var total = 0
        while true {
            let limit = min(ConsumeRun.recordsPerReport, allowance(total: total))
            if limit == 0 { return }
            let read = try await iterator.skip(upTo: limit)
            if read == 0 { return }
            let now = monotonicNanoseconds()
            total = progress.note(read, atNanoseconds: now)
            recorder.received(read, atNanoseconds: now)
        }
    }

    private func readMessages(_ iterator: inout ConsumerMessages.AsyncIterator) async throws(ConsumerError) {
        var total = 0
        var pending = 0
        var left = allowance(total: 0)
        var sent: [UInt64] = []
        var received: [UInt64] = []
        if latency {
            sent.reserveCapacity(ConsumeRun.recordsPerReport)
            received.reserveCapacity(ConsumeRun.recordsPerReport)
        }
        func report() {
            guard pending > 0 else { return }
            let now = monotonicNanoseconds()
            total = progress.note(pending, atNanoseconds: now)
            if latency {
                recorder.received(sentNanoseconds: sent, receivedNanoseconds: received)
                sent.removeAll(keepingCapacity: true)
                received.removeAll(keepingCapacity: true)
            } else {
                recorder.received(pending, atNanoseconds: now)
            }
            pending = 0
            left = allowance(total: total)
        }
        defer { report() }
        // Group mode: the assignment generation each partition's last record was noted for.
        var seenGeneration = [Int](repeating: 0, count: groupLog == nil ? 0 : partitionCount)
        while left > 0, let message = try await iterator.next() {
            left -= 1
            if let groupLog {
                let generation = groupLog.generation.load(ordering: .acquiring)
                let partition = Int(message.partition)
                if seenGeneration.indices.contains(partition), seenGeneration[partition] != generation {
                    seenGeneration[partition] = generation
                    groupLog.firstRecord(partition: message.partition, generation: generation,
                                         atNanoseconds: monotonicNanoseconds())
                }
            }
            let bytes = message.value?.readableBytes ?? -1
            guard bytes == messageSize else {
                recorder.failed(1, error: "\(message.stream)/\(message.partition) offset \(message.offset): "
                                + "value of \(bytes) bytes, expected \(messageSize)")
                continue
            }
            if latency {
                // The clock is read per record: a record's latency must not include the wait for the next one.
                let now = monotonicNanoseconds()
                guard let value = message.value, let stamp = SendTimeStamp.read(value) else {
                    recorder.failed(1, error: "\(message.stream)/\(message.partition) offset \(message.offset): "
                                    + "no send time in the event (produce it with --stamp-send-time)")
                    continue
                }
                sent.append(stamp)
                received.append(now)
            }
            pending += 1
            if pending == ConsumeRun.recordsPerReport { report() }
        }
    }
}
