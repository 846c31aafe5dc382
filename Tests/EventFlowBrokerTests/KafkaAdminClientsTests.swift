@testable import EventFlowBroker
import EventFlowProtocol
@testable import EventFlowStorage
import EventFlowTestSupport
import Foundation
import Testing

/// Existing admin clients against the broker over TLS + SASL PLAIN (scripts/kafka-admin.py):
/// confluent-kafka's AdminClient (librdkafka 2.x) and kafka-python's KafkaAdminClient describe
/// and alter topic configs, are refused what EventFlow cannot store, grow a topic, and produce to
/// the new partition. Their view is checked against the stream's row and the stored batches.
@Suite struct KafkaAdminClientsTests {
    struct Step: Decodable {
        struct Entry: Decodable, Equatable {
            var value: String?
            var read_only: Bool
            var source: String?
        }
        var step: String
        var configs: [String: Entry]?
        var code: Int?
        var name: String?
        var message: String?
        var partitions: [Int32]?
        var partition: Int32?
        var offset: Int64?
    }

    static func run(_ client: String, _ harness: BrokerHarness) async throws -> [String: Step] {
        let probe = try Program.run("/usr/bin/env", ["python3", "-c", "import confluent_kafka, kafka"])
        try #require(probe.exitCode == 0, "the Kafka clients are needed: scripts/install-deps.sh --python (\(probe.output))")
        let script = KafkaPythonTests.packageRoot.appendingPathComponent("scripts/kafka-admin.py").path
        let arguments = ["python3", script, client, "localhost:\(harness.broker.port)", harness.certificates.certificateAuthority,
                         harness.key.key.id.uuidString, harness.key.secret, "orders"]
        let result = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<ProgramResult, any Error>) in
            Thread.detachNewThread { continuation.resume(with: Result { try Program.run("/usr/bin/env", arguments) }) }
        }
        try #require(result.exitCode == 0, "\(client) failed: \(result.output)")
        var steps: [String: Step] = [:]
        for line in result.output.split(separator: "\n") where line.hasPrefix("{") {
            let step = try JSONDecoder().decode(Step.self, from: Data(line.utf8))
            steps[step.step] = step
        }
        return steps
    }

    @Test(arguments: ["confluent", "kafka-python"])
    func anAdminClientDescribesAltersAndGrowsATopic(client: String) async throws {
        let harness = try await BrokerHarness.start(partitions: 1)
        let steps = try await Self.run(client, harness)
        let described = try #require(steps["describe"]?.configs)
        #expect(described["retention.ms"]?.value == "604800000")
        #expect(described["retention.ms"]?.read_only == false)
        #expect(described["cleanup.policy"]?.value == "delete")
        #expect(described["max.message.bytes"]?.value == String(1 << 20))
        #expect(described["max.message.bytes"]?.read_only == true)
        #expect(described["retention.ms"]?.source == "DEFAULT_CONFIG")
        #expect(steps["alter"]?.configs?["retention.ms"]?.value == "7200000")
        #expect(steps["alter"]?.configs?["retention.ms"]?.source == "DYNAMIC_TOPIC_CONFIG")
        let afterIncremental = client == "confluent" ? "7200000" : "10800000"
        #expect(steps["incremental_alter"]?.configs?["retention.ms"]?.value == afterIncremental)
        #expect(steps["refused_retention"]?.message?.contains("not a whole number of hours") == true)
        #expect(steps["refused_compact"]?.message?.contains("compaction is not implemented") == true)
        if client == "confluent" {
            #expect(steps["refused_retention"]?.code == Int(ErrorCode.invalidConfig.rawValue))
            #expect(steps["refused_compact"]?.code == Int(ErrorCode.invalidConfig.rawValue))
        } else {
            #expect(steps["refused_retention"]?.message?.contains("InvalidConfigurationError") == true)
        }
        #expect(steps["refused_shrink"]?.code == Int(ErrorCode.invalidPartitions.rawValue))
        #expect(steps["partitions"]?.partitions == [0, 1, 2])
        #expect(steps["produced"]?.partition == 2)
        #expect(steps["produced"]?.offset == 0)

        // What they did is in PostgreSQL: the row, and the record on the new partition.
        let db = try harness.database()
        defer { db.close() }
        let stream = try Streams.find(db, org: harness.organization, name: "orders")
        #expect(stream.partitions == 3)
        #expect(stream.retentionHours == (client == "confluent" ? 2 : 3))
        let rows = try storedRows(db, streamID: harness.stream.id)
        #expect(rows.map(\.partition) == [2])
        #expect(rows.map(\.recordCount) == [1])
        await harness.broker.shutdown()
    }
}
