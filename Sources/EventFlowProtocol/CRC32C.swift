import CCRC32C
import NIOCore

/// CRC32C (Castagnoli), the checksum of RecordBatch v2.
///
/// Uses the CPU's SSE4.2 `crc32` instruction when present and a slicing table otherwise;
/// both give identical results (see `CRC32CTests`).
public enum CRC32C {
    /// True when the hardware instruction is used.
    public static var isHardwareAccelerated: Bool {
        eventflow_crc32c_hardware_available() != 0
    }

    /// Extends `crc` over `bytes`. Start a new checksum with `crc = 0`.
    @inlinable
    public static func update(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return crc }
        return eventflow_crc32c_update(crc, base, bytes.count)
    }

    /// The same as `update(_:_:)` through the table path only, regardless of the CPU.
    public static func updatePortable(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return crc }
        return eventflow_crc32c_update_portable(crc, base, bytes.count)
    }

    /// Checksum of the readable bytes of `buffer`.
    @inlinable
    public static func checksum(_ buffer: ByteBuffer) -> UInt32 {
        buffer.withUnsafeReadableBytes { update(0, $0) }
    }

    /// Checksum of `length` bytes of `buffer` starting at absolute index `index`.
    /// Returns nil when the range is not inside the buffer's readable bytes.
    @inlinable
    public static func checksum(_ buffer: ByteBuffer, at index: Int, length: Int) -> UInt32? {
        let start = index - buffer.readerIndex
        guard start >= 0, length >= 0, start <= buffer.readableBytes - length else { return nil }
        return buffer.withUnsafeReadableBytes { bytes in
            update(0, UnsafeRawBufferPointer(rebasing: bytes[start..<(start + length)]))
        }
    }

    /// Checksum of a contiguous byte collection (arrays, `Data`, string UTF-8 views).
    @inlinable
    public static func checksum<Bytes: Sequence>(_ bytes: Bytes) -> UInt32 where Bytes.Element == UInt8 {
        if let crc = bytes.withContiguousStorageIfAvailable({ update(0, UnsafeRawBufferPointer($0)) }) {
            return crc
        }
        return Array(bytes).withUnsafeBytes { update(0, $0) }
    }
}
