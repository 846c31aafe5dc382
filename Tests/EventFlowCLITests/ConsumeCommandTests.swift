import EventFlowClient
@testable import eventflow
import Foundation
import NIOCore
import Testing

/// `eventflow consume` without a broker: its arguments, its settings and its output lines.
struct ConsumeCommandTests {
    @Test func fromAcceptsEveryStartForm() {
        let cases: [(String, ConsumerConfiguration.StartOffset?)] = [
            ("beginning", .beginning), ("end", .end), ("42", .offset(42)), ("-10", .beforeEnd(10)),
            ("@1700000000000", .timestamp(1_700_000_000_000)),
            ("start", nil), ("@", nil), ("-", nil), ("-x", nil), ("", nil), ("@-5", nil), ("4.5", nil),
        ]
        for (argument, expected) in cases {
            #expect(ConsumeCommand.StartPosition(argument: argument)?.start == expected, "--from \(argument)")
        }
    }

    @Test func argumentsBecomeTheConsumerConfiguration() throws {
        let command = try ConsumeCommand.parse(["--stream", "orders", "--from", "-5", "--format", "json", "--count", "3",
                                                "--exit-at-end", "--plaintext", "--brokers", "broker-a:9093"])
        #expect(command.format == .json)
        #expect(command.count == 3)
        let configuration = try command.consumerConfiguration(environment: [:])
        #expect(configuration.finishAtHighWatermark)
        #expect(configuration.autoOffsetReset == .error)
        #expect(configuration.security == .plaintext)
        #expect(configuration.brokers == [BrokerAddress(host: "broker-a", port: 9093)])
        #expect(configuration.credentials == nil)
        guard case .streams(let streams) = configuration.assignment else { Issue.record("expected every partition"); return }
        #expect(streams.map(\.stream) == ["orders"] && streams.map(\.start) == [.beforeEnd(5)])

        let one = try ConsumeCommand.parse(["--stream", "orders", "--partition", "2", "--from", "@1000"])
        #expect(one.format == .text && one.count == nil && !one.exitAtEnd)
        let environment = ["EVENTFLOW_BROKERS": "10.0.0.1:9092,10.0.0.2", "EVENTFLOW_API_KEY": "key", "EVENTFLOW_API_SECRET": "secret"]
        let fromEnvironment = try one.consumerConfiguration(environment: environment)
        guard case .partitions(let partitions) = fromEnvironment.assignment else { Issue.record("expected one partition"); return }
        #expect(partitions.map(\.partition) == [2] && partitions.map(\.start) == [.timestamp(1_000)])
        #expect(fromEnvironment.brokers.map(\.description) == ["10.0.0.1:9092", "10.0.0.2:9092"])
        #expect(fromEnvironment.credentials == APIKeyCredentials(keyID: "key", secret: "secret"))
        #expect(fromEnvironment.security == .tls(caFilePath: nil))
        #expect(!fromEnvironment.finishAtHighWatermark)
    }

    @Test func groupConsumesWithAutoCommitAndFromOnlyWithoutACommittedOffset() throws {
        let command = try ConsumeCommand.parse(["--stream", "orders", "--group", "billing", "--from", "end", "--plaintext"])
        let configuration = try command.consumerConfiguration(environment: [:])
        guard case .group(let id, let streams) = configuration.assignment else { Issue.record("expected group mode"); return }
        #expect(id == "billing" && streams == ["orders"])
        #expect(configuration.group.autoCommit)
        #expect(configuration.group.startWithoutCommittedOffset == .end)
        #expect(!configuration.finishAtHighWatermark)
        #expect(throws: (any Error).self) { try ConsumeCommand.parse(["--stream", "orders", "--group", "g", "--partition", "1"]) }
        #expect(throws: (any Error).self) { try ConsumeCommand.parse(["--stream", "orders", "--group", "g", "--exit-at-end"]) }
        #expect(ConsumeCommand.helpMessage(columns: 400).contains("only for partitions the group has no committed offset for"))
    }

    @Test func produceAndConsumeShareTheConnectionFlags() throws {
        let produce = try ProduceCommand.parse(["--stream", "orders", "--api-key", "k", "--api-secret", "s", "--brokers", "h:1"])
        let configuration = try produce.producerConfiguration(environment: ["EVENTFLOW_BROKERS": "ignored:2"])
        #expect(configuration.brokers == [BrokerAddress(host: "h", port: 1)])
        #expect(configuration.credentials == APIKeyCredentials(keyID: "k", secret: "s"))
        let halfCredentials = try ConsumeCommand.parse(["--stream", "orders", "--api-key", "k"])
        #expect(throws: (any Error).self) { try halfCredentials.consumerConfiguration(environment: [:]) }
    }

    @Test func linesInEachFormat() {
        let message = ConsumerMessage(stream: "orders", partition: 1, offset: 42, key: ByteBuffer(string: "order-1"),
                                      value: ByteBuffer(string: "{\"total\": 42}\n"),
                                      headers: [.init(key: "trace", value: Array("t\"1".utf8)), .init(key: "empty", value: nil as [UInt8]?)],
                                      timestampMilliseconds: 1_700_000_000_123)
        #expect(ConsumeCommand.line(message, format: .text) == "{\"total\": 42}\n")
        #expect(ConsumeCommand.line(message, format: .kv) == "order-1\t{\"total\": 42}\n")
        let json = ConsumeCommand.line(message, format: .json)
        #expect(json == #"{"stream":"orders","partition":1,"offset":42,"timestamp":1700000000123,"key":"order-1","#
            + #""value":"{\"total\": 42}\n","headers":[{"key":"trace","value":"t\"1"},{"key":"empty","value":null}]}"#)
        // The line is JSON a script can read back.
        let object = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
        #expect(object?["value"] as? String == "{\"total\": 42}\n")
        #expect(object?["offset"] as? Int == 42)

        let keyless = ConsumerMessage(stream: "s", partition: 0, offset: 0, key: nil, value: ByteBuffer(bytes: [0x61, 0x01, 0xFF]),
                                      timestampMilliseconds: 0)
        #expect(ConsumeCommand.line(keyless, format: .kv) == "a\u{01}\u{FFFD}")
        #expect(ConsumeCommand.line(keyless, format: .json)
            == #"{"stream":"s","partition":0,"offset":0,"timestamp":0,"key":null,"value":"a\u0001\#u{FFFD}","headers":[]}"#)
    }

    @Test func badArgumentsAreOneLineWithoutABroker() throws {
        let cli = CLI(databaseURL: nil)
        let badStart = try cli.run("consume", "--stream", "orders", "--from", "yesterday", "--plaintext")
        #expect(badStart.status != 0)
        #expect(badStart.stderr.contains("--from"))
        let badCount = try cli.run("consume", "--stream", "orders", "--count", "0", "--plaintext")
        #expect(badCount.status != 0)
        #expect(badCount.stderr.contains("--count must be at least 1"))
        // Nothing listens on port 1: one clear line after the retries, exit 1.
        let unreachable = try cli.run("consume", "--stream", "orders", "--plaintext", "--brokers", "127.0.0.1:1")
        #expect(unreachable.status == 1)
        #expect(unreachable.stderr.hasPrefix("error: connection failed"))
        #expect(unreachable.stderr.split(separator: "\n").count == 1)
    }
}
