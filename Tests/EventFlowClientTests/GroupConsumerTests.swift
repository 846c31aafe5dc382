@testable import EventFlowClient
import EventFlowProtocol
import Logging
import NIOCore
import Testing

/// The consumer in group mode against `FakeBroker`'s coordinator: the partitions it is given,
/// the messages it hands out, the offsets the coordinator receives, the LeaveGroup at the end.
struct GroupConsumerTests {
    func configuration(port: Int, autoCommit: Bool = true, storesOnDelivery: Bool = true) -> ConsumerConfiguration {
        var configuration = ConsumerConfiguration(assignment: .group(id: "billing", streams: ["orders"]),
                                                  brokers: [BrokerAddress(host: "127.0.0.1", port: port)],
                                                  credentials: APIKeyCredentials(keyID: "key-1", secret: "secret-1"),
                                                  security: .plaintext)
        configuration.autoOffsetReset = .earliest
        configuration.fetchMaxWaitMilliseconds = 20
        configuration.retryBackoffMilliseconds = 1
        configuration.retryBackoffMaxMilliseconds = 5
        configuration.retriesMax = 3
        configuration.group.heartbeatIntervalMilliseconds = 10
        configuration.group.autoCommit = autoCommit
        configuration.group.storesOffsetsOnDelivery = storesOnDelivery
        // Commits in these tests come from shutdown, revokes or commit(), not the clock.
        configuration.group.autoCommitIntervalMilliseconds = 600_000
        return configuration
    }

    func broker(partitions: Int32 = 2, recordsEach: Int = 5) async throws -> FakeBroker {
        let broker = try await FakeBroker(streams: ["orders": partitions])
        for partition in 0 ..< partitions {
            try broker.append(stream: "orders", partition: partition,
                              records: (0 ..< recordsEach).map { (nil, "p\(partition)-\($0)", 1_000) })
        }
        return broker
    }

    /// Runs the consumer while `body` uses it, then shuts it down and waits for `run()` to end.
    func withConsumer<T: Sendable>(_ configuration: ConsumerConfiguration,
                                   _ body: @Sendable (EventFlowConsumer) async throws -> T) async throws -> T {
        let consumer = try EventFlowConsumer(configuration: configuration, logger: Logger(label: "test"))
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await consumer.run() }
            let result = try await body(consumer)
            consumer.triggerGracefulShutdown()
            try await group.waitForAll()
            return result
        }
    }

    func read(_ count: Int, from consumer: EventFlowConsumer) async throws -> [ConsumerMessage] {
        var messages: [ConsumerMessage] = []
        for try await message in consumer.messages {
            messages.append(message)
            if messages.count == count { break }
        }
        return messages
    }

    func partition(_ number: Int32) -> StreamPartition { StreamPartition(stream: "orders", partition: number) }

    @Test func aLoneMemberGetsEveryPartitionStartsAtTheCommittedOffsetsAndCommitsAndLeavesOnShutdown() async throws {
        let broker = try await broker()
        defer { Task { await broker.close() } }
        broker.withState { $0.group.committed[partition(0)] = 3 }
        let (messages, firstEvent) = try await withConsumer(configuration(port: broker.port)) { consumer in
            var events = consumer.events.makeAsyncIterator()
            let first = await events.next()
            return (try await read(7, from: consumer), first)
        }
        #expect(firstEvent == .assigned([partition(0), partition(1)]))
        // orders/0 from its committed offset 3, orders/1 (nothing committed) from the beginning.
        #expect(messages.filter { $0.partition == 0 }.map(\.offset) == [3, 4])
        #expect(messages.filter { $0.partition == 1 }.map(\.offset) == [0, 1, 2, 3, 4])
        // KIP-394: the first join without a member id, the second with the one handed out.
        #expect(broker.joinGroupRequests.map(\.memberId) == ["", "consumer-1"])
        #expect(broker.joinGroupRequests.first?.protocols.map(\.name) == ["range", "roundrobin"])
        // On shutdown: what was delivered is committed, then the member leaves at once.
        #expect(broker.committed == [partition(0): 5, partition(1): 5])
        #expect(broker.leaveGroupRequests == [LeaveGroupRequest(groupId: "billing", memberId: "consumer-1")])
        let kinds = broker.requests.map(\.header.apiKey)
        #expect(kinds.lastIndex(of: .offsetCommit)! < kinds.lastIndex(of: .leaveGroup)!)
    }

    @Test func asLeaderItAssignsByRangeAndReadsOnlyItsShare() async throws {
        let broker = try await broker(partitions: 4, recordsEach: 2)
        defer { Task { await broker.close() } }
        // A member sorted before "consumer-1": range gives it orders 0–1.
        broker.withState { $0.group.phantomMembers["a-member"] = ConsumerProtocolSubscription(version: 0, topics: ["orders"]).encoded() }
        let messages = try await withConsumer(configuration(port: broker.port)) { consumer in
            try await read(4, from: consumer)
        }
        #expect(Set(messages.map(\.partition)) == [2, 3])
        let assignments = try #require(broker.syncGroupRequests.first?.assignments)
        var byMember: [String: [StreamPartition]] = [:]
        for entry in assignments { byMember[entry.memberId] = try ConsumerProtocolAssignment.decode(entry.assignment).streamPartitions }
        #expect(byMember == ["a-member": [partition(0), partition(1)], "consumer-1": [partition(2), partition(3)]])
    }

    @Test func aRebalanceCommitsFirstThenRevokesAndTheNewAssignmentFollows() async throws {
        let broker = try await broker(partitions: 2, recordsEach: 3)
        defer { Task { await broker.close() } }
        let (events, messages) = try await withConsumer(configuration(port: broker.port)) { consumer in
            var events = consumer.events.makeAsyncIterator()
            var seen = [await events.next()]
            let before = try await read(6, from: consumer)
            // Another member arrives: the next heartbeat answers REBALANCE_IN_PROGRESS.
            broker.withState {
                $0.group.phantomMembers["a-member"] = ConsumerProtocolSubscription(version: 0, topics: ["orders"]).encoded()
                $0.group.rebalancePending = true
            }
            seen.append(await events.next())
            seen.append(await events.next())
            return (seen, before)
        }
        #expect(messages.count == 6)
        #expect(events == [.assigned([partition(0), partition(1)]), .revoked([partition(0), partition(1)]), .assigned([partition(1)])])
        // The revoke's commit came before the rejoin, with every delivered offset.
        let kinds = broker.requests.map(\.header.apiKey)
        let secondGeneration = kinds.indices.filter { kinds[$0] == .joinGroup }[2]
        let firstCommit = try #require(kinds.firstIndex(of: .offsetCommit))
        #expect(firstCommit < secondGeneration)
        #expect(broker.offsetCommitRequests.first?.generationId == 1)
        #expect(broker.committed == [partition(0): 3, partition(1): 3])
    }

    @Test func aManualCommitSendsWhatWasDelivered() async throws {
        let broker = try await broker(partitions: 1, recordsEach: 5)
        defer { Task { await broker.close() } }
        let committed = try await withConsumer(configuration(port: broker.port, autoCommit: false)) { consumer in
            _ = try await read(3, from: consumer)
            try await consumer.commit()
            return broker.committed
        }
        #expect(committed == [partition(0): 3])
        // No auto commit: shutdown leaves without committing more.
        #expect(broker.committed == [partition(0): 3])
        #expect(broker.leaveGroupRequests.count == 1)
    }

    @Test func storeOffsetDecidesWhatIsCommitted() async throws {
        let broker = try await broker(partitions: 1, recordsEach: 5)
        defer { Task { await broker.close() } }
        try await withConsumer(configuration(port: broker.port, autoCommit: false, storesOnDelivery: false)) { consumer in
            let messages = try await read(4, from: consumer)
            try consumer.storeOffset(messages[1])
            try await consumer.commit()
        }
        #expect(broker.committed == [partition(0): 2])
    }

    @Test func commitOutsideGroupModeIsRefused() async throws {
        let configuration = ConsumerConfiguration(assignment: .partitions([("orders", 0, .beginning)]),
                                                  brokers: [BrokerAddress(host: "127.0.0.1", port: 1)], credentials: nil, security: .plaintext)
        let consumer = try EventFlowConsumer(configuration: configuration, logger: Logger(label: "test"))
        await #expect(throws: ConsumerError.self) { try await consumer.commit() }
    }

    @Test func unknownMemberIdMakesItRejoinWithAnEmptyMemberId() async throws {
        let broker = try await broker(partitions: 1, recordsEach: 2)
        defer { Task { await broker.close() } }
        try await withConsumer(configuration(port: broker.port)) { consumer in
            var events = consumer.events.makeAsyncIterator()
            _ = await events.next()
            // The coordinator forgets the member (as after a session timeout).
            broker.withState { $0.group.members = [:] }
            #expect(await events.next() == .revoked([partition(0)]))
            #expect(await events.next() == .assigned([partition(0)]))
        }
        #expect(broker.joinGroupRequests.map(\.memberId) == ["", "consumer-1", "", "consumer-2"])
    }

    @Test func invalidGroupSettingsAreRejected() {
        var configuration = configuration(port: 1)
        configuration.group.heartbeatIntervalMilliseconds = configuration.group.sessionTimeoutMilliseconds
        #expect(throws: ConsumerError.self) { try EventFlowConsumer(configuration: configuration, logger: Logger(label: "test")) }
        var noStream = self.configuration(port: 1)
        noStream.assignment = .group(id: "billing", streams: [])
        #expect(throws: ConsumerError.self) { try EventFlowConsumer(configuration: noStream, logger: Logger(label: "test")) }
        var finishing = self.configuration(port: 1)
        finishing.finishAtHighWatermark = true
        #expect(throws: ConsumerError.self) { try EventFlowConsumer(configuration: finishing, logger: Logger(label: "test")) }
    }
}
