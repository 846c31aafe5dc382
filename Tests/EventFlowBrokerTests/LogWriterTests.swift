@testable import EventFlowBroker
import EventFlowProtocol
import EventFlowStorage
import EventFlowTestSupport
import Foundation
import Logging
import NIOCore
import Testing

/// A RecordBatch v2 of `count` JSON events, as a producer would send it (base offset 0).
func producedBatch(count: Int, compression: RecordBatchBuilder.Compression = .none, producerID: Int64 = -1,
                   epoch: Int16 = -1, baseSequence: Int32 = -1, timestamp: Int64 = 1_764_000_000_000) throws -> ByteBuffer {
    var builder = RecordBatchBuilder(configuration: .init(compression: compression, producerId: producerID,
                                                          producerEpoch: epoch, baseSequence: baseSequence))
    for i in 0..<count {
        builder.append(timestamp: timestamp + Int64(i), key: Array("k\(i)".utf8),
                       value: Array("{\"event\":\(i),\"kind\":\"test\"}".utf8))
    }
    return try builder.build()
}

func bytes(hex: String) -> [UInt8] {
    var result: [UInt8] = []
    var index = hex.startIndex
    while index < hex.endIndex, let next = hex.index(index, offsetBy: 2, limitedBy: hex.endIndex) {
        result.append(UInt8(hex[index..<next], radix: 16) ?? 0)
        index = next
    }
    return result
}

/// The received bytes with the base offset replaced: what the log must hold.
func expectedStored(_ received: ByteBuffer, baseOffset: Int64) -> [UInt8] {
    var copy = ByteBuffer(bytes: received.readableBytesView)
    copy.setInteger(baseOffset, at: 0)
    return Array(copy.readableBytesView)
}

struct StoredRow {
    var partition: Int32
    var baseOffset: Int64
    var lastOffset: Int64
    var recordCount: Int32
    var codec: Int16
    var producerID: Int64
    var bytes: [UInt8]
}

func storedRows(_ db: PostgresConnection, streamID: UUID) throws -> [StoredRow] {
    try db.query("""
        SELECT partition, base_offset, last_offset, record_count, codec, producer_id, encode(batch, 'hex') AS batch
        FROM event_batches WHERE stream_id = $1 ORDER BY partition, base_offset
        """, [streamID.uuidString]).map { row in
        StoredRow(partition: Int32(row["partition"] ?? "") ?? -1, baseOffset: Int64(row["base_offset"] ?? "") ?? -1,
                  lastOffset: Int64(row["last_offset"] ?? "") ?? -1, recordCount: Int32(row["record_count"] ?? "") ?? -1,
                  codec: Int16(row["codec"] ?? "") ?? -1, producerID: Int64(row["producer_id"] ?? "") ?? 0,
                  bytes: bytes(hex: row["batch"] ?? ""))
    }
}

/// A fresh database with organization "acme" and its two-partition stream "orders".
struct OrdersStream {
    let url: String
    let db: PostgresConnection
    let stream: EventStream
    let p0: StreamPartition
    let p1: StreamPartition

    init() throws {
        url = try TestCluster.freshDatabase()
        db = try PostgresConnection(url: url)
        try TimePartitions().ensure(db)
        let org = try Organizations.create(db, name: "acme")
        stream = try Streams.create(db, org: org, name: "orders", partitions: 2)
        p0 = StreamPartition(streamID: stream.id, partition: 0)
        p1 = StreamPartition(streamID: stream.id, partition: 1)
    }
}

@Suite struct LogWriterTests {
    @Test func flushIsStoredByteExactWithAssignedOffsetsAndValidCRC() throws {
        let fixture = try OrdersStream()
        let (url, db, stream, p0, p1) = (fixture.url, fixture.db, fixture.stream, fixture.p0, fixture.p1)
        defer { db.close() }

        let plain = try producedBatch(count: 3)
        let compressed = try producedBatch(count: 5, compression: .lz4(), producerID: 7, epoch: 0, baseSequence: 0)
        var machine = GroupCommit(configuration: .init(flushBytesTarget: 1 << 20, lingerMilliseconds: 1000))
        machine.startup(nextOffsets: [p0: 10, p1: 0])
        _ = machine.accept(ValidatedBatch(partition: p0, recordCount: 3, bytes: plain, ackMode: .durable, token: RequestToken(1)), now: 0)
        _ = machine.accept(ValidatedBatch(partition: p1, recordCount: 5, bytes: compressed,
                                          producer: ProducerBatchInfo(producerID: 7, epoch: 0, baseSequence: 0),
                                          ackMode: .durable, token: RequestToken(2)), now: 0)
        let flush = try #require(machine.drain().compactMap { action -> GroupCommit.Flush? in
            if case .flushNow(let flush) = action { return flush } else { return nil }
        }.first)

        let writer = LogWriterThread(url: url, logger: Logger(label: "test"))
        writer.start()
        let done = DispatchSemaphore(value: 0)
        let outcome = NIOLockedBox<Result<Void, any Error>?>(nil)
        writer.submit({ db in try EventBatchLog.write(db, WriteAheadBatcher.copy(of: flush)) },
                      completion: { result in outcome.set(result); done.signal() })
        done.wait()
        writer.stop()
        if case .failure(let error) = outcome.get() { Issue.record("flush failed: \(error)") }

        let rows = try storedRows(db, streamID: stream.id)
        #expect(rows.map(\.partition) == [0, 1])
        #expect(rows.map(\.baseOffset) == [10, 0])
        #expect(rows.map(\.lastOffset) == [12, 4])
        #expect(rows.map(\.recordCount) == [3, 5])
        #expect(rows.map(\.codec) == [0, 3])
        #expect(rows.map(\.producerID) == [-1, 7])
        #expect(rows[0].bytes == expectedStored(plain, baseOffset: 10))
        #expect(rows[1].bytes == expectedStored(compressed, baseOffset: 0))
        for row in rows {
            let view = try RecordBatchView(validating: ByteBuffer(bytes: row.bytes))
            #expect(view.header.baseOffset == row.baseOffset)
        }

        let next = try EventBatchLog.nextOffsets(db)
        #expect(Set(next.map { "\($0.partition):\($0.next)" }) == ["0:13", "1:5"])
        let producers = try EventBatchLog.producerBatches(db)
        #expect(producers == [StoredProducerBatch(producerID: 7, producerEpoch: 0, streamID: stream.id, partition: 1,
                                                  baseSequence: 0, recordCount: 5, baseOffset: 0)])
    }

    /// The writer encodes each flush in the memory of the one before (`copy(of:reusing:)`): a smaller
    /// flush written after a larger one stores exactly its own rows, none of the earlier bytes.
    @Test func flushEncodedInTheMemoryOfALargerEarlierFlushStoresOnlyItsOwnRows() throws {
        let fixture = try OrdersStream()
        let (db, stream, p0, p1) = (fixture.db, fixture.stream, fixture.p0, fixture.p1)
        defer { db.close() }
        func flush(_ batches: [(StreamPartition, ByteBuffer, Int32)]) throws -> GroupCommit.Flush {
            var machine = GroupCommit(configuration: .init(flushBytesTarget: 1 << 20, lingerMilliseconds: 1000))
            machine.startup(nextOffsets: [p0: 0, p1: 0])
            for (index, (partition, bytes, count)) in batches.enumerated() {
                _ = machine.accept(ValidatedBatch(partition: partition, recordCount: count, bytes: bytes, ackMode: .durable,
                                                  token: RequestToken(UInt64(index + 1))), now: 0)
            }
            return try #require(machine.drain().compactMap { action -> GroupCommit.Flush? in
                if case .flushNow(let flush) = action { return flush } else { return nil }
            }.first)
        }
        let large = try producedBatch(count: 200)
        let small = try producedBatch(count: 2, compression: .lz4())
        let first = WriteAheadBatcher.copy(of: try flush([(p0, large, 200), (p0, try producedBatch(count: 50), 50)]))
        try EventBatchLog.write(db, first)
        let firstByteCount = first.encodedByteCount
        let storage = (consume first).takeStorage()
        let memory = storage.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) }
        let second = WriteAheadBatcher.copy(of: try flush([(p1, small, 2)]), reusing: consume storage)
        #expect(second.encodedByteCount < firstByteCount, "the second flush is the smaller one")
        #expect(second.takeStorage().withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) } == memory,
                "the second flush is encoded in the first one's memory")
        try EventBatchLog.write(db, second)

        let rows = try storedRows(db, streamID: stream.id)
        #expect(rows.map(\.partition) == [0, 0, 1])
        #expect(rows.map(\.baseOffset) == [0, 200, 0])
        #expect(rows[0].bytes == expectedStored(large, baseOffset: 0))
        #expect(rows[2].bytes == expectedStored(small, baseOffset: 0))
    }

    @Test func writerConnectionAsksForEarlyWriteBackOfWhatItWrites() throws {
        let url = try TestCluster.freshDatabase()
        let writer = LogWriterThread(url: url, logger: Logger(label: "test"))
        writer.start()
        let done = DispatchSemaphore(value: 0)
        let setting = NIOLockedBox<String?>(nil)
        writer.submit({ db in setting.set(try db.query("SHOW backend_flush_after").first?["backend_flush_after"]) },
                      completion: { _ in done.signal() })
        done.wait()
        writer.stop()
        #expect(setting.get() == "2MB")
    }

    @Test func writerReportsAnUnreachableDatabaseAsAConnectionFailure() throws {
        let writer = LogWriterThread(url: "postgresql://eventflow@127.0.0.1:1/none?connect_timeout=2", logger: Logger(label: "test"))
        writer.start()
        let done = DispatchSemaphore(value: 0)
        let outcome = NIOLockedBox<Result<Void, any Error>?>(nil)
        writer.submit({ _ in }, completion: { result in outcome.set(result); done.signal() })
        done.wait()
        writer.stop()
        guard case .failure(let error as DatabaseError) = outcome.get() else {
            Issue.record("expected a database error, got \(String(describing: outcome.get()))")
            return
        }
        #expect(error.isConnectionFailure)
    }
}

/// A value shared between a test and a callback thread.
final class NIOLockedBox<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func get() -> Value { lock.lock(); defer { lock.unlock() }; return value }
    func set(_ new: Value) { lock.lock(); value = new; lock.unlock() }
    func update<T>(_ body: (inout Value) -> T) -> T { lock.lock(); defer { lock.unlock() }; return body(&value) }
}
