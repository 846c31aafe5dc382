@testable import EventFlowBroker
import EventFlowProtocol
import EventFlowStorage
import Foundation
import NIOCore
import Testing

/// A valid key of organization A tries every API on organization B's streams and groups: it gets
/// nothing of B's, changes nothing of B's, and B's own key sees everything as B left it.
@Suite struct TenancyTests {
    @Test func aKeyOfOneOrganizationReachesNothingOfAnother() async throws {
        let harness = try await BrokerHarness.start(partitions: 1, configure: {
            $0.groups = .init(initialRebalanceDelayMilliseconds: 0)
        })
        let db = try harness.database()
        defer { db.close() }
        let globex = try Organizations.create(db, name: "globex")
        let globexKey = try APIKeys.create(db, org: globex, label: "b")
        _ = try Streams.create(db, org: globex, name: "ledger", partitions: 1)

        // B writes to its stream and commits a position in its group.
        let b = try await harness.authenticatedConnection(keyID: globexKey.key.id, secret: globexKey.secret)
        let (_, produced) = try await b.call(produceRequest(topic: "ledger", batch: try producedBatch(count: 4)), version: 7)
        #expect(produced.responses.first?.partitionResponses.first?.errorCode == .noError)
        let (_, committed) = try await b.call(OffsetCommitRequest(groupId: "payroll", topics: [
            .init(name: "ledger", partitions: [.init(partitionIndex: 0, committedOffset: 3, committedMetadata: "b")])]), version: 7)
        #expect(committed.topics.first?.partitions.first?.errorCode == .noError)

        // A, with a valid key of its own organization.
        let a = try await harness.authenticatedConnection()
        let (_, allTopics) = try await a.call(MetadataRequest(topics: nil), version: 7)
        #expect(allTopics.topics.map(\.name) == ["orders"])
        let (_, named) = try await a.call(MetadataRequest(topics: ["ledger"]), version: 7)
        #expect(named.topics.map(\.errorCode) == [.unknownTopicOrPartition])
        let (_, produce) = try await a.call(produceRequest(topic: "ledger", batch: try producedBatch(count: 1)), version: 7)
        #expect(produce.responses.first?.partitionResponses.first?.errorCode == .unknownTopicOrPartition)
        let fetch = FetchRequest(maxWaitMs: 0, minBytes: 0, maxBytes: 1 << 20, topics: [
            .init(topic: "ledger", partitions: [.init(partition: 0, fetchOffset: 0, partitionMaxBytes: 1 << 20)]),
        ])
        let (_, fetched) = try await a.call(fetch, version: 11)
        #expect(fetched.responses.first?.partitions.first?.errorCode == .unknownTopicOrPartition)
        #expect((fetched.responses.first?.partitions.first?.records?.readableBytes ?? 0) == 0)
        let (_, listed) = try await a.call(ListOffsetsRequest(topics: [.init(name: "ledger", partitions: [.init(partitionIndex: 0, timestamp: -1)])]), version: 5)
        #expect(listed.topics.first?.partitions.first?.errorCode == .unknownTopicOrPartition)
        let (_, deletedTopic) = try await a.call(DeleteTopicsRequest(topicNames: ["ledger"], timeoutMs: 1000), version: 3)
        #expect(deletedTopic.responses.map(\.errorCode) == [.unknownTopicOrPartition])
        // Groups: B's "payroll" does not exist for A.
        let (_, groups) = try await a.call(ListGroupsRequest(), version: 2)
        #expect(!groups.groups.map(\.groupId).contains("payroll"))
        let (_, described) = try await a.call(DescribeGroupsRequest(groups: ["payroll"]), version: 4)
        #expect(described.groups.map(\.groupState) == ["Dead"])
        let (_, offsets) = try await a.call(OffsetFetchRequest(groupId: "payroll", topics: nil), version: 5)
        #expect(offsets.topics.isEmpty)
        let (_, offsetsNamed) = try await a.call(OffsetFetchRequest(groupId: "payroll", topics: [.init(name: "ledger", partitionIndexes: [0])]), version: 5)
        #expect(offsetsNamed.topics.first?.partitions.first?.committedOffset == -1)
        let (_, deletedGroup) = try await a.call(DeleteGroupsRequest(groupsNames: ["payroll"]), version: 1)
        #expect(deletedGroup.results.map(\.errorCode) == [.groupIdNotFound])
        // Joining "payroll" makes A's own group; it cannot be assigned B's stream.
        let (_, joined) = try await a.call(JoinGroupRequest(
            groupId: "payroll", sessionTimeoutMs: 10_000, rebalanceTimeoutMs: 10_000, memberId: "", protocolType: "consumer",
            protocols: [.init(name: "range", metadata: ByteBuffer(bytes: [0]))]), version: 3)
        #expect(joined.errorCode == .noError)
        let (_, leave) = try await a.call(LeaveGroupRequest(groupId: "payroll", memberId: joined.memberId), version: 1)
        #expect(leave.errorCode == .noError)
        // A commit naming B's stream is refused per partition; one naming A's own lands in A's group.
        let (_, foreignCommit) = try await a.call(OffsetCommitRequest(groupId: "payroll", topics: [
            .init(name: "ledger", partitions: [.init(partitionIndex: 0, committedOffset: 0)]),
            .init(name: "orders", partitions: [.init(partitionIndex: 0, committedOffset: 0)])]), version: 7)
        #expect(foreignCommit.topics.map { $0.partitions.map(\.errorCode) } == [[.unknownTopicOrPartition], [.noError]])
        // A name is per organization: A creating "ledger" makes A's own stream, empty.
        let (_, created) = try await a.call(CreateTopicsRequest(topics: [
            .init(name: "ledger", numPartitions: 1, replicationFactor: 1, assignments: [], configs: [])], timeoutMs: 1000), version: 3)
        #expect(created.topics.map(\.errorCode) == [.noError])
        let (_, own) = try await a.call(ListOffsetsRequest(topics: [.init(name: "ledger", partitions: [.init(partitionIndex: 0, timestamp: -1)])]), version: 5)
        #expect(own.topics.first?.partitions.first?.offset == 0)

        await a.close()

        // B sees its stream, data and group exactly as it left them.
        let (_, bMetadata) = try await b.call(MetadataRequest(topics: nil), version: 7)
        #expect(bMetadata.topics.map(\.name) == ["ledger"])
        let (_, bFetched) = try await b.call(fetch, version: 11)
        #expect(bFetched.responses.first?.partitions.first?.errorCode == .noError)
        #expect(bFetched.responses.first?.partitions.first?.highWatermark == 4)
        let (_, bOffsets) = try await b.call(OffsetFetchRequest(groupId: "payroll", topics: nil), version: 5)
        #expect(bOffsets.topics.first?.partitions.first?.committedOffset == 3)
        #expect(bOffsets.topics.first?.partitions.first?.metadata == "b")
        let (_, bGroups) = try await b.call(ListGroupsRequest(), version: 2)
        #expect(bGroups.groups.map(\.groupId) == ["payroll"])
        await b.close()
        await harness.broker.shutdown()
    }

    /// Names with a NUL byte: no stream or group can have one (PostgreSQL's text cannot hold it), so
    /// every API answers as Kafka does for a name it does not know, and the connection keeps serving.
    /// Found by the broker fuzzer: the name reached PostgreSQL cut at the NUL (`22P02 malformed array
    /// literal: "{"or"`) and the connection was closed.
    @Test func namesWithANulByteAreUnknownAndTheConnectionKeepsServing() async throws {
        let harness = try await BrokerHarness.start(partitions: 1, configure: {
            $0.groups = .init(initialRebalanceDelayMilliseconds: 0)
        })
        let connection = try await harness.authenticatedConnection()
        let name = "or\u{0}ders"
        let (_, metadata) = try await connection.call(MetadataRequest(topics: [name]), version: 7)
        #expect(metadata.topics.map(\.errorCode) == [.unknownTopicOrPartition])
        let (_, produce) = try await connection.call(produceRequest(topic: name, batch: try producedBatch(count: 1)), version: 7)
        #expect(produce.responses.first?.partitionResponses.first?.errorCode == .unknownTopicOrPartition)
        let (_, fetched) = try await connection.call(FetchRequest(maxWaitMs: 0, minBytes: 0, maxBytes: 1 << 20, topics: [
            .init(topic: name, partitions: [.init(partition: 0, fetchOffset: 0, partitionMaxBytes: 1 << 20)]),
        ]), version: 11)
        #expect(fetched.responses.first?.partitions.first?.errorCode == .unknownTopicOrPartition)
        let (_, listed) = try await connection.call(ListOffsetsRequest(topics: [.init(name: name, partitions: [.init(partitionIndex: 0, timestamp: 1)])]), version: 5)
        #expect(listed.topics.first?.partitions.first?.errorCode == .unknownTopicOrPartition)
        // A group id with a NUL: refused where it would be stored, unknown where it is read.
        let (_, committed) = try await connection.call(OffsetCommitRequest(groupId: "pay\u{0}roll", topics: [
            .init(name: "orders", partitions: [.init(partitionIndex: 0, committedOffset: 0, committedMetadata: "")])]), version: 7)
        #expect(committed.topics.first?.partitions.first?.errorCode == .invalidGroupId)
        let (_, offsets) = try await connection.call(OffsetFetchRequest(groupId: "pay\u{0}roll", topics: [.init(name: "orders", partitionIndexes: [0])]), version: 5)
        #expect(offsets.errorCode == .noError)
        #expect(offsets.topics.first?.partitions.first?.committedOffset == -1)
        let (_, described) = try await connection.call(DescribeGroupsRequest(groups: ["pay\u{0}roll"]), version: 4)
        #expect(described.groups.map(\.groupState) == ["Dead"])
        let (_, deleted) = try await connection.call(DeleteGroupsRequest(groupsNames: ["pay\u{0}roll"]), version: 1)
        #expect(deleted.results.map(\.errorCode) == [.groupIdNotFound])
        // The same connection still produces to the real stream.
        let (_, real) = try await connection.call(produceRequest(topic: "orders", batch: try producedBatch(count: 2)), version: 7)
        #expect(real.responses.first?.partitionResponses.first?.errorCode == .noError)
        await connection.close()
        await harness.broker.shutdown()
    }
}
