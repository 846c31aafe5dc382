import Benchmark
import EventFlowProtocol
import NIOCore

// Hot paths of the wire protocol. Throughput is operations per second; each benchmark's
// name says what one operation is, so MB/s and records/s follow by multiplication
// (Benchmarks/README.md does it).

/// A 100-byte JSON event, the record the ingest path is sized for.
func jsonEvent(_ i: Int) -> [UInt8] {
    var text = "{\"id\":\(i),\"type\":\"page_view\",\"user\":\"user-\(i % 997)\",\"path\":\"/products/\(i % 131)\",\"pad\":\""
    let filler = "abcdefghijklmnopqrstuvwxyz0123456789"
    var index = filler.startIndex
    while text.utf8.count < 98 {
        text.append(filler[index])
        index = filler.index(after: index) == filler.endIndex ? filler.startIndex : filler.index(after: index)
    }
    text += "\"}"
    return Array(text.utf8)
}

/// Deterministic bytes that compress about 2:1, for a 1 MB compressed batch.
func mixedPayload(_ i: Int, count: Int) -> [UInt8] {
    var state = UInt64(truncatingIfNeeded: i) &* 0x9E37_79B9_7F4A_7C15 | 1
    return (0..<count).map { j in
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return j % 2 == 0 ? UInt8(ascii: "a") &+ UInt8(state % 16) : UInt8(ascii: "x")
    }
}

func buildBatch(records: [[UInt8]], compression: RecordBatchBuilder.Compression) -> ByteBuffer {
    var builder = RecordBatchBuilder(configuration: .init(compression: compression))
    for (i, value) in records.enumerated() {
        builder.append(timestamp: 1_700_000_000_000 + Int64(i), key: nil, value: value)
    }
    do { return try builder.build() } catch { fatalError("benchmark setup: \(error)") }
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        timeUnits: .microseconds,
        maxDuration: .seconds(3),
        maxIterations: 1_000_000
    )

    // MARK: CRC32C

    let megabyte = ByteBuffer(bytes: mixedPayload(1, count: 1 << 20))
    Benchmark("CRC32C 1 MiB (hardware path)") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(CRC32C.checksum(megabyte))
        }
    }
    Benchmark("CRC32C 1 MiB (portable table)") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(megabyte.withUnsafeReadableBytes { CRC32C.updatePortable(0, $0) })
        }
    }

    // MARK: Varints

    let varintValues: [Int64] = (0..<1000).map { i in
        // Mixed magnitudes: 1-byte deltas dominate real batches, with some longer lengths.
        switch i % 4 {
        case 0: Int64(i % 60)
        case 1: Int64(i * 37)
        case 2: -Int64(i)
        default: Int64(i) * 1_000_003
        }
    }
    var encodedVarints = ByteBuffer()
    for value in varintValues { encodedVarints.writeVarLong(value) }
    let encodedVarintsConstant = encodedVarints

    Benchmark("Varlong encode ×1000") { benchmark in
        var buffer = ByteBuffer()
        buffer.reserveCapacity(16 * 1024)
        for _ in benchmark.scaledIterations {
            buffer.clear()
            for value in varintValues { buffer.writeVarLong(value) }
            blackHole(buffer.writerIndex)
        }
    }
    Benchmark("Varlong decode ×1000") { benchmark in
        for _ in benchmark.scaledIterations {
            var buffer = encodedVarintsConstant
            var sum: Int64 = 0
            while buffer.readableBytes > 0 {
                sum &+= (try? buffer.readVarLong("bench")) ?? 0
            }
            blackHole(sum)
        }
    }

    // MARK: Record batches of 100 × 100-byte JSON records

    let hundredRecords = (0..<100).map(jsonEvent)
    for (label, compression) in [("none", RecordBatchBuilder.Compression.none), ("lz4", .lz4())] {
        Benchmark("Batch build 100 records × 100 B (\(label))") { benchmark in
            var builder = RecordBatchBuilder(configuration: .init(compression: compression))
            var output = ByteBuffer()
            output.reserveCapacity(64 * 1024)
            for _ in benchmark.scaledIterations {
                for (i, value) in hundredRecords.enumerated() {
                    builder.append(timestamp: 1_700_000_000_000 + Int64(i), key: nil, value: value)
                }
                output.clear()
                blackHole(try builder.build(into: &output))
            }
        }

        let batch = buildBatch(records: hundredRecords, compression: compression)
        Benchmark("Batch validate 100 records × 100 B (\(label))") { benchmark in
            for _ in benchmark.scaledIterations {
                blackHole(try RecordBatchView(validating: batch).header.recordCount)
            }
        }
        Benchmark("Batch validate + read 100 records × 100 B (\(label))") { benchmark in
            for _ in benchmark.scaledIterations {
                var reader = try RecordBatchView(validating: batch).records(decompressedBytesMax: 1 << 20)
                var bytes = 0
                while let record = try reader.next() { bytes &+= record.value?.readableBytes ?? 0 }
                blackHole(bytes)
            }
        }
    }

    // MARK: 1 MB batches: validation is a CRC over the whole batch, no decompression

    var onesMegabyteRecords: [[UInt8]] = []
    var lz4Batch = ByteBuffer()
    repeat {
        onesMegabyteRecords += (0..<1000).map { mixedPayload(onesMegabyteRecords.count + $0, count: 100) }
        lz4Batch = buildBatch(records: onesMegabyteRecords, compression: .lz4())
    } while lz4Batch.readableBytes < 1 << 20
    let lz4MegabyteBatch = lz4Batch
    let plainMegabyteBatch = buildBatch(records: Array(onesMegabyteRecords.prefix(1 << 20 / 107)), compression: .none)

    Benchmark("Batch validate 1 MB LZ4 batch (no decompression), \(lz4MegabyteBatch.readableBytes) B") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try RecordBatchView(validating: lz4MegabyteBatch).header.recordCount)
        }
    }
    Benchmark("Batch validate 1 MB uncompressed batch, \(plainMegabyteBatch.readableBytes) B") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try RecordBatchView(validating: plainMegabyteBatch).header.recordCount)
        }
    }
    Benchmark("Batch rewrite base offset ×1000 (in place, 1 MB batch)") { benchmark in
        var batch = ByteBuffer(bytes: plainMegabyteBatch.readableBytesView)  // uniquely owned: no copy-on-write
        benchmark.startMeasurement()
        for i in 0..<1000 {
            try RecordBatchHeader.rewriteBaseOffset(Int64(i), in: &batch, batchIndex: batch.readerIndex)
        }
        benchmark.stopMeasurement()
        blackHole(batch.getInteger(at: 0, as: Int64.self))
    }

    // MARK: Frame decode of a 1 MB Produce request

    let produce = ProduceRequest(acks: -1, timeoutMs: 30_000, topicData: [
        .init(name: "events", partitionData: [.init(index: 0, records: plainMegabyteBatch)]),
    ])
    var frameStream = ByteBuffer()
    KafkaFrameEncoder().encodeFrame(produce.encodedRequest(version: 7, correlationId: 1, clientId: "bench"), into: &frameStream)
    let produceFrameStream = frameStream
    Benchmark("Produce v7 frame decode + batch validate, \(produceFrameStream.readableBytes) B") { benchmark in
        let decoder = KafkaFrameDecoder()
        for _ in benchmark.scaledIterations {
            var stream = produceFrameStream
            guard let frame = try decoder.nextFrame(from: &stream) else { fatalError("incomplete frame") }
            let request = try KafkaRequest.decode(frame: frame)
            guard case .produce(let body) = request.body else { fatalError("not a produce request") }
            var batches = 0
            for topic in body.topicData {
                for partition in topic.partitionData {
                    if let records = partition.records {
                        batches += try RecordBatchView.batches(in: records).count
                    }
                }
            }
            blackHole(batches)
        }
    }
}

extension KafkaFrameEncoder {
    /// The size prefix and the payload, as `encode(data:out:)` writes them onto the wire.
    func encodeFrame(_ payload: ByteBuffer, into out: inout ByteBuffer) {
        do { try encode(data: payload, out: &out) } catch { fatalError("benchmark setup: \(error)") }
    }
}
