import EventFlowClient
import EventFlowProtocol
import EventFlowStorage
import EventFlowTestSupport
import Foundation
import Logging
import NIOCore
import Testing

/// `eventflow dlq list|show|replay` against a running `eventflow serve`.
@Suite struct DeadLetterCommandTests {
    @Test func listShowAndReplayADeadLetterBackToItsOriginalStream() async throws {
        let cli = CLI(databaseURL: try TestCluster.freshDatabase())
        #expect(try cli.run("org", "create", "acme").status == 0)
        #expect(try cli.run("stream", "create", "--org", "acme", "orders").status == 0)
        let keyJSON = try cli.run("apikey", "create", "--org", "acme", "--json").stdout
        let key = try #require(try JSONSerialization.jsonObject(with: Data(keyJSON.utf8)) as? [String: Any])
        let keyID = try #require(key["id"] as? String), secret = try #require(key["secret"] as? String)

        let serve = Process()
        serve.executableURL = URL(fileURLWithPath: CLI.binary)
        serve.arguments = ["serve", "--plaintext"] + ServeTestArguments.extra
        serve.environment = cli.environment
        serve.currentDirectoryURL = URL(fileURLWithPath: cli.directory)
        let err = Pipe()
        serve.standardError = err
        serve.standardOutput = FileHandle.nullDevice
        try serve.run()
        defer { serve.terminate(); serve.waitUntilExit() }
        let port = try #require(ServeTestArguments.readyPort(ServeTestArguments.logUntilReady(serve, err)))

        // A consumer dead-letters offset 0 of orders with Spring's headers (binary partition and offset).
        var configuration = ProducerConfiguration(brokers: [BrokerAddress(host: "127.0.0.1", port: port)],
                                                  credentials: APIKeyCredentials(keyID: keyID, secret: secret), security: .plaintext)
        configuration.lingerMilliseconds = 0
        let producer = try EventFlowProducer(configuration: configuration, logger: Logger(label: "test.producer"))
        let running = Task { try await producer.run() }
        _ = try await producer.sendAndAwait(ProducerMessage(stream: "orders", key: "o-1", value: #"{"order": 1}"#))
        var partition = ByteBuffer(), offset = ByteBuffer()
        partition.writeInteger(Int32(0))
        offset.writeInteger(Int64(0))
        _ = try await producer.sendAndAwait(ProducerMessage(
            stream: "orders.dlq", key: ByteBuffer(string: "o-1"), value: ByteBuffer(string: #"{"order": 1}"#),
            headers: [RecordHeader(key: "kafka_dlt-original-topic", value: Array("orders".utf8)),
                      RecordHeader(key: "kafka_dlt-original-partition", value: partition),
                      RecordHeader(key: "kafka_dlt-original-offset", value: offset),
                      RecordHeader(key: "kafka_dlt-exception-message", value: Array("price missing".utf8))]))
        await producer.shutdown()
        try await running.value

        let list = try cli.run("dlq", "list", "--org", "acme", "orders")
        #expect(list.status == 0, "\(list.stderr)")
        #expect(list.stdout.hasPrefix("ID"))
        #expect(list.stdout.contains("orders/0@0") && list.stdout.contains("price missing"))
        let json = try cli.run("dlq", "list", "--org", "acme", "--json")
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]])
        #expect(rows.count == 1)
        let id = try #require(rows.first?["id"] as? String)
        #expect(rows.first?["reason"] as? String == "price missing")
        #expect(rows.first?["originalStream"] as? String == "orders")

        let show = try cli.run("dlq", "show", "--org", "acme", id)
        #expect(show.status == 0)
        #expect(show.stdout.contains("reason:    price missing"))
        #expect(show.stdout.contains(#"payload:   {"order": 1}"#))
        #expect(show.stdout.contains("replayed:  -"))

        let connection = ["--brokers", "127.0.0.1:\(port)", "--api-key", keyID, "--api-secret", secret, "--plaintext"]
        let replay = try cli.run(["dlq", "replay", "--org", "acme", id] + connection)
        #expect(replay.status == 0, "\(replay.stderr)")
        #expect(replay.stdout.contains("to orders partition 0 offset 1"))
        let again = try cli.run(["dlq", "replay", "--org", "acme", id] + connection)
        #expect(again.status == 1)
        #expect(again.stderr.hasPrefix("error: dead letter") && again.stderr.contains("already replayed"))
        let replayed = try cli.run("dlq", "show", "--org", "acme", id, "--json").stdout
        let row = try #require(try JSONSerialization.jsonObject(with: Data(replayed.utf8)) as? [String: Any])
        #expect(row["replayedOffset"] as? Int == 1)

        // The original stream has the record again, key and value as they were, marked as a replay.
        let consumed = try cli.run(["consume", "--stream", "orders", "--exit-at-end", "--format", "json"] + connection)
        let lines = consumed.stdout.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        #expect(lines.count == 2)
        #expect(lines.last?["offset"] as? Int == 1)
        #expect(lines.last?["key"] as? String == "o-1")
        #expect(lines.last?["value"] as? String == #"{"order": 1}"#)
        let headers = lines.last?["headers"] as? [[String: Any]]
        #expect(headers?.map { $0["key"] as? String } == ["eventflow-replayed-from"])

        let unknown = try cli.run("dlq", "show", "--org", "acme", "00000000-0000-0000-0000-000000000000")
        #expect(unknown.status == 1 && unknown.stderr.contains("unknown dead letter"))
    }
}

extension CLI {
    @discardableResult
    func run(_ arguments: [String]) throws -> Result {
        try Shell.run(Self.binary, arguments, environment: environment, directory: directory, stdin: nil)
    }
}
