@testable import EventFlowClient
import EventFlowProtocol
import NIOCore
import Testing

struct RecordAccumulatorTests {
    static let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

    func accumulator(linger: Int = 10, batchBytesMax: Int = 1024, idempotent: Bool = true,
                     compression: ProducerConfiguration.Compression = .none) -> RecordAccumulator {
        var configuration = ProducerConfiguration(brokers: [BrokerAddress(host: "127.0.0.1", port: 1)],
                                                  credentials: nil, security: .plaintext)
        configuration.lingerMilliseconds = linger
        configuration.batchBytesMax = batchBytesMax
        configuration.idempotent = idempotent
        configuration.compression = compression
        configuration.retriesMax = 3
        var accumulator = RecordAccumulator(settings: .init(configuration))
        _ = accumulator.metadataReceived(stream: "s", partitionCount: 2, error: nil, now: Self.start)
        if idempotent { accumulator.producerIdentityReceived(id: 7, epoch: 3) }
        return accumulator
    }

    func message(_ value: String, partition: Int32 = 0) -> ProducerMessage {
        ProducerMessage(stream: "s", partition: partition, key: nil, value: ByteBuffer(string: value))
    }

    /// `drain`, then what the producer's send loop does before sending: build each batch (outside
    /// the lock) and hand the emptied builders back.
    func drained(_ accumulator: inout RecordAccumulator, now: NIODeadline, force: Bool) throws -> [SealedBatch] {
        var batches = accumulator.drain(now: now, force: force)
        accumulator.recycle(try SealedBatch.build(&batches))
        return batches
    }

    func records(_ batch: SealedBatch) throws -> [String] {
        let view = try RecordBatchView(validating: batch.bytes)
        var reader = try view.records(decompressedBytesMax: 1 << 20)
        return try reader.readAll().map { $0.value.map { String(buffer: $0) } ?? "" }
    }

    @Test func recordsWithinLingerShareOneBatch() throws {
        var accumulator = accumulator(linger: 10)
        for i in 0..<5 {
            _ = try accumulator.append(message("v\(i)"), timestamp: 1000 + Int64(i), now: Self.start)
        }
        #expect(try drained(&accumulator, now: Self.start + .milliseconds(9), force: false).isEmpty)
        #expect(accumulator.nextDeadline() == Self.start + .milliseconds(10))
        let batches = try drained(&accumulator, now: Self.start + .milliseconds(10), force: false)
        #expect(batches.count == 1)
        #expect(try records(batches[0]) == ["v0", "v1", "v2", "v3", "v4"])
        let header = try RecordBatchView(validating: batches[0].bytes).header
        #expect(header.producerId == 7)
        #expect(header.producerEpoch == 3)
        #expect(header.baseSequence == 0)
        #expect(header.baseTimestamp == 1000)
        #expect(header.maxTimestamp == 1004)
    }

    @Test func fullBatchIsSealedWithoutWaitingForLinger() throws {
        var accumulator = accumulator(linger: 60_000, batchBytesMax: 100)
        var wakes: [Bool] = []
        for i in 0..<4 {
            let (_, result) = try accumulator.append(message(String(repeating: "x", count: 30) + "\(i)"),
                                                     timestamp: 1, now: Self.start)
            if case .appended(_, let wake) = result { wakes.append(wake) }
        }
        // 30-byte values count ~52 bytes each: a batch holds one; the second append seals the first.
        #expect(wakes == [true, true, true, true])
        let batches = try drained(&accumulator, now: Self.start, force: false)
        #expect(batches.count == 1)
        #expect(try records(batches[0]).count == 1)
    }

    @Test func sealingLeavesTheCompressionToTheSendLoop() throws {
        var accumulator = accumulator(linger: 60_000, batchBytesMax: 100, compression: .lz4)
        for i in 0..<2 {
            _ = try accumulator.append(message(String(repeating: "x", count: 30) + "\(i)"), timestamp: 1, now: Self.start)
        }
        // The second append sealed the first batch (it was full) without compressing it.
        var batch = try #require(accumulator.drain(now: Self.start, force: false).first)
        guard case .records(let sealed) = batch.content else {
            Issue.record("the batch was built while sealing")
            return
        }
        #expect(sealed.recordCount == 1)
        #expect(sealed.configuration.baseSequence == 0)
        let emptied = try #require(try batch.build())
        #expect(emptied.recordCount == 0)
        #expect(try RecordBatchView(validating: batch.bytes).header.attributes.compression == .lz4)
        #expect(try records(batch) == [String(repeating: "x", count: 30) + "0"])
        let bytes = batch.bytes
        #expect(try batch.build() == nil, "a built batch is not built again")
        #expect(batch.bytes == bytes)
    }

    @Test func sequencesAdvancePerPartitionByRecordCount() throws {
        var accumulator = accumulator()
        for i in 0..<3 { _ = try accumulator.append(message("a\(i)", partition: 0), timestamp: 1, now: Self.start) }
        _ = try accumulator.append(message("b", partition: 1), timestamp: 1, now: Self.start)
        let first = try drained(&accumulator, now: Self.start, force: true)
        #expect(Set(first.map(\.baseSequence)) == [0])
        for batch in first { _ = accumulator.batchCompleted(batch, outcome: .acknowledged(baseOffset: 0), now: Self.start) }
        _ = try accumulator.append(message("a3", partition: 0), timestamp: 1, now: Self.start)
        _ = try accumulator.append(message("b1", partition: 1), timestamp: 1, now: Self.start)
        let second = try drained(&accumulator, now: Self.start, force: true)
        let sequences = Dictionary(uniqueKeysWithValues: second.map { ($0.streamPartition.partition, $0.baseSequence) })
        #expect(sequences == [0: 3, 1: 1])
    }

    @Test func retriableFailureResendsTheSameBytesAfterBackoff() throws {
        var accumulator = accumulator()
        let (id, _) = try accumulator.append(message("x"), timestamp: 1, now: Self.start)
        let batch = try #require(try drained(&accumulator, now: Self.start, force: true).first)
        #expect(accumulator.batchCompleted(batch, outcome: .failed(.broker(.notEnoughReplicas, message: nil)),
                                           now: Self.start) == nil)
        #expect(try drained(&accumulator, now: Self.start, force: true).isEmpty)
        let retry = try #require(try drained(&accumulator, now: Self.start + .milliseconds(100), force: false).first)
        #expect(retry.bytes == batch.bytes)
        let reports = accumulator.batchCompleted(retry, outcome: .acknowledged(baseOffset: 40), now: Self.start)
        #expect(reports == [DeliveryReport(id: id, stream: "s", partition: 0, offset: 40, error: nil)])
        #expect(accumulator.isIdle)
    }

    @Test(arguments: [ErrorCode.outOfOrderSequenceNumber, .unknownProducerId])
    func sequenceErrorBehindAFailedBatchIsRetriedInSequenceOrder(code: ErrorCode) throws {
        var accumulator = accumulator()
        _ = try accumulator.append(message("first"), timestamp: 1, now: Self.start)
        let first = try #require(try drained(&accumulator, now: Self.start, force: true).first)
        _ = try accumulator.append(message("second"), timestamp: 1, now: Self.start)
        let second = try #require(try drained(&accumulator, now: Self.start, force: true).first)
        #expect(second.baseSequence == 1)
        _ = accumulator.batchCompleted(first, outcome: .failed(.connection("reset")), now: Self.start)
        #expect(accumulator.batchCompleted(second, outcome: .failed(.broker(code, message: nil)),
                                           now: Self.start) == nil)
        let later = Self.start + .seconds(5)
        let resentFirst = try #require(try drained(&accumulator, now: later, force: false).first)
        #expect(resentFirst.baseSequence == 0)
        _ = accumulator.batchCompleted(resentFirst, outcome: .acknowledged(baseOffset: 0), now: later)
        let resentSecond = try #require(try drained(&accumulator, now: later, force: false).first)
        #expect(resentSecond.baseSequence == 1)
        #expect(resentSecond.bytes == second.bytes)
    }

    /// Answers are handled by separate tasks, so the refusal of a later batch can be handled after
    /// the earlier batch it waited for was already resent and acknowledged: it is still retried.
    @Test func outOfOrderRefusalHandledAfterTheEarlierBatchWasResentIsRetried() throws {
        var accumulator = accumulator()
        _ = try accumulator.append(message("first"), timestamp: 1, now: Self.start)
        let first = try #require(try drained(&accumulator, now: Self.start, force: true).first)
        let (secondID, _) = try accumulator.append(message("second"), timestamp: 1, now: Self.start)
        let second = try #require(try drained(&accumulator, now: Self.start, force: true).first)
        #expect(accumulator.batchCompleted(first, outcome: .failed(.requestTimedOut), now: Self.start) == nil)
        let later = Self.start + .seconds(5)
        let resentFirst = try #require(try drained(&accumulator, now: later, force: false).first)
        #expect(resentFirst.baseSequence == 0)
        _ = accumulator.batchCompleted(resentFirst, outcome: .acknowledged(baseOffset: 0), now: later)
        // Only now is the second batch's refusal handled; nothing earlier is in flight or waiting.
        #expect(accumulator.batchCompleted(second, outcome: .failed(.broker(.outOfOrderSequenceNumber, message: nil)),
                                           now: later) == nil)
        let resentSecond = try #require(try drained(&accumulator, now: later + .seconds(5), force: false).first)
        #expect(resentSecond.baseSequence == 1)
        #expect(resentSecond.bytes == second.bytes)
        let reports = accumulator.batchCompleted(resentSecond, outcome: .acknowledged(baseOffset: 1), now: later)
        #expect(reports == [DeliveryReport(id: secondID, stream: "s", partition: 0, offset: 1, error: nil)])
        #expect(accumulator.isIdle)
    }

    @Test func nonRetriableFailureReportsEveryRecord() throws {
        var accumulator = accumulator()
        _ = try accumulator.append(message("a"), timestamp: 1, now: Self.start)
        _ = try accumulator.append(message("b"), timestamp: 1, now: Self.start)
        let batch = try #require(try drained(&accumulator, now: Self.start, force: true).first)
        let reports = accumulator.batchCompleted(batch, outcome: .failed(.broker(.topicAuthorizationFailed, message: nil)),
                                                 now: Self.start)
        #expect(reports?.map(\.error) == [.broker(.topicAuthorizationFailed, message: nil),
                                          .broker(.topicAuthorizationFailed, message: nil)])
        #expect(accumulator.isIdle)
    }

    @Test func messagesWaitForMetadataThenFailForUnknownStream() throws {
        var accumulator = accumulator()
        let (id, result) = try accumulator.append(ProducerMessage(stream: "nope", value: "v"), timestamp: 1, now: Self.start)
        #expect(result == .awaitingMetadata(wake: true))
        #expect(accumulator.streamsAwaitingMetadata == ["nope"])
        let reports = accumulator.metadataReceived(stream: "nope", partitionCount: nil, error: nil, now: Self.start)
        #expect(reports == [DeliveryReport(id: id, stream: "nope", partition: -1, offset: nil, error: .unknownStream("nope"))])
        #expect(accumulator.isIdle)
    }

    @Test func bufferLimitRefusesInsteadOfGrowing() throws {
        var configuration = ProducerConfiguration(brokers: [BrokerAddress(host: "h", port: 1)], credentials: nil, security: .plaintext)
        configuration.batchBytesMax = 100
        configuration.bufferedBytesMax = 100
        var accumulator = RecordAccumulator(settings: .init(configuration))
        _ = accumulator.metadataReceived(stream: "s", partitionCount: 1, error: nil, now: Self.start)
        _ = try accumulator.append(message(String(repeating: "x", count: 60)), timestamp: 1, now: Self.start)
        #expect(throws: ProducerError.bufferFull) {
            try accumulator.append(message(String(repeating: "y", count: 60)), timestamp: 1, now: Self.start)
        }
        #expect(throws: ProducerError.messageTooLarge(bytes: 221, max: 100)) {
            try accumulator.append(message(String(repeating: "z", count: 200)), timestamp: 1, now: Self.start)
        }
    }

    @Test func lz4BatchesDecodeToTheSameRecords() throws {
        var accumulator = accumulator(compression: .lz4)
        for i in 0..<20 { _ = try accumulator.append(message("{\"n\":\(i)}"), timestamp: 1, now: Self.start) }
        let batch = try #require(try drained(&accumulator, now: Self.start, force: true).first)
        #expect(try RecordBatchView(validating: batch.bytes).header.attributes.compression == .lz4)
        #expect(try records(batch) == (0..<20).map { "{\"n\":\($0)}" })
    }

    @Test func sequenceWrapsAsKafkaDoes() {
        #expect(RecordAccumulator.sequence(Int32.max - 1, plus: 1) == Int32.max)
        #expect(RecordAccumulator.sequence(Int32.max, plus: 1) == 0)
        #expect(RecordAccumulator.sequence(Int32.max - 1, plus: 5) == 3)
    }
}
