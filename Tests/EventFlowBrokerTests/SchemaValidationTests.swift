@testable import EventFlowBroker
import EventFlowClient
import EventFlowProtocol
@testable import EventFlowStorage
import EventFlowTestSupport
import Foundation
import NIOCore
import Testing

/// Streams with a payload schema (docs/storage.md, "Schema validation"): Produce checks every
/// record; a batch holding an invalid one is refused INVALID_RECORD with the records named (v8),
/// nothing of it is stored, and each invalid record is written to `dead_letter_events`.
@Suite struct SchemaValidationTests {
    static let schema = """
        {"type": "object", "required": ["id", "total"],
         "properties": {"id": {"type": "integer"}, "total": {"type": "integer", "minimum": 0}}}
        """

    static func withSchema(_ db: PostgresConnection, _ stream: EventStream) throws {
        try Streams.setSchema(db, org: try Organizations.find(db, "acme"), name: stream.name, schema)
    }

    static func batch(_ values: [String?], compression: RecordBatchBuilder.Compression = .lz4()) throws -> ByteBuffer {
        var builder = RecordBatchBuilder(configuration: .init(compression: compression))
        for (index, value) in values.enumerated() {
            builder.append(timestamp: 1_780_000_000_000, key: Array("k\(index)".utf8), value: value.map { Array($0.utf8) })
        }
        return try builder.build()
    }

    struct DeadLetterRow: Hashable {
        var reason: String
        var payload: String?
        var originalStreamID: String?
        var originalPartition: String?
        var originalOffset: String?
        var idIsEventID: Bool
    }

    static func deadLetters(_ db: PostgresConnection) throws -> [DeadLetterRow] {
        try db.query("""
            SELECT reason, payload::text AS payload, original_stream_id, original_partition, original_offset, id = event_id AS same
            FROM dead_letter_events ORDER BY reason
            """).map { row in
            DeadLetterRow(reason: row["reason"] ?? "", payload: row["payload"], originalStreamID: row["original_stream_id"],
                          originalPartition: row["original_partition"], originalOffset: row["original_offset"], idIsEventID: row["same"] == "t")
        }
    }

    static func storedRecords(_ db: PostgresConnection, _ stream: EventStream) throws -> Int {
        Int(try db.query("SELECT coalesce(sum(record_count), 0) AS n FROM event_batches WHERE stream_id = $1",
                         [stream.id.uuidString])[0]["n"] ?? "") ?? -1
    }

    @Test func anInvalidRecordRefusesItsBatchNamesTheRecordAndIsDeadLettered() async throws {
        let harness = try await BrokerHarness.start(partitions: 1, prepare: Self.withSchema)
        let connection = try await harness.authenticatedConnection()

        let valid = try Self.batch([#"{"id": 1, "total": 10}"#, #"{"id": 2, "total": 0.0, "note": "x"}"#])
        let (_, stored) = try await connection.call(produceRequest(topic: "orders", batch: valid), version: 8)
        let storedAnswer = try #require(stored.responses.first?.partitionResponses.first)
        #expect(storedAnswer.errorCode == .noError)
        #expect(storedAnswer.baseOffset == 0)
        #expect(storedAnswer.recordErrors.isEmpty && storedAnswer.errorMessage == nil)

        let mixed = try Self.batch([#"{"id": 3, "total": 5}"#, #"{"id": 4, "total": "5"}"#, #"{"id": 5, "total": 1}"#,
                                    "not json", nil])
        let (_, refused) = try await connection.call(produceRequest(topic: "orders", batch: mixed), version: 8)
        let answer = try #require(refused.responses.first?.partitionResponses.first)
        #expect(answer.errorCode == .invalidRecord)
        #expect(answer.baseOffset == -1)
        #expect(answer.recordErrors == [
            .init(batchIndex: 1, message: "/total: expected integer, got string"),
            .init(batchIndex: 3, message: "not JSON: invalid literal at byte 0"),
            .init(batchIndex: 4, message: "the record has no value (null); the stream's schema needs a JSON value"),
        ])
        #expect(answer.errorMessage == "3 of 5 records do not match the stream's schema; record 1: /total: expected integer, got string")

        // The same refusal at v7 carries only the code.
        let (_, older) = try await connection.call(produceRequest(topic: "orders", batch: mixed), version: 7)
        #expect(older.responses.first?.partitionResponses.first?.errorCode == .invalidRecord)

        // Nothing of the refused batch was stored: the next batch continues at offset 2.
        let (_, next) = try await connection.call(produceRequest(topic: "orders", batch: try Self.batch([#"{"id": 6, "total": 6}"#])),
                                                  version: 8)
        #expect(next.responses.first?.partitionResponses.first?.baseOffset == 2)
        let db = try harness.database()
        defer { db.close() }
        #expect(try Self.storedRecords(db, harness.stream) == 3)

        // Each invalid record, once per refusal (v8 and v7): reason, payload, origin, no offset.
        let rows = try Self.deadLetters(db)
        #expect(rows.count == 6)
        let streamID = harness.stream.id.uuidString.lowercased()
        #expect(Set(rows) == [
            DeadLetterRow(reason: "schema validation: /total: expected integer, got string", payload: #"{"id": 4, "total": "5"}"#,
                          originalStreamID: streamID, originalPartition: "0", originalOffset: nil, idIsEventID: true),
            DeadLetterRow(reason: "schema validation: not JSON: invalid literal at byte 0",
                          payload: #"{"data": "bm90IGpzb24=", "encoding": "base64"}"#,
                          originalStreamID: streamID, originalPartition: "0", originalOffset: nil, idIsEventID: true),
            DeadLetterRow(reason: "schema validation: the record has no value (null); the stream's schema needs a JSON value",
                          payload: nil, originalStreamID: streamID, originalPartition: "0", originalOffset: nil, idIsEventID: true),
        ])
        // `eventflow dlq list orders` shows them: known by their original stream, no .dlq record.
        let listed = try DeadLetters.list(db, org: harness.organization, stream: "orders")
        #expect(listed.count == 6)
        #expect(listed.allSatisfy { $0.originalStream == "orders" && $0.stream == nil && $0.offset == nil })
        #expect(try DeadLetters.list(db, org: harness.organization, stream: "payments").isEmpty)
        let other = try Organizations.create(db, name: "other")
        #expect(try DeadLetters.list(db, org: other).isEmpty)
        await connection.close()
        await harness.broker.shutdown()
    }

    @Test func aStreamWithoutASchemaStoresAnyValueAndASchemaSetLaterIsEnforced() async throws {
        let harness = try await BrokerHarness.start(partitions: 1)
        let connection = try await harness.authenticatedConnection()
        let loose = try Self.batch(["not json", #"{"id": "x"}"#], compression: .none)
        let (_, first) = try await connection.call(produceRequest(topic: "orders", batch: loose), version: 8)
        #expect(first.responses.first?.partitionResponses.first?.errorCode == .noError)

        let db = try harness.database()
        defer { db.close() }
        try Self.withSchema(db, harness.stream)
        // The broker's stream lookups are cached for StreamDirectory.cacheMilliseconds.
        var answers: [ErrorCode] = []
        for _ in 0..<100 {
            let (_, answer) = try await connection.call(produceRequest(topic: "orders", batch: try Self.batch([#"{"id": "x"}"#])), version: 8)
            let code = answer.responses.first?.partitionResponses.first?.errorCode ?? .unknownServerError
            answers.append(code)
            if code == .invalidRecord { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(answers.last == .invalidRecord)
        #expect(answers.dropLast().allSatisfy { $0 == .noError })
        #expect(try Self.storedRecords(db, harness.stream) == 2 + answers.count - 1)
        await connection.close()
        await harness.broker.shutdown()
    }

    @Test func aBatchOfManyInvalidRecordsNamesAndDeadLettersABoundedNumberOfThem() async throws {
        let harness = try await BrokerHarness.start(partitions: 1, prepare: Self.withSchema)
        let connection = try await harness.authenticatedConnection()
        let count = ProduceCollector.refusedRecordsMax + 500
        let values = (0..<count).map { #"{"id": \#($0)}"# }
        let (_, refused) = try await connection.call(produceRequest(topic: "orders", batch: try Self.batch(values)), version: 8)
        let answer = try #require(refused.responses.first?.partitionResponses.first)
        #expect(answer.errorCode == .invalidRecord)
        #expect(answer.recordErrors.count == ProduceCollector.refusedRecordsMax)
        #expect(answer.recordErrors.first == .init(batchIndex: 0, message: "/: required property 'total' is missing"))
        #expect(answer.errorMessage == "\(count) of \(count) records do not match the stream's schema; record 0: "
            + "/: required property 'total' is missing (\(ProduceCollector.refusedRecordsMax) of them named and dead-lettered: "
            + "at most \(ProduceCollector.refusedRecordsMax) records and 4 MiB of values per request)")
        let db = try harness.database()
        defer { db.close() }
        #expect(try Self.deadLetters(db).count == ProduceCollector.refusedRecordsMax)
        #expect(try Self.storedRecords(db, harness.stream) == 0)
        await connection.close()
        await harness.broker.shutdown()
    }

    @Test func thePartitionTwiceInOneRequestIsRefusedWithoutDeadLetters() async throws {
        let harness = try await BrokerHarness.start(partitions: 1, prepare: Self.withSchema)
        let connection = try await harness.authenticatedConnection()
        let invalid = try Self.batch([#"{"id": "x"}"#]), valid = try Self.batch([#"{"id": 1, "total": 1}"#])
        let request = ProduceRequest(acks: -1, timeoutMs: 30_000, topicData: [
            .init(name: "orders", partitionData: [.init(index: 0, records: invalid), .init(index: 0, records: valid)]),
        ])
        let (_, response) = try await connection.call(request, version: 8)
        let answers = try #require(response.responses.first?.partitionResponses)
        #expect(answers.map(\.errorCode) == [.invalidRequest, .invalidRequest])
        #expect(answers.allSatisfy { $0.recordErrors.isEmpty && $0.errorMessage == "partition 0 of orders appears twice in the request" })
        let db = try harness.database()
        defer { db.close() }
        #expect(try Self.deadLetters(db).isEmpty)
        #expect(try Self.storedRecords(db, harness.stream) == 0)
        await connection.close()
        await harness.broker.shutdown()
    }

    /// Refused records whose rows cannot be written are answered the retriable KAFKA_STORAGE_ERROR,
    /// never INVALID_RECORD without their rows: the producer's retry writes them.
    @Test func refusedRecordsWhoseRowsCannotBeWrittenAreAnsweredRetriably() async throws {
        let harness = try await BrokerHarness.start(partitions: 1, prepare: Self.withSchema)
        let db = try harness.database()
        defer { db.close() }
        try db.execute("""
            CREATE FUNCTION refuse_dead_letters() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'dead_letter_events is read-only in this test'; END $$
            """)
        try db.execute("""
            CREATE TRIGGER refuse_dead_letters BEFORE INSERT ON dead_letter_events
            FOR EACH ROW EXECUTE FUNCTION refuse_dead_letters()
            """)
        let connection = try await harness.authenticatedConnection()
        let invalid = try Self.batch([#"{"id": "x"}"#])
        let (_, first) = try await connection.call(produceRequest(topic: "orders", batch: invalid), version: 8)
        let failed = try #require(first.responses.first?.partitionResponses.first)
        #expect(failed.errorCode == .kafkaStorageError)
        #expect(failed.errorCode.isRetriable)
        #expect(failed.errorMessage == "the refused records could not be written to dead_letter_events; retry")
        #expect(try Self.deadLetters(db).isEmpty)

        try db.execute("DROP TRIGGER refuse_dead_letters ON dead_letter_events")
        let (_, retried) = try await connection.call(produceRequest(topic: "orders", batch: invalid), version: 8)
        #expect(retried.responses.first?.partitionResponses.first?.errorCode == .invalidRecord)
        #expect(try Self.deadLetters(db).map(\.reason) == ["schema validation: /id: expected integer, got string"])
        await connection.close()
        await harness.broker.shutdown()
    }

    @Test func anInvalidRecordSentWithAcksZeroIsStillDeadLetteredAndTheConnectionCloses() async throws {
        let harness = try await BrokerHarness.start(partitions: 1, prepare: Self.withSchema)
        let connection = try await harness.authenticatedConnection()
        let invalid = try Self.batch([#"{"id": 1, "total": 1}"#, #"{"id": "one"}"#])
        _ = try await connection.send(produceRequest(topic: "orders", batch: invalid, acks: 0), version: 8)
        // No answer for acks=0: the refusal closes the connection, the only signal such a producer gets.
        #expect(await connection.receiveFrame() == nil)
        let db = try harness.database()
        defer { db.close() }
        #expect(try await eventually { try Self.deadLetters(db).count == 1 })
        #expect(try Self.deadLetters(db).map(\.reason) == ["schema validation: /id: expected integer, got string"])
        #expect(try Self.storedRecords(db, harness.stream) == 0)
        await harness.broker.shutdown()
    }

    @Test func theSwiftProducerReportsTheRefusalWithTheRecordsMessage() async throws {
        let harness = try await BrokerHarness.start(partitions: 1, prepare: Self.withSchema)
        let producer = try DeadLetterTests.producer(harness)
        let running = Task { try await producer.run() }
        let accepted = try await producer.sendAndAwait(ProducerMessage(stream: "orders", value: #"{"id": 1, "total": 3}"#))
        #expect(accepted.offset == 0)
        do {
            _ = try await producer.sendAndAwait(ProducerMessage(stream: "orders", value: #"{"id": 2, "total": -3}"#))
            Issue.record("an invalid record was acknowledged")
        } catch {
            guard case .broker(let code, let message) = error else { throw error }
            #expect(code == .invalidRecord)
            #expect(message?.contains("record 0: /total: -3 is less than the minimum 0") == true, "\(message ?? "nil")")
        }
        await producer.shutdown()
        try await running.value
        let db = try harness.database()
        defer { db.close() }
        #expect(try Self.deadLetters(db).map(\.reason) == ["schema validation: /total: -3 is less than the minimum 0"])
        await harness.broker.shutdown()
    }

    /// kafka-python and confluent-kafka (librdkafka) produce to a validated stream
    /// (scripts/kafka-schema-produce.py): valid records are acknowledged, invalid ones fail with
    /// INVALID_RECORD in each client's own error type.
    @Test(arguments: ["kafka-python", "confluent"])
    func existingClientsSeeInvalidRecordForARecordTheSchemaRefuses(client: String) async throws {
        let harness = try await BrokerHarness.start(partitions: 1, prepare: Self.withSchema)
        let probe = try Program.run("/usr/bin/env", ["python3", "-c", "import confluent_kafka, kafka"])
        try #require(probe.exitCode == 0, "the Kafka clients are needed: scripts/install-deps.sh --python (\(probe.output))")
        let script = KafkaPythonTests.packageRoot.appendingPathComponent("scripts/kafka-schema-produce.py").path
        let values = [#"{"id": 1, "total": 1}"#, #"{"id": 2}"#, #"{"id": 3, "total": 3}"#]
        let arguments = ["python3", script, client, "localhost:\(harness.broker.port)", harness.certificates.certificateAuthority,
                         harness.key.key.id.uuidString, harness.key.secret, "orders"] + values
        let result = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<ProgramResult, any Error>) in
            Thread.detachNewThread { continuation.resume(with: Result { try Program.run("/usr/bin/env", arguments) }) }
        }
        try #require(result.exitCode == 0, "\(client) failed: \(result.output)")
        struct Outcome: Decodable { var index: Int; var offset: Int64?; var error: String? }
        let outcomes = try result.output.split(separator: "\n").filter { $0.hasPrefix("{") }
            .map { try JSONDecoder().decode(Outcome.self, from: Data($0.utf8)) }
            .sorted { $0.index < $1.index }
        #expect(outcomes.map(\.index) == [0, 1, 2])
        // One record per request (the script flushes after each): only the invalid one is refused.
        #expect(outcomes.map(\.offset) == [0, nil, 1])
        #expect(outcomes[1].error?.uppercased().contains("INVALID_RECORD") == true || outcomes[1].error?.contains("InvalidRecord") == true,
                "\(outcomes[1].error ?? "nil")")
        let db = try harness.database()
        defer { db.close() }
        #expect(try Self.storedRecords(db, harness.stream) == 2)
        #expect(try Self.deadLetters(db).map(\.reason) == ["schema validation: /: required property 'total' is missing"])
        await harness.broker.shutdown()
    }
}
