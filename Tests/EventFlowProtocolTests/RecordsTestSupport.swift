import Foundation
import NIOCore

/// Shared helpers of the record batch, CRC32C and LZ4 tests.
enum RecordsTestSupport {
    /// The package root, found from this file's location (Tests/EventFlowProtocolTests/…).
    static var packageRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    static var batchVectors: URL {
        packageRoot.appendingPathComponent("protocol/vectors/batches")
    }

    static func bytes(hex: String) -> [UInt8]? {
        let digits = hex.unicodeScalars.filter { !CharacterSet.whitespacesAndNewlines.contains($0) }
        guard digits.count % 2 == 0 else { return nil }
        var result: [UInt8] = []
        result.reserveCapacity(digits.count / 2)
        var high: UInt8?
        for scalar in digits {
            guard let nibble = UInt8(String(scalar), radix: 16) else { return nil }
            if let h = high {
                result.append(h << 4 | nibble)
                high = nil
            } else {
                high = nibble
            }
        }
        return result
    }

    static func hex<Bytes: Sequence>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        bytes.map { String(format: "%02x", $0) }.joined()
    }

    /// One event as JSON, about 80 bytes; the same text the vector generator writes.
    static func jsonEvent(_ i: Int) -> [UInt8] {
        let baseTimestamp = 1_700_000_000_000
        return Array("{\"id\":\(i),\"type\":\"page_view\",\"user\":\"user-\(i % 97)\",\"path\":\"/products/\(i % 13)\",\"ms\":\(baseTimestamp + i)}".utf8)
    }

    /// The content of every frame in `protocol/vectors/batches/lz4-frames/` (except `empty`).
    static let frameContent: [UInt8] = {
        var out: [UInt8] = []
        var i = 0
        while out.count < 150_000 {
            out += jsonEvent(i)
            out.append(UInt8(ascii: "\n"))
            i += 1
        }
        return out
    }()

    /// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
    static func pseudoRandomBytes(count: Int, seed: UInt64) -> [UInt8] {
        var state = seed | 1
        var out = [UInt8](repeating: 0, count: count)
        for i in 0..<count {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            out[i] = UInt8(truncatingIfNeeded: state)
        }
        return out
    }
}

extension ByteBuffer {
    var bytesForTest: [UInt8] { getBytes(at: readerIndex, length: readableBytes) ?? [] }
}
