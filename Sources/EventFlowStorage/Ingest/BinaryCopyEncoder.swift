import Foundation

/// Encodes rows in PostgreSQL's binary COPY format (`COPY ... FROM STDIN (FORMAT binary)`):
/// the PGCOPY signature, then per row an int16 field count and per field an int32 length and
/// the value in the type's binary send format, all big-endian; an int16 -1 ends the data.
///
/// Binary COPY skips the server's text parsing of every value, which is what makes it the
/// ingest hot path (measured ≈ 2× faster than text COPY for the log table).
public struct BinaryCopyEncoder: Sendable {
    /// "PGCOPY\n\xFF\r\n\0", flags (int32 0: no OIDs), header extension length (int32 0).
    static let header: [UInt8] = [0x50, 0x47, 0x43, 0x4F, 0x50, 0x59, 0x0A, 0xFF, 0x0D, 0x0A, 0x00,
                                  0, 0, 0, 0, 0, 0, 0, 0]

    /// PostgreSQL's binary timestamps count microseconds from 2000-01-01 00:00:00 UTC.
    public static let postgresEpochUnixMilliseconds: Int64 = 946_684_800_000

    /// The int16 -1 that ends the data, sent after `bytes`.
    public static let trailer: [UInt8] = [0xFF, 0xFF]

    /// The encoded rows, header included; the COPY data is these bytes followed by `trailer`.
    public private(set) var bytes: [UInt8]

    /// Encodes into `storage`'s memory, at least `capacity` bytes of it: its contents are dropped
    /// and its capacity kept, so a writer that hands the same storage back each time (its only
    /// reference, see `takeStorage`) touches no fresh pages.
    public init(reusing storage: consuming [UInt8] = [], capacity: Int = 4096) {
        storage.removeAll(keepingCapacity: true)  // first, so growing it below copies nothing
        storage.reserveCapacity(max(capacity, 64))
        bytes = consume storage
        bytes.append(contentsOf: Self.header)
    }

    /// The encoder's memory, for the next `init(reusing:capacity:)`.
    public consuming func takeStorage() -> [UInt8] {
        bytes
    }

    public mutating func beginRow(fieldCount: Int16) {
        appendBigEndian(fieldCount)
    }

    public mutating func int16(_ value: Int16) {
        appendBigEndian(Int32(2))
        appendBigEndian(value)
    }

    public mutating func int32(_ value: Int32) {
        appendBigEndian(Int32(4))
        appendBigEndian(value)
    }

    public mutating func int64(_ value: Int64) {
        appendBigEndian(Int32(8))
        appendBigEndian(value)
    }

    public mutating func uuid(_ value: UUID) {
        appendBigEndian(Int32(16))
        withUnsafeBytes(of: value.uuid) { bytes.append(contentsOf: $0) }
    }

    /// The earliest `timestamp` PostgreSQL stores (4714-11-24 00:00:00 BC, its MIN_TIMESTAMP), in Unix milliseconds.
    public static let timestampMinUnixMilliseconds: Int64 = -210_866_803_200_000
    /// The last millisecond of the latest `timestamp` PostgreSQL stores (294276-12-31 23:59:59.999,
    /// one millisecond before its END_TIMESTAMP), in Unix milliseconds.
    public static let timestampMaxUnixMilliseconds: Int64 = 9_224_318_015_999_999

    /// A `timestamp` from Unix milliseconds, clamped into the range PostgreSQL stores: producers
    /// may send any int64, and one value out of range would fail the COPY of every batch beside it.
    public mutating func timestamp(unixMilliseconds: Int64) {
        let clamped = min(max(unixMilliseconds, Self.timestampMinUnixMilliseconds), Self.timestampMaxUnixMilliseconds)
        appendBigEndian(Int32(8))
        appendBigEndian((clamped - Self.postgresEpochUnixMilliseconds) * 1000)
    }

    /// A `bytea` of `count` bytes written in place by `write`, which must fill the whole buffer:
    /// the value goes from the caller's memory straight into the COPY data (one copy).
    public mutating func bytea(count: Int, _ write: (UnsafeMutableRawBufferPointer) -> Void) {
        appendBigEndian(Int32(count))
        let start = bytes.count
        bytes.append(contentsOf: repeatElement(0, count: count))
        bytes.withUnsafeMutableBytes { all in
            write(UnsafeMutableRawBufferPointer(rebasing: all[start..<(start + count)]))
        }
    }

    @inline(__always)
    private mutating func appendBigEndian<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }
}
