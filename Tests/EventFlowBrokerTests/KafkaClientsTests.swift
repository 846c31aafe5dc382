@testable import EventFlowBroker
import EventFlowClient
import EventFlowProtocol
@testable import EventFlowStorage
import EventFlowTestSupport
import Foundation
import Logging
import NIOCore
import Testing

/// Existing Kafka clients against the broker over TLS + SASL PLAIN (scripts/kafka-clients.py):
/// confluent-kafka (librdkafka 2.x) and kafka-python produce idempotently with LZ4 and consume
/// everything back from the beginning (assign mode, no group); and they read what EventFlow's
/// own Swift producer wrote.
@Suite struct KafkaClientsTests {
    static let clients = ["confluent", "kafka-python"]

    struct ClientRecord: Decodable, Hashable {
        var partition: Int32
        var offset: Int64
        var key: String?
        var value: String?
        var headers: [[String?]]
    }

    /// Runs the script for `client` against the harness's broker and returns its JSON lines.
    static func run(_ client: String, _ command: String, _ harness: BrokerHarness, topic: String = "orders",
                    count: Int = 0, group: String? = nil) async throws -> [String] {
        let probe = try Program.run("/usr/bin/env", ["python3", "-c", "import confluent_kafka, kafka, lz4"])
        try #require(probe.exitCode == 0, "the Kafka clients are needed: scripts/install-deps.sh --python (\(probe.output))")
        let script = KafkaPythonTests.packageRoot.appendingPathComponent("scripts/kafka-clients.py").path
        let arguments = ["python3", script, client, command, "localhost:\(harness.broker.port)", harness.certificates.certificateAuthority,
                         harness.key.key.id.uuidString, harness.key.secret, topic, group ?? String(count)]
        // The clients block while they run; keep them off the concurrency pool's threads.
        let result = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<ProgramResult, any Error>) in
            Thread.detachNewThread {
                continuation.resume(with: Result { try Program.run("/usr/bin/env", arguments) })
            }
        }
        try #require(result.exitCode == 0, "\(client) \(command) failed: \(result.output)")
        return result.output.split(separator: "\n").map(String.init).filter { $0.hasPrefix("{") }
    }

    static func hex(_ buffer: ByteBuffer?) -> String? {
        buffer.map { $0.readableBytesView.map { String(format: "%02x", $0) }.joined() }
    }

    @Test(arguments: clients)
    func anExistingClientProducesIdempotentlyWithLZ4AndReadsEverythingBack(client: String) async throws {
        let harness = try await BrokerHarness.start(partitions: 3)
        let lines = try await Self.run(client, "roundtrip", harness, count: 300)
        struct Summary: Decodable { var acked: Int; var consumed: Int; var partitions: [Int32] }
        let summary = try JSONDecoder().decode(Summary.self, from: Data(try #require(lines.last).utf8))
        #expect(summary.acked == 300)
        #expect(summary.consumed == 300)
        #expect(summary.partitions == [0, 1, 2])

        // What they wrote is stored as they sent it: batches of an idempotent producer, LZ4 where
        // it made them smaller (librdkafka sends a batch uncompressed when LZ4 would not shrink it).
        let db = try harness.database()
        defer { db.close() }
        let rows = try storedRows(db, streamID: harness.stream.id)
        #expect(rows.allSatisfy { $0.producerID >= 0 && ($0.codec == 3 || $0.codec == 0) })
        #expect(rows.contains { $0.codec == 3 })
        #expect(rows.reduce(0) { $0 + Int($1.recordCount) } == 300)
        await harness.broker.shutdown()
    }

    @Test(arguments: clients)
    func anExistingClientReadsWhatTheSwiftProducerWrote(client: String) async throws {
        let harness = try await BrokerHarness.start(partitions: 2)
        var configuration = ProducerConfiguration(
            brokers: [BrokerAddress(host: "localhost", port: harness.broker.port)],
            credentials: APIKeyCredentials(keyID: harness.key.key.id.uuidString, secret: harness.key.secret),
            security: .tls(caFilePath: harness.certificates.certificateAuthority))
        configuration.lingerMilliseconds = 2
        let producer = try EventFlowProducer(configuration: configuration, logger: TestLogs.logger(label: "test.producer"))
        let running = Task { try await producer.run() }
        var sent: [ClientRecord] = []
        for index in 0..<120 {
            let message = ProducerMessage(stream: "orders", key: ByteBuffer(string: "k\(index % 7)"),
                                          value: ByteBuffer(string: "{\"swift\":\(index)}"),
                                          headers: [RecordHeader(key: "n", value: ByteBuffer(string: "\(index)"))])
            let (partition, offset) = try await producer.sendAndAwait(message)
            sent.append(ClientRecord(partition: partition, offset: try #require(offset), key: Self.hex(message.key),
                                     value: Self.hex(message.value), headers: [["n", Self.hex(message.headers[0].value)]]))
        }
        await producer.shutdown()
        try await running.value

        let lines = try await Self.run(client, "consume", harness)
        let received = try lines.map { try JSONDecoder().decode(ClientRecord.self, from: Data($0.utf8)) }
        #expect(Set(received) == Set(sent))
        #expect(received.count == sent.count)
        for partition: Int32 in [0, 1] {
            let offsets = received.filter { $0.partition == partition }.map(\.offset)
            #expect(offsets == Array(0..<Int64(offsets.count)), "partition \(partition) in offset order")
        }
        await harness.broker.shutdown()
    }

    /// Reads every partition of "orders" from the beginning up to the high watermark as of the start.
    static func consumeAll(_ harness: BrokerHarness, start: ConsumerConfiguration.StartOffset = .beginning) async throws -> [ConsumerMessage] {
        var configuration = ConsumerConfiguration(
            assignment: .streams([("orders", start)]),
            brokers: [BrokerAddress(host: "localhost", port: harness.broker.port)],
            credentials: APIKeyCredentials(keyID: harness.key.key.id.uuidString, secret: harness.key.secret),
            security: .tls(caFilePath: harness.certificates.certificateAuthority))
        configuration.finishAtHighWatermark = true
        configuration.autoOffsetReset = .error
        let consumer = try EventFlowConsumer(configuration: configuration, logger: TestLogs.logger(label: "test.consumer"))
        let running = Task { try await consumer.run() }
        var received: [ConsumerMessage] = []
        for try await message in consumer.messages { received.append(message) }
        consumer.triggerGracefulShutdown()
        try await running.value
        return received
    }

    @Test(arguments: clients)
    func theSwiftConsumerReadsWhatAnExistingClientProduced(client: String) async throws {
        let harness = try await BrokerHarness.start(partitions: 3)
        let lines = try await Self.run(client, "produce", harness, count: 250)
        let acked = try lines.map { try JSONDecoder().decode(ClientRecord.self, from: Data($0.utf8)) }
        #expect(acked.count == 250)
        let received = try await Self.consumeAll(harness).map { message in
            ClientRecord(partition: message.partition, offset: message.offset, key: Self.hex(message.key), value: Self.hex(message.value),
                         headers: message.headers.map { [$0.key, Self.hex($0.value)] })
        }
        #expect(Set(received) == Set(acked))
        #expect(received.count == acked.count)
        for partition: Int32 in 0..<3 {
            let offsets = received.filter { $0.partition == partition }.map(\.offset)
            #expect(offsets == Array(0..<Int64(offsets.count)), "partition \(partition) in offset order")
        }
        await harness.broker.shutdown()
    }

    @Test func confluentKafkaAndKafkaPythonShareOneGroupAndCommitWhatTheyRead() async throws {
        let harness = try await BrokerHarness.start(partitions: 6)
        let acked = try await Self.run("confluent", "produce", harness, count: 300)
            .map { try JSONDecoder().decode(ClientRecord.self, from: Data($0.utf8)) }
        try #require(acked.count == 300)
        // Both join the same group at once; each reads what it is assigned and commits every record.
        async let first = Self.run("confluent", "group", harness, group: "billing")
        async let second = Self.run("kafka-python", "group", harness, group: "billing")
        let read = try await (first + second).map { try JSONDecoder().decode(ClientRecord.self, from: Data($0.utf8)) }
        #expect(Set(read) == Set(acked), "every record read by one of the two")
        // A rebalance may hand a partition over before its last record's commit: at most one
        // record per partition is read twice; nothing committed is read again.
        #expect(read.count - Set(read).count <= 6)

        let db = try harness.database()
        defer { db.close() }
        let committed = try GroupOffsets.committed(db, group: "billing", streamID: harness.stream.id)
        var highWatermarks: [Int32: Int64] = [:]
        for record in acked { highWatermarks[record.partition] = max(highWatermarks[record.partition] ?? 0, record.offset + 1) }
        #expect(Dictionary(uniqueKeysWithValues: committed.map { ($0.partition, $0.offset) }) == highWatermarks)
        // The seed's rows: one consumer_groups row for (stream, group), its last processed event id.
        let rows = try db.query("""
            SELECT o.last_event_id FROM consumer_groups g JOIN consumer_offsets o ON o.consumer_group_id = g.id
            WHERE g.stream_id = $1 AND g.name = 'billing'
            """, [harness.stream.id.uuidString])
        #expect(rows.count == 1)
        let lastEvent = try #require(rows.first?["last_event_id"].flatMap(UUID.init(uuidString:)))
        let candidates = highWatermarks.map { EventID.derive(streamID: harness.stream.id, partition: $0.key, offset: $0.value - 1) }
        #expect(candidates.contains(lastEvent))
        await harness.broker.shutdown()
    }

    /// EventFlow's consumer in group mode until it has read nothing for `idleSeconds` after its
    /// first assignment; what it read, in order.
    static func swiftGroupMember(_ harness: BrokerHarness, group: String, idleSeconds: Double = 5) async throws -> [ClientRecord] {
        var configuration = ConsumerConfiguration(
            assignment: .group(id: group, streams: ["orders"]),
            brokers: [BrokerAddress(host: "localhost", port: harness.broker.port)],
            credentials: APIKeyCredentials(keyID: harness.key.key.id.uuidString, secret: harness.key.secret),
            security: .tls(caFilePath: harness.certificates.certificateAuthority))
        configuration.autoOffsetReset = .earliest
        configuration.group.sessionTimeoutMilliseconds = 10_000
        configuration.group.heartbeatIntervalMilliseconds = 1_000
        let consumer = try EventFlowConsumer(configuration: configuration, logger: TestLogs.logger(label: "test.group-consumer"))
        let running = Task { try await consumer.run() }
        let progress = ReadProgress()
        let reading = Task {
            for try await message in consumer.messages {
                progress.add(ClientRecord(partition: message.partition, offset: message.offset, key: hex(message.key),
                                          value: hex(message.value), headers: message.headers.map { [$0.key, hex($0.value)] }))
            }
        }
        let started = ContinuousClock.now
        var assigned = false
        var events = consumer.events.makeAsyncIterator()
        // The first assignment (the group formed), then quiet for idleSeconds.
        while !assigned, ContinuousClock.now - started < .seconds(60) {
            if case .assigned? = await events.next() { assigned = true }
        }
        while ContinuousClock.now - progress.lastRead(or: started) < .seconds(idleSeconds), ContinuousClock.now - started < .seconds(60) {
            try await Task.sleep(for: .milliseconds(250))
        }
        consumer.triggerGracefulShutdown()
        try await running.value
        _ = try? await reading.value
        return progress.records
    }

    @Test func theSwiftConsumerConfluentKafkaAndKafkaPythonShareOneGroup() async throws {
        let harness = try await BrokerHarness.start(partitions: 6)
        let acked = try await Self.run("confluent", "produce", harness, count: 600)
            .map { try JSONDecoder().decode(ClientRecord.self, from: Data($0.utf8)) }
        try #require(acked.count == 600)
        async let swift = Self.swiftGroupMember(harness, group: "mixed")
        async let confluent = Self.run("confluent", "group", harness, group: "mixed")
        async let python = Self.run("kafka-python", "group", harness, group: "mixed")
        let fromPython = try await (confluent + python).map { try JSONDecoder().decode(ClientRecord.self, from: Data($0.utf8)) }
        let fromSwift = try await swift
        let read = fromPython + fromSwift
        #expect(Set(read) == Set(acked), "every record read by one of the three")
        #expect(read.count - Set(read).count <= 12, "duplicates only from work not yet committed at a rebalance")
        let db = try harness.database()
        defer { db.close() }
        let committed = try GroupOffsets.committed(db, group: "mixed", streamID: harness.stream.id)
        var highWatermarks: [Int32: Int64] = [:]
        for record in acked { highWatermarks[record.partition] = max(highWatermarks[record.partition] ?? 0, record.offset + 1) }
        #expect(Dictionary(uniqueKeysWithValues: committed.map { ($0.partition, $0.offset) }) == highWatermarks)
        await harness.broker.shutdown()
    }
}

/// Records read by a consumer task, and when the last one arrived.
final class ReadProgress: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [KafkaClientsTests.ClientRecord] = []
    private var last: ContinuousClock.Instant?

    func add(_ record: KafkaClientsTests.ClientRecord) {
        lock.withLock {
            stored.append(record)
            last = .now
        }
    }

    var records: [KafkaClientsTests.ClientRecord] { lock.withLock { stored } }
    func lastRead(or fallback: ContinuousClock.Instant) -> ContinuousClock.Instant { lock.withLock { last ?? fallback } }
}
