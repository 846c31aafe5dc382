@_spi(Benchmarks) @testable import EventFlowClient
import EventFlowProtocol
import Logging
import NIOCore
import ServiceLifecycle
import Testing

/// The consumer against `FakeBroker` on a loopback socket: the messages it hands out, the
/// requests it sends, the errors it reports.
struct ConsumerTests {
    func configuration(port: Int, _ assignment: ConsumerConfiguration.Assignment,
                       reset: ConsumerConfiguration.AutoOffsetReset = .latest, finish: Bool = true) -> ConsumerConfiguration {
        var configuration = ConsumerConfiguration(assignment: assignment, brokers: [BrokerAddress(host: "127.0.0.1", port: port)],
                                                  credentials: APIKeyCredentials(keyID: "key-1", secret: "secret-1"),
                                                  security: .plaintext)
        configuration.autoOffsetReset = reset
        configuration.finishAtHighWatermark = finish
        configuration.fetchMaxWaitMilliseconds = 20
        configuration.retryBackoffMilliseconds = 1
        configuration.retryBackoffMaxMilliseconds = 5
        configuration.retriesMax = 2
        return configuration
    }

    /// Runs the consumer while `body` reads its messages, then shuts it down.
    func withConsumer<T: Sendable>(_ configuration: ConsumerConfiguration,
                                   _ body: @Sendable (EventFlowConsumer) async throws -> T) async throws -> T {
        let consumer = try EventFlowConsumer(configuration: configuration, logger: Logger(label: "test"))
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await consumer.run() }
            defer { consumer.triggerGracefulShutdown() }
            let result = try await body(consumer)
            consumer.triggerGracefulShutdown()
            try await group.waitForAll()
            return result
        }
    }

    /// Every message until `messages` ends (the consumers here finish at the high watermark).
    func readAll(_ configuration: ConsumerConfiguration) async throws -> [ConsumerMessage] {
        try await withConsumer(configuration) { consumer in
            var messages: [ConsumerMessage] = []
            for try await message in consumer.messages { messages.append(message) }
            return messages
        }
    }

    /// The messages until the sequence ends, and the error it ended with.
    func collect(_ consumer: EventFlowConsumer) async -> ([ConsumerMessage], ConsumerError?) {
        var iterator = consumer.messages.makeAsyncIterator()
        var messages: [ConsumerMessage] = []
        do throws(ConsumerError) {
            while let message = try await iterator.next() { messages.append(message) }
            return (messages, nil)
        } catch {
            return (messages, error)
        }
    }

    func text(_ buffer: ByteBuffer?) -> String? { buffer.map { String(buffer: $0) } }

    @Test func readsFromTheBeginningAcrossUncompressedAndLZ4Batches() async throws {
        let broker = try await FakeBroker(streams: ["orders": 1])
        defer { Task { await broker.close() } }
        let headers = [RecordHeader(key: "trace", value: Array("t-1".utf8))]
        try broker.append(stream: "orders", partition: 0, records: [("k0", "v0", 1_000), (nil, "v1", 1_001)], headers: headers)
        try broker.append(stream: "orders", partition: 0, compression: .lz4(),
                          records: (2 ..< 40).map { ("k\($0)", "v\($0)", 1_000 + Int64($0)) })
        let messages = try await readAll(configuration(port: broker.port, .partitions([("orders", 0, .beginning)])))
        #expect(messages.map(\.offset) == Array(0 ..< 40))
        #expect(messages.map { text($0.value) } == (0 ..< 40).map { "v\($0)" })
        #expect(messages.map { text($0.key) } == ["k0", nil] + (2 ..< 40).map { "k\($0)" })
        #expect(messages.map(\.timestampMilliseconds) == (0 ..< 40).map { 1_000 + Int64($0) })
        #expect(messages[0].headers == headers && messages[1].headers == headers && messages[2].headers.isEmpty)
        #expect(messages.allSatisfy { $0.stream == "orders" && $0.partition == 0 })
        // The start was looked up as the earliest offset, then fetched from there.
        #expect(broker.listOffsetsRequests.first?.topics.first?.partitions.first?.timestamp == ListOffsetsRequest.earliestTimestamp)
        #expect(broker.fetchAnswers.first?.request.topics.first?.partitions.first?.fetchOffset == 0)
    }

    @Test func anOffsetInsideABatchSkipsTheRecordsBeforeIt() async throws {
        let broker = try await FakeBroker(streams: ["orders": 1])
        defer { Task { await broker.close() } }
        try broker.append(stream: "orders", partition: 0, compression: .lz4(), records: (0 ..< 5).map { (nil, "v\($0)", 1_000) })
        try broker.append(stream: "orders", partition: 0, records: (5 ..< 8).map { (nil, "v\($0)", 1_000) })
        let messages = try await readAll(configuration(port: broker.port, .partitions([("orders", 0, .offset(3))])))
        #expect(messages.map(\.offset) == [3, 4, 5, 6, 7])
        #expect(messages.map { text($0.value) } == ["v3", "v4", "v5", "v6", "v7"])
        // The broker answered with the whole batch holding offset 3, from offset 0.
        let first = try #require(broker.fetchAnswers.first)
        #expect(first.request.topics.first?.partitions.first?.fetchOffset == 3)
        #expect(first.recordBytes > 0)
    }

    @Test func aPartialTrailingBatchIsFetchedAgainWhole() async throws {
        let broker = try await FakeBroker(streams: ["orders": 1])
        defer { Task { await broker.close() } }
        broker.withState { $0.sendsPartialTrailingBatch = true }
        for batch in 0 ..< 6 {
            try broker.append(stream: "orders", partition: 0,
                              records: (0 ..< 10).map { (nil, "batch-\(batch)-\($0)-" + String(repeating: "x", count: 80), 1_000) })
        }
        var configuration = configuration(port: broker.port, .partitions([("orders", 0, .beginning)]))
        configuration.partitionFetchBytesMax = 2_500
        let messages = try await readAll(configuration)
        #expect(messages.map(\.offset) == Array(0 ..< 60))
        #expect(broker.fetchAnswers.count >= 3)
    }

    @Test func endReadsOnlyRecordsProducedAfterTheStart() async throws {
        let broker = try await FakeBroker(streams: ["orders": 1])
        defer { Task { await broker.close() } }
        try broker.append(stream: "orders", partition: 0, records: [(nil, "old-0", 1_000), (nil, "old-1", 1_000)])
        let messages = try await withConsumer(configuration(port: broker.port, .partitions([("orders", 0, .end)]), finish: false)) { consumer in
            // Produce once the consumer is fetching at the end.
            while !broker.fetchAnswers.contains(where: { $0.request.topics.first?.partitions.first?.fetchOffset == 2 }) {
                try await Task.sleep(for: .milliseconds(5))
            }
            try broker.append(stream: "orders", partition: 0, records: [(nil, "new-2", 2_000), (nil, "new-3", 2_000)])
            var messages: [ConsumerMessage] = []
            for try await message in consumer.messages {
                messages.append(message)
                if messages.count == 2 { break }
            }
            return messages
        }
        #expect(messages.map(\.offset) == [2, 3])
        #expect(messages.map { text($0.value) } == ["new-2", "new-3"])
    }

    @Test func aTimestampStartsAtTheFirstRecordAtOrAfterIt() async throws {
        let broker = try await FakeBroker(streams: ["orders": 1])
        defer { Task { await broker.close() } }
        try broker.append(stream: "orders", partition: 0, records: [(nil, "a", 1_000), (nil, "b", 2_000), (nil, "c", 3_000)])
        try broker.append(stream: "orders", partition: 0, records: [(nil, "d", 4_000)])
        let messages = try await readAll(configuration(port: broker.port, .partitions([("orders", 0, .timestamp(2_500))])))
        #expect(messages.map(\.offset) == [2, 3])
        #expect(broker.listOffsetsRequests.contains { $0.topics.first?.partitions.first?.timestamp == 2_500 })
        // After the last record: the end, so nothing is read.
        let none = try await readAll(configuration(port: broker.port, .partitions([("orders", 0, .timestamp(9_000))])))
        #expect(none.isEmpty)
    }

    @Test func beforeEndReadsTheLastRecordsOfEveryPartition() async throws {
        let broker = try await FakeBroker(streams: ["orders": 2])
        defer { Task { await broker.close() } }
        try broker.append(stream: "orders", partition: 0, records: (0 ..< 5).map { (nil, "p0-\($0)", 1_000) })
        try broker.append(stream: "orders", partition: 1, records: [(nil, "p1-0", 1_000)])
        let messages = try await readAll(configuration(port: broker.port, .streams([("orders", .beforeEnd(2))])))
        #expect(Set(messages.map { "\($0.partition)/\($0.offset)" }) == ["0/3", "0/4", "1/0"])
        #expect(messages.filter { $0.partition == 0 }.map(\.offset) == [3, 4])
    }

    @Test func aCorruptCRCIsAnErrorAfterTheRecordsBeforeIt() async throws {
        let broker = try await FakeBroker(streams: ["orders": 1])
        defer { Task { await broker.close() } }
        try broker.append(stream: "orders", partition: 0, records: [(nil, "good-0", 1_000), (nil, "good-1", 1_000)])
        var corrupt = try FakeBroker.batch([(nil, "tampered", 1_000)])
        corrupt.setInteger(UInt8(ascii: "T"), at: corrupt.writerIndex - 3)
        broker.append(stream: "orders", partition: 0, batch: corrupt)
        let consumer = try EventFlowConsumer(configuration: configuration(port: broker.port, .partitions([("orders", 0, .beginning)])),
                                             logger: Logger(label: "test"))
        let running = Task { try await consumer.run() }
        let (messages, failure) = await collect(consumer)
        await #expect(throws: ConsumerError.self) { try await running.value }
        #expect(messages.map { text($0.value) } == ["good-0", "good-1"])
        guard case .corruptBatch(let stream, let partition, let offset, let detail)? = failure else {
            Issue.record("expected a corrupt batch error, got \(String(describing: failure))"); return
        }
        #expect(stream == "orders" && partition == 0 && offset == 2)
        #expect(detail.contains("crc"))
    }

    @Test func outOfRangeResetsToTheEarliestOffset() async throws {
        let broker = try await FakeBroker(streams: ["orders": 1])
        defer { Task { await broker.close() } }
        try broker.append(stream: "orders", partition: 0, records: (0 ..< 6).map { (nil, "v\($0)", 1_000) })
        broker.setLogStartOffset(stream: "orders", partition: 0, 3)
        let messages = try await readAll(configuration(port: broker.port, .partitions([("orders", 0, .offset(1))]), reset: .earliest))
        // The batch holding 3 starts at 0: the records below the reset offset are skipped too.
        #expect(messages.map(\.offset) == [3, 4, 5])
    }

    @Test func outOfRangeResetsToTheLatestOffset() async throws {
        let broker = try await FakeBroker(streams: ["orders": 1])
        defer { Task { await broker.close() } }
        try broker.append(stream: "orders", partition: 0, records: (0 ..< 3).map { (nil, "v\($0)", 1_000) })
        let configuration = configuration(port: broker.port, .partitions([("orders", 0, .offset(50))]), reset: .latest, finish: false)
        let messages = try await withConsumer(configuration) { consumer in
            while !broker.fetchAnswers.contains(where: { $0.request.topics.first?.partitions.first?.fetchOffset == 3 }) {
                try await Task.sleep(for: .milliseconds(5))
            }
            try broker.append(stream: "orders", partition: 0, records: [(nil, "after-reset", 1_000)])
            var iterator = consumer.messages.makeAsyncIterator()
            return [try await iterator.next()]
        }
        #expect(messages.map { $0?.offset } == [3])
        #expect(messages.map { text($0?.value) } == ["after-reset"])
    }

    @Test func outOfRangeWithTheErrorPolicyStopsTheConsumer() async throws {
        let broker = try await FakeBroker(streams: ["orders": 1])
        defer { Task { await broker.close() } }
        try broker.append(stream: "orders", partition: 0, records: [(nil, "v0", 1_000)])
        let consumer = try EventFlowConsumer(configuration: configuration(port: broker.port, .partitions([("orders", 0, .offset(7))]),
                                                                          reset: .error, finish: false),
                                             logger: Logger(label: "test"))
        let running = Task { try await consumer.run() }
        await #expect(throws: ConsumerError.offsetOutOfRange(stream: "orders", partition: 0, offset: 7)) {
            for try await _ in consumer.messages {}
        }
        await #expect(throws: ConsumerError.offsetOutOfRange(stream: "orders", partition: 0, offset: 7)) { try await running.value }
    }

    @Test func unknownStreamsAndPartitionsAreClearErrors() async throws {
        let broker = try await FakeBroker(streams: ["orders": 2])
        defer { Task { await broker.close() } }
        for (assignment, expected) in [
            (ConsumerConfiguration.Assignment.streams([("missing", .beginning)]), ConsumerError.unknownStream("missing")),
            (.partitions([("orders", 2, .beginning)]), .unknownPartition(stream: "orders", partition: 2, partitionCount: 2)),
        ] {
            let consumer = try EventFlowConsumer(configuration: configuration(port: broker.port, assignment), logger: Logger(label: "test"))
            let running = Task { try await consumer.run() }
            await #expect(throws: expected) { for try await _ in consumer.messages {} }
            await #expect(throws: expected) { try await running.value }
        }
        let wrongSecret = configuration(port: broker.port, .streams([("orders", .beginning)]))
        var withWrongSecret = wrongSecret
        withWrongSecret.credentials = APIKeyCredentials(keyID: "key-1", secret: "wrong")
        let consumer = try EventFlowConsumer(configuration: withWrongSecret, logger: Logger(label: "test"))
        await #expect(throws: ConsumerError.authenticationFailed("invalid API key or secret")) { try await consumer.run() }
    }

    @Test func aSlowReaderStopsTheFetchingAtPrefetchBytesMax() async throws {
        let broker = try await FakeBroker(streams: ["orders": 1])
        defer { Task { await broker.close() } }
        for batch in 0 ..< 40 {
            try broker.append(stream: "orders", partition: 0,
                              records: (0 ..< 10).map { (nil, "\(batch)-\($0)-" + String(repeating: "x", count: 90), 1_000) })
        }
        let batchBytes = try #require(broker.withState { $0.logs[StreamPartition(stream: "orders", partition: 0)]?.batches.first?.bytes.readableBytes })
        var configuration = configuration(port: broker.port, .partitions([("orders", 0, .beginning)]))
        configuration.prefetchBytesMax = 4 * batchBytes
        configuration.fetchBytesMax = 2 * batchBytes
        configuration.partitionFetchBytesMax = 2 * batchBytes
        let prefetchBytesMax = configuration.prefetchBytesMax
        let (heldBack, total) = try await withConsumer(configuration) { consumer in
            var iterator = consumer.messages.makeAsyncIterator()
            _ = try await iterator.next()
            // The reader stalls: the consumer may fetch only until the unread answers fill the budget.
            var settled = broker.fetchAnswers.count
            while true {
                try await Task.sleep(for: .milliseconds(100))
                let now = broker.fetchAnswers.count
                if now == settled { break }
                settled = now
            }
            let heldBack = broker.fetchAnswers
            var total = 1
            while try await iterator.next() != nil { total += 1 }
            return (heldBack, total)
        }
        let fetchedWhileStalled = heldBack.reduce(0) { $0 + $1.recordBytes }
        #expect(fetchedWhileStalled <= prefetchBytesMax)
        #expect(fetchedWhileStalled >= 2 * batchBytes)
        #expect(heldBack.allSatisfy { $0.request.maxBytes == Int32(2 * batchBytes) })
        #expect(heldBack.count < 40 / 2)
        // Reading on fetches the rest.
        #expect(total == 400)
        let logBytes = broker.withState { $0.logs[StreamPartition(stream: "orders", partition: 0)]?.batches.reduce(0) { $0 + $1.bytes.readableBytes } }
        #expect(broker.fetchAnswers.reduce(0) { $0 + $1.recordBytes } == logBytes)
    }

    @Test func skippingCountsEveryRecordWithoutMakingMessages() async throws {
        let broker = try await FakeBroker(streams: ["orders": 1])
        defer { Task { await broker.close() } }
        for batch in 0 ..< 3 {
            try broker.append(stream: "orders", partition: 0, compression: batch == 1 ? .lz4() : .none,
                              records: (0 ..< 100).map { (nil, "v\($0)", 1_000) })
        }
        let counts = try await withConsumer(configuration(port: broker.port, .partitions([("orders", 0, .offset(50))]))) { consumer in
            var iterator = consumer.messages.makeAsyncIterator()
            return [try await iterator.skip(upTo: 100), try await iterator.skip(upTo: 1_000), try await iterator.skip(upTo: 1_000)]
        }
        #expect(counts == [100, 150, 0])
    }

    @Test func readsWhatTheProducerProduced() async throws {
        let broker = try await FakeBroker(streams: ["events": 3])
        defer { Task { await broker.close() } }
        var producerConfiguration = ProducerConfiguration(brokers: [BrokerAddress(host: "127.0.0.1", port: broker.port)],
                                                          credentials: APIKeyCredentials(keyID: "key-1", secret: "secret-1"),
                                                          security: .plaintext)
        producerConfiguration.lingerMilliseconds = 1
        let producer = try EventFlowProducer(configuration: producerConfiguration, logger: Logger(label: "test"))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await producer.run() }
            for index in 0 ..< 300 { try producer.send(ProducerMessage(stream: "events", key: "user-\(index % 17)", value: "event-\(index)")) }
            await producer.flush()
            await producer.shutdown()
            try await group.waitForAll()
        }
        let messages = try await readAll(configuration(port: broker.port, .streams([("events", .beginning)])))
        #expect(messages.count == 300)
        #expect(Set(messages.map { text($0.value) ?? "" }) == Set((0 ..< 300).map { "event-\($0)" }))
        for partition in Int32(0) ..< 3 {
            let offsets = messages.filter { $0.partition == partition }.map(\.offset)
            #expect(offsets == Array(0 ..< Int64(offsets.count)))
        }
        // Keys stay on the partition murmur2 picks for them.
        #expect(messages.allSatisfy {
            $0.partition == Partitioner.partition(forKey: Array($0.key!.readableBytesView), partitionCount: 3)
        })
    }

    @Test func theServiceGroupShutsTheConsumerDownDuringAParkedFetch() async throws {
        let broker = try await FakeBroker(streams: ["orders": 1])
        defer { Task { await broker.close() } }
        var configuration = configuration(port: broker.port, .partitions([("orders", 0, .end)]), finish: false)
        // Parked far longer than the test: only the shutdown can end it.
        configuration.fetchMaxWaitMilliseconds = 600_000
        let consumer = try EventFlowConsumer(configuration: configuration, logger: Logger(label: "test"))
        let group = ServiceGroup(configuration: .init(services: [.init(service: consumer)], logger: Logger(label: "test")))
        try await withThrowingTaskGroup(of: Int.self) { tasks in
            tasks.addTask { try await group.run(); return -1 }
            tasks.addTask {
                var count = 0
                for try await _ in consumer.messages { count += 1 }
                return count
            }
            while broker.fetchAnswers.isEmpty && !broker.requests.contains(where: { $0.header.apiKey == .fetch }) {
                try await Task.sleep(for: .milliseconds(5))
            }
            await group.triggerGracefulShutdown()
            var results: [Int] = []
            for try await result in tasks { results.append(result) }
            // The service returned without error and the messages ended, empty.
            #expect(results.sorted() == [-1, 0])
        }
    }
}
