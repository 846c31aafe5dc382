import CLZ4
import NIOCore

/// The LZ4 frame format (the codec of RecordBatch v2 compression type 3), over liblz4's frame API.
///
/// Decompression accepts any standard frame: linked or independent blocks, 64 KB to 4 MB block
/// sizes, with or without block checksums, content checksum and content size. Output is
/// bounded by the caller's `decompressedBytesMax`, so a small hostile frame cannot make the
/// process allocate without limit.
public enum LZ4Frame {
    /// How frames are written. Readers never need these: every field is in the frame header.
    public struct Preferences: Hashable, Sendable {
        public enum BlockSize: Hashable, Sendable, CaseIterable {
            case max64KB, max256KB, max1MB, max4MB
        }

        public var blockSize: BlockSize
        /// Independent blocks can be decoded by every LZ4 reader; linked blocks compress a little better.
        public var independentBlocks: Bool
        public var blockChecksum: Bool
        public var contentChecksum: Bool
        /// Writes the uncompressed size into the frame header.
        public var contentSize: Bool
        /// liblz4's level: 0 is the fast default, below 0 faster still, 3 and up is LZ4-HC.
        public var compressionLevel: Int32

        public init(
            blockSize: BlockSize = .max64KB,
            independentBlocks: Bool = true,
            blockChecksum: Bool = false,
            contentChecksum: Bool = false,
            contentSize: Bool = false,
            compressionLevel: Int32 = 0
        ) {
            self.blockSize = blockSize
            self.independentBlocks = independentBlocks
            self.blockChecksum = blockChecksum
            self.contentChecksum = contentChecksum
            self.contentSize = contentSize
            self.compressionLevel = compressionLevel
        }

        /// EventFlow's writer: 64 KB independent blocks, no checksums (the batch CRC32C already
        /// covers the compressed bytes), no content size — a frame every Kafka client reads.
        public static let recordBatch = Preferences()

        func lz4Preferences(contentBytes: Int) -> LZ4F_preferences_t {
            var preferences = LZ4F_preferences_t()
            switch blockSize {
            case .max64KB: preferences.frameInfo.blockSizeID = LZ4F_max64KB
            case .max256KB: preferences.frameInfo.blockSizeID = LZ4F_max256KB
            case .max1MB: preferences.frameInfo.blockSizeID = LZ4F_max1MB
            case .max4MB: preferences.frameInfo.blockSizeID = LZ4F_max4MB
            }
            preferences.frameInfo.blockMode = independentBlocks ? LZ4F_blockIndependent : LZ4F_blockLinked
            preferences.frameInfo.blockChecksumFlag = blockChecksum ? LZ4F_blockChecksumEnabled : LZ4F_noBlockChecksum
            preferences.frameInfo.contentChecksumFlag = contentChecksum ? LZ4F_contentChecksumEnabled : LZ4F_noContentChecksum
            preferences.frameInfo.contentSize = contentSize ? UInt64(contentBytes) : 0
            preferences.compressionLevel = compressionLevel
            return preferences
        }
    }

    /// The largest frame `compress` can write for `inputBytes` bytes of input.
    public static func compressedBytesBound(inputBytes: Int, preferences: Preferences = .recordBatch) -> Int {
        var lz4Preferences = preferences.lz4Preferences(contentBytes: inputBytes)
        return LZ4F_compressFrameBound(inputBytes, &lz4Preferences)
    }

    /// Compresses the readable bytes of `input` into one frame appended to `output`.
    /// Returns the number of bytes written.
    @discardableResult
    public static func compress(
        _ input: ByteBuffer,
        into output: inout ByteBuffer,
        preferences: Preferences = .recordBatch
    ) throws -> Int {
        try input.withUnsafeReadableBytes { source in
            try compress(source, into: &output, preferences: preferences)
        }
    }

    /// Compresses `source` into one frame appended to `output`. Returns the number of bytes written.
    @discardableResult
    public static func compress(
        _ source: UnsafeRawBufferPointer,
        into output: inout ByteBuffer,
        preferences: Preferences = .recordBatch
    ) throws -> Int {
        var lz4Preferences = preferences.lz4Preferences(contentBytes: source.count)
        let bound = LZ4F_compressFrameBound(source.count, &lz4Preferences)
        var failure: Int = 0
        let written = output.writeWithUnsafeMutableBytes(minimumWritableBytes: bound) { destination in
            let result = LZ4F_compressFrame(destination.baseAddress, destination.count,
                                            source.baseAddress, source.count, &lz4Preferences)
            if LZ4F_isError(result) != 0 {
                failure = result
                return 0
            }
            return result
        }
        if failure != 0 {
            throw ProtocolError(.compression, field: "lz4", offset: 0, detail: errorName(failure))
        }
        return written
    }

    /// Decompresses exactly one frame, the whole readable part of `input`, appending the content
    /// to `output`. Returns the number of bytes appended.
    ///
    /// Throws `ProtocolError(.compression)` when the frame is corrupt, truncated, followed by
    /// trailing bytes, or would decompress to more than `decompressedBytesMax` bytes.
    @discardableResult
    public static func decompress(
        _ input: ByteBuffer,
        into output: inout ByteBuffer,
        decompressedBytesMax: Int
    ) throws -> Int {
        try input.withUnsafeReadableBytes { source in
            try decompress(source, into: &output, decompressedBytesMax: decompressedBytesMax)
        }
    }

    /// Decompresses exactly one frame held in `source`; see `decompress(_:into:decompressedBytesMax:)`.
    @discardableResult
    public static func decompress(
        _ source: UnsafeRawBufferPointer,
        into output: inout ByteBuffer,
        decompressedBytesMax: Int
    ) throws -> Int {
        var context: OpaquePointer?
        let created = LZ4F_createDecompressionContext(&context, UInt32(LZ4F_VERSION))
        guard LZ4F_isError(created) == 0, let context else {
            throw ProtocolError(.compression, field: "lz4", offset: 0, detail: "cannot create a decompression context")
        }
        defer { LZ4F_freeDecompressionContext(context) }

        guard let sourceBase = source.baseAddress, source.count > 0 else {
            throw ProtocolError(.compression, field: "lz4", offset: 0, detail: "empty frame")
        }
        let limit = max(decompressedBytesMax, 0)
        // One byte more than the limit may land, so "exactly at the limit" and "over it" are
        // told apart without decoding twice.
        let allowance = limit &+ 1
        let startWriterIndex = output.writerIndex
        do {
            // The header's content size, when present, gives the exact output size up front.
            var frameInfo = LZ4F_frameInfo_t()
            var consumed = source.count
            var hint = LZ4F_getFrameInfo(context, &frameInfo, sourceBase, &consumed)
            if LZ4F_isError(hint) != 0 {
                throw ProtocolError(.compression, field: "lz4.header", offset: 0, detail: errorName(hint))
            }
            var nextCapacity = min(allowance, max(64 * 1024, source.count &* 4))
            if frameInfo.contentSize > 0 {
                guard frameInfo.contentSize <= UInt64(limit) else {
                    throw ProtocolError(.compression, field: "lz4.contentSize", offset: 0,
                                        detail: "content size \(frameInfo.contentSize) exceeds the \(limit)-byte limit")
                }
                nextCapacity = Int(frameInfo.contentSize) + 1
            }

            var produced = 0
            while hint != 0 {
                guard produced < allowance else {
                    throw ProtocolError(.compression, field: "lz4", offset: consumed,
                                        detail: "decompressed content exceeds the \(limit)-byte limit")
                }
                var failure: Int = 0
                var inputBytes = 0
                let minimumWritable = max(1, min(nextCapacity, allowance - produced))
                let written = output.writeWithUnsafeMutableBytes(minimumWritableBytes: minimumWritable) { destination in
                    var outputBytes = min(destination.count, allowance - produced)
                    inputBytes = source.count - consumed
                    let result = LZ4F_decompress(context, destination.baseAddress, &outputBytes,
                                                 sourceBase + consumed, &inputBytes, nil)
                    if LZ4F_isError(result) != 0 {
                        failure = result
                        return 0
                    }
                    hint = result
                    return outputBytes
                }
                if failure != 0 {
                    throw ProtocolError(.compression, field: "lz4", offset: consumed, detail: errorName(failure))
                }
                consumed += inputBytes
                produced += written
                if written == 0 && inputBytes == 0 && consumed == source.count {
                    throw ProtocolError(.compression, field: "lz4", offset: consumed, detail: "frame ends early")
                }
                // Grow geometrically when the output is full, never past the allowance.
                nextCapacity = min(allowance - min(produced, allowance), max(produced, 64 * 1024))
            }
            if produced > limit {
                throw ProtocolError(.compression, field: "lz4", offset: consumed,
                                    detail: "decompressed content exceeds the \(limit)-byte limit")
            }
            if consumed != source.count {
                throw ProtocolError(.compression, field: "lz4", offset: consumed,
                                    detail: "\(source.count - consumed) bytes after the end of the frame")
            }
            return produced
        } catch {
            output.moveWriterIndex(to: startWriterIndex)
            throw error
        }
    }

    static func errorName(_ code: Int) -> String {
        String(cString: LZ4F_getErrorName(code))
    }
}
