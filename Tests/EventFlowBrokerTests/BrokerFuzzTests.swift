@testable import EventFlowBroker
import EventFlowProtocol
import EventFlowStorage
import Foundation
import NIOCore
import Testing

/// A seeded random driver of the whole broker, not only the codec: frames mutated from valid
/// requests of every API and version (the kafka-python vectors in protocol/vectors/messages) and
/// from valid Produce requests (plain and LZ4 batches, with the batch's CRC left broken or
/// recomputed so the mutation reaches the checks behind it) go through TLS, the session, request
/// handling, the batcher and the writer of a real broker, on authenticated and unauthenticated
/// connections.
///
/// After every frame a probe (ApiVersions) must be answered or the connection closed — the broker
/// never hangs a connection — and at the end the broker still serves a clean client, holds no
/// request bytes, and every batch it stored is one a consumer can read record by record.
///
/// `EVENTFLOW_FUZZ_ITERATIONS` (default 400, `make fuzz`: 20,000) and `EVENTFLOW_FUZZ_SEED`
/// (default: random, printed) reproduce a run.
@Suite struct BrokerFuzzTests {
    static let probeCorrelationID: Int32 = 0x7EED_F00D

    @Test func mutatedFrameSequencesNeverHangCrashOrStoreAnUnreadableBatch() async throws {
        let environment = ProcessInfo.processInfo.environment
        let iterations = environment["EVENTFLOW_FUZZ_ITERATIONS"].flatMap(Int.init) ?? 400
        let seed = environment["EVENTFLOW_FUZZ_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 1...UInt64.max)
        var random = SplitMix64(seed: seed)
        print("BrokerFuzzTests: seed \(seed), \(iterations) frames (EVENTFLOW_FUZZ_SEED=\(seed) to repeat)")

        // A JoinGroup or SyncGroup rightly waits for the group's other members — those of earlier,
        // closed connections until their sessions expire, up to `sessionTimeoutMillisecondsMax`
        // (Kafka's 30 minutes by default). Sessions here end within 10 s, so such a wait ends well
        // inside the probe's 60 s and a probe that goes unanswered is a hang, not a group waiting.
        // (`EVENTFLOW_FUZZ_SESSION_TIMEOUT_MAX_MS` sets another bound, e.g. Kafka's 1800000.)
        let sessionTimeoutMax = environment["EVENTFLOW_FUZZ_SESSION_TIMEOUT_MAX_MS"].flatMap(Int32.init) ?? 10_000
        let harness = try await BrokerHarness.start(partitions: 2, fetch: .init(waitMillisecondsMax: 50), configure: {
            $0.groups = .init(sessionTimeoutMillisecondsMax: sessionTimeoutMax, initialRebalanceDelayMilliseconds: 0)
        })
        let corpus = try Self.corpus()
        var counts = Counts()
        var connection: TestConnection?
        var authenticated = false
        for iteration in 0..<iterations {
            if connection == nil {
                // Three of four frames go to an authenticated connection, where every API is reached.
                authenticated = random.next(below: 4) != 0
                connection = authenticated
                    ? try await harness.authenticatedConnection()
                    : try await TestConnection.connect(port: harness.broker.port, caPath: harness.certificates.certificateAuthority)
                counts.connections += 1
            }
            guard let open = connection else { continue }
            var frame = corpus.frames[Int(random.next(below: UInt64(corpus.frames.count)))]
            Self.mutate(&frame, random: &random)
            counts.frames += 1
            if !authenticated { counts.unauthenticatedFrames += 1 }
            do {
                try await open.writeFrame(frame)
                _ = try await open.send(ApiVersionsRequest(), version: 0, correlationID: Self.probeCorrelationID)
            } catch {
                // Closed while writing: the broker already refused an earlier frame.
                counts.closed += 1
                connection = nil
                continue
            }
            // Answers to the mutated frame (if it has one) come first, then the probe's, or the close.
            var answered = false
            while let response = await open.receiveFrame(timeout: .seconds(60), iteration: iteration, sent: Self.describe(frame)) {
                if response.getInteger(at: response.readerIndex, as: Int32.self) == Self.probeCorrelationID {
                    let (_, versions) = try ApiVersionsResponse.decodeResponse(frame: response, version: 0)
                    #expect(versions.errorCode == .noError)
                    answered = true
                    break
                }
            }
            if answered {
                counts.probesAnswered += 1
            } else {
                counts.closed += 1
                await open.close()
                connection = nil
            }
        }
        await connection?.close()
        print("BrokerFuzzTests: \(counts)")

        // The broker holds nothing for the connections that are gone, and serves a clean client.
        #expect(try await eventually { harness.broker.servicesForTests.registry.count == 0 })
        #expect(harness.broker.requestBytesCharged == 0)
        #expect(harness.broker.unauthenticatedBytesCharged == 0)
        let client = try await harness.authenticatedConnection()
        let (_, produced) = try await client.call(produceRequest(topic: "orders", batch: try producedBatch(count: 3)), version: 7)
        let answer = try #require(produced.responses.first?.partitionResponses.first)
        #expect(answer.errorCode == .noError)
        let fetch = FetchRequest(maxWaitMs: 0, minBytes: 0, maxBytes: 1 << 20, topics: [
            .init(topic: "orders", partitions: [.init(partition: 0, fetchOffset: answer.baseOffset, partitionMaxBytes: 1 << 20)]),
        ])
        let (_, fetched) = try await client.call(fetch, version: 4)
        #expect(fetched.responses.first?.partitions.first?.errorCode == .noError)
        #expect((fetched.responses.first?.partitions.first?.records?.readableBytes ?? 0) > 0)
        await client.close()
        await harness.broker.shutdown()

        // Whatever was stored reads back record by record, with as many records as its header says.
        let db = try harness.database()
        defer { db.close() }
        let rows = try storedRows(db, streamID: harness.stream.id)
        for row in rows {
            let view = try RecordBatchView(validating: ByteBuffer(bytes: row.bytes))
            var reader = try view.records(decompressedBytesMax: 8 << 20)
            let records = try reader.readAll()
            #expect(records.count == Int(row.recordCount), "batch at \(row.partition)/\(row.baseOffset)")
        }
        print("BrokerFuzzTests: \(rows.count) batches stored, each readable")
    }

    /// The API, version and first bytes of a sent frame, for the report of a hung connection.
    static func describe(_ frame: ByteBuffer) -> String {
        let key = frame.getInteger(at: frame.readerIndex, as: Int16.self).map(String.init) ?? "?"
        let version = frame.getInteger(at: frame.readerIndex + 2, as: Int16.self).map(String.init) ?? "?"
        let head = frame.getBytes(at: frame.readerIndex, length: min(frame.readableBytes, 96)) ?? []
        return ": api key \(key) v\(version), \(frame.readableBytes) bytes: " + head.map { String(format: "%02x", $0) }.joined()
    }

    struct Counts: CustomStringConvertible {
        var frames = 0
        var unauthenticatedFrames = 0
        var connections = 0
        var probesAnswered = 0
        var closed = 0
        var description: String {
            "\(frames) frames (\(unauthenticatedFrames) before authentication) on \(connections) connections: "
                + "probe answered after \(probesAnswered), connection closed after \(closed)"
        }
    }

    struct Corpus {
        var frames: [ByteBuffer]
    }

    /// Every request vector (all APIs and versions EventFlow serves but DeleteTopics), and Produce v3–v7 frames
    /// carrying valid plain and LZ4 batches.
    static func corpus() throws -> Corpus {
        let directory = KafkaPythonTests.packageRoot.appendingPathComponent("protocol/vectors/messages")
        var frames: [ByteBuffer] = []
        // DeleteTopics is left out: its vectors delete "orders", after which every Produce and
        // Fetch mutation would only meet UNKNOWN_TOPIC_OR_PARTITION.
        for name in try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
        where name.hasSuffix("_request.hex") && !name.hasPrefix("delete_topics") {
            let hex = try String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)
            frames.append(ByteBuffer(bytes: bytes(hex: hex.trimmingCharacters(in: .whitespacesAndNewlines))))
        }
        for version in Int16(3)...7 {
            for compression in [RecordBatchBuilder.Compression.none, .lz4()] {
                let batch = try producedBatch(count: 5, compression: compression)
                for partition in Int32(0)...1 {
                    frames.append(produceRequest(topic: "orders", partition: partition, batch: batch, timeoutMs: 5_000)
                        .encodedRequest(version: version, correlationId: 1, clientId: "fuzz"))
                }
            }
        }
        return Corpus(frames: frames)
    }

    /// One to four mutations: flipped bytes, an extreme integer written over any field, a cut, added
    /// garbage, or — in a Produce frame's batch — a change inside the batch with the CRC left
    /// broken or recomputed.
    static func mutate(_ frame: inout ByteBuffer, random: inout SplitMix64) {
        let extremes: [UInt32] = [0, 1, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 0x0010_0000, 0xFFFF_FFFE, 0x0000_FFFF]
        for _ in 0...random.next(below: 4) {
            let length = frame.readableBytes
            guard length > 0 else { break }
            let start = frame.readerIndex
            switch random.next(below: 6) {
            case 0:
                for _ in 0...random.next(below: 3) {
                    let index = start + Int(random.next(below: UInt64(length)))
                    frame.setInteger(UInt8(truncatingIfNeeded: random.next()), at: index)
                }
            case 1 where length >= 4:
                let index = start + Int(random.next(below: UInt64(length - 3)))
                frame.setInteger(extremes[Int(random.next(below: UInt64(extremes.count)))], at: index)
            case 2 where length >= 2:
                let index = start + Int(random.next(below: UInt64(length - 1)))
                frame.setInteger(UInt16(truncatingIfNeeded: extremes[Int(random.next(below: UInt64(extremes.count)))]), at: index)
            case 3:
                frame.moveWriterIndex(to: start + Int(random.next(below: UInt64(length))))
            case 4:
                for _ in 0...random.next(below: 64) { frame.writeInteger(UInt8(truncatingIfNeeded: random.next())) }
            default:
                mutateBatch(&frame, random: &random)
            }
        }
    }

    /// A change inside the record batch at the end of a Produce frame (its last `records` field).
    static func mutateBatch(_ frame: inout ByteBuffer, random: inout SplitMix64) {
        guard frame.getInteger(at: frame.readerIndex, as: Int16.self) == APIKey.produce.rawValue else { return }
        // The batch is the frame's tail: find its start from the records length written before it.
        let batchLength = RecordBatchHeader.byteCount + 5 * 8
        var batchStart: Int?
        for candidate in stride(from: frame.writerIndex - RecordBatchHeader.byteCount, to: frame.readerIndex + 4, by: -1) {
            if let size = frame.getInteger(at: candidate - 4, as: Int32.self), Int(size) == frame.writerIndex - candidate,
               frame.getInteger(at: candidate + RecordBatchHeader.magicIndex, as: Int8.self) == 2 {
                batchStart = candidate
                break
            }
            if frame.writerIndex - candidate > batchLength * 8 { break }
        }
        guard let batch = batchStart else { return }
        let end = frame.writerIndex
        switch random.next(below: 6) {
        case 0: frame.setInteger(Int8(truncatingIfNeeded: random.next()), at: batch + RecordBatchHeader.magicIndex)
        case 1: frame.setInteger(Int32(truncatingIfNeeded: random.next()), at: batch + RecordBatchHeader.recordCountIndex)
        case 2: frame.setInteger(Int32(truncatingIfNeeded: random.next(below: 200)), at: batch + RecordBatchHeader.lastOffsetDeltaIndex)
        case 3: frame.setInteger(Int16(truncatingIfNeeded: random.next(below: 8)), at: batch + RecordBatchHeader.attributesIndex)
        case 4: frame.setInteger(Int32(truncatingIfNeeded: random.next()), at: batch + RecordBatchHeader.batchLengthIndex)
        default:
            // Inside the records (or the LZ4 frame holding them).
            let records = batch + RecordBatchHeader.byteCount
            guard end > records else { return }
            for _ in 0...random.next(below: 3) {
                frame.setInteger(UInt8(truncatingIfNeeded: random.next()), at: records + Int(random.next(below: UInt64(end - records))))
            }
        }
        // Half the time the CRC is made right again, so the mutation reaches the checks behind it.
        if random.next(below: 2) == 0,
           let crc = CRC32C.checksum(frame, at: batch + RecordBatchHeader.attributesIndex, length: end - batch - RecordBatchHeader.attributesIndex) {
            frame.setInteger(crc, at: batch + RecordBatchHeader.crcIndex)
        }
    }
}

extension SplitMix64 {
    /// A value in 0..<bound (the modulo bias is irrelevant here).
    mutating func next(below bound: UInt64) -> UInt64 { next() % bound }
}
