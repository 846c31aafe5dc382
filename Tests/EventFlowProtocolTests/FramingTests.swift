import NIOCore
import NIOEmbedded
import Testing
@testable import EventFlowProtocol

@Suite struct FramingTests {
    func makeChannel(frameBytesMax: Int = 1024) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(KafkaFrameDecoder(frameBytesMax: frameBytesMax)))
        try channel.pipeline.syncOperations.addHandler(MessageToByteHandler(KafkaFrameEncoder()))
        return channel
    }

    func frame(_ payload: [UInt8]) -> [UInt8] {
        var bytes: [UInt8] = withUnsafeBytes(of: Int32(payload.count).bigEndian) { Array($0) }
        bytes.append(contentsOf: payload)
        return bytes
    }

    func readFrames(_ channel: EmbeddedChannel) throws -> [[UInt8]] {
        var frames: [[UInt8]] = []
        while let frame = try channel.readInbound(as: ByteBuffer.self) {
            frames.append(Array(buffer: frame))
        }
        return frames
    }

    @Test func aFrameSplitAcrossReadsIsEmittedOnceComplete() throws {
        let channel = try makeChannel()
        let bytes = frame([1, 2, 3, 4, 5])
        for byte in bytes.dropLast() {
            try channel.writeInbound(ByteBuffer(bytes: [byte]))
            #expect(try readFrames(channel).isEmpty)
        }
        try channel.writeInbound(ByteBuffer(bytes: [bytes.last ?? 0]))
        #expect(try readFrames(channel) == [[1, 2, 3, 4, 5]])
        #expect(try channel.finish().isClean)
    }

    @Test func severalFramesInOneReadAreEmittedInOrder() throws {
        let channel = try makeChannel()
        let bytes = frame([0xA]) + frame([]) + frame([0xB, 0xC]) + Array(frame([0xD, 0xE, 0xF]).prefix(5))
        try channel.writeInbound(ByteBuffer(bytes: bytes))
        #expect(try readFrames(channel) == [[0xA], [], [0xB, 0xC]])
        try channel.writeInbound(ByteBuffer(bytes: [0xE, 0xF]))
        #expect(try readFrames(channel) == [[0xD, 0xE, 0xF]])
        #expect(try channel.finish().isClean)
    }

    @Test func aSizeAboveTheLimitFailsBeforeItsBytesArrive() throws {
        let channel = try makeChannel(frameBytesMax: 16)
        // Only the prefix is sent: the decoder must fail on it, not wait for (or buffer) 17 bytes.
        #expect(throws: ProtocolError(.frameTooLarge, field: "frame.size", offset: 0,
                                      detail: "frame of 17 bytes exceeds frameBytesMax 16")) {
            try channel.writeInbound(ByteBuffer(bytes: [0, 0, 0, 17]))
        }
        _ = try? channel.finish()
    }

    @Test func aFrameExactlyAtTheLimitIsAccepted() throws {
        let channel = try makeChannel(frameBytesMax: 16)
        try channel.writeInbound(ByteBuffer(bytes: frame(Array(repeating: 7, count: 16))))
        #expect(try readFrames(channel) == [Array(repeating: 7, count: 16)])
        #expect(try channel.finish().isClean)
    }

    @Test func aHugeClaimedSizeIsRejectedWithoutAllocating() throws {
        let channel = try makeChannel()
        do {
            try channel.writeInbound(ByteBuffer(bytes: [0x7F, 0xFF, 0xFF, 0xFF]))
            Issue.record("accepted a 2 GiB frame")
        } catch let error as ProtocolError {
            #expect(error.kind == .frameTooLarge)
        }
        _ = try? channel.finish()
    }

    @Test func aNegativeSizeIsATypedError() throws {
        let channel = try makeChannel()
        do {
            try channel.writeInbound(ByteBuffer(bytes: [0xFF, 0xFF, 0xFF, 0xFE, 1, 2]))
            Issue.record("accepted a negative size")
        } catch let error as ProtocolError {
            #expect(error.kind == .invalidValue)
            #expect(error.field == "frame.size")
        }
        _ = try? channel.finish()
    }

    @Test func closingInTheMiddleOfAFrameIsReportedAsTruncated() throws {
        let channel = try makeChannel()
        try channel.writeInbound(ByteBuffer(bytes: Array(frame([1, 2, 3]).prefix(5))))
        do {
            _ = try channel.finish()
            Issue.record("an incomplete frame was dropped silently")
        } catch let error as ProtocolError {
            #expect(error.kind == .truncated)
        }
    }

    @Test func theEncoderWritesTheSizePrefix() throws {
        let channel = try makeChannel()
        try channel.writeOutbound(ByteBuffer(bytes: [9, 8, 7]))
        let written = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(Array(buffer: written) == [0, 0, 0, 3, 9, 8, 7])
        #expect(try channel.finish().isClean)
    }

    @Test func aRequestTravelsThroughEncoderAndDecoderUnchanged() throws {
        let channel = try makeChannel(frameBytesMax: 4096)
        let request = MetadataRequest(topics: ["orders"], allowAutoTopicCreation: false)
            .encodedRequest(version: 7, correlationId: 42, clientId: "test")
        try channel.writeOutbound(request)
        let wire = try #require(try channel.readOutbound(as: ByteBuffer.self))
        try channel.writeInbound(wire)
        let frame = try #require(try channel.readInbound(as: ByteBuffer.self))
        let decoded = try KafkaRequest.decode(frame: frame)
        #expect(decoded.header == RequestHeader(apiKey: .metadata, apiVersion: 7, correlationId: 42, clientId: "test"))
        #expect(decoded.body == .metadata(MetadataRequest(topics: ["orders"], allowAutoTopicCreation: false)))
        #expect(try channel.finish().isClean)
    }
}

@Suite struct FramingRequestDispatchTests {
    func header(apiKey: Int16, version: Int16, correlationId: Int32 = 77, clientId: String? = "cli") -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeInteger(apiKey)
        buffer.writeInteger(version)
        buffer.writeInteger(correlationId)
        buffer.writeKafkaNullableString(clientId)
        return buffer
    }

    func decodeError(_ frame: ByteBuffer) -> RequestDecodingError? {
        do {
            _ = try KafkaRequest.decode(frame: frame)
            return nil
        } catch {
            return error
        }
    }

    @Test(arguments: [Int16(29), 47, 1000, -1])  // DescribeAcls, OffsetDelete: not served
    func anUnservedAPIKeyKeepsTheCorrelationId(_ apiKey: Int16) throws {
        let error = try #require(decodeError(header(apiKey: apiKey, version: 0)))
        #expect(error.kind == .unsupportedAPIKey)
        #expect(error.context == .init(apiKey: apiKey, apiVersion: 0, correlationId: 77, clientId: "cli"))
    }

    @Test(arguments: [(APIKey.produce, Int16(2)), (.produce, 9), (.fetch, 3), (.metadata, 8), (.apiVersions, 4), (.offsetCommit, 1)])
    func anUnservedVersionKeepsTheCorrelationId(_ apiKey: APIKey, _ version: Int16) throws {
        var frame = header(apiKey: apiKey.rawValue, version: version)
        frame.writeBytes([0, 1, 2, 3])  // a body EventFlow cannot and need not read
        let error = try #require(decodeError(frame))
        #expect(error.kind == .unsupportedVersion)
        #expect(error.correlationId == 77)
        #expect(error.context.apiVersion == version)
    }

    @Test func aNullClientIdIsAccepted() throws {
        let decoded = try KafkaRequest.decode(frame: header(apiKey: 18, version: 0, clientId: nil))
        #expect(decoded.header.clientId == nil)
        #expect(decoded.body == .apiVersions(ApiVersionsRequest()))
    }

    @Test func aHeaderCutBeforeTheCorrelationIdHasNoCorrelationId() throws {
        let error = try #require(decodeError(ByteBuffer(bytes: [0, 3, 0, 1, 0, 0])))
        #expect(error.kind == .truncated)
        #expect(error.correlationId == nil)
        #expect(error.context.apiKey == 3)
    }

    @Test func aBodyEndingEarlyIsTruncatedWithTheCorrelationId() throws {
        var frame = header(apiKey: APIKey.produce.rawValue, version: 7)
        frame.writeKafkaNullableString(nil)
        frame.writeInteger(Int16(-1))  // acks, then the timeout is missing
        let error = try #require(decodeError(frame))
        #expect(error.kind == .truncated)
        #expect(error.protocolError.field == "ProduceRequest.timeoutMs")
        #expect(error.correlationId == 77)
    }

    @Test func aHostileArrayCountIsRejectedBeforeAllocating() throws {
        var frame = header(apiKey: APIKey.deleteTopics.rawValue, version: 1)
        frame.writeInteger(Int32.max)  // topic count
        frame.writeInteger(Int32(0))
        let error = try #require(decodeError(frame))
        #expect(error.kind == .invalidValue)
        #expect(error.protocolError.field == "DeleteTopicsRequest.topicNames")
    }

    @Test func aFlexibleHeaderSkipsItsTaggedFields() throws {
        var frame = header(apiKey: APIKey.apiVersions.rawValue, version: 3)
        frame.writeBytes([1, 5, 2, 0xAA, 0xBB])  // one tagged field: tag 5, two bytes
        frame.writeKafkaCompactString("lib")
        frame.writeKafkaCompactString("1.0")
        frame.writeBytes([0])
        let decoded = try KafkaRequest.decode(frame: frame)
        #expect(decoded.body == .apiVersions(ApiVersionsRequest(clientSoftwareName: "lib", clientSoftwareVersion: "1.0")))
    }

    @Test func headerVersionsFollowTheFlexibleVersions() {
        #expect(APIKey.apiVersions.requestHeaderVersion(apiVersion: 2) == 1)
        #expect(APIKey.apiVersions.requestHeaderVersion(apiVersion: 3) == 2)
        #expect(APIKey.apiVersions.responseHeaderVersion(apiVersion: 3) == 0)
        #expect(APIKey.produce.requestHeaderVersion(apiVersion: 7) == 1)
        #expect(APIKey.produce.responseHeaderVersion(apiVersion: 9) == 1)
        #expect(APIKey.saslHandshake.requestHeaderVersion(apiVersion: 1) == 1)
    }
}
