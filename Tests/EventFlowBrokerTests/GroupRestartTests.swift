@testable import EventFlowBroker
import EventFlowClient
import EventFlowProtocol
import EventFlowStorage
import EventFlowTestSupport
import Foundation
import Logging
import NIOCore
import Testing

/// Committed offsets are in PostgreSQL: a group resumes where it committed after a broker restart.
@Suite struct GroupRestartTests {
    func produce(_ count: Int, from start: Int, port: Int, harness: BrokerHarness) async throws {
        var configuration = ProducerConfiguration(
            brokers: [BrokerAddress(host: "localhost", port: port)],
            credentials: APIKeyCredentials(keyID: harness.key.key.id.uuidString, secret: harness.key.secret),
            security: .tls(caFilePath: harness.certificates.certificateAuthority))
        configuration.lingerMilliseconds = 1
        let producer = try EventFlowProducer(configuration: configuration, logger: Logger(label: "test.producer"))
        let running = Task { try await producer.run() }
        for index in start..<(start + count) {
            _ = try await producer.sendAndAwait(ProducerMessage(stream: "orders", key: "k\(index)", value: "\(index)"))
        }
        await producer.shutdown()
        try await running.value
    }

    /// A group member that reads `count` records, commits them on shutdown, and returns their values.
    func readInGroup(_ count: Int, port: Int, harness: BrokerHarness) async throws -> [String] {
        var configuration = ConsumerConfiguration(
            assignment: .group(id: "resume", streams: ["orders"]),
            brokers: [BrokerAddress(host: "localhost", port: port)],
            credentials: APIKeyCredentials(keyID: harness.key.key.id.uuidString, secret: harness.key.secret),
            security: .tls(caFilePath: harness.certificates.certificateAuthority))
        configuration.autoOffsetReset = .earliest
        let consumer = try EventFlowConsumer(configuration: configuration, logger: Logger(label: "test.group-consumer"))
        let running = Task { try await consumer.run() }
        var values: [String] = []
        var iterator = consumer.messages.makeAsyncIterator()
        while values.count < count, let message = try await iterator.next() {
            values.append(String(buffer: message.value ?? ByteBuffer()))
        }
        consumer.triggerGracefulShutdown()
        try await running.value
        return values
    }

    @Test func aGroupResumesAtItsCommittedOffsetsAfterTheBrokerRestarts() async throws {
        let harness = try await BrokerHarness.start(partitions: 2)
        try await produce(40, from: 0, port: harness.broker.port, harness: harness)
        let first = try await readInGroup(40, port: harness.broker.port, harness: harness)
        #expect(Set(first) == Set((0..<40).map(String.init)))
        await harness.broker.shutdown()

        // A new broker process on the same database: membership is gone, the commits are not.
        let logger = TestLogs.logger(label: "test.broker")
        let restarted = try await Broker.start(configuration: harness.broker.configuration, databaseURL: harness.databaseURL, logger: logger)
        try await produce(10, from: 40, port: restarted.port, harness: harness)
        let second = try await readInGroup(10, port: restarted.port, harness: harness)
        #expect(Set(second) == Set((40..<50).map(String.init)), "only what was produced after the commit")
        await restarted.shutdown()
    }
}

/// The group APIs over a raw connection: Kafka's error codes for bad input, the connection and
/// the group keep working; commits from outside group management for an empty group.
@Suite struct GroupRequestTests {
    @Test func badGroupRequestsGetKafkasErrorsAndTheConnectionKeepsServing() async throws {
        let harness = try await BrokerHarness.start(partitions: 2)
        let db = try harness.database()
        defer { db.close() }
        let other = try Organizations.create(db, name: "other")
        _ = try Streams.create(db, org: other, name: "secret")
        let connection = try await harness.authenticatedConnection()

        let (_, heartbeat) = try await connection.call(HeartbeatRequest(groupId: "nobody", generationId: 3, memberId: "m"), version: 3)
        #expect(heartbeat.errorCode == .unknownMemberId)
        let (_, shortSession) = try await connection.call(JoinGroupRequest(
            groupId: "g", sessionTimeoutMs: 1_000, rebalanceTimeoutMs: 5_000, memberId: "", protocolType: "consumer",
            protocols: [.init(name: "range", metadata: ByteBuffer(bytes: [0]))]), version: 5)
        #expect(shortSession.errorCode == .invalidSessionTimeout)
        let (_, emptyID) = try await connection.call(JoinGroupRequest(
            groupId: "", sessionTimeoutMs: 10_000, memberId: "", protocolType: "consumer",
            protocols: [.init(name: "range", metadata: ByteBuffer(bytes: [0]))]), version: 5)
        #expect(emptyID.errorCode == .invalidGroupId)
        let (_, required) = try await connection.call(JoinGroupRequest(
            groupId: "g", sessionTimeoutMs: 10_000, memberId: "", protocolType: "consumer",
            protocols: [.init(name: "range", metadata: ByteBuffer(bytes: [0]))]), version: 4)
        #expect(required.errorCode == .memberIdRequired)
        #expect(!required.memberId.isEmpty)
        let (_, stale) = try await connection.call(OffsetCommitRequest(groupId: "g", generationId: 7, memberId: "ghost", topics: [
            .init(name: "orders", partitions: [.init(partitionIndex: 0, committedOffset: 1)])]), version: 7)
        #expect(stale.topics.first?.partitions.first?.errorCode == .unknownMemberId)

        // From outside group management (kcat -C, manual assignment): generation -1, no member id.
        let (_, manual) = try await connection.call(OffsetCommitRequest(groupId: "manual", topics: [
            .init(name: "orders", partitions: [.init(partitionIndex: 0, committedOffset: 0, committedMetadata: "m0"),
                                               .init(partitionIndex: 7, committedOffset: 1)]),
            .init(name: "secret", partitions: [.init(partitionIndex: 0, committedOffset: 1)])]), version: 7)
        #expect(manual.topics.map { $0.partitions.map(\.errorCode) } == [[.noError, .unknownTopicOrPartition], [.unknownTopicOrPartition]])
        let (_, fetched) = try await connection.call(OffsetFetchRequest(groupId: "manual", topics: [
            .init(name: "orders", partitionIndexes: [0, 1])]), version: 5)
        #expect(fetched.topics.first?.partitions.map(\.committedOffset) == [0, -1])
        #expect(fetched.topics.first?.partitions.first?.metadata == "m0")
        let (_, all) = try await connection.call(OffsetFetchRequest(groupId: "manual", topics: nil), version: 5)
        #expect(all.topics.map(\.name) == ["orders"])
        let (_, listed) = try await connection.call(ListGroupsRequest(), version: 2)
        #expect(listed.groups.map(\.groupId).contains("manual"))
        let (_, described) = try await connection.call(DescribeGroupsRequest(groups: ["manual", "unknown"]), version: 4)
        #expect(described.groups.map(\.groupState) == ["Empty", "Dead"])
        let (_, deleted) = try await connection.call(DeleteGroupsRequest(groupsNames: ["manual", "unknown"]), version: 1)
        #expect(deleted.results.map(\.errorCode) == [.noError, .groupIdNotFound])
        let (_, gone) = try await connection.call(OffsetFetchRequest(groupId: "manual", topics: [.init(name: "orders", partitionIndexes: [0])]), version: 5)
        #expect(gone.topics.first?.partitions.first?.committedOffset == -1)

        // Still serving.
        let (_, metadata) = try await connection.call(MetadataRequest(topics: ["orders"]), version: 7)
        #expect(metadata.topics.first?.partitions.count == 2)
        await connection.close()
        await harness.broker.shutdown()
    }
}

/// A member killed mid-stream (no LeaveGroup): after its session timeout the group rebalances
/// and the survivor reads the rest from the killed member's commits.
@Suite struct GroupMemberKilledTests {
    @Test func whenAMemberIsKilledTheOthersTakeOverItsPartitionsAndNothingIsLost() async throws {
        let harness = try await BrokerHarness.start(partitions: 4)
        let acked = try await KafkaClientsTests.run("confluent", "produce", harness, count: 200)
            .map { try JSONDecoder().decode(KafkaClientsTests.ClientRecord.self, from: Data($0.utf8)) }
        try #require(acked.count == 200)

        // A slow librdkafka member (one record per 50 ms, each reported, then committed).
        let script = KafkaPythonTests.packageRoot.appendingPathComponent("scripts/kafka-clients.py").path
        let slow = Process()
        slow.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        slow.arguments = ["python3", script, "confluent", "group", "localhost:\(harness.broker.port)", harness.certificates.certificateAuthority,
                          harness.key.key.id.uuidString, harness.key.secret, "orders", "killed"]
        slow.environment = ProcessInfo.processInfo.environment.merging(["KAFKA_CLIENTS_SLOW_MS": "50"]) { _, new in new }
        let output = Pipe()
        slow.standardOutput = output
        slow.standardError = FileHandle.nullDevice
        let slowProgress = ReadProgress()
        let buffered = LineSplitter()
        output.fileHandleForReading.readabilityHandler = { handle in
            for line in buffered.append(handle.availableData) {
                if let record = try? JSONDecoder().decode(KafkaClientsTests.ClientRecord.self, from: Data(line.utf8)) { slowProgress.add(record) }
            }
        }
        try slow.run()

        var configuration = ConsumerConfiguration(
            assignment: .group(id: "killed", streams: ["orders"]),
            brokers: [BrokerAddress(host: "localhost", port: harness.broker.port)],
            credentials: APIKeyCredentials(keyID: harness.key.key.id.uuidString, secret: harness.key.secret),
            security: .tls(caFilePath: harness.certificates.certificateAuthority))
        configuration.autoOffsetReset = .earliest
        configuration.group.heartbeatIntervalMilliseconds = 1_000
        let survivor = try EventFlowConsumer(configuration: configuration, logger: Logger(label: "test.survivor"))
        let running = Task { try await survivor.run() }
        let survivorProgress = ReadProgress()
        let reading = Task {
            for try await message in survivor.messages {
                survivorProgress.add(.init(partition: message.partition, offset: message.offset, key: KafkaClientsTests.hex(message.key),
                                           value: KafkaClientsTests.hex(message.value),
                                           headers: message.headers.map { [$0.key, KafkaClientsTests.hex($0.value)] }))
            }
        }
        // Kill the slow member once it has read (and committed) some of its share.
        let started = ContinuousClock.now
        while slowProgress.records.count < 10, ContinuousClock.now - started < .seconds(90) { try await Task.sleep(for: .milliseconds(100)) }
        kill(slow.processIdentifier, SIGKILL)
        slow.waitUntilExit()
        output.fileHandleForReading.readabilityHandler = nil
        let killedRead = slowProgress.records
        #expect(killedRead.count >= 10)
        #expect(killedRead.count < 200, "killed before it read everything")

        // Its session (10 s) runs out, the survivor gets its partitions and reads what it had not committed.
        let wanted = Set(acked)
        // Generous bound: under a loaded test run the takeover (session timeout, rejoin, fetch) is slow.
        while !wanted.isSubset(of: Set(killedRead + survivorProgress.records)), ContinuousClock.now - started < .seconds(150) {
            try await Task.sleep(for: .milliseconds(200))
        }
        survivor.triggerGracefulShutdown()
        try await running.value
        _ = try? await reading.value
        let read = killedRead + survivorProgress.records
        let lost = wanted.subtracting(read)
        #expect(lost.isEmpty, "no record lost: \(lost.count) of \(wanted.count) missing, partitions \(Set(lost.map(\.partition)).sorted())")
        // The killed member reported each record before committing it: at most the one in flight per partition is read twice.
        #expect(read.count - Set(read).count <= 4)
        await harness.broker.shutdown()
    }
}

/// Splits a byte stream into lines (the last, unfinished one kept).
final class LineSplitter: @unchecked Sendable {
    private let lock = NSLock()
    private var pending = Data()

    func append(_ data: Data) -> [String] {
        lock.withLock {
            pending.append(data)
            var lines: [String] = []
            while let newline = pending.firstIndex(of: 0x0A) {
                lines.append(String(decoding: pending[pending.startIndex..<newline], as: UTF8.self))
                pending.removeSubrange(pending.startIndex...newline)
            }
            return lines
        }
    }
}
