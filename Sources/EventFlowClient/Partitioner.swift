/// Kafka's murmur2 (32-bit, seed 0x9747b28c) as its Java client computes it, so a key lands on
/// the same partition whichever Kafka-protocol client produced it.
public enum Murmur2 {
    public static func hash<Bytes: Collection>(_ data: Bytes) -> Int32 where Bytes.Element == UInt8 {
        if let result = data.withContiguousStorageIfAvailable({ hash(UnsafeRawBufferPointer($0)) }) {
            return result
        }
        return Array(data).withUnsafeBytes { hash($0) }
    }

    public static func hash(_ bytes: UnsafeRawBufferPointer) -> Int32 {
        let seed: UInt32 = 0x9747_b28c
        let m: UInt32 = 0x5bd1_e995
        let r: UInt32 = 24
        let length = bytes.count
        var h = seed ^ UInt32(truncatingIfNeeded: length)
        let quads = length / 4
        for i in 0..<quads {
            let base = i * 4
            var k = UInt32(bytes[base]) | UInt32(bytes[base + 1]) << 8 | UInt32(bytes[base + 2]) << 16
                | UInt32(bytes[base + 3]) << 24
            k &*= m
            k ^= k >> r
            k &*= m
            h &*= m
            h ^= k
        }
        let tail = quads * 4
        switch length % 4 {
        case 3:
            h ^= UInt32(bytes[tail + 2]) << 16
            h ^= UInt32(bytes[tail + 1]) << 8
            h ^= UInt32(bytes[tail])
            h &*= m
        case 2:
            h ^= UInt32(bytes[tail + 1]) << 8
            h ^= UInt32(bytes[tail])
            h &*= m
        case 1:
            h ^= UInt32(bytes[tail])
            h &*= m
        default:
            break
        }
        h ^= h >> 13
        h &*= m
        h ^= h >> 15
        return Int32(bitPattern: h)
    }
}

/// Chooses a keyed record's partition exactly as Kafka's default partitioner:
/// `toPositive(murmur2(key)) % partitionCount`. Records without a key use a sticky partition
/// (see `RecordAccumulator`), so they fill one batch at a time instead of many small ones.
public enum Partitioner {
    /// Kafka's `toPositive`: clears the sign bit (not `abs`, which would differ for negatives).
    public static func partition<Bytes: Collection>(forKey key: Bytes, partitionCount: Int32) -> Int32
    where Bytes.Element == UInt8 {
        guard partitionCount > 0 else { return 0 }
        return (Murmur2.hash(key) & 0x7fff_ffff) % partitionCount
    }
}
