import ArgumentParser
import Foundation

/// `eventflow-loadgen`: the load generator. The default subcommand drives the broker through the
/// public producer API; `consume` reads through the public consumer; `baseline` measures
/// PostgreSQL alone for comparison.
@main
struct Loadgen: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eventflow-loadgen",
        abstract: "Load generator for EventFlow's ingest path, with PostgreSQL baselines.",
        subcommands: [ProducerRun.self, ConsumeRun.self, Baseline.self, Sample.self],
        defaultSubcommand: ProducerRun.self)

    /// Every failure is one line on stderr and exit status 1 (help and --version exit normally).
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let error as LoadgenFailure {
            fail(error.description)
        } catch {
            // Help and --version are reported as errors by the parser but exit successfully.
            if exitCode(for: error) == .success { exit(withError: error) }
            fail(message(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)")
        }
    }

    static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("eventflow-loadgen: error: \(message)\n".utf8))
        Foundation.exit(1)
    }
}

/// A run that cannot produce a result: reported as one line, nothing written.
struct LoadgenFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A duration: `30` or `30s`, `500ms`, `2m`.
struct Seconds: ExpressibleByArgument, Sendable, CustomStringConvertible {
    var value: Double

    init(_ value: Double) { self.value = value }

    init?(argument: String) {
        let text = argument.trimmingCharacters(in: .whitespaces).lowercased()
        let (digits, scale): (Substring, Double) =
            if text.hasSuffix("ms") { (text.dropLast(2), 0.001) }
            else if text.hasSuffix("s") { (text.dropLast(), 1) }
            else if text.hasSuffix("m") { (text.dropLast(), 60) }
            else { (Substring(text), 1) }
        guard let number = Double(digits), number.isFinite else { return nil }
        value = number * scale
    }

    var description: String { String(format: "%gs", value) }
    var nanoseconds: UInt64 { UInt64(max(value, 0) * 1e9) }
}

/// What every mode shares: the events, the load shape and the outputs.
struct LoadOptions: ParsableArguments {
    @Option(name: [.customLong("connections"), .customLong("producers")],
            help: "Connections (one producer each; baselines: database connections).")
    var connections = 8

    @Option(help: "Events per second over all connections; 0 = as fast as possible.")
    var rate = 0

    @Option(help: "Measured time after the warm-up (30, 30s, 500ms, 2m).")
    var duration = Seconds(30)

    @Option(help: "Time before measuring starts; its events are not counted.")
    var warmup = Seconds(5)

    @Option(help: "Bytes per JSON event (at least \(PayloadRing.minimumBytes)).")
    var messageSize = 100

    @Option(help: "Batch compression: lz4 or none.")
    var compression = "lz4"

    @Option(help: "A batch is sealed when its records reach this many bytes.")
    var batchBytes = 1 << 20

    @Option(help: "Seed of the event generator.")
    var seed: UInt64 = 1

    @Option(help: "Distinct events generated ahead and cycled through.")
    var payloads = 4096

    @Option(help: "Write the result as JSON to this file.")
    var json: String?

    @Option(help: "Write the HdrHistogram percentile distribution (milliseconds) to this file.")
    var hgrm: String?

    @Option(help: "Write an SVG plot of throughput and p99 latency over time to this file.")
    var plot: String?

    @Flag(help: "No per-second progress lines.")
    var quiet = false

    static let messageBytesMax = 1 << 20
    static let connectionsMax = 10_000

    mutating func validate() throws {
        guard (1...Self.connectionsMax).contains(connections) else {
            throw ValidationError("--connections must be 1 to \(Self.connectionsMax), got \(connections)")
        }
        guard rate >= 0 else { throw ValidationError("--rate must be 0 (as fast as possible) or positive, got \(rate)") }
        guard duration.value > 0 else { throw ValidationError("--duration must be positive, got \(duration)") }
        guard warmup.value >= 0 else { throw ValidationError("--warmup must not be negative, got \(warmup)") }
        guard messageSize >= PayloadRing.minimumBytes else {
            throw ValidationError("--message-size \(messageSize) is below the smallest JSON event (\(PayloadRing.minimumBytes) bytes)")
        }
        guard messageSize <= Self.messageBytesMax else {
            throw ValidationError("--message-size must be at most \(Self.messageBytesMax) bytes, got \(messageSize)")
        }
        guard compression == "lz4" || compression == "none" else {
            throw ValidationError("--compression must be lz4 or none, got '\(compression)'")
        }
        guard batchBytes >= messageSize + 64 else {
            throw ValidationError("--batch-bytes \(batchBytes) cannot hold one \(messageSize)-byte event")
        }
        guard (1...1_000_000).contains(payloads) else { throw ValidationError("--payloads must be 1 to 1000000") }
        for path in [json, hgrm, plot].compactMap({ $0 }) {
            let folder = URL(fileURLWithPath: path).deletingLastPathComponent().path
            guard FileManager.default.isWritableFile(atPath: folder) else {
                throw ValidationError("cannot write \(path): folder \(folder) is not writable")
            }
        }
    }

    var outputs: OutputFiles { OutputFiles(json: json, hgrm: hgrm, plot: plot) }

    func configuration() -> RunConfiguration {
        RunConfiguration(connections: connections, rate: rate, durationSeconds: duration.value, warmupSeconds: warmup.value,
                         messageSize: messageSize, compression: compression, batchBytes: batchBytes, seed: seed,
                         payloadsDistinct: payloads)
    }
}

/// The timing of one run and the finishing steps every mode shares.
struct RunTiming: Sendable {
    let startNanoseconds: UInt64
    let measureStartNanoseconds: UInt64
    let measureEndNanoseconds: UInt64

    init(_ options: LoadOptions, now: UInt64 = monotonicNanoseconds()) {
        startNanoseconds = now
        measureStartNanoseconds = now + options.warmup.nanoseconds
        measureEndNanoseconds = measureStartNanoseconds + options.duration.nanoseconds
    }

    /// Builds the result, writes the files, prints the summary; fails (status 1) when events failed.
    static func finish(mode: String, recorder: Recorder, samples: [IntervalSample], options: LoadOptions,
                       configuration: RunConfiguration) throws {
        try finish(mode: mode, recorder: recorder, samples: samples, seconds: options.duration.value,
                   messageSize: options.messageSize, outputs: options.outputs, configuration: configuration)
    }

    /// `seconds`: the measured window; `measuredSeconds` and `firstRecordMilliseconds` go into the result as given.
    static func finish(mode: String, recorder: Recorder, samples: [IntervalSample], seconds: Double, messageSize: Int,
                       outputs: OutputFiles, configuration: RunConfiguration, measuredSeconds: Double? = nil,
                       firstRecordMilliseconds: Double? = nil, group: GroupLog.Result? = nil,
                       nothingDone: String = "no event was acknowledged") throws {
        if let fatal = recorder.fatalError { throw LoadgenFailure(fatal) }
        let state = recorder.state.withLock { $0 }
        if state.acknowledged == 0 {
            throw LoadgenFailure(nothingDone + (state.firstError.map { ": \($0)" } ?? ""))
        }
        let result = RunResult(
            mode: mode,
            eventsPerSecond: (Double(state.measuredEvents) / seconds).rounded(),
            megabytesPerSecond: (Double(state.measuredEvents * messageSize) / seconds / 1e6 * 100).rounded() / 100,
            events: state.measuredEvents, errors: state.errors, firstError: state.firstError,
            latencyMilliseconds: LatencySummary(state.measured), eventsAcknowledgedTotal: state.acknowledged,
            config: configuration, timeline: samples, measuredSeconds: measuredSeconds,
            firstRecordMilliseconds: firstRecordMilliseconds, group: group,
            producerStages: state.stages.map(ProducerStagesResult.init),
            startMonotonicMilliseconds: Double(recorder.measureStartNanoseconds) / 1e6 - configuration.warmupSeconds * 1000)
        do {
            try outputs.write(result, histogram: state.measured)
        } catch {
            throw LoadgenFailure("cannot write the result: \(error.localizedDescription)")
        }
        printSummary(result)
        if state.errors > 0 {
            throw LoadgenFailure("\(state.errors) events failed (first: \(state.firstError ?? "unknown"))")
        }
    }
}
