@testable import EventFlowBroker
import EventFlowClient
import EventFlowProtocol
@testable import EventFlowStorage
import EventFlowTestSupport
import Foundation
import NIOCore
import Testing

/// Dead letters (protocol/dead-letters.md): records produced to `<stream>.dlq` by any client are
/// stored as usual and indexed in `dead_letter_events`, in the flush's transaction.
@Suite struct DeadLetterTests {
    struct Row: Equatable {
        var id: String
        var eventID: String
        var reason: String
        var payload: String?
        var dlqOffset: Int64
        var originalStreamID: String?
    }

    static func rows(_ db: PostgresConnection, dlq streamName: String = "orders.dlq", org: UUID) throws -> [Row] {
        try db.query("""
            SELECT d.id, d.event_id, d.reason, d.payload::text AS payload, d.dlq_offset, d.original_stream_id
            FROM dead_letter_events d JOIN event_streams s ON s.id = d.dlq_stream_id
            WHERE s.org_id = $1 AND s.name = $2 ORDER BY d.dlq_offset
            """, [org.uuidString, streamName]).map { row in
            Row(id: row["id"] ?? "", eventID: row["event_id"] ?? "", reason: row["reason"] ?? "", payload: row["payload"],
                dlqOffset: Int64(row["dlq_offset"] ?? "") ?? -1, originalStreamID: row["original_stream_id"])
        }
    }

    static func json(_ text: String?) -> NSObject? {
        text.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8), options: [.fragmentsAllowed]) as? NSObject }
    }

    static func producer(_ harness: BrokerHarness, key: CreatedAPIKey? = nil) throws -> EventFlowProducer {
        let key = key ?? harness.key
        var configuration = ProducerConfiguration(
            brokers: [BrokerAddress(host: "localhost", port: harness.broker.port)],
            credentials: APIKeyCredentials(keyID: key.key.id.uuidString, secret: key.secret),
            security: .tls(caFilePath: harness.certificates.certificateAuthority))
        configuration.lingerMilliseconds = 0
        return try EventFlowProducer(configuration: configuration, logger: TestLogs.logger(label: "test.producer"))
    }

    static func consumerConfiguration(_ harness: BrokerHarness, stream: String) -> ConsumerConfiguration {
        var configuration = ConsumerConfiguration(
            assignment: .partitions([(stream, 0, .beginning)]),
            brokers: [BrokerAddress(host: "localhost", port: harness.broker.port)],
            credentials: APIKeyCredentials(keyID: harness.key.key.id.uuidString, secret: harness.key.secret),
            security: .tls(caFilePath: harness.certificates.certificateAuthority))
        configuration.finishAtHighWatermark = true
        return configuration
    }

    /// Produces `values` to `stream`, one record each, and returns their offsets.
    static func produce(_ values: [[UInt8]], to stream: String, headers: [[RecordHeader]]? = nil, _ harness: BrokerHarness,
                        key: CreatedAPIKey? = nil) async throws -> [Int64] {
        let producer = try producer(harness, key: key)
        let running = Task { try await producer.run() }
        var offsets: [Int64] = []
        for (index, value) in values.enumerated() {
            let message = ProducerMessage(stream: stream, partition: 0, key: ByteBuffer(string: "k\(index)"),
                                          value: ByteBuffer(bytes: value), headers: headers?[index] ?? [])
            offsets.append(try #require(try await producer.sendAndAwait(message).offset))
        }
        await producer.shutdown()
        try await running.value
        return offsets
    }

    static let orders: [[UInt8]] = [
        Array(#"{"id": 1}"#.utf8), Array(#"{"id": 2, "fail": true}"#.utf8), [0x00, 0xFF, 0x10, 0x7B], Array(#"{"id": 4}"#.utf8),
    ]

    @Test func theSwiftConsumerDeadLettersWithEventFlowHeadersAndTheRowsCarryTheOriginalEventID() async throws {
        let harness = try await BrokerHarness.start(partitions: 1)
        _ = try await Self.produce(Self.orders, to: "orders", harness)
        let consumer = try EventFlowConsumer(configuration: Self.consumerConfiguration(harness, stream: "orders"),
                                             logger: TestLogs.logger(label: "test.consumer"))
        let running = Task { try await consumer.run() }
        var dlqOffsets: [Int64] = []
        for try await message in consumer.messages {
            let value = message.value.map { Array($0.readableBytesView) } ?? []
            let object = Self.json(String(decoding: value, as: UTF8.self)) as? NSDictionary
            if object == nil || object?["fail"] as? Bool == true {
                dlqOffsets.append(try await consumer.deadLetter(message, reason: "order \(message.offset) rejected"))
            }
        }
        consumer.triggerGracefulShutdown()
        try await running.value
        #expect(dlqOffsets == [0, 1])

        let db = try harness.database()
        defer { db.close() }
        let dlq = try Streams.find(db, org: harness.organization, name: "orders.dlq")
        #expect(dlq.partitions == 1)
        let rows = try Self.rows(db, org: harness.organization.id)
        #expect(rows.map(\.dlqOffset) == [0, 1])
        #expect(rows.map(\.eventID) == [1, 2].map { EventID.derive(streamID: harness.stream.id, partition: 0, offset: $0).uuidString.lowercased() })
        #expect(rows.map(\.id) == [0, 1].map { EventID.derive(streamID: dlq.id, partition: 0, offset: $0).uuidString.lowercased() })
        #expect(rows.map(\.reason) == ["order 1 rejected", "order 2 rejected"])
        #expect(rows.allSatisfy { $0.originalStreamID == harness.stream.id.uuidString.lowercased() })
        #expect(Self.json(rows[0].payload) == Self.json(#"{"id": 2, "fail": true}"#))
        // Not JSON: the bytes as base64 in an object.
        #expect(Self.json(rows[1].payload) == Self.json(#"{"encoding": "base64", "data": "AP8Qew=="}"#))

        // The dead-letter stream is a stream like any: Fetch serves its records with the headers.
        var read: [ConsumerMessage] = []
        let dlqConsumer = try EventFlowConsumer(configuration: Self.consumerConfiguration(harness, stream: "orders.dlq"),
                                                logger: TestLogs.logger(label: "test.dlq-consumer"))
        let reading = Task { try await dlqConsumer.run() }
        for try await message in dlqConsumer.messages { read.append(message) }
        dlqConsumer.triggerGracefulShutdown()
        try await reading.value
        #expect(read.map(\.offset) == [0, 1])
        #expect(read.map { $0.value.map { Array($0.readableBytesView) } } == [Self.orders[1], Self.orders[2]])
        let headers = read[0].headers.reduce(into: [String: String]()) { $0[$1.key] = $1.value.map { String(buffer: $0) } }
        #expect(headers["eventflow-original-topic"] == "orders")
        #expect(headers["eventflow-original-partition"] == "0")
        #expect(headers["eventflow-original-offset"] == "1")
        #expect(headers["eventflow-reason"] == "order 1 rejected")
        await harness.broker.shutdown()
    }

    @Test func unreadableOrMissingOriginHeadersStillWriteARowThatSaysSo() async throws {
        let harness = try await BrokerHarness.start(partitions: 1)
        let headers: [[RecordHeader]] = [
            [],
            [RecordHeader(key: "kafka_dlt-original-topic", value: Array("orders".utf8)),
             RecordHeader(key: "kafka_dlt-original-partition", value: [0, 0, 1]),  // 3 bytes: no int32
             RecordHeader(key: "kafka_dlt-original-offset", value: [0, 0, 0, 0, 0, 0, 0, 7]),
             RecordHeader(key: "kafka_dlt-exception-message", value: Array("boom".utf8))],
        ]
        _ = try await Self.produce([Array("plain text".utf8), Array("[1, 2]".utf8)], to: "orders.dlq", headers: headers, harness)
        let db = try harness.database()
        defer { db.close() }
        let rows = try Self.rows(db, org: harness.organization.id)
        #expect(rows.count == 2)
        // Without an origin the event id is the dead-letter record's own.
        #expect(rows[0].eventID == rows[0].id)
        #expect(rows[0].reason == DeadLetterHeaders.noReason)
        #expect(Self.json(rows[0].payload) == Self.json(#"{"encoding": "base64", "data": "cGxhaW4gdGV4dA=="}"#))
        #expect(rows[1].eventID == rows[1].id)
        #expect(rows[1].originalStreamID == harness.stream.id.uuidString.lowercased())
        #expect(rows[1].reason.hasPrefix("boom ["))
        #expect(rows[1].reason.contains("kafka_dlt-original-partition is unreadable (3 bytes, expected a 4-byte big-endian integer)"))
        #expect(Self.json(rows[1].payload) == Self.json("[1, 2]"))
        await harness.broker.shutdown()
    }

    @Test func anOrganizationsDeadLettersNeverResolveToAnotherOrganizationsStreams() async throws {
        let harness = try await BrokerHarness.start(partitions: 1)
        let db = try harness.database()
        defer { db.close() }
        let other = try Organizations.create(db, name: "globex")
        let otherKey = try APIKeys.create(db, org: other, label: "globex")
        let billing = try Streams.create(db, org: other, name: "billing")
        _ = try Streams.create(db, org: other, name: "orders")
        let origin = [RecordHeader(key: "eventflow-original-topic", value: Array("billing".utf8)),
                      RecordHeader(key: "eventflow-original-partition", value: Array("0".utf8)),
                      RecordHeader(key: "eventflow-original-offset", value: Array("0".utf8))]
        // acme names globex's stream "billing": no such stream in acme, so no origin is resolved.
        _ = try await Self.produce([Array("{}".utf8)], to: "orders.dlq", headers: [origin], harness)
        let acmeRows = try Self.rows(db, org: harness.organization.id)
        #expect(acmeRows.count == 1)
        #expect(acmeRows[0].originalStreamID == nil)
        #expect(acmeRows[0].eventID == acmeRows[0].id)
        #expect(acmeRows[0].eventID != EventID.derive(streamID: billing.id, partition: 0, offset: 0).uuidString.lowercased())
        // globex's own orders.dlq is its own stream, and its rows are only its own.
        _ = try await Self.produce([Array("{}".utf8)], to: "orders.dlq", headers: [origin], harness, key: otherKey)
        let globexRows = try Self.rows(db, org: other.id)
        #expect(globexRows.map(\.eventID) == [EventID.derive(streamID: billing.id, partition: 0, offset: 0).uuidString.lowercased()])
        #expect(try DeadLetters.list(db, org: other).map(\.id.uuidString) == globexRows.map { $0.id.uppercased() })
        #expect(try DeadLetters.list(db, org: harness.organization).map(\.id.uuidString) == acmeRows.map { $0.id.uppercased() })
        #expect(try Streams.find(db, org: other, name: "orders.dlq").id != Streams.find(db, org: harness.organization, name: "orders.dlq").id)
        await harness.broker.shutdown()
    }

    @Test func deadLetterStreamNamesFollowTheirRules() async throws {
        let harness = try await BrokerHarness.start(partitions: 1)
        let db = try harness.database()
        defer { db.close() }
        #expect(throws: TenancyError.self) { try Streams.create(db, org: harness.organization, name: "x.dlq", partitions: 2) }
        #expect(throws: TenancyError.self) { try Streams.create(db, org: harness.organization, name: "x.dlq.dlq") }
        // A produce to the dead-letter stream of a stream that does not exist is refused.
        let producer = try Self.producer(harness)
        let running = Task { try await producer.run() }
        await #expect(throws: ProducerError.self) {
            _ = try await producer.sendAndAwait(ProducerMessage(stream: "nothing.dlq", value: "x"))
        }
        await producer.shutdown()
        _ = try? await running.value
        #expect(try db.query("SELECT 1 FROM event_streams WHERE name = 'nothing.dlq'").isEmpty)
        await harness.broker.shutdown()
    }

    /// The hot path: a flush without dead-letter batches issues exactly BEGIN, COPY, COMMIT, as
    /// before dead letters existed; one with them adds its statements inside the same transaction.
    @Test func aFlushWithoutDeadLettersIssuesOnlyBeginCopyCommit() async throws {
        let harness = try await BrokerHarness.start(partitions: 1)
        let db = try harness.database()
        defer { db.close() }
        var statements: [String] = []
        db.onStatement = { statements.append(String($0.prefix { $0 != " " })) }
        let batch = try producedBatch(count: 1)
        let bytes = Array(batch.readableBytesView)
        func copy(baseOffset: Int64) -> EventBatchCopy {
            var copy = EventBatchCopy()
            copy.append(EventBatchRow(streamID: harness.stream.id, partition: 0, baseOffset: baseOffset, lastOffset: baseOffset,
                                      recordCount: 1, firstTimestampMilliseconds: 0, maxTimestampMilliseconds: 0, codec: 0),
                        batchByteCount: bytes.count) { destination in bytes.withUnsafeBytes { destination.copyMemory(from: $0) } }
            return copy
        }
        try EventBatchLog.write(db, copy(baseOffset: 0))
        #expect(statements == ["BEGIN", "COPY", "COMMIT"])
        // The batcher hands the writer no dead letters for a flush of ordinary batches: nothing decoded.
        let flush = GroupCommit.Flush(id: .init(1), batches: [GroupCommit.Batch(
            partition: StreamPartition(streamID: harness.stream.id, partition: 0), baseOffset: 1, lastOffset: 1, recordCount: 1,
            receivedBytes: batch, producer: nil, ackMode: .durable, token: RequestToken(1))], byteCount: batch.readableBytes)
        #expect(WriteAheadBatcher.deadLetterRecords(of: flush, decompressedBytesMax: 1 << 20).isEmpty)

        statements = []
        let record = DeadLetterRecord(organizationID: harness.organization.id, dlqStreamID: harness.stream.id, dlqPartition: 0,
                                      dlqOffset: 1, originalTopic: "orders", originalPartition: 0, originalOffset: 0,
                                      reason: "test", value: Array("{}".utf8))
        try EventBatchLog.write(db, copy(baseOffset: 1), deadLetters: [record])
        #expect(statements.first == "BEGIN" && statements.last == "COMMIT")
        #expect(statements.dropFirst(2).dropLast().allSatisfy { ["SELECT", "SAVEPOINT", "INSERT", "RELEASE"].contains($0) })
        #expect(try db.query("SELECT count(*) AS n FROM dead_letter_events")[0]["n"] == "1")
        await harness.broker.shutdown()
    }

    /// kafka-python with Spring's headers, confluent-kafka with Kafka Connect's
    /// (scripts/kafka-dead-letters.py): each consumes "orders" and dead-letters the failing records.
    @Test(arguments: ["kafka-python", "confluent"])
    func anExistingClientDeadLettersWithItsFrameworksHeaders(client: String) async throws {
        let harness = try await BrokerHarness.start(partitions: 1)
        _ = try await Self.produce(Self.orders, to: "orders", harness)
        let probe = try Program.run("/usr/bin/env", ["python3", "-c", "import confluent_kafka, kafka"])
        try #require(probe.exitCode == 0, "the Kafka clients are needed: scripts/install-deps.sh --python (\(probe.output))")
        let script = KafkaPythonTests.packageRoot.appendingPathComponent("scripts/kafka-dead-letters.py").path
        let arguments = ["python3", script, client, "localhost:\(harness.broker.port)", harness.certificates.certificateAuthority,
                         harness.key.key.id.uuidString, harness.key.secret, "orders", String(Self.orders.count)]
        let result = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<ProgramResult, any Error>) in
            Thread.detachNewThread { continuation.resume(with: Result { try Program.run("/usr/bin/env", arguments) }) }
        }
        try #require(result.exitCode == 0, "\(client) failed: \(result.output)")
        struct Sent: Decodable { var partition: Int32; var offset: Int64; var dlq_offset: Int64; var reason: String }
        let sent = try result.output.split(separator: "\n").filter { $0.hasPrefix("{") }
            .map { try JSONDecoder().decode(Sent.self, from: Data($0.utf8)) }
        #expect(sent.map(\.offset) == [1, 2])
        #expect(sent.map(\.dlq_offset) == [0, 1])

        let db = try harness.database()
        defer { db.close() }
        let rows = try Self.rows(db, org: harness.organization.id)
        #expect(rows.map(\.dlqOffset) == [0, 1])
        #expect(rows.map(\.eventID) == sent.map {
            EventID.derive(streamID: harness.stream.id, partition: $0.partition, offset: $0.offset).uuidString.lowercased()
        })
        let className = client == "confluent" ? "org.apache.kafka.connect.errors.DataException"
            : "org.springframework.kafka.listener.ListenerExecutionFailedException"
        #expect(rows.map(\.reason) == sent.map { "\(className): order \($0.offset) failed validation" })
        #expect(Self.json(rows[0].payload) == Self.json(#"{"id": 2, "fail": true}"#))
        #expect(Self.json(rows[1].payload) == Self.json(#"{"encoding": "base64", "data": "AP8Qew=="}"#))
        await harness.broker.shutdown()
    }
}
