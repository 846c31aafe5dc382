import Foundation
import NIOCore
@testable import EventFlowProtocol

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

/// The JSON description next to every batch vector (written by `scripts/kafka_python_vectors.py`)
/// and every cross-check batch (read by `scripts/kafka_python_check.py`).
struct BatchDescription: Codable {
    struct Builder: Codable {
        var compression: String
        var producer_id: Int64
        var producer_epoch: Int16
        var base_sequence: Int32
        var is_transactional: Bool
        var base_offset: Int64
        var partition_leader_epoch: Int32
    }

    struct Header: Codable, Equatable {
        var base_offset: Int64
        var batch_length: Int32
        var partition_leader_epoch: Int32
        var magic: Int8
        var crc: UInt32
        var attributes: Int16
        var last_offset_delta: Int32
        var base_timestamp: Int64
        var max_timestamp: Int64
        var producer_id: Int64
        var producer_epoch: Int16
        var base_sequence: Int32
        var record_count: Int32

        init(_ h: RecordBatchHeader) {
            base_offset = h.baseOffset
            batch_length = h.batchLength
            partition_leader_epoch = h.partitionLeaderEpoch
            magic = h.magic
            crc = h.crc
            attributes = h.attributes.rawValue
            last_offset_delta = h.lastOffsetDelta
            base_timestamp = h.baseTimestamp
            max_timestamp = h.maxTimestamp
            producer_id = h.producerId
            producer_epoch = h.producerEpoch
            base_sequence = h.baseSequence
            record_count = h.recordCount
        }
    }

    struct HeaderField: Codable, Equatable {
        var key: String
        var value: String?

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(key, forKey: .key)
            try container.encode(value, forKey: .value)  // null stays explicit, as in the vectors
        }
    }

    struct RecordDescription: Codable, Equatable {
        var offset: Int64
        var timestamp: Int64
        var key: String?
        var value: String?
        var headers: [HeaderField]

        init(offset: Int64, timestamp: Int64, key: String?, value: String?, headers: [HeaderField]) {
            self.offset = offset
            self.timestamp = timestamp
            self.key = key
            self.value = value
            self.headers = headers
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(offset, forKey: .offset)
            try container.encode(timestamp, forKey: .timestamp)
            try container.encode(key, forKey: .key)  // null stays explicit, as in the vectors
            try container.encode(value, forKey: .value)
            try container.encode(headers, forKey: .headers)
        }

        init(_ record: Record) {
            self.init(offset: record.offset, timestamp: record.timestamp,
                      key: record.key.map { RecordsTestSupport.hex($0.bytesForTest) },
                      value: record.value.map { RecordsTestSupport.hex($0.bytesForTest) },
                      headers: record.headers.map { HeaderField(key: $0.key, value: $0.value.map { RecordsTestSupport.hex($0.bytesForTest) }) })
        }
    }

    var name: String
    var description: String
    var generator: String
    var builder: Builder
    var header: Header
    var records: [RecordDescription]
}
