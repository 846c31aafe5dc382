import ArgumentParser
import EventFlowClient
import EventFlowProtocol
import EventFlowStorage
import Foundation
import Logging
import NIOCore

/// `eventflow dlq list|show|replay`: the organization's dead letters (protocol/dead-letters.md).
struct DeadLetterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dlq", abstract: "Inspect and replay dead letters (records produced to a stream's <name>.dlq).",
        subcommands: [List.self, Show.self, Replay.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List dead letters, oldest first.")
        @Option(help: "Organization name or id.") var org: String
        @Argument(help: "Only this stream's dead letters (the stream or its .dlq).") var stream: String?
        @Option(help: "At most this many rows (1-\(DeadLetters.listRowsMax)).") var limit = 1000
        @OptionGroup var database: DatabaseOptions
        @OptionGroup var output: OutputOptions

        func run() throws {
            let letters = try withDatabase(database) { db in
                try DeadLetters.list(db, org: try Organizations.find(db, org), stream: stream, limit: limit)
            }
            if output.json { try printJSON(letters); return }
            printTable(["ID", "STREAM", "OFFSET", "ORIGIN", "REASON", "FAILED", "REPLAYED"], letters.map { letter in
                [letter.id.uuidString.lowercased(), letter.stream ?? "-", letter.offset.map(String.init) ?? "-",
                 DeadLetterCommand.origin(letter), DeadLetterCommand.shortened(letter.reason, to: 60), letter.failedAt,
                 letter.replayedAt.map { at in "\(at) @\(letter.replayedOffset.map(String.init) ?? "?")" } ?? "-"]
            })
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one dead letter with its payload.")
        @Option(help: "Organization name or id.") var org: String
        @Argument(help: "Dead letter id.") var id: String
        @OptionGroup var database: DatabaseOptions
        @OptionGroup var output: OutputOptions

        func run() throws {
            let letter = try withDatabase(database) { db in
                try DeadLetters.find(db, org: try Organizations.find(db, org), id: id)
            }
            if output.json { try printJSON(letter); return }
            print("id:        \(letter.id.uuidString.lowercased())")
            print("event id:  \(letter.eventID.uuidString.lowercased())")
            print("stream:    \(letter.stream ?? "-") partition \(letter.partition.map(String.init) ?? "-") offset \(letter.offset.map(String.init) ?? "-")")
            print("origin:    \(DeadLetterCommand.origin(letter))")
            print("reason:    \(letter.reason)")
            print("failed:    \(letter.failedAt)")
            print("replayed:  \(letter.replayedAt.map { "\($0) at offset \(letter.replayedOffset.map(String.init) ?? "?")" } ?? "-")")
            print("payload:   \(letter.payload ?? "null")")
        }
    }

    /// Replays through the broker, so the batcher assigns the offset as for any produce (the
    /// database alone cannot: offsets are owned in memory by the broker's batcher).
    struct Replay: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Produce a dead letter's record (key and value as stored) back to its original stream and mark it replayed.")
        @Option(help: "Organization name or id.") var org: String
        @Argument(help: "Dead letter id.") var id: String
        @OptionGroup var database: DatabaseOptions
        @OptionGroup var connection: BrokerConnectionOptions
        @OptionGroup var output: OutputOptions

        func run() async throws {
            let target: BrokerTarget
            do { target = try connection.resolve(environment: ProcessInfo.processInfo.environment) } catch { throw cleanExit(error) }
            let (letter, message) = try withDatabase(database) { db -> (DeadLetterEvent, ProducerMessage) in
                let letter = try DeadLetters.find(db, org: try Organizations.find(db, org), id: id)
                if let at = letter.replayedAt { throw DeadLetterError.alreadyReplayed(id: id, at: at) }
                guard let original = letter.originalStream else { throw DeadLetterError.noOriginalStream(id: id) }
                return (letter, try DeadLetterCommand.replayMessage(db, letter, to: original))
            }
            var configuration = ProducerConfiguration(brokers: target.brokers, credentials: target.credentials, security: target.security)
            configuration.acks = .all
            configuration.idempotent = true
            configuration.lingerMilliseconds = 0
            configuration.retriesMax = 3
            var logger = Logger(label: "eventflow.dlq.replay")
            logger.logLevel = .critical
            let offset: Int64
            do {
                let producer = try EventFlowProducer(configuration: configuration, logger: logger)
                let running = Task { _ = try? await producer.run() }
                defer { running.cancel() }
                let result: Result<(partition: Int32, offset: Int64?), ProducerError>
                do throws(ProducerError) { result = .success(try await producer.sendAndAwait(message)) } catch { result = .failure(error) }
                await producer.shutdown()
                await running.value
                offset = try result.get().offset ?? -1
            } catch {
                throw cleanExit(CommandFailure(description: "replay of \(id) not produced: \(error)"))
            }
            let replayed = try withDatabase(database) { db in
                try DeadLetters.markReplayed(db, org: try Organizations.find(db, org), id: letter.id, offset: offset)
            }
            if output.json { try printJSON(replayed); return }
            print("Replayed \(letter.id.uuidString.lowercased()) to \(message.stream) partition \(message.partition.map(String.init) ?? "-") offset \(offset)")
        }
    }

    /// Header names that describe the dead-lettering itself; a replay leaves them off.
    static func isDeadLetterHeader(_ key: String) -> Bool {
        key.hasPrefix("eventflow-") || key.hasPrefix("__connect.errors.") || key.hasPrefix("kafka_dlt-")
    }

    /// The record to produce for a replay: the dead-letter record's key, value and own headers as
    /// stored in the log (the exact bytes, not the JSONB payload), to its original partition, with
    /// `eventflow-replayed-from: <dead letter id>`.
    static func replayMessage(_ db: PostgresConnection, _ letter: DeadLetterEvent, to stream: String) throws -> ProducerMessage {
        guard letter.streamID != nil else {
            // Refused by the stream's schema (or not projected): only the row holds the payload.
            throw CommandFailure(description: "dead letter \(letter.id.uuidString.lowercased()) was never stored in a stream "
                + "(\(letter.reason)); its payload is in the row: correct it and produce it again")
        }
        guard let streamID = letter.streamID, let partition = letter.partition, let offset = letter.offset,
              let stored = try DeadLetters.batch(db, streamID: streamID, partition: partition, containing: offset) else {
            throw CommandFailure(description: "the record of dead letter \(letter.id.uuidString.lowercased()) is no longer stored")
        }
        let view = try RecordBatchView(validating: ByteBuffer(bytes: stored))
        var reader = try view.records(decompressedBytesMax: 64 << 20)
        var position = view.header.baseOffset
        while let record = try reader.next() {
            defer { position += 1 }
            guard position == offset else { continue }
            var headers = record.headers.filter { !isDeadLetterHeader($0.key) }
            headers.append(RecordHeader(key: "eventflow-replayed-from", value: Array(letter.id.uuidString.lowercased().utf8)))
            return ProducerMessage(stream: stream, partition: letter.originalPartition, key: record.key, value: record.value,
                                   headers: headers)
        }
        throw CommandFailure(description: "offset \(offset) not found in its stored batch")
    }

    static func origin(_ letter: DeadLetterEvent) -> String {
        guard let topic = letter.originalStream ?? letter.originalTopic else { return "-" }
        return "\(topic)/\(letter.originalPartition.map(String.init) ?? "?")@\(letter.originalOffset.map(String.init) ?? "?")"
    }

    static func shortened(_ text: String, to characters: Int) -> String {
        text.count <= characters ? text : String(text.prefix(characters - 1)) + "…"
    }
}
