import ArgumentParser
import EventFlowClient
import Foundation
import Logging
import NIOCore

/// `eventflow consume --stream S`: prints records as they arrive, one line each.
struct ConsumeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "consume",
        abstract: "Print a stream's records as they arrive, one per line (value, key<TAB>value, or JSON).")

    @Option(name: .long, help: "The stream to read.")
    var stream: String

    @Option(name: .long, help: "Only this partition (default: every partition of the stream).")
    var partition: Int32?

    @Option(name: .long, parsing: .unconditional,
            help: "beginning, end, an offset, -N (N records before the end of each partition) or @TIMESTAMP (unix ms). With --group: only for partitions the group has no committed offset for.")
    var from: StartPosition = .init(.beginning)

    @Option(name: .long, help: "Read as a member of this consumer group: the group shares the stream's partitions among its members, and the offsets read are committed automatically (every 5 s and on exit).")
    var group: String?

    @Option(name: .long, help: "Stop after this many records.")
    var count: Int?

    @Flag(name: .long, help: "Stop once every partition was read up to its end as of the start.")
    var exitAtEnd = false

    @Option(name: .long, help: "text: the value; kv: key<TAB>value (as produce reads it); json: one object per record.")
    var format: OutputFormat = .text

    @OptionGroup var connection: BrokerConnectionOptions

    enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
        case text, json, kv
    }

    /// `--from`'s value.
    struct StartPosition: ExpressibleByArgument, Equatable {
        var start: ConsumerConfiguration.StartOffset

        init(_ start: ConsumerConfiguration.StartOffset) { self.start = start }

        init?(argument: String) {
            switch argument {
            case "beginning": start = .beginning
            case "end": start = .end
            default:
                if argument.hasPrefix("@"), let milliseconds = Int64(argument.dropFirst()), milliseconds >= 0 {
                    start = .timestamp(milliseconds)
                } else if argument.hasPrefix("-"), let count = Int64(argument.dropFirst()), count >= 0 {
                    start = .beforeEnd(count)
                } else if let offset = Int64(argument), offset >= 0 {
                    start = .offset(offset)
                } else {
                    return nil
                }
            }
        }
    }

    func validate() throws {
        if let count, count < 1 { throw ValidationError("--count must be at least 1") }
        if let partition, partition < 0 { throw ValidationError("--partition must not be negative") }
        if group != nil && partition != nil { throw ValidationError("--partition and --group exclude each other: the group assigns the partitions") }
        if group != nil && exitAtEnd { throw ValidationError("--exit-at-end and --group exclude each other: a group's partitions move between members") }
        if let group, group.isEmpty { throw ValidationError("--group must not be empty") }
    }

    func consumerConfiguration(environment: [String: String]) throws -> ConsumerConfiguration {
        let target = try connection.resolve(environment: environment)
        let assignment: ConsumerConfiguration.Assignment = if let group {
            .group(id: group, streams: [stream])
        } else if let partition {
            .partitions([(stream, partition, from.start)])
        } else {
            .streams([(stream, from.start)])
        }
        var configuration = ConsumerConfiguration(assignment: assignment, brokers: target.brokers,
                                                  credentials: target.credentials, security: target.security)
        configuration.finishAtHighWatermark = exitAtEnd
        configuration.group.startWithoutCommittedOffset = from.start
        // An offset outside the stream is a mistake to report, not to paper over.
        configuration.autoOffsetReset = .error
        // A CLI run should fail fast when the broker is unreachable.
        configuration.retriesMax = 3
        return configuration
    }

    func run() async throws {
        let consumer: EventFlowConsumer
        do {
            var logger = Logger(label: "eventflow.consume")
            logger.logLevel = .critical
            consumer = try EventFlowConsumer(configuration: try consumerConfiguration(environment: ProcessInfo.processInfo.environment),
                                             logger: logger)
        } catch {
            throw cleanExit(error is ValidationError ? error : CommandFailure(description: "\(error)"))
        }
        let format = self.format
        let limit = count ?? .max
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await consumer.run() }
            var printed = 0
            do {
                for try await message in consumer.messages {
                    // One write per record, so each shows up as it arrives, also through a pipe.
                    FileHandle.standardOutput.write(Data((Self.line(message, format: format) + "\n").utf8))
                    printed += 1
                    if printed >= limit { break }
                }
            } catch {
                consumer.triggerGracefulShutdown()
                // run() ends with the same error the messages did.
                while (try? await group.next()) != nil {}
                throw cleanExit(CommandFailure(description: "\(error)"))
            }
            consumer.triggerGracefulShutdown()
            do {
                try await group.waitForAll()
            } catch {
                throw cleanExit(CommandFailure(description: "\(error)"))
            }
        }
    }

    // MARK: output

    static func line(_ message: ConsumerMessage, format: OutputFormat) -> String {
        switch format {
        case .text:
            return text(message.value)
        case .kv:
            // A record without a key prints as a line without a tab, which produce reads back keyless.
            guard let key = message.key else { return text(message.value) }
            return text(key) + "\t" + text(message.value)
        case .json:
            // The envelope of kcat -J / rpk: fixed field order, key and value as UTF-8 text.
            var json = "{\"stream\":"
            appendJSONString(message.stream, to: &json)
            json += ",\"partition\":\(message.partition),\"offset\":\(message.offset),\"timestamp\":\(message.timestampMilliseconds),\"key\":"
            appendJSON(message.key, to: &json)
            json += ",\"value\":"
            appendJSON(message.value, to: &json)
            json += ",\"headers\":["
            for (index, header) in message.headers.enumerated() {
                if index > 0 { json += "," }
                json += "{\"key\":"
                appendJSONString(header.key, to: &json)
                json += ",\"value\":"
                appendJSON(header.value, to: &json)
                json += "}"
            }
            json += "]}"
            return json
        }
    }

    /// Bytes as UTF-8 text; invalid sequences become U+FFFD. nil prints as nothing.
    private static func text(_ bytes: ByteBuffer?) -> String {
        bytes.map { String(decoding: $0.readableBytesView, as: UTF8.self) } ?? ""
    }

    private static func appendJSON(_ bytes: ByteBuffer?, to json: inout String) {
        guard let bytes else {
            json += "null"
            return
        }
        appendJSONString(text(bytes), to: &json)
    }

    static func appendJSONString(_ string: String, to json: inout String) {
        json += "\""
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": json += "\\\""
            case "\\": json += "\\\\"
            case "\n": json += "\\n"
            case "\r": json += "\\r"
            case "\t": json += "\\t"
            case _ where scalar.value < 0x20:
                json += "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count) + String(scalar.value, radix: 16)
            default: json.unicodeScalars.append(scalar)
            }
        }
        json += "\""
    }
}
