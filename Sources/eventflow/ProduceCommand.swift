import ArgumentParser
import EventFlowClient
import Foundation
import Logging
import NIOCore

/// `eventflow produce --stream S`: one record per stdin line (`key<TAB>value` or `value`),
/// printing `partition offset` per line in input order.
struct ProduceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "produce",
        abstract: "Produce stdin lines (value, or key<TAB>value) to a stream; prints 'partition offset' per line.")

    @Option(name: .long, help: "The stream to produce to.")
    var stream: String

    @OptionGroup var connection: BrokerConnectionOptions

    @Option(name: .long, help: "-1: after commit (default), 1: accepted in memory, 0: no answer.")
    var acks: Int16 = -1

    @Option(name: .long, help: "Linger before a batch is sent, in milliseconds.")
    var lingerMs: Int = 5

    @Flag(name: .long, help: "Print one summary line instead of an offset per record.")
    var quiet = false

    func run() async throws {
        let configuration: ProducerConfiguration
        do {
            configuration = try producerConfiguration(environment: ProcessInfo.processInfo.environment)
        } catch {
            throw cleanExit(error)
        }
        var logger = Logger(label: "eventflow.produce")
        logger.logLevel = .critical
        let (producer, events): (EventFlowProducer, ProducerEvents)
        do {
            (producer, events) = try EventFlowProducer.makeProducerWithEvents(configuration: configuration, logger: logger)
        } catch {
            throw cleanExit(CommandFailure(description: "\(error)"))
        }
        let quiet = self.quiet
        let outcome = try await withThrowingTaskGroup(of: ReportSummary?.self) { group in
            group.addTask {
                try await producer.run()
                return nil
            }
            group.addTask { await Self.printReports(events, quiet: quiet) }
            var sendError: ProducerError?
            var lines = 0
            while let line = readLine(strippingNewline: true) {
                let message = Self.message(stream: stream, line: line)
                do throws(ProducerError) {
                    try Self.send(message, producer)
                    lines += 1
                } catch {
                    sendError = error
                    break
                }
            }
            await producer.shutdown()
            var summary = ReportSummary()
            for try await result in group {
                if let result { summary = result }
            }
            return (summary, sendError, lines)
        }
        let (summary, sendError, lines) = outcome
        if let sendError {
            throw cleanExit(CommandFailure(description: "\(sendError)"))
        }
        if let firstError = summary.firstError {
            let count = summary.failed == 1 ? "" : " (\(summary.failed) of \(lines) records failed)"
            throw cleanExit(CommandFailure(description: "\(firstError)\(count)"))
        }
        if quiet {
            print("\(summary.delivered) records produced to \(stream)")
        }
    }

    func producerConfiguration(environment: [String: String]) throws -> ProducerConfiguration {
        let target = try connection.resolve(environment: environment)
        guard let acks = ProducerAcks(rawValue: acks) else { throw ValidationError("--acks must be -1, 1 or 0") }
        var configuration = ProducerConfiguration(brokers: target.brokers, credentials: target.credentials,
                                                  security: target.security)
        configuration.acks = acks
        configuration.idempotent = acks == .all
        configuration.lingerMilliseconds = lingerMs
        // A CLI run should fail fast when the broker is unreachable.
        configuration.retriesMax = 3
        return configuration
    }

    static func message(stream: String, line: String) -> ProducerMessage {
        var text = Substring(line)
        if text.hasSuffix("\r") { text = text.dropLast() }
        if let tab = text.firstIndex(of: "\t") {
            return ProducerMessage(stream: stream, key: String(text[..<tab]), value: String(text[text.index(after: tab)...]))
        }
        return ProducerMessage(stream: stream, value: String(text))
    }

    /// Sends, waiting for acknowledgements when the producer's buffer is full.
    static func send(_ message: ProducerMessage, _ producer: EventFlowProducer) throws(ProducerError) {
        while true {
            do throws(ProducerError) {
                try producer.send(message)
                return
            } catch ProducerError.bufferFull {
                // readLine is synchronous; give the sender time to drain instead of spinning.
                usleep(1_000)
            }
        }
    }

    struct ReportSummary: Sendable {
        var delivered = 0
        var failed = 0
        var firstError: ProducerError?
    }

    /// Prints `partition offset` lines in message order (reports arrive per batch, possibly out of order).
    static func printReports(_ events: ProducerEvents, quiet: Bool) async -> ReportSummary {
        var summary = ReportSummary()
        var waiting: [UInt64: DeliveryReport] = [:]
        var next: UInt64 = 0
        for await event in events {
            guard case .deliveryReports(let reports) = event else { continue }
            for report in reports {
                if let error = report.error {
                    summary.failed += 1
                    if summary.firstError == nil { summary.firstError = error }
                } else {
                    summary.delivered += 1
                }
                guard !quiet else { continue }
                waiting[report.id.rawValue] = report
            }
            while let report = waiting.removeValue(forKey: next) {
                if report.error == nil {
                    print("\(report.partition) \(report.offset.map(String.init) ?? "-")")
                }
                next += 1
            }
        }
        return summary
    }
}
