@testable import EventFlowBroker
import EventFlowProtocol
import EventFlowStorage
import EventFlowTestSupport
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import Testing

/// Connections that behave as an attacker's would, against a real broker (TLS, SASL, PostgreSQL):
/// each is closed, holds no memory it did not send, and the broker keeps serving everyone else.
@Suite struct HostileConnectionTests {
    @Test func framesBeforeAuthenticationAboveTheirBoundAreRefusedAtTheirSizePrefix() async throws {
        let harness = try await BrokerHarness.start(frameBytesMax: 1 << 20)
        let port = harness.broker.port
        let ca = harness.certificates.certificateAuthority

        // Six connections that never authenticate, each claiming a 100 MiB ApiVersions frame: closed
        // as soon as the prefix arrives, before any of the claimed bytes are sent.
        var attackers: [TestConnection] = []
        for _ in 0..<6 {
            let attacker = try await TestConnection.connect(port: port, caPath: ca)
            var prefix = ByteBuffer()
            prefix.writeInteger(Int32(100 << 20))
            prefix.writeBytes([0x00, 0x12, 0x00, 0x03])
            try await attacker.writeRaw(prefix)
            attackers.append(attacker)
        }
        for attacker in attackers { #expect(await attacker.receiveFrame() == nil) }

        // One byte over the pre-authentication bound is refused; the bound itself is accepted
        // (the frame is not a valid request, so it closes too, but only once it has arrived whole).
        let over = try await TestConnection.connect(port: port, caPath: ca)
        var overPrefix = ByteBuffer()
        overPrefix.writeInteger(Int32(BrokerConfiguration.defaultUnauthenticatedFrameBytesMax + 1))
        try await over.writeRaw(overPrefix)
        #expect(await over.receiveFrame() == nil)

        let atBound = try await TestConnection.connect(port: port, caPath: ca)
        var atBoundPrefix = ByteBuffer()
        atBoundPrefix.writeInteger(Int32(BrokerConfiguration.defaultUnauthenticatedFrameBytesMax))
        atBoundPrefix.writeBytes([0x00, 0x12])
        try await atBound.writeRaw(atBoundPrefix)
        // While its bytes are outstanding the frame holds its reservation in the pre-authentication budget.
        #expect(try await eventually { harness.broker.unauthenticatedBytesCharged == BrokerConfiguration.defaultUnauthenticatedFrameBytesMax })
        #expect(harness.broker.requestBytesCharged == 0)
        await atBound.close()
        #expect(try await eventually { harness.broker.unauthenticatedBytesCharged == 0 })

        // After authentication the connection's bound is frameBytesMax: a 600 KiB produce is taken.
        let producer = try await harness.authenticatedConnection()
        let large = try batch(valueBytes: 600 * 1024)
        let (_, produced) = try await producer.call(produceRequest(topic: "orders", batch: large), version: 7)
        #expect(produced.responses.first?.partitionResponses.first?.errorCode == .noError)
        #expect(harness.broker.requestBytesCharged == 0)
        await producer.close()
        await harness.broker.shutdown()
    }

    /// The broker copies each frame into memory of its own as it arrives; wherever the reads cut
    /// the bytes (inside a size prefix, inside a body, several frames in one write), every frame is
    /// answered in order and every batch is stored.
    @Test func framesCutAnywhereByTheReadsAreAnsweredAndStored() async throws {
        let harness = try await BrokerHarness.start(frameBytesMax: 4 << 20)
        let producer = try await harness.authenticatedConnection()
        // 70 kB spans several TLS records and reads; 1.5 MB is more than a frame's first buffer
        // (`frameBufferInitialBytesMax`), which then grows.
        let sizes = [10, 70_000, 5, 1_500_000]
        var stream = ByteBuffer()
        for (index, size) in sizes.enumerated() {
            let request = produceRequest(topic: "orders", batch: try batch(valueBytes: size))
            let payload = request.encodedRequest(version: 7, correlationId: Int32(index + 1), clientId: "test")
            stream.writeInteger(Int32(payload.readableBytes))
            stream.writeImmutableBuffer(payload)
        }
        let first = 4 + Int(stream.getInteger(at: 0, as: Int32.self)!)
        let second = first + 4 + Int(stream.getInteger(at: first, as: Int32.self)!)
        // 1 byte, 2 bytes (the first prefix still incomplete), the first body but its last 5 bytes,
        // those 5 with the whole second frame and 3 bytes of the third's prefix, 1 byte, then the rest.
        let cuts = [1, 3, first - 5, second + 3, second + 4, stream.readableBytes]
        var start = 0
        for cut in cuts {
            try await producer.writeRaw(stream.getSlice(at: start, length: cut - start)!)
            start = cut
        }
        var baseOffsets: [Int64] = []
        for correlationID in 1...Int32(sizes.count) {
            let (received, answer) = try await producer.receive(ProduceResponse.self, version: 7)
            #expect(received == correlationID)
            let partition = answer.responses.first?.partitionResponses.first
            #expect(partition?.errorCode == .noError)
            baseOffsets.append(partition?.baseOffset ?? -1)
        }
        #expect(baseOffsets == [0, 1, 2, 3])
        let db = try harness.database()
        defer { db.close() }
        let rows = try db.query("SELECT count(*) AS n FROM event_batches WHERE stream_id = $1 AND partition = 0",
                                [harness.stream.id.uuidString])
        #expect(rows.first?["n"] == "4")
        await producer.close()
        await harness.broker.shutdown()
    }

    @Test func connectionsThatNeverFinishTLSOrSASLAreClosedAtTheAuthenticationTimeout() async throws {
        let harness = try await BrokerHarness.start(configure: {
            $0.deadlines = .init(authenticationTimeout: .seconds(3), frameReadTimeout: .seconds(60), idleTimeout: .seconds(600))
        })
        let port = harness.broker.port
        let ca = harness.certificates.certificateAuthority

        // TCP without a TLS ClientHello.
        let silent = try await RawTCPConnection.connect(port: port)
        // TLS, then nothing. (A handshake slower than the deadline on a loaded machine is closed
        // all the same, before the connection is set up.)
        let tlsOnly = try? await TestConnection.connect(port: port, caPath: ca)
        // SaslHandshake, then no SaslAuthenticate. (On a loaded machine the handshake itself may
        // come too late; the connection is then closed all the same.)
        let halfSasl = try? await TestConnection.connect(port: port, caPath: ca)
        if let halfSasl, let (_, handshake) = try? await halfSasl.call(SaslHandshakeRequest(mechanism: "PLAIN"), version: 1) {
            #expect(handshake.errorCode == .noError)
        }
        // A client that authenticates keeps its connection past the deadline.
        let client = try await retryingWhileClosed { try await harness.authenticatedConnection() }

        #expect(await silent.closedByPeer())
        if let tlsOnly { #expect(await tlsOnly.receiveFrame() == nil) }
        if let halfSasl { #expect(await halfSasl.receiveFrame() == nil) }
        try await Task.sleep(for: .seconds(3))
        let (_, metadata) = try await client.call(MetadataRequest(topics: nil), version: 1)
        #expect(metadata.topics.map(\.name) == ["orders"])
        #expect(try await eventually { harness.broker.servicesForTests.registry.count == 1 })
        await client.close()
        await harness.broker.shutdown()
    }

    @Test func idleConnectionsAreClosedAndOnesWaitingForALongPollAreNot() async throws {
        let harness = try await BrokerHarness.start(configure: {
            $0.deadlines = .init(authenticationTimeout: .seconds(120), frameReadTimeout: .seconds(60), idleTimeout: .seconds(1))
        })
        let idle = try await retryingWhileClosed { try await harness.authenticatedConnection() }
        // A long poll longer than the idle timeout: the connection is waiting for the broker, not
        // idle, and gets its (empty) answer after 2.5 s.
        let fetch = FetchRequest(maxWaitMs: 2_500, minBytes: 1, maxBytes: 1 << 20, topics: [
            .init(topic: "orders", partitions: [.init(partition: 0, fetchOffset: 0, partitionMaxBytes: 1 << 20)]),
        ])
        let answer = try await retryingWhileClosed {
            let polling = try await harness.authenticatedConnection()
            defer { Task { await polling.close() } }
            return try await polling.call(fetch, version: 4).1
        }
        #expect(answer.responses.first?.partitions.first?.errorCode == .noError)
        #expect(answer.responses.first?.partitions.first?.records?.readableBytes ?? 0 == 0)
        // Meanwhile the other connection, with nothing to say, was closed.
        #expect(await idle.receiveFrame() == nil)
        await harness.broker.shutdown()
    }

    @Test func aFrameThatStopsArrivingIsClosedAtTheFrameReadTimeoutAndReleasesItsReservation() async throws {
        let harness = try await BrokerHarness.start(configure: {
            $0.deadlines = .init(authenticationTimeout: .seconds(120), frameReadTimeout: .seconds(3), idleTimeout: .seconds(600))
        })
        let dribbler = try await harness.authenticatedConnection()
        var start = ByteBuffer()
        start.writeInteger(Int32(50_000))
        start.writeBytes([0x00, 0x00, 0x00, 0x07])
        try await dribbler.writeRaw(start)
        // The claimed size counts against the request-bytes budget while the rest is awaited.
        #expect(try await eventually { harness.broker.requestBytesCharged == 50_000 })
        // One more byte now and then does not save it: the whole frame had to arrive in time.
        for _ in 0..<3 {
            try? await dribbler.writeRaw(ByteBuffer(bytes: [0x00]))
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(await dribbler.receiveFrame() == nil)
        #expect(try await eventually { harness.broker.requestBytesCharged == 0 })

        let client = try await harness.authenticatedConnection()
        let (_, produced) = try await client.call(produceRequest(topic: "orders", batch: try producedBatch(count: 3)), version: 7)
        #expect(produced.responses.first?.partitionResponses.first?.errorCode == .noError)
        await client.close()
        await harness.broker.shutdown()
    }

    @Test func aFrameBeingReceivedHoldsTheBudgetSoOtherConnectionsWaitForIt() async throws {
        // Broker-wide bound 64 KiB: a 100 KiB frame in progress fills it.
        let harness = try await BrokerHarness.start(requestBytesMax: 64 * 1024, connectionRequestBytesMax: 1 << 20)
        let largeConnection = try await harness.authenticatedConnection()
        let other = try await harness.authenticatedConnection()
        let frame = produceRequest(topic: "orders", batch: try batch(valueBytes: 100 * 1024))
            .encodedRequest(version: 7, correlationId: 1, clientId: "t")
        var sized = ByteBuffer()
        sized.writeInteger(Int32(frame.readableBytes))
        sized.writeImmutableBuffer(frame)
        let firstPart = sized.getSlice(at: 0, length: 10_000)!
        let rest = sized.getSlice(at: 10_000, length: sized.readableBytes - 10_000)!
        try await largeConnection.writeRaw(firstPart)
        #expect(try await eventually { harness.broker.requestBytesCharged == frame.readableBytes })

        // The other connection's request waits: reads are paused while the budget is full.
        let sent = try await other.send(MetadataRequest(topics: nil), version: 1)
        try await Task.sleep(for: .milliseconds(300))
        #expect(harness.broker.requestBytesCharged == frame.readableBytes)
        // The reserved frame is read to its end even though the budget is full, then handed to
        // the batcher; its bytes are released and the waiting request is answered.
        try await largeConnection.writeRaw(rest)
        let (_, produced) = try await largeConnection.receive(ProduceResponse.self, version: 7)
        #expect(produced.responses.first?.partitionResponses.first?.errorCode == .noError)
        let (correlationID, metadata) = try await other.receive(MetadataResponse.self, version: 1)
        #expect(correlationID == sent)
        #expect(metadata.topics.map(\.name) == ["orders"])
        #expect(try await eventually { harness.broker.requestBytesCharged == 0 })
        await largeConnection.close()
        await other.close()
        await harness.broker.shutdown()
    }

    @Test func plaintextOnTheTLSPortAndOldTLSVersionsAreRefused() async throws {
        let log = CapturedLog()
        let harness = try await BrokerHarness.start(logger: log.logger(label: "test.broker"))
        let port = harness.broker.port

        // A Kafka ApiVersions request in the clear: not a TLS record, the connection closes unanswered.
        let plaintext = try await RawTCPConnection.connect(port: port)
        var frame = ByteBuffer()
        let request = ApiVersionsRequest().encodedRequest(version: 2, correlationId: 1, clientId: "plain")
        frame.writeInteger(Int32(request.readableBytes))
        frame.writeImmutableBuffer(request)
        try await plaintext.write(frame)
        #expect(await plaintext.closedByPeer())
        let answer = plaintext.bytesReceived
        #expect(answer.isEmpty, "nothing comes back, no Kafka response and no TLS alert")
        // The broker says what happened, with the bytes the client opened with (the size prefix).
        let named = log.all.filter { $0.contains("not TLS on the TLS port") }
        #expect(named.count == 1, "\(log.all)")
        #expect(named.first?.contains("firstBytes=00 00 00") == true, "\(named)")

        // TLS 1.1 is refused; TLS 1.2 and 1.3 are served.
        for (version, served) in [(TLSVersion.tlsv11, false), (.tlsv12, true), (.tlsv13, true)] {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .file(harness.certificates.certificateAuthority)
            tls.minimumTLSVersion = version
            tls.maximumTLSVersion = version
            let connection = try await TestConnection.connect(port: port, caPath: harness.certificates.certificateAuthority, tls: tls)
            let answer = try? await connection.call(ApiVersionsRequest(), version: 2)
            #expect((answer?.1.errorCode == .noError) == served, "TLS \(version)")
            await connection.close()
        }

        // A client that does not trust the broker's CA fails the handshake.
        var untrusting = TLSConfiguration.makeClientConfiguration()
        untrusting.trustRoots = .certificates([])
        let stranger = try await TestConnection.connect(port: port, caPath: harness.certificates.certificateAuthority, tls: untrusting)
        let strangerAnswer = try? await stranger.call(ApiVersionsRequest(), version: 2)
        #expect(strangerAnswer == nil)
        await harness.broker.shutdown()
    }

    /// Every API the broker advertises, at every version it serves: before authentication (other than
    /// ApiVersions and SASL) at most one answer and then the close; after it, bodies of huge array
    /// counts and string lengths (`7f ff ff ff`: Int32.max as a count, 32,767 as a length; and
    /// `ff ff ff ff 0f`, 2^32 - 1 as an unsigned varint for flexible versions) are answered or closed,
    /// never waited on and never allocated for, and the broker goes on serving.
    @Test func everyAPIBeforeAuthenticationAndWithHugeCountsIsRefusedAndTheBrokerKeepsServing() async throws {
        let harness = try await BrokerHarness.start()
        let probe = try await harness.authenticatedConnection()
        let (_, advertised) = try await probe.call(ApiVersionsRequest(), version: 2)
        let openBeforeAuthentication: Set<Int16> = [APIKey.apiVersions.rawValue, APIKey.saslHandshake.rawValue,
                                                    APIKey.saslAuthenticate.rawValue]
        let bodies: [[UInt8]] = [
            [0x7f, 0xff, 0xff, 0xff] + [UInt8](repeating: 0x7f, count: 60),
            [0xff, 0xff, 0xff, 0xff, 0x0f] + [UInt8](repeating: 0xff, count: 59),
        ]
        var tried = 0, answeredAfterAuthentication = 0
        let client = try await retryingWhileClosed { try await harness.authenticatedConnection() }
        var current: TestConnection? = client
        for range in advertised.apiKeys {
            guard let api = APIKey(rawValue: range.apiKey) else { continue }
            for version in range.minVersion...range.maxVersion {
                for body in bodies {
                    var frame = ByteBuffer()
                    RequestHeader(apiKey: api, apiVersion: version, correlationId: 9, clientId: "hostile").encode(into: &frame)
                    frame.writeBytes(body)
                    tried += 1
                    if !openBeforeAuthentication.contains(api.rawValue) {
                        let stranger = try await retryingWhileClosed {
                            try await TestConnection.connect(port: harness.broker.port, caPath: harness.certificates.certificateAuthority)
                        }
                        try? await stranger.writeFrame(frame)
                        var answers = 0
                        while await stranger.receiveFrame(timeout: .seconds(60), iteration: tried) != nil { answers += 1 }
                        #expect(answers <= 1, "\(api) v\(version) before authentication: \(answers) answers")
                    }
                    let connection: TestConnection
                    if let current { connection = current } else {
                        connection = try await retryingWhileClosed { try await harness.authenticatedConnection() }
                    }
                    try? await connection.writeFrame(frame)
                    if await connection.receiveFrame(timeout: .seconds(60), iteration: tried) != nil {
                        answeredAfterAuthentication += 1
                        current = connection
                    } else {
                        current = nil
                    }
                }
            }
        }
        #expect(tried > 2 * advertised.apiKeys.count)
        let (_, metadata) = try await probe.call(MetadataRequest(topics: nil), version: 1)
        #expect(metadata.topics.map(\.name) == ["orders"])
        let (_, produced) = try await probe.call(produceRequest(topic: "orders", batch: try producedBatch(count: 3)), version: 7)
        #expect(produced.responses.first?.partitionResponses.first?.errorCode == .noError)
        #expect(try await eventually { harness.broker.requestBytesCharged == 0 })
        print("hostile counts: \(tried) frames over \(advertised.apiKeys.count) APIs; \(answeredAfterAuthentication) answered after authentication, the rest closed")
        await probe.close()
        await harness.broker.shutdown()
    }

    @Test func connectionsFromOnePeerAreBoundedAndOthersKeepWorking() async throws {
        let harness = try await BrokerHarness.start(configure: { $0.connectionsPerPeerMax = 2 })
        let first = try await harness.authenticatedConnection()
        let second = try await harness.authenticatedConnection()
        let third = try await TestConnection.connect(port: harness.broker.port, caPath: harness.certificates.certificateAuthority)
        _ = try? await third.send(ApiVersionsRequest(), version: 2)
        #expect(await third.receiveFrame() == nil)
        let (_, metadata) = try await second.call(MetadataRequest(topics: nil), version: 1)
        #expect(metadata.topics.map(\.name) == ["orders"])
        await first.close()
        #expect(try await eventually { harness.broker.servicesForTests.registry.count == 1 })
        let fourth = try await harness.authenticatedConnection()
        let (_, again) = try await fourth.call(MetadataRequest(topics: nil), version: 1)
        #expect(again.topics.map(\.name) == ["orders"])
        await second.close()
        await fourth.close()
        await harness.broker.shutdown()
    }
}

/// Runs `body` again (up to `attempts` times) when the broker closed the connection under it: on
/// a machine loaded by the other suites a test client can be slower than a deadline meant for
/// the connections the test does not expect to survive.
private func retryingWhileClosed<T>(attempts: Int = 5, _ body: () async throws -> T) async throws -> T {
    for _ in 1..<attempts {
        do {
            return try await body()
        } catch let error as ChannelError where error == .ioOnClosedChannel || error == .alreadyClosed {
            continue
        } catch TestConnectionError.closed {
            continue
        }
    }
    return try await body()
}

/// One batch with a single record of `valueBytes` bytes.
private func batch(valueBytes: Int) throws -> ByteBuffer {
    var builder = RecordBatchBuilder(configuration: .init())
    builder.append(timestamp: 1_764_000_000_000, key: Array("big".utf8), value: [UInt8](repeating: 0x61, count: valueBytes))
    return try builder.build()
}

/// A plain TCP connection (no TLS, no framing) that records what comes back and when it closes.
final class RawTCPConnection: @unchecked Sendable {
    private let channel: any Channel
    private let collector: RawCollector
    private static let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    private init(channel: any Channel, collector: RawCollector) {
        self.channel = channel
        self.collector = collector
    }

    static func connect(port: Int) async throws -> RawTCPConnection {
        let collector = RawCollector()
        let channel = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(collector) }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return RawTCPConnection(channel: channel, collector: collector)
    }

    func write(_ bytes: ByteBuffer) async throws {
        try await channel.writeAndFlush(bytes)
    }

    /// Waits until the broker closes the connection (false if it is still open after 30 s).
    func closedByPeer() async -> Bool {
        let closed = channel.closeFuture
        return await withTaskGroup(of: Bool.self) { tasks in
            tasks.addTask { (try? await closed.get()) != nil }
            tasks.addTask {
                try? await Task.sleep(for: .seconds(30))
                return false
            }
            let first = await tasks.next() ?? false
            tasks.cancelAll()
            if !first { try? await self.channel.close() }
            return first
        }
    }

    var bytesReceived: [UInt8] { collector.bytes.withLockedValue { $0 } }
}

private final class RawCollector: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    let bytes = NIOLockedValueBox<[UInt8]>([])

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        bytes.withLockedValue { $0.append(contentsOf: buffer.readableBytesView) }
    }
}

/// Batches whose CRC is right but whose records are not what the header says: a producer bug
/// (or an attacker) that a CRC check alone lets through, and that would stop every consumer
/// of the partition at that offset.
@Suite struct LyingBatchTests {
    /// The batch with `change` applied and its CRC computed again, so only the record checks can catch it.
    static func tampered(_ batch: ByteBuffer, _ change: (inout ByteBuffer) -> Void) -> ByteBuffer {
        var copy = ByteBuffer(bytes: Array(batch.readableBytesView))
        change(&copy)
        let crc = CRC32C.checksum(copy, at: RecordBatchHeader.attributesIndex, length: copy.readableBytes - RecordBatchHeader.attributesIndex)!
        copy.setInteger(crc, at: RecordBatchHeader.crcIndex)
        return copy
    }

    @Test func batchesWhoseRecordsContradictTheirHeaderAreRefusedAndNotStored() async throws {
        let harness = try await BrokerHarness.start(partitions: 1)
        let connection = try await harness.authenticatedConnection()
        let plain = try producedBatch(count: 5)
        let lz4 = try producedBatch(count: 5, compression: .lz4())
        let records = RecordBatchHeader.byteCount
        let cases: [(String, ByteBuffer)] = [
            ("plain: header says 4 records, 5 follow", Self.tampered(plain) { $0.setInteger(Int32(4), at: RecordBatchHeader.recordCountIndex) }),
            ("plain: first record's length one too long", Self.tampered(plain) { batch in
                let length = batch.getInteger(at: records, as: UInt8.self)!
                batch.setInteger(length &+ 2, at: records)  // zig-zag varint: +2 is one byte more
            }),
            ("lz4: not an LZ4 frame", Self.tampered(lz4) { $0.setInteger(UInt32(0xDEAD_BEEF), at: records) }),
            ("lz4: header says 4 records, 5 inside", Self.tampered(lz4) { $0.setInteger(Int32(4), at: RecordBatchHeader.recordCountIndex) }),
        ]
        for (name, batch) in cases {
            let (_, response) = try await connection.call(produceRequest(topic: "orders", batch: batch), version: 7)
            let answer = try #require(response.responses.first?.partitionResponses.first)
            #expect(answer.errorCode == .invalidRecord, "\(name)")
        }
        // The connection goes on; a good batch lands at offset 0: nothing of the above was stored.
        let (_, good) = try await connection.call(produceRequest(topic: "orders", batch: plain), version: 7)
        #expect(good.responses.first?.partitionResponses.first?.errorCode == .noError)
        #expect(good.responses.first?.partitionResponses.first?.baseOffset == 0)
        await connection.close()
        await harness.broker.shutdown()
        let db = try harness.database()
        defer { db.close() }
        #expect(try storedRows(db, streamID: harness.stream.id).map(\.baseOffset) == [0])
    }
}
