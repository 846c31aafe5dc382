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
        var logger = Logger(label: "test.broker")
        logger.logLevel = .warning
        let restarted = try await Broker.start(configuration: harness.broker.configuration, databaseURL: harness.databaseURL, logger: logger)
        try await produce(10, from: 40, port: restarted.port, harness: harness)
        let second = try await readInGroup(10, port: restarted.port, harness: harness)
        #expect(Set(second) == Set((40..<50).map(String.init)), "only what was produced after the commit")
        await restarted.shutdown()
    }
}
