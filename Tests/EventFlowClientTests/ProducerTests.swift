@_spi(Benchmarks) @testable import EventFlowClient
import EventFlowProtocol
import Logging
import NIOCore
import Synchronization
import Testing

/// The producer against `FakeBroker` on a loopback socket: what it puts on the wire and what it reports.
struct ProducerTests {
    func configuration(port: Int, secret: String = "secret-1") -> ProducerConfiguration {
        var configuration = ProducerConfiguration(brokers: [BrokerAddress(host: "127.0.0.1", port: port)],
                                                  credentials: APIKeyCredentials(keyID: "key-1", secret: secret),
                                                  security: .plaintext)
        configuration.retryBackoffMilliseconds = 1
        configuration.retryBackoffMaxMilliseconds = 5
        return configuration
    }

    /// Runs the producer while `body` uses it, then shuts it down gracefully.
    func withProducer<T: Sendable>(_ configuration: ProducerConfiguration,
                                   _ body: @Sendable (EventFlowProducer, ProducerEvents) async throws -> T) async throws -> T {
        let (producer, events) = try EventFlowProducer.makeProducerWithEvents(configuration: configuration,
                                                                              logger: Logger(label: "test"))
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await producer.run() }
            do {
                let result = try await body(producer, events)
                await producer.shutdown()
                try await group.waitForAll()
                return result
            } catch {
                await producer.shutdown()
                group.cancelAll()
                throw error
            }
        }
    }

    func batches(_ request: ProduceRequest) throws -> [(String, Int32, RecordBatchView)] {
        try request.topicData.flatMap { topic in
            try topic.partitionData.flatMap { data in
                try RecordBatchView.batches(in: data.records ?? ByteBuffer()).map { (topic.name, data.index, $0) }
            }
        }
    }

    @Test func sendAndAwaitAuthenticatesAndReturnsTheOffset() async throws {
        let broker = try await FakeBroker(streams: ["orders": 3])
        let results = try await withProducer(configuration(port: broker.port)) { producer, _ in
            var results: [(Int32, Int64?)] = []
            for _ in 0..<2 {
                let result = try await producer.sendAndAwait(ProducerMessage(stream: "orders", key: "order-42", value: "{}"))
                results.append((result.partition, result.offset))
            }
            return results
        }
        await broker.close()
        // "order-42" hashes to partition 0 of 3 under Kafka's murmur2.
        #expect(results.map(\.0) == [0, 0])
        #expect(results.map(\.1) == [0, 1])
        let keys = broker.requests.map(\.header.apiKey)
        #expect(Array(keys.prefix(5)) == [.apiVersions, .saslHandshake, .saslAuthenticate, .initProducerId, .metadata])
        // Negotiated: the highest version both sides serve.
        #expect(broker.requests.first { $0.header.apiKey == .produce }?.header.apiVersion == 8)
        #expect(broker.requests.first?.header.apiVersion == 3)
        let produces = broker.produceRequests
        #expect(produces.allSatisfy { $0.acks == -1 && $0.transactionalId == nil })
        let sent = try produces.flatMap(batches)
        #expect(sent.map(\.2.header.baseSequence) == [0, 1])
        #expect(sent.allSatisfy { $0.2.header.producerId == FakeBroker.producerId && $0.2.header.attributes.compression == .lz4 })
    }

    @Test func everyAcknowledgedBatchReportsItsStagesInOrder() async throws {
        let broker = try await FakeBroker(streams: ["clicks": 4])
        var configuration = configuration(port: broker.port)
        configuration.lingerMilliseconds = 600_000  // only flush() sends
        final class Observed: Sendable { let stages = Mutex<[ProducerBatchStages]>([]) }
        let observed = Observed()
        let ids = try await withProducer(configuration) { producer, events in
            producer.observeBatchStages { stages in observed.stages.withLock { $0.append(stages) } }
            var ids: [MessageID] = []
            for number in 0..<20 { ids.append(try producer.send(ProducerMessage(stream: "clicks", key: "user-\(number)", value: "v"))) }
            await producer.flush()
            var reports = 0
            for await _ in events.deliveryReports {
                reports += 1
                if reports == ids.count { break }
            }
            return ids
        }
        await broker.close()
        let stages = observed.stages.withLock { $0 }
        // One entry per batch sent (one per partition that got records), each message in exactly one.
        #expect(stages.count == (try broker.produceRequests.flatMap(batches)).count)
        #expect(stages.flatMap(\.messageIDs).map(\.rawValue).sorted() == ids.map(\.rawValue).sorted())
        #expect(stages.allSatisfy { $0.sealedAt <= $0.writtenAt && $0.writtenAt <= $0.answeredAt })
    }

    @Test func lingerPutsManyRecordsIntoOneBatchAndKeysFollowMurmur2() async throws {
        let broker = try await FakeBroker(streams: ["clicks": 12])
        var configuration = configuration(port: broker.port)
        configuration.lingerMilliseconds = 600_000  // only flush() sends
        let keys = (0..<40).map { "user-\($0)" }
        let reports = try await withProducer(configuration) { producer, events in
            for key in keys { try producer.send(ProducerMessage(stream: "clicks", key: key, value: "v-\(key)")) }
            await producer.flush()
            var reports: [DeliveryReport] = []
            for await report in events.deliveryReports {
                reports.append(report)
                if reports.count == keys.count { break }
            }
            return reports
        }
        await broker.close()
        #expect(reports.allSatisfy { $0.error == nil && $0.offset != nil })
        let produces = broker.produceRequests
        #expect(produces.count == 1)
        let sent = try produces.flatMap(batches)
        var seen: [String: Int32] = [:]
        for (_, partition, batch) in sent {
            #expect(batch.header.baseSequence == 0)
            var reader = try batch.records(decompressedBytesMax: 1 << 20)
            for record in try reader.readAll() {
                seen[String(buffer: record.key ?? ByteBuffer())] = partition
            }
        }
        #expect(seen.count == keys.count)
        for key in keys {
            #expect(seen[key] == Partitioner.partition(forKey: Array(key.utf8), partitionCount: 12))
        }
        // One batch per partition holding all of its records.
        #expect(sent.count == Set(seen.values).count)
        #expect(Dictionary(grouping: reports, by: \.partition).allSatisfy { partition, reports in
            reports.map { $0.offset ?? -1 } == Array(0..<Int64(reports.count))
        })
    }

    @Test func retriableErrorIsRetriedWithTheSameBytes() async throws {
        let broker = try await FakeBroker(streams: ["s": 1])
        broker.withState { $0.injectedProduceErrors = [.notEnoughReplicas, .kafkaStorageError] }
        let result = try await withProducer(configuration(port: broker.port)) { producer, _ in
            try await producer.sendAndAwait(ProducerMessage(stream: "s", value: "once"))
        }
        await broker.close()
        #expect(result.partition == 0)
        #expect(result.offset == 0)
        let sent = broker.produceRequests.compactMap { $0.topicData.first?.partitionData.first?.records }
        #expect(sent.count == 3)
        #expect(Set(sent).count == 1)
        #expect(broker.stored.count == 1)
    }

    @Test func resentDuplicateGetsTheOriginalOffset() async throws {
        // The broker stored the batch but its answer was lost: the idempotent retry is answered with the first offset.
        let broker = try await FakeBroker(streams: ["s": 1])
        let first = try await withProducer(configuration(port: broker.port)) { producer, _ in
            try await producer.sendAndAwait(ProducerMessage(stream: "s", value: "a"))
        }
        let stored = try #require(broker.stored.first)
        var answer = ProduceResponse.PartitionResponse(index: 0, baseOffset: -1)
        var state = FakeBroker.State(streams: ["s": 1])
        state.stored = [stored]
        let request = ProduceRequest(acks: -1, timeoutMs: 1000,
                                     topicData: [.init(name: "s", partitionData: [.init(index: 0, records: stored.batch.bytes)])])
        if case .produce(let response)? = FakeBroker.answer(
            DecodedRequest(header: RequestHeader(apiKey: .produce, apiVersion: 7, correlationId: 1, clientId: nil),
                           body: .produce(request)), state: &state) {
            answer = try #require(response.responses.first?.partitionResponses.first)
        }
        await broker.close()
        #expect(first.offset == 0)
        #expect(answer.baseOffset == 0)
        #expect(state.stored.count == 1)
    }

    @Test func wrongSecretFailsWithAuthenticationError() async throws {
        let broker = try await FakeBroker(streams: ["s": 1])
        let (producer, _) = try EventFlowProducer.makeProducerWithEvents(configuration: configuration(port: broker.port, secret: "nope"),
                                                                         logger: Logger(label: "test"))
        async let running: Void = producer.run()
        await #expect(throws: ProducerError.authenticationFailed("invalid API key or secret")) {
            try await producer.sendAndAwait(ProducerMessage(stream: "s", value: "v"))
        }
        #expect(throws: ProducerError.authenticationFailed("invalid API key or secret")) {
            try producer.send(ProducerMessage(stream: "s", value: "v"))
        }
        await producer.shutdown()
        try await running
        await broker.close()
    }

    @Test func unknownStreamIsReported() async throws {
        let broker = try await FakeBroker(streams: ["s": 1])
        await #expect(throws: ProducerError.unknownStream("missing")) {
            try await withProducer(configuration(port: broker.port)) { producer, _ in
                try await producer.sendAndAwait(ProducerMessage(stream: "missing", value: "v"))
            }
        }
        await broker.close()
    }

    @Test func acksZeroGetsNoAnswerAndNoOffset() async throws {
        let broker = try await FakeBroker(streams: ["s": 2])
        var configuration = configuration(port: broker.port)
        configuration.acks = .none
        configuration.idempotent = false
        configuration.compression = .none
        let result = try await withProducer(configuration) { producer, _ in
            try await producer.sendAndAwait(ProducerMessage(stream: "s", partition: 1, value: ByteBuffer(string: "fire")))
        }
        // With acks 0 the report comes once the request is written, maybe before the broker read it.
        for _ in 0 ..< 400 where broker.produceRequests.isEmpty { try await Task.sleep(for: .milliseconds(5)) }
        await broker.close()
        #expect(result.partition == 1)
        #expect(result.offset == nil)
        let sent = try broker.produceRequests.flatMap(batches)
        #expect(broker.produceRequests.map(\.acks) == [0])
        #expect(sent.count == 1)
        #expect(sent.first?.2.header.producerId == -1)
        #expect(sent.first?.2.header.attributes.compression == CompressionCodec.none)
        #expect(!broker.requests.contains { $0.header.apiKey == .initProducerId })
    }

    @Test func shutdownSendsWhatIsBuffered() async throws {
        let broker = try await FakeBroker(streams: ["s": 1])
        var configuration = configuration(port: broker.port)
        configuration.lingerMilliseconds = 600_000
        let (producer, events) = try EventFlowProducer.makeProducerWithEvents(configuration: configuration,
                                                                              logger: Logger(label: "test"))
        async let running: Void = producer.run()
        for i in 0..<3 { try producer.send(ProducerMessage(stream: "s", value: "\(i)")) }
        await producer.shutdown()
        try await running
        var reports: [DeliveryReport] = []
        for await report in events.deliveryReports { reports.append(report) }
        await broker.close()
        #expect(reports.map(\.offset) == [0, 1, 2])
        #expect(throws: ProducerError.shutDown) { try producer.send(ProducerMessage(stream: "s", value: "late")) }
    }

    /// Up to five requests in flight carry consecutive batches of one partition: they must reach
    /// the broker in sequence order, or an idempotent broker refuses the later ones as out of order.
    @Test func pipelinedBatchesOfOnePartitionReachTheBrokerInSequenceOrder() async throws {
        let broker = try await FakeBroker(streams: ["s": 1])
        var configuration = configuration(port: broker.port)
        configuration.lingerMilliseconds = 0
        configuration.batchBytesMax = 300  // a few records per batch: hundreds of batches
        let (producer, events) = try EventFlowProducer.makeProducerWithEvents(configuration: configuration,
                                                                              logger: Logger(label: "test"))
        async let running: Void = producer.run()
        for i in 0..<3_000 { try producer.send(ProducerMessage(stream: "s", value: ByteBuffer(string: "event \(i)"))) }
        await producer.shutdown()
        try await running
        var reports: [DeliveryReport] = []
        for await report in events.deliveryReports { reports.append(report) }
        await broker.close()
        #expect(reports.count == 3_000)
        #expect(reports.allSatisfy { $0.error == nil })
        let sequences = try broker.produceRequests.flatMap(batches).map(\.2.header.baseSequence)
        #expect(sequences.count > 100)
        #expect(sequences == sequences.sorted(), "batches arrived out of sequence order")
        #expect(Set(sequences).count == sequences.count, "no batch was sent twice")
    }

    @Test func idempotenceNeedsAcksAll() {
        var configuration = configuration(port: 1)
        configuration.acks = .leader
        #expect(throws: ProducerError.invalidConfiguration("an idempotent producer needs acks = all (-1)")) {
            try EventFlowProducer(configuration: configuration, logger: Logger(label: "test"))
        }
    }
}
