import Foundation
import NIOCore
import Testing
@testable import EventFlowProtocol

@Suite struct LZ4FrameTests {
    static let frameFiles = [
        "kafka-python", "linked-content-size", "independent-no-size", "content-checksum",
        "block-checksum-256kb", "all-checksums-1mb-linked", "4mb-independent", "high-compression",
    ]

    static func frame(named name: String) throws -> ByteBuffer {
        let url = RecordsTestSupport.batchVectors.appendingPathComponent("lz4-frames/\(name).lz4")
        return ByteBuffer(bytes: try Data(contentsOf: url))
    }

    @Test(arguments: frameFiles)
    func decompressesFramesWrittenByPythonLZ4(name: String) throws {
        var output = ByteBuffer()
        let count = try LZ4Frame.decompress(try Self.frame(named: name), into: &output, decompressedBytesMax: 1 << 20)
        #expect(count == RecordsTestSupport.frameContent.count)
        #expect(output.bytesForTest == RecordsTestSupport.frameContent)
    }

    @Test func decompressesAnEmptyFrame() throws {
        var output = ByteBuffer()
        #expect(try LZ4Frame.decompress(try Self.frame(named: "empty"), into: &output, decompressedBytesMax: 0) == 0)
        #expect(output.readableBytes == 0)
    }

    static let allPreferences: [LZ4Frame.Preferences] = {
        var result: [LZ4Frame.Preferences] = []
        for blockSize in LZ4Frame.Preferences.BlockSize.allCases {
            for flags in 0..<16 {
                result.append(LZ4Frame.Preferences(
                    blockSize: blockSize,
                    independentBlocks: flags & 1 != 0,
                    blockChecksum: flags & 2 != 0,
                    contentChecksum: flags & 4 != 0,
                    contentSize: flags & 8 != 0,
                    compressionLevel: blockSize == .max1MB ? 9 : 0))
            }
        }
        return result
    }()

    @Test(arguments: allPreferences)
    func roundTripsUnderEveryFrameOption(preferences: LZ4Frame.Preferences) throws {
        let input = ByteBuffer(bytes: RecordsTestSupport.frameContent)
        var compressed = ByteBuffer()
        let written = try LZ4Frame.compress(input, into: &compressed, preferences: preferences)
        #expect(written == compressed.readableBytes)
        #expect(written < input.readableBytes / 2)
        #expect(written <= LZ4Frame.compressedBytesBound(inputBytes: input.readableBytes, preferences: preferences))
        var output = ByteBuffer(string: "prefix")
        try LZ4Frame.decompress(compressed, into: &output, decompressedBytesMax: input.readableBytes)
        #expect(output.readString(length: 6) == "prefix")
        #expect(output.bytesForTest == RecordsTestSupport.frameContent)
    }

    @Test func incompressibleDataRoundTrips() throws {
        let input = ByteBuffer(bytes: RecordsTestSupport.pseudoRandomBytes(count: 200_000, seed: 3))
        var compressed = ByteBuffer()
        try LZ4Frame.compress(input, into: &compressed)
        var output = ByteBuffer()
        try LZ4Frame.decompress(compressed, into: &output, decompressedBytesMax: 200_000)
        #expect(output == input)
    }

    @Test func contentExactlyAtTheLimitIsAccepted() throws {
        var compressed = ByteBuffer()
        try LZ4Frame.compress(ByteBuffer(repeating: 0x61, count: 100_000), into: &compressed)
        var output = ByteBuffer()
        #expect(try LZ4Frame.decompress(compressed, into: &output, decompressedBytesMax: 100_000) == 100_000)
    }

    @Test(arguments: [false, true])
    func contentOverTheLimitIsACompressionError(contentSize: Bool) throws {
        // 16 MB of zeros compresses to about 64 KB: the shape of a decompression bomb.
        var compressed = ByteBuffer()
        try LZ4Frame.compress(ByteBuffer(repeating: 0, count: 16 << 20), into: &compressed,
                              preferences: .init(contentSize: contentSize))
        var output = ByteBuffer(string: "keep")
        #expect {
            try LZ4Frame.decompress(compressed, into: &output, decompressedBytesMax: 1 << 20)
        } throws: { error in
            (error as? ProtocolError)?.kind == .compression && "\(error)".contains("limit")
        }
        #expect(output == ByteBuffer(string: "keep"))
        // Allocation stops near the limit (NIO rounds capacities up to a power of two).
        #expect(output.capacity <= 2 << 20)
    }

    @Test func corruptFramesAreCompressionErrors() throws {
        var compressed = ByteBuffer()
        try LZ4Frame.compress(ByteBuffer(bytes: RecordsTestSupport.frameContent), into: &compressed,
                              preferences: .init(blockChecksum: true, contentChecksum: true))
        let bytes = compressed.bytesForTest
        var cases: [(String, [UInt8])] = [
            ("empty", []),
            ("bad magic", [0x00] + bytes.dropFirst()),
            ("truncated header", Array(bytes.prefix(5))),
            ("truncated block", Array(bytes.prefix(bytes.count / 2))),
            ("missing end mark", Array(bytes.dropLast(8))),
            ("trailing bytes", bytes + [0x01, 0x02]),
        ]
        var flipped = bytes
        flipped[bytes.count / 2] ^= 0x40
        cases.append(("flipped bit in a block", flipped))
        var badContentChecksum = bytes
        badContentChecksum[bytes.count - 1] ^= 0x01
        cases.append(("bad content checksum", badContentChecksum))
        for (name, input) in cases {
            var output = ByteBuffer()
            #expect(throws: ProtocolError.self, "\(name)") {
                try LZ4Frame.decompress(ByteBuffer(bytes: input), into: &output, decompressedBytesMax: 1 << 20)
            }
            do {
                try LZ4Frame.decompress(ByteBuffer(bytes: input), into: &output, decompressedBytesMax: 1 << 20)
            } catch let error as ProtocolError {
                #expect(error.kind == .compression, "\(name): \(error)")
            }
            #expect(output.readableBytes == 0, "\(name)")
        }
    }
}

extension LZ4Frame.Preferences: CustomTestStringConvertible {
    public var testDescription: String {
        "\(blockSize) independent=\(independentBlocks) blockCRC=\(blockChecksum) contentCRC=\(contentChecksum) size=\(contentSize) level=\(compressionLevel)"
    }
}
