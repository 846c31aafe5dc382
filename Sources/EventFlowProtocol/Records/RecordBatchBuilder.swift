import NIOCore

/// Builds one RecordBatch v2 at a time, byte-exact with Kafka's encoding.
///
/// Records are encoded straight into a buffer the builder owns and reuses across batches
/// (`build` leaves its capacity in place), so appending a record allocates nothing beyond
/// that buffer's occasional growth. The first record's timestamp becomes the batch's base
/// timestamp; offset deltas count from 0.
public struct RecordBatchBuilder: Sendable {
    public enum Compression: Hashable, Sendable {
        case none
        case lz4(LZ4Frame.Preferences = .recordBatch)

        var codec: CompressionCodec {
            switch self {
            case .none: .none
            case .lz4: .lz4
            }
        }
    }

    public struct Configuration: Hashable, Sendable {
        public var compression: Compression
        public var baseOffset: Int64
        public var partitionLeaderEpoch: Int32
        /// -1 when the producer is not idempotent.
        public var producerId: Int64
        public var producerEpoch: Int16
        public var baseSequence: Int32
        public var isTransactional: Bool
        public var timestampType: TimestampType

        public init(
            compression: Compression = .none,
            baseOffset: Int64 = 0,
            partitionLeaderEpoch: Int32 = -1,
            producerId: Int64 = -1,
            producerEpoch: Int16 = -1,
            baseSequence: Int32 = -1,
            isTransactional: Bool = false,
            timestampType: TimestampType = .createTime
        ) {
            self.compression = compression
            self.baseOffset = baseOffset
            self.partitionLeaderEpoch = partitionLeaderEpoch
            self.producerId = producerId
            self.producerEpoch = producerEpoch
            self.baseSequence = baseSequence
            self.isTransactional = isTransactional
            self.timestampType = timestampType
        }
    }

    public var configuration: Configuration
    /// Encoded records of the batch being built.
    private var records: ByteBuffer
    public private(set) var recordCount: Int32 = 0
    private var baseTimestamp: Int64 = 0
    private var maxTimestamp: Int64 = 0

    public init(configuration: Configuration = Configuration(), initialCapacity: Int = 16 * 1024,
                allocator: ByteBufferAllocator = ByteBufferAllocator()) {
        self.configuration = configuration
        self.records = allocator.buffer(capacity: initialCapacity)
    }

    /// Bytes of encoded (uncompressed) records so far.
    public var recordsByteCount: Int { records.readableBytes }

    /// Appends a record. Its offset delta is the number of records already appended.
    public mutating func append(timestamp: Int64, key: ByteBuffer?, value: ByteBuffer?, headers: [RecordHeader] = []) {
        appendRecord(timestamp: timestamp, keyCount: key?.readableBytes, valueCount: value?.readableBytes, headers: headers) { target in
            key?.withUnsafeReadableBytes { target.copyMemory(from: $0) }
        } copyValue: { target in
            value?.withUnsafeReadableBytes { target.copyMemory(from: $0) }
        }
    }

    /// Appends a record whose key and value are byte collections (arrays, `Data`, `string.utf8`).
    public mutating func append<Bytes: Collection>(timestamp: Int64, key: Bytes?, value: Bytes?,
                                                   headers: [RecordHeader] = []) where Bytes.Element == UInt8 {
        appendRecord(timestamp: timestamp, keyCount: key?.count, valueCount: value?.count, headers: headers) { target in
            if let key { target.copyBytes(from: key) }
        } copyValue: { target in
            if let value { target.copyBytes(from: value) }
        }
    }

    /// Writes the record in one pass over the buffer's memory: its exact size is known up front, so
    /// there is one capacity check and one writer-index move per record, not one per field.
    /// `copyKey`/`copyValue` get memory of exactly the key's/value's size (nothing when nil).
    @inline(__always)
    private mutating func appendRecord(
        timestamp: Int64, keyCount: Int?, valueCount: Int?, headers: [RecordHeader],
        copyKey: (UnsafeMutableRawBufferPointer) -> Void, copyValue: (UnsafeMutableRawBufferPointer) -> Void
    ) {
        if recordCount == 0 {
            baseTimestamp = timestamp
            maxTimestamp = timestamp
        } else if timestamp > maxTimestamp {
            maxTimestamp = timestamp
        }
        let timestampDelta = timestamp &- baseTimestamp
        let offsetDelta = Int64(recordCount)

        // The length prefix comes first, so the body size is computed before writing it.
        var bodyBytes = 1 + VarInt.zigZagByteCount(timestampDelta) + VarInt.zigZagByteCount(offsetDelta)
        bodyBytes += Self.lengthPrefixedByteCount(keyCount) + Self.lengthPrefixedByteCount(valueCount)
        bodyBytes += VarInt.zigZagByteCount(Int64(headers.count))
        for header in headers {
            bodyBytes += Self.lengthPrefixedByteCount(header.key.utf8.count)
            bodyBytes += Self.lengthPrefixedByteCount(header.value?.readableBytes)
        }
        let recordBytes = VarInt.zigZagByteCount(Int64(bodyBytes)) + bodyBytes

        records.writeWithUnsafeMutableBytes(minimumWritableBytes: recordBytes) { memory in
            var at = VarInt.write(VarInt.zigZag(Int64(bodyBytes)), to: memory, at: 0)
            memory[at] = 0  // record attributes: unused
            at += 1
            at += VarInt.write(VarInt.zigZag(timestampDelta), to: memory, at: at)
            at += VarInt.write(VarInt.zigZag(offsetDelta), to: memory, at: at)
            at += Self.writeBytes(count: keyCount, to: memory, at: at, copy: copyKey)
            at += Self.writeBytes(count: valueCount, to: memory, at: at, copy: copyValue)
            at += VarInt.write(VarInt.zigZag(Int64(headers.count)), to: memory, at: at)
            for header in headers {
                let name = header.key.utf8
                at += Self.writeBytes(count: name.count, to: memory, at: at) { $0.copyBytes(from: name) }
                at += Self.writeBytes(count: header.value?.readableBytes, to: memory, at: at) { target in
                    header.value?.withUnsafeReadableBytes { target.copyMemory(from: $0) }
                }
            }
            assert(at == recordBytes, "record size computed as \(recordBytes) bytes, wrote \(at)")
            return at
        }
        recordCount &+= 1
    }

    /// A length-prefixed byte field (-1 for nil) at `at`; returns the bytes written.
    @inline(__always)
    private static func writeBytes(count: Int?, to memory: UnsafeMutableRawBufferPointer, at: Int,
                                   copy: (UnsafeMutableRawBufferPointer) -> Void) -> Int {
        guard let count else { return VarInt.write(VarInt.zigZag(-1), to: memory, at: at) }
        let prefix = VarInt.write(VarInt.zigZag(Int64(count)), to: memory, at: at)
        copy(UnsafeMutableRawBufferPointer(rebasing: memory[(at + prefix) ..< (at + prefix + count)]))
        return prefix + count
    }

    @inline(__always)
    private static func lengthPrefixedByteCount(_ count: Int?) -> Int {
        guard let count else { return 1 }  // -1 zigzags to 1, one byte
        return VarInt.zigZagByteCount(Int64(count)) + count
    }

    /// Appends the finished batch to `output` and resets the builder for the next batch.
    /// Returns the batch's size in bytes.
    @discardableResult
    public mutating func build(into output: inout ByteBuffer) throws -> Int {
        let start = output.writerIndex
        output.reserveCapacity(minimumWritableBytes: RecordBatchHeader.byteCount + records.readableBytes)
        output.moveWriterIndex(forwardBy: RecordBatchHeader.byteCount)
        do {
            switch configuration.compression {
            case .none:
                output.writeImmutableBuffer(records)
            case .lz4(let preferences):
                try LZ4Frame.compress(records, into: &output, preferences: preferences)
            }
        } catch {
            output.moveWriterIndex(to: start)
            throw error
        }
        let total = output.writerIndex - start
        let header = RecordBatchHeader(
            baseOffset: configuration.baseOffset,
            batchLength: Int32(truncatingIfNeeded: total - RecordBatchHeader.lengthPrefixByteCount),
            partitionLeaderEpoch: configuration.partitionLeaderEpoch,
            magic: RecordBatchHeader.magic,
            crc: 0,
            attributes: RecordBatchAttributes(compression: configuration.compression.codec,
                                              timestampType: configuration.timestampType,
                                              isTransactional: configuration.isTransactional),
            lastOffsetDelta: max(recordCount - 1, 0),
            baseTimestamp: baseTimestamp,
            maxTimestamp: maxTimestamp,
            producerId: configuration.producerId,
            producerEpoch: configuration.producerEpoch,
            baseSequence: configuration.baseSequence,
            recordCount: recordCount
        )
        header.write(into: &output, at: start)
        let crc = CRC32C.checksum(output, at: start + RecordBatchHeader.attributesIndex,
                                  length: total - RecordBatchHeader.attributesIndex) ?? 0
        output.setInteger(crc, at: start + RecordBatchHeader.crcIndex)
        reset()
        return total
    }

    /// The finished batch in a new buffer; the builder is reset for the next batch.
    public mutating func build(allocator: ByteBufferAllocator = ByteBufferAllocator()) throws -> ByteBuffer {
        let capacity: Int
        switch configuration.compression {
        case .none:
            capacity = RecordBatchHeader.byteCount + records.readableBytes
        case .lz4(let preferences):
            capacity = RecordBatchHeader.byteCount
                + LZ4Frame.compressedBytesBound(inputBytes: records.readableBytes, preferences: preferences)
        }
        var output = allocator.buffer(capacity: capacity)
        try build(into: &output)
        return output
    }

    /// Drops the records appended so far, keeping the buffer's capacity.
    public mutating func reset() {
        records.clear()
        recordCount = 0
        baseTimestamp = 0
        maxTimestamp = 0
    }
}
