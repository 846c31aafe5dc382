@testable import EventFlowBroker
import EventFlowProtocol
@testable import EventFlowStorage
import Foundation
import NIOCore
import Testing

/// DescribeConfigs, AlterConfigs, IncrementalAlterConfigs and CreatePartitions on the wire
/// (protocol/configs.md): a real broker over TLS, real PostgreSQL, a raw client. Values are
/// checked against the stream's row.
@Suite struct TopicConfigsTests {
    func row(_ harness: BrokerHarness, _ name: String = "orders") throws -> (partitions: Int, retentionHours: Int) {
        let db = try harness.database()
        defer { db.close() }
        let stream = try Streams.find(db, org: harness.organization, name: name)
        return (stream.partitions, stream.retentionHours)
    }

    static let topic = ConfigResourceType.topic

    @Test func describeConfigsReadsTheStreamRowAtEveryVersion() async throws {
        let harness = try await BrokerHarness.start(partitions: 2)
        let db = try harness.database()
        try Streams.alter(db, org: harness.organization, name: "orders", retentionHours: 24)
        _ = try Streams.create(db, org: harness.organization, name: "audit")
        db.close()
        let connection = try await harness.authenticatedConnection()
        let request = DescribeConfigsRequest(resources: [
            .init(resourceType: Self.topic, resourceName: "orders"),
            .init(resourceType: Self.topic, resourceName: "audit", configurationKeys: ["retention.ms", "no.such.config"]),
            .init(resourceType: Self.topic, resourceName: "missing"),
            .init(resourceType: ConfigResourceType.broker, resourceName: "1"),
            .init(resourceType: 3, resourceName: "billing"),
        ], includeSynonyms: false)
        for version in Int16(0)...4 {
            let (_, response) = try await connection.call(request, version: version)
            #expect(response.results.map(\.resourceName) == ["orders", "audit", "missing", "1", "billing"])
            #expect(response.results.map(\.errorCode) == [.noError, .noError, .unknownTopicOrPartition, .invalidRequest, .invalidRequest])
            #expect(response.results[2].errorMessage == "topic 'missing' does not exist")
            #expect(response.results[3].errorMessage?.contains("broker configs are not served") == true)
            #expect(response.results[4].errorMessage?.contains("resource type 3 is not supported") == true)
            let orders = response.results[0].configs
            #expect(orders.map(\.name) == ["cleanup.policy", "max.message.bytes", "retention.ms"], "v\(version)")
            #expect(orders.map(\.value) == ["delete", String(1 << 20), String(24 * 3_600_000)])  // harness frameBytesMax = 1 MiB
            #expect(orders.map(\.readOnly) == [false, true, false])
            #expect(orders.allSatisfy { !$0.isSensitive && $0.synonyms.isEmpty })
            if version == 0 {
                #expect(orders.map(\.isDefault) == [true, true, false])
            } else {
                #expect(orders.map(\.configSource) == [ConfigSource.defaultConfig, ConfigSource.staticBrokerConfig, ConfigSource.dynamicTopicConfig])
            }
            if version >= 3 { #expect(orders.map(\.configType) == [ConfigType.list, ConfigType.int, ConfigType.long]) }
            let audit = response.results[1].configs
            #expect(audit.map(\.name) == ["retention.ms"])
            #expect(audit.map(\.value) == ["604800000"])
            if version == 0 { #expect(audit.map(\.isDefault) == [true]) } else { #expect(audit.map(\.configSource) == [ConfigSource.defaultConfig]) }
        }
        // Synonyms only when asked (v1+): the topic's own value, then the broker default.
        let (_, synonyms) = try await connection.call(DescribeConfigsRequest(resources: [
            .init(resourceType: Self.topic, resourceName: "orders", configurationKeys: ["retention.ms"])], includeSynonyms: true), version: 1)
        #expect(synonyms.results[0].configs[0].synonyms == [
            .init(name: "retention.ms", value: "86400000", source: ConfigSource.dynamicTopicConfig),
            .init(name: "log.retention.hours", value: "168", source: ConfigSource.defaultConfig),
        ])
        await connection.close()
        await harness.broker.shutdown()
    }

    @Test(arguments: [Int16(0), 2])
    func alterConfigsStoresRetentionInHoursAndRefusesWhatEventFlowCannotStore(version: Int16) async throws {
        let harness = try await BrokerHarness.start(partitions: 1)
        let connection = try await harness.authenticatedConnection()
        func alter(_ configs: [AlterConfigsRequest.Config], name: String = "orders", validateOnly: Bool = false)
            async throws -> AlterConfigsResourceResult {
            let (_, response) = try await connection.call(AlterConfigsRequest(resources: [
                .init(resourceType: Self.topic, resourceName: name, configs: configs)], validateOnly: validateOnly), version: version)
            return try #require(response.responses.first)
        }
        #expect(try await alter([.init(name: "retention.ms", value: "7200000")], validateOnly: true).errorCode == .noError)
        #expect(try row(harness).retentionHours == 168)
        let stored = try await alter([.init(name: "retention.ms", value: "7200000"), .init(name: "cleanup.policy", value: "delete")])
        #expect(stored.errorCode == .noError)
        #expect(stored.errorMessage == nil)
        #expect(try row(harness).retentionHours == 2)

        let refusals: [(AlterConfigsRequest.Config, String)] = [
            (.init(name: "retention.ms", value: "5400000"), "not a whole number of hours"),
            (.init(name: "retention.ms", value: "-1"), "keep forever"),
            (.init(name: "retention.ms", value: "0"), "positive"),
            (.init(name: "retention.ms", value: "soon"), "not a number"),
            (.init(name: "cleanup.policy", value: "compact"), "compaction is not implemented"),
            (.init(name: "max.message.bytes", value: "2048"), "cannot be set per stream"),
            (.init(name: "segment.bytes", value: "1024"), "not supported by EventFlow"),
        ]
        for (config, sentence) in refusals {
            let answer = try await alter([config])
            #expect(answer.errorCode == .invalidConfig, "\(config)")
            #expect(answer.errorMessage?.contains(sentence) == true, "\(config): \(answer.errorMessage ?? "nil")")
        }
        #expect(try row(harness).retentionHours == 2)
        // The broker's own value round-trips (describe, then alter with what was read).
        #expect(try await alter([.init(name: "retention.ms", value: "7200000"),
                                 .init(name: "max.message.bytes", value: String(1 << 20))]).errorCode == .noError)
        // AlterConfigs replaces the whole set: a config left out returns to its default.
        #expect(try await alter([.init(name: "cleanup.policy", value: "delete")]).errorCode == .noError)
        #expect(try row(harness).retentionHours == 168)
        #expect(try await alter([.init(name: "retention.ms", value: "3600000")], name: "missing").errorCode == .unknownTopicOrPartition)
        let (_, broker) = try await connection.call(AlterConfigsRequest(resources: [
            .init(resourceType: ConfigResourceType.broker, resourceName: "1", configs: [.init(name: "log.retention.hours", value: "1")])]),
            version: version)
        #expect(broker.responses.map(\.errorCode) == [.invalidRequest])
        await connection.close()
        await harness.broker.shutdown()
    }

    @Test(arguments: [Int16(0), 1])
    func incrementalAlterConfigsSetsAndDeletesOneConfigAtATime(version: Int16) async throws {
        let harness = try await BrokerHarness.start(partitions: 1)
        let connection = try await harness.authenticatedConnection()
        func alter(_ configs: [IncrementalAlterConfigsRequest.Config], validateOnly: Bool = false) async throws -> AlterConfigsResourceResult {
            let (_, response) = try await connection.call(IncrementalAlterConfigsRequest(resources: [
                .init(resourceType: Self.topic, resourceName: "orders", configs: configs)], validateOnly: validateOnly), version: version)
            return try #require(response.responses.first)
        }
        #expect(try await alter([.init(name: "retention.ms", configOperation: ConfigOperation.set, value: "10800000")]).errorCode == .noError)
        #expect(try row(harness).retentionHours == 3)
        // Configs not named keep their values.
        #expect(try await alter([.init(name: "cleanup.policy", configOperation: ConfigOperation.set, value: "delete")]).errorCode == .noError)
        #expect(try row(harness).retentionHours == 3)
        #expect(try await alter([.init(name: "retention.ms", configOperation: ConfigOperation.delete, value: nil)],
                                validateOnly: true).errorCode == .noError)
        #expect(try row(harness).retentionHours == 3)
        #expect(try await alter([.init(name: "retention.ms", configOperation: ConfigOperation.delete, value: nil)]).errorCode == .noError)
        #expect(try row(harness).retentionHours == 168)

        #expect(try await alter([.init(name: "cleanup.policy", configOperation: ConfigOperation.append, value: "delete")]).errorCode == .noError)
        #expect(try await alter([.init(name: "cleanup.policy", configOperation: ConfigOperation.append, value: "compact")]).errorCode == .invalidConfig)
        #expect(try await alter([.init(name: "retention.ms", configOperation: ConfigOperation.subtract, value: "1")]).errorCode == .invalidConfig)
        #expect(try await alter([.init(name: "retention.ms", configOperation: 9, value: "3600000")]).errorCode == .invalidRequest)
        let twice = try await alter([.init(name: "retention.ms", configOperation: ConfigOperation.set, value: "3600000"),
                                     .init(name: "retention.ms", configOperation: ConfigOperation.set, value: "7200000")])
        #expect(twice.errorCode == .invalidRequest)
        // A refused change stores nothing, even with a valid one beside it.
        let mixed = try await alter([.init(name: "retention.ms", configOperation: ConfigOperation.set, value: "3600000"),
                                     .init(name: "cleanup.policy", configOperation: ConfigOperation.set, value: "compact")])
        #expect(mixed.errorCode == .invalidConfig)
        #expect(try row(harness).retentionHours == 168)
        await connection.close()
        await harness.broker.shutdown()
    }

    @Test(arguments: [Int16(0), 3])
    func createPartitionsGrowsTheStreamAndANewPartitionTakesProduceAtOnce(version: Int16) async throws {
        let harness = try await BrokerHarness.start(partitions: 2)
        let connection = try await harness.authenticatedConnection()
        func grow(_ topics: [CreatePartitionsRequest.Topic], validateOnly: Bool = false) async throws -> [CreatePartitionsResponse.TopicResult] {
            try await connection.call(CreatePartitionsRequest(topics: topics, timeoutMs: 5000, validateOnly: validateOnly), version: version).1.results
        }
        #expect(try await grow([.init(name: "orders", count: 3)], validateOnly: true).map(\.errorCode) == [.noError])
        #expect(try row(harness).partitions == 2)
        // The produce path has seen the stream at 2 partitions (cached) before it grows.
        let (_, before) = try await connection.call(produceRequest(topic: "orders", partition: 1, batch: try producedBatch(count: 1)), version: 7)
        #expect(before.responses[0].partitionResponses[0].errorCode == .noError)

        #expect(try await grow([.init(name: "orders", count: 4, assignments: [.init(brokerIds: [0]), .init(brokerIds: [0])])])
            .map(\.errorCode) == [.noError])
        #expect(try row(harness).partitions == 4)
        let (_, metadata) = try await connection.call(MetadataRequest(topics: ["orders"]), version: 7)
        #expect(metadata.topics[0].partitions.map(\.partitionIndex) == [0, 1, 2, 3])
        let batch = try producedBatch(count: 3)
        let (_, produced) = try await connection.call(produceRequest(topic: "orders", partition: 3, batch: batch), version: 7)
        #expect(produced.responses[0].partitionResponses[0].errorCode == .noError)
        #expect(produced.responses[0].partitionResponses[0].baseOffset == 0)
        let db = try harness.database()
        let rows = try storedRows(db, streamID: harness.stream.id)
        db.close()
        #expect(rows.filter { $0.partition == 3 }.map(\.recordCount) == [3])

        let refused = try await grow([
            .init(name: "orders", count: 4),
            .init(name: "missing", count: 2),
            .init(name: "twice", count: 2), .init(name: "twice", count: 3),
        ])
        #expect(refused.map(\.errorCode) == [.invalidPartitions, .unknownTopicOrPartition, .invalidRequest, .invalidRequest])
        #expect(refused[0].errorMessage == "topic 'orders' already has 4 partitions")
        #expect(try await grow([.init(name: "orders", count: 1)]).map(\.errorCode) == [.invalidPartitions])
        #expect(try await grow([.init(name: "orders", count: Int32(Streams.partitionsMax + 1))]).map(\.errorCode) == [.invalidPartitions])
        #expect(try await grow([.init(name: "orders", count: 6, assignments: [.init(brokerIds: [0])])]).map(\.errorCode)
            == [.invalidReplicaAssignment])
        #expect(try await grow([.init(name: "orders", count: 5, assignments: [.init(brokerIds: [2])])]).map(\.errorCode)
            == [.invalidReplicaAssignment])
        #expect(try row(harness).partitions == 4)
        await connection.close()
        await harness.broker.shutdown()
    }

    @Test func aViewerKeyDescribesButCannotAlterOrGrow() async throws {
        let harness = try await BrokerHarness.start(partitions: 1)
        let db = try harness.database()
        let viewer = try APIKeys.create(db, org: harness.organization, label: "dashboards", role: "viewer")
        db.close()
        #expect(viewer.key.role == "viewer")
        let connection = try await harness.authenticatedConnection(keyID: viewer.key.id, secret: viewer.secret)
        let (_, described) = try await connection.call(DescribeConfigsRequest(resources: [
            .init(resourceType: Self.topic, resourceName: "orders", configurationKeys: ["retention.ms"])]), version: 4)
        #expect(described.results.map(\.errorCode) == [.noError])
        #expect(described.results[0].configs.map(\.value) == ["604800000"])
        let (_, altered) = try await connection.call(AlterConfigsRequest(resources: [
            .init(resourceType: Self.topic, resourceName: "orders", configs: [.init(name: "retention.ms", value: "3600000")])]), version: 2)
        #expect(altered.responses.map(\.errorCode) == [.topicAuthorizationFailed])
        #expect(altered.responses[0].errorMessage?.contains("admin role") == true)
        let (_, incremental) = try await connection.call(IncrementalAlterConfigsRequest(resources: [
            .init(resourceType: Self.topic, resourceName: "orders",
                  configs: [.init(name: "retention.ms", configOperation: ConfigOperation.set, value: "3600000")])]), version: 1)
        #expect(incremental.responses.map(\.errorCode) == [.topicAuthorizationFailed])
        let (_, grown) = try await connection.call(CreatePartitionsRequest(topics: [.init(name: "orders", count: 2)], timeoutMs: 1000), version: 3)
        #expect(grown.results.map(\.errorCode) == [.topicAuthorizationFailed])
        let (_, created) = try await connection.call(CreateTopicsRequest(topics: [
            .init(name: "viewers-topic", numPartitions: 1, replicationFactor: 1)], timeoutMs: 1000), version: 3)
        #expect(created.topics.map(\.errorCode) == [.clusterAuthorizationFailed])
        let (_, deleted) = try await connection.call(DeleteTopicsRequest(topicNames: ["orders"], timeoutMs: 1000), version: 3)
        #expect(deleted.responses.map(\.errorCode) == [.clusterAuthorizationFailed])
        #expect(try row(harness).partitions == 1)
        #expect(try row(harness).retentionHours == 168)
        // A viewer still produces.
        let (_, produced) = try await connection.call(produceRequest(topic: "orders", batch: try producedBatch(count: 1)), version: 7)
        #expect(produced.responses[0].partitionResponses[0].errorCode == .noError)
        await connection.close()
        await harness.broker.shutdown()
    }

    @Test func anotherOrganizationsTopicConfigsAreUnknownAndUnchanged() async throws {
        let harness = try await BrokerHarness.start(partitions: 1)
        let db = try harness.database()
        let globex = try Organizations.create(db, name: "globex")
        let globexKey = try APIKeys.create(db, org: globex, label: "b")
        _ = try Streams.create(db, org: globex, name: "ledger", partitions: 1, retentionHours: 5)
        db.close()
        // Acme's admin key names globex's "ledger": it does not exist for acme.
        let acme = try await harness.authenticatedConnection()
        let (_, described) = try await acme.call(DescribeConfigsRequest(resources: [.init(resourceType: Self.topic, resourceName: "ledger")]),
                                                 version: 4)
        #expect(described.results.map(\.errorCode) == [.unknownTopicOrPartition])
        #expect(described.results[0].configs.isEmpty)
        let (_, altered) = try await acme.call(AlterConfigsRequest(resources: [
            .init(resourceType: Self.topic, resourceName: "ledger", configs: [.init(name: "retention.ms", value: "3600000")])]), version: 2)
        #expect(altered.responses.map(\.errorCode) == [.unknownTopicOrPartition])
        let (_, incremental) = try await acme.call(IncrementalAlterConfigsRequest(resources: [
            .init(resourceType: Self.topic, resourceName: "ledger",
                  configs: [.init(name: "retention.ms", configOperation: ConfigOperation.delete, value: nil)])]), version: 1)
        #expect(incremental.responses.map(\.errorCode) == [.unknownTopicOrPartition])
        let (_, grown) = try await acme.call(CreatePartitionsRequest(topics: [.init(name: "ledger", count: 8)], timeoutMs: 1000), version: 3)
        #expect(grown.results.map(\.errorCode) == [.unknownTopicOrPartition])
        // Globex's own key sees its stream as it left it.
        let b = try await harness.authenticatedConnection(keyID: globexKey.key.id, secret: globexKey.secret)
        let (_, own) = try await b.call(DescribeConfigsRequest(resources: [
            .init(resourceType: Self.topic, resourceName: "ledger", configurationKeys: ["retention.ms"])]), version: 4)
        #expect(own.results[0].configs.map(\.value) == [String(5 * 3_600_000)])
        let check = try harness.database()
        let ledger = try Streams.find(check, org: globex, name: "ledger")
        check.close()
        #expect(ledger.partitions == 1)
        #expect(ledger.retentionHours == 5)
        await acme.close()
        await b.close()
        await harness.broker.shutdown()
    }
}
