import ArgumentParser
@_spi(Benchmarks) import EventFlowClient
import EventFlowProtocol
import Foundation
import Logging
import NIOCore
import NIOPosix

/// The headline mode: every event goes through `EventFlowProducer.send`, as an application's would.
/// `--raw-batches` instead hands pre-built batches to the connection to measure the broker alone.
struct ProducerRun: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "produce",
        abstract: "Produce JSON events through the EventFlow producer (the default subcommand).")

    @OptionGroup var broker: BrokerOptions

    @Option(help: "Stream to produce to; created when missing.")
    var stream = "loadgen"

    @Option(help: "Partitions of the stream when it is created.")
    var partitions = 8

    @Option(help: "all or -1: after commit (durable), 1: accepted in memory, 0: no answer (write --acks=-1 or --acks all).",
            transform: ProducerRun.parseAcks)
    var acks: Int16 = -1

    @Option(help: "Linger before a batch is sent, in milliseconds.")
    var lingerMs = 5

    @Flag(inversion: .prefixedNo, help: "Idempotent producer (default: on with --acks -1).")
    var idempotent: Bool?

    @Option(help: "Requests in flight per connection.")
    var inflight = 5

    @Option(help: "Unacknowledged bytes per producer before send waits (default: 64 MiB over all connections, at least two batches each).")
    var bufferBytes: Int?

    @Option(help: "Threads calling send (default: min(connections, 2)).")
    var senderThreads: Int?

    @Flag(help: "Hand pre-built batches to the connection (the broker alone; never the headline number).")
    var rawBatches = false

    @Flag(help: "Write each event's send time (monotonic ns, the intended time with --rate) into its id, for `consume --latency`.")
    var stampSendTime = false

    @OptionGroup var load: LoadOptions

    /// `all` is -1, so the durable setting can be given without `=` (a bare `-1` reads as a flag).
    static func parseAcks(_ text: String) throws -> Int16 {
        if text.lowercased() == "all" { return -1 }
        guard let value = Int16(text) else { throw ValidationError("--acks must be all, -1, 1 or 0, got '\(text)'") }
        return value
    }

    mutating func validate() throws {
        guard ProducerAcks(rawValue: acks) != nil else { throw ValidationError("--acks must be -1, 1 or 0, got \(acks)") }
        if idempotent == true, acks != -1 { throw ValidationError("--idempotent needs --acks -1") }
        guard (1...1024).contains(partitions) else { throw ValidationError("--partitions must be 1 to 1024, got \(partitions)") }
        guard lingerMs >= 0 else { throw ValidationError("--linger-ms must not be negative") }
        guard (1...1024).contains(inflight) else { throw ValidationError("--inflight must be 1 to 1024") }
        if let bufferBytes, bufferBytes < 2 * load.batchBytes {
            throw ValidationError("--buffer-bytes must be at least two batches (2 x --batch-bytes)")
        }
        if let senderThreads, !(1...64).contains(senderThreads) { throw ValidationError("--sender-threads must be 1 to 64") }
        if rawBatches, acks == 0 { throw ValidationError("--raw-batches needs answers: use --acks -1 or 1") }
        if rawBatches, idempotent == true { throw ValidationError("--raw-batches sends non-idempotent batches; drop --idempotent") }
        if stampSendTime, rawBatches { throw ValidationError("--stamp-send-time needs the producer; --raw-batches sends pre-built batches") }
    }

    func producerConfiguration(environment: [String: String]) throws -> ProducerConfiguration {
        let resolved = try broker.resolve(environment: environment)
        var configuration = ProducerConfiguration(brokers: resolved.brokers, credentials: resolved.credentials,
                                                  security: resolved.security)
        configuration.clientID = "eventflow-loadgen"
        configuration.acks = ProducerAcks(rawValue: acks) ?? .all
        configuration.idempotent = idempotent ?? (acks == -1)
        configuration.lingerMilliseconds = lingerMs
        configuration.batchBytesMax = load.batchBytes
        configuration.compression = load.compression == "lz4" ? .lz4 : .none
        configuration.inflightRequestsMax = inflight
        // At max rate the buffer is a queue: its size, not the broker, sets the latency, so it is
        // shared (64 MiB over all producers, the producer's own default for one).
        configuration.bufferedBytesMax = bufferBytes ?? max(load.batchBytes * 2, (64 << 20) / load.connections)
        // A load run should fail fast when the broker is unreachable.
        configuration.retriesMax = 3
        return configuration
    }

    func run() async throws {
        let configuration = try producerConfiguration(environment: ProcessInfo.processInfo.environment)
        var logger = Logger(label: "eventflow.loadgen")
        logger.logLevel = .critical
        try await Self.ensureStream(stream, partitions: partitions, configuration: configuration, logger: logger)

        var runConfiguration = load.configuration()
        runConfiguration.lingerMilliseconds = lingerMs
        runConfiguration.acks = Int(acks)
        runConfiguration.idempotent = configuration.idempotent
        runConfiguration.stream = stream
        runConfiguration.partitions = partitions
        runConfiguration.brokers = configuration.brokers.map(\.description).joined(separator: ",")
        runConfiguration.tls = !broker.plaintext
        runConfiguration.bufferBytes = configuration.bufferedBytesMax
        if stampSendTime { runConfiguration.sendTimeStamp = true }

        let payloads = PayloadRing(eventBytes: load.messageSize, count: load.payloads, seed: load.seed)
        let timing = RunTiming(load)
        let recorder = Recorder(measureStartNanoseconds: timing.measureStartNanoseconds,
                                measureEndNanoseconds: timing.measureEndNanoseconds, eventBytes: load.messageSize)
        let reporter = ProgressReporter(recorder: recorder, startNanoseconds: timing.startNanoseconds,
                                        warmupSeconds: load.warmup.value,
                                        totalSeconds: load.warmup.value + load.duration.value, quiet: load.quiet)
        if rawBatches {
            try await RawBatchRun(configuration: configuration, stream: stream, partitions: partitions, load: load,
                                  payloads: payloads, logger: logger)
                .run(timing: timing, recorder: recorder, reporter: reporter)
        } else {
            try await runProducers(configuration: configuration, payloads: payloads, timing: timing,
                                   recorder: recorder, reporter: reporter, logger: logger)
        }
        let samples = reporter.stop()
        try RunTiming.finish(mode: rawBatches ? "raw-batches" : "producer", recorder: recorder, samples: samples,
                             options: load, configuration: runConfiguration)
    }

    /// Connects once (so an unreachable broker or a wrong key is one clear error before the run)
    /// and creates the stream if it is missing.
    static func ensureStream(_ stream: String, partitions: Int, configuration: ProducerConfiguration,
                             logger: Logger) async throws {
        guard let address = configuration.brokers.first else { throw LoadgenFailure("no broker address") }
        let connection: BrokerConnection
        do {
            connection = try await BrokerConnection.connect(to: address, configuration: configuration, logger: logger)
        } catch {
            throw LoadgenFailure("cannot use broker \(address): \(error)")
        }
        defer { connection.close() }
        let request = CreateTopicsRequest(
            topics: [.init(name: stream, numPartitions: Int32(partitions), replicationFactor: 1)], timeoutMs: 10_000)
        let answer: CreateTopicsResponse
        do {
            answer = try await connection.request(request)
        } catch {
            throw LoadgenFailure("cannot create stream \(stream): \(error)")
        }
        for topic in answer.topics where topic.errorCode != .noError && topic.errorCode != .topicAlreadyExists {
            throw LoadgenFailure("cannot create stream \(stream): \(topic.errorCode)" + (topic.errorMessage.map { " \($0)" } ?? ""))
        }
    }

    private func runProducers(configuration: ProducerConfiguration, payloads: PayloadRing, timing: RunTiming,
                              recorder: Recorder, reporter: ProgressReporter, logger: Logger) async throws {
        // Unacknowledged messages per producer are bounded by its buffer; the ring holds their send times.
        let messagesInFlightMax = configuration.bufferedBytesMax / (load.messageSize + 21) + 1
        var slots: [ProducerSlot] = []
        var reportStreams: [ProducerEvents] = []
        for _ in 0..<load.connections {
            let (producer, events) = try EventFlowProducer.makeProducerWithEvents(configuration: configuration, logger: logger)
            slots.append(ProducerSlot(producer: producer, messagesInFlightMax: messagesInFlightMax))
            reportStreams.append(events)
        }
        let stream = self.stream
        let stampSendTime = self.stampSendTime
        let threadCount = min(senderThreads ?? min(load.connections, 2), load.connections)
        let ratePerThread = Double(load.rate) / Double(threadCount)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (slot, events) in zip(slots, reportStreams) {
                slot.observeStages(recorder: recorder)
                group.addTask { try await slot.producer.run() }
                group.addTask { await slot.readReports(events, recorder: recorder) }
            }
            reporter.start()
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let done = DispatchGroup()
                for thread in 0..<threadCount {
                    let mine = stride(from: thread, to: slots.count, by: threadCount).map { slots[$0] }
                    let threadPayloads = payloads.copiedForThread()
                    done.enter()
                    let sender = Thread {
                        SenderLoop(slots: mine, stream: stream, payloads: threadPayloads, firstPayload: thread * 7_919,
                                   stampSendTime: stampSendTime, pacer: Pacer(ratePerSecond: ratePerThread, startNanoseconds: timing.startNanoseconds))
                            .run(until: timing.measureEndNanoseconds, recorder: recorder)
                        done.leave()
                    }
                    sender.start()
                }
                done.notify(queue: .global()) { continuation.resume() }
            }
            // Drain: what was sent is acknowledged (or fails) before the result is taken.
            for slot in slots { await slot.producer.shutdown() }
            try await group.waitForAll()
        }
    }
}

/// One producer, the send times of its unacknowledged messages, and its report reader.
final class ProducerSlot: @unchecked Sendable {
    let producer: EventFlowProducer
    /// Send time (or due time, with --rate) per message id, indexed by `id & mask`. Written by the
    /// sender thread before `send` (whose lock orders it before the report), read by the reader.
    private let sendTimes: UnsafeMutablePointer<UInt64>
    private let mask: UInt64
    /// Only the sender thread touches it: message ids are given out in order, one per accepted `send`.
    var nextMessageID: UInt64 = 0

    init(producer: EventFlowProducer, messagesInFlightMax: Int) {
        self.producer = producer
        var size = 1024
        while size < messagesInFlightMax * 2 { size <<= 1 }
        sendTimes = .allocate(capacity: size)
        sendTimes.initialize(repeating: 0, count: size)
        mask = UInt64(size - 1)
    }

    deinit { sendTimes.deallocate() }

    @inline(__always)
    func noteSendTime(_ nanoseconds: UInt64, for id: UInt64) { sendTimes[Int(id & mask)] = nanoseconds }

    /// Records each acknowledged batch's stages; called before the batch's reports, so its
    /// messages' send times are still in the ring.
    func observeStages(recorder: Recorder) {
        producer.observeBatchStages { [self] stages in
            recorder.batchStages(sendNanoseconds: stages.messageIDs.map { sendTimes[Int($0.rawValue & mask)] },
                                 sealed: stages.sealedAt.uptimeNanoseconds, written: stages.writtenAt.uptimeNanoseconds,
                                 answered: stages.answeredAt.uptimeNanoseconds)
        }
    }

    func readReports(_ events: ProducerEvents, recorder: Recorder) async {
        var times: [UInt64] = []
        for await event in events {
            guard case .deliveryReports(let reports) = event else { continue }
            let now = monotonicNanoseconds()
            times.removeAll(keepingCapacity: true)
            var failures = 0
            var firstError: ProducerError?
            for report in reports {
                if let error = report.error {
                    failures += 1
                    if firstError == nil { firstError = error }
                } else {
                    times.append(sendTimes[Int(report.id.rawValue & mask)])
                }
            }
            if !times.isEmpty { recorder.acknowledged(sendNanoseconds: times, ackNanoseconds: now) }
            if let firstError { recorder.failed(failures, error: "\(firstError)") }
        }
    }
}

/// A sender thread: calls `send` for its producers in turn, at `--rate` or as fast as they accept.
struct SenderLoop {
    let slots: [ProducerSlot]
    let stream: String
    let payloads: PayloadRing
    let firstPayload: Int
    /// Each event's send time goes into its id (`SendTimeStamp`), for `consume --latency`.
    let stampSendTime: Bool
    let pacer: Pacer

    /// Sent counts go to the recorder in chunks (its lock is shared with every reader).
    static let sentCountChunk = 256

    /// At max rate the clock is read once per this many sends: the reads cost more than the
    /// microseconds of send time they would resolve (measured 1.6% of the machine at 1.2M events/s).
    static let clockReadEvery = 16

    func run(until endNanoseconds: UInt64, recorder: Recorder) {
        var event = 0
        var unreported = 0
        var now: UInt64 = 0
        // The stamped copy of the event: rewritten in place for every send, since `send` copies the
        // bytes into its batch and keeps no reference (if it ever did, the rewrite would copy first).
        var stamped = ByteBuffer()
        defer { recorder.sent(unreported) }
        while true {
            if pacer.ratePerSecond > 0 || event % Self.clockReadEvery == 0 { now = monotonicNanoseconds() }
            guard now < endNanoseconds else { return }
            let sendTime: UInt64
            if let due = pacer.due(event) {
                if due > now {
                    sleep(untilNanoseconds: min(due, endNanoseconds))
                    now = monotonicNanoseconds()
                    guard now < endNanoseconds else { return }
                }
                sendTime = due
            } else {
                sendTime = now
            }
            let slot = slots[event % slots.count]
            let value: ByteBuffer
            if stampSendTime {
                stamped.clear()
                stamped.writeImmutableBuffer(payloads[firstPayload + event])
                SendTimeStamp.write(sendTime, into: &stamped)
                value = stamped
            } else {
                value = payloads[firstPayload + event]
            }
            let message = ProducerMessage(stream: stream, value: value)
            slot.noteSendTime(sendTime, for: slot.nextMessageID)
            while true {
                do throws(ProducerError) {
                    let id = try slot.producer.send(message)
                    precondition(id.rawValue == slot.nextMessageID, "message ids are given out in order")
                    slot.nextMessageID += 1
                    break
                } catch .bufferFull {
                    // Backpressure: the producer holds its maximum of unacknowledged bytes.
                    if monotonicNanoseconds() >= endNanoseconds { return }
                    usleep(100)
                } catch {
                    recorder.fatal("send: \(error)")
                    return
                }
            }
            event += 1
            unreported += 1
            if unreported == Self.sentCountChunk {
                recorder.sent(unreported)
                unreported = 0
            }
        }
    }
}
