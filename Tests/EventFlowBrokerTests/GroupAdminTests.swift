import EventFlowClient
import EventFlowProtocol
import EventFlowTestSupport
import Foundation
import Logging
import NIOCore
import Testing

/// `EventFlowAdmin` against the real broker: what `eventflow group list|describe|reset-offsets|delete` print.
@Suite struct GroupAdminTests {
    /// The first batch of partition 0 and the batch of partition 1 carry records from here on (one per millisecond).
    static let firstTimestamp: Int64 = 1_764_000_000_000
    /// Partition 0's second batch starts here: a reset to this time lands on offset 5.
    static let secondTimestamp: Int64 = 1_765_000_000_000

    func admin(_ harness: BrokerHarness) throws -> EventFlowAdmin {
        try EventFlowAdmin(configuration: AdminConfiguration(
            brokers: [BrokerAddress(host: "localhost", port: harness.broker.port)],
            credentials: APIKeyCredentials(keyID: harness.key.key.id.uuidString, secret: harness.key.secret),
            security: .tls(caFilePath: harness.certificates.certificateAuthority)), logger: TestLogs.logger(label: "test.admin"))
    }

    /// "orders" partition 0: offsets 0–4 at `firstTimestamp`, 5–9 at `secondTimestamp` (high watermark 10);
    /// partition 1: offsets 0–3 at `firstTimestamp` (high watermark 4).
    func produceOrders(_ harness: BrokerHarness) async throws {
        let connection = try await harness.authenticatedConnection()
        _ = try await FetchTests().produce([try producedBatch(count: 5, timestamp: Self.firstTimestamp),
                                            try producedBatch(count: 5, timestamp: Self.secondTimestamp)], partition: 0, on: connection)
        _ = try await FetchTests().produce([try producedBatch(count: 4, timestamp: Self.firstTimestamp)], partition: 1, on: connection)
        await connection.close()
    }

    func groupConsumer(_ harness: BrokerHarness, group: String) throws -> EventFlowConsumer {
        var configuration = ConsumerConfiguration(
            assignment: .group(id: group, streams: ["orders"]),
            brokers: [BrokerAddress(host: "localhost", port: harness.broker.port)],
            credentials: APIKeyCredentials(keyID: harness.key.key.id.uuidString, secret: harness.key.secret),
            security: .tls(caFilePath: harness.certificates.certificateAuthority))
        configuration.clientID = "billing-worker"
        configuration.group.autoCommit = false
        configuration.group.startWithoutCommittedOffset = .beginning
        return try EventFlowConsumer(configuration: configuration, logger: TestLogs.logger(label: "test.consumer"))
    }

    @Test func describeShowsCommittedOffsetHighWatermarkAndLagPerPartition() async throws {
        let harness = try await BrokerHarness.start(partitions: 2)
        try await produceOrders(harness)
        // A commit from outside group management, as kcat -C or a manually assigned consumer sends it.
        let connection = try await harness.authenticatedConnection()
        let (_, committed) = try await connection.call(OffsetCommitRequest(groupId: "audit", generationId: -1, memberId: "", topics: [
            .init(name: "orders", partitions: [.init(partitionIndex: 0, committedOffset: 7)]),
        ]), version: 7)
        #expect(committed.topics.flatMap(\.partitions).map(\.errorCode) == [.noError])
        await connection.close()

        let admin = try admin(harness)
        defer { admin.close() }
        let groups = try await admin.listGroups()
        #expect(groups.map(\.groupId) == ["audit"])
        #expect(groups.first?.state == "Empty")
        #expect(groups.first?.memberCount == 0)

        let description = try await admin.describeGroup("audit")
        #expect(description.state == "Empty")
        #expect(description.members.isEmpty)
        #expect(description.partitions == [
            PartitionLag(stream: "orders", partition: 0, committedOffset: 7, highWatermark: 10, logStartOffset: 0, memberId: nil),
            PartitionLag(stream: "orders", partition: 1, committedOffset: nil, highWatermark: 4, logStartOffset: 0, memberId: nil),
        ])
        // Partition 0: 10 − 7; partition 1 has nothing committed, so all 4 stored records count.
        #expect(description.partitions.map(\.lag) == [3, 4])
        #expect(description.totalLag == 7)

        await #expect(throws: AdminError.groupNotFound("nobody")) { try await admin.describeGroup("nobody") }
        await harness.broker.shutdown()
    }

    @Test func aRunningMemberIsDescribedWithItsPartitionsAndResetsWaitUntilItStops() async throws {
        let harness = try await BrokerHarness.start(partitions: 2)
        try await produceOrders(harness)
        let consumer = try groupConsumer(harness, group: "billing")
        let running = Task { try await consumer.run() }
        var nextOffsets: [Int32: Int64] = [:]
        var read = 0
        for try await message in consumer.messages {
            nextOffsets[message.partition] = message.offset + 1
            read += 1
            if read == 6 { break }
        }
        try await consumer.commit()

        let admin = try admin(harness)
        defer { admin.close() }
        let live = try await admin.describeGroup("billing")
        #expect(live.state == "Stable")
        #expect(live.assignor == "range")
        try #require(live.members.count == 1)
        let member = live.members[0]
        #expect(member.clientId == "billing-worker")
        #expect(member.assignedPartitions == [StreamPartition(stream: "orders", partition: 0), StreamPartition(stream: "orders", partition: 1)])
        #expect(live.partitions.map(\.memberId) == [member.memberId, member.memberId])
        #expect(live.partitions.map(\.highWatermark) == [10, 4])
        #expect(live.partitions.map(\.committedOffset) == [nextOffsets[0], nextOffsets[1]])
        #expect(live.partitions.map(\.lag) == [10 - (nextOffsets[0] ?? 0), 4 - (nextOffsets[1] ?? 0)])
        #expect(live.totalLag == 14 - 6)
        #expect(try await admin.listGroups().map { [$0.groupId, $0.state, String($0.memberCount)] } == [["billing", "Stable", "1"]])

        // The member owns the offsets: neither a reset (not even a dry run) nor a delete goes through.
        await #expect(throws: AdminError.groupHasActiveMembers("billing")) {
            try await admin.resetOffsets(group: "billing", stream: "orders", to: .earliest)
        }
        await #expect(throws: AdminError.groupHasActiveMembers("billing")) {
            try await admin.resetOffsets(group: "billing", stream: "orders", to: .earliest, dryRun: true)
        }
        await #expect(throws: AdminError.groupNotEmpty("billing")) { try await admin.deleteGroup("billing") }
        #expect(AdminError.groupHasActiveMembers("billing").description == "group billing has active members; stop them first")

        consumer.triggerGracefulShutdown()
        try await running.value
        // The LeaveGroup on shutdown empties the group at once; the commit stays.
        let stopped = try await admin.describeGroup("billing")
        #expect(stopped.state == "Empty")
        #expect(stopped.members.isEmpty)
        #expect(stopped.partitions.map(\.committedOffset) == [nextOffsets[0], nextOffsets[1]])
        #expect(stopped.partitions.map(\.memberId) == [nil, nil])

        func committed() async throws -> [Int64?] { try await admin.describeGroup("billing").partitions.map(\.committedOffset) }

        let earliest = try await admin.resetOffsets(group: "billing", stream: "orders", to: .earliest)
        #expect(earliest == [OffsetReset(stream: "orders", partition: 0, previousOffset: nextOffsets[0], newOffset: 0),
                             OffsetReset(stream: "orders", partition: 1, previousOffset: nextOffsets[1], newOffset: 0)])
        #expect(try await committed() == [0, 0])
        #expect(try await admin.describeGroup("billing").partitions.map(\.lag) == [10, 4])

        let latest = try await admin.resetOffsets(group: "billing", stream: "orders", to: .latest)
        #expect(latest.map(\.newOffset) == [10, 4])
        #expect(try await committed() == [10, 4])
        #expect(try await admin.describeGroup("billing").totalLag == 0)

        let one = try await admin.resetOffsets(group: "billing", stream: "orders", to: .offset(3), partitions: [0])
        #expect(one == [OffsetReset(stream: "orders", partition: 0, previousOffset: 10, newOffset: 3)])
        #expect(try await committed() == [3, 4])

        // Beyond the end moves to the high watermark; a dry run commits nothing.
        let beyond = try await admin.resetOffsets(group: "billing", stream: "orders", to: .offset(99), dryRun: true)
        #expect(beyond.map(\.newOffset) == [10, 4])
        #expect(try await committed() == [3, 4])

        // Partition 0's first record at or after the time is offset 5; partition 1 has none that recent.
        let byTime = try await admin.resetOffsets(group: "billing", stream: "orders", to: .timestamp(Self.secondTimestamp))
        #expect(byTime.map(\.newOffset) == [5, 4])
        #expect(try await committed() == [5, 4])
        let fromStart = try await admin.resetOffsets(group: "billing", stream: "orders", to: .timestamp(Self.firstTimestamp + 2))
        #expect(fromStart.map(\.newOffset) == [2, 2])
        #expect(try await committed() == [2, 2])

        await #expect(throws: AdminError.unknownPartition(stream: "orders", partition: 2, partitionCount: 2)) {
            try await admin.resetOffsets(group: "billing", stream: "orders", to: .earliest, partitions: [2])
        }
        await #expect(throws: AdminError.unknownStream("payments")) {
            try await admin.resetOffsets(group: "billing", stream: "payments", to: .earliest)
        }

        try await admin.deleteGroup("billing")
        #expect(try await admin.listGroups().map(\.groupId) == [])
        await #expect(throws: AdminError.groupNotFound("billing")) { try await admin.describeGroup("billing") }
        await #expect(throws: AdminError.groupNotFound("billing")) { try await admin.deleteGroup("billing") }
        await harness.broker.shutdown()
    }
}
