import NIOCore

/// The compression codec in bits 0-2 of a batch's attributes.
public enum CompressionCodec: Int16, Hashable, Sendable, CaseIterable {
    case none = 0
    case gzip = 1
    case snappy = 2
    case lz4 = 3
    case zstd = 4
}

/// Which clock a batch's timestamps come from (attributes bit 3).
public enum TimestampType: Hashable, Sendable {
    /// Set by the producer, per record.
    case createTime
    /// Set by the broker at append; every record's timestamp is the batch's `maxTimestamp`.
    case logAppendTime
}

/// The int16 attributes of a RecordBatch v2.
public struct RecordBatchAttributes: RawRepresentable, Hashable, Sendable {
    public var rawValue: Int16

    public init(rawValue: Int16) { self.rawValue = rawValue }

    public init(
        compression: CompressionCodec = .none,
        timestampType: TimestampType = .createTime,
        isTransactional: Bool = false,
        isControl: Bool = false
    ) {
        var raw = compression.rawValue
        if timestampType == .logAppendTime { raw |= 1 << 3 }
        if isTransactional { raw |= 1 << 4 }
        if isControl { raw |= 1 << 5 }
        self.rawValue = raw
    }

    /// Bits 0-2 as written; values 5-7 are not defined by the protocol.
    public var compressionBits: Int16 { rawValue & 0x07 }
    /// Nil when bits 0-2 hold an undefined codec.
    public var compression: CompressionCodec? { CompressionCodec(rawValue: compressionBits) }
    public var timestampType: TimestampType { rawValue & (1 << 3) != 0 ? .logAppendTime : .createTime }
    public var isTransactional: Bool { rawValue & (1 << 4) != 0 }
    public var isControl: Bool { rawValue & (1 << 5) != 0 }
    /// Bit 6, set only by log compaction on the broker side.
    public var hasDeleteHorizon: Bool { rawValue & (1 << 6) != 0 }
}

/// The 61-byte header of a RecordBatch v2 (magic 2), all integers big-endian.
///
/// ```
/// offset  size  field
///      0     8  baseOffset
///      8     4  batchLength            bytes after this field
///     12     4  partitionLeaderEpoch
///     16     1  magic                  2
///     17     4  crc                    CRC32C of bytes 21..<end
///     21     2  attributes
///     23     4  lastOffsetDelta
///     27     8  baseTimestamp
///     35     8  maxTimestamp
///     43     8  producerId
///     51     2  producerEpoch
///     53     4  baseSequence
///     57     4  recordCount
///     61        records
/// ```
public struct RecordBatchHeader: Hashable, Sendable {
    public static let byteCount = 61
    /// Bytes before `batchLength` counts: baseOffset and batchLength themselves.
    public static let lengthPrefixByteCount = 12
    public static let magic: Int8 = 2

    // Field offsets, relative to the first byte of the batch.
    public static let baseOffsetIndex = 0
    public static let batchLengthIndex = 8
    public static let partitionLeaderEpochIndex = 12
    public static let magicIndex = 16
    public static let crcIndex = 17
    /// The CRC covers everything from the attributes to the end of the batch.
    public static let attributesIndex = 21
    public static let lastOffsetDeltaIndex = 23
    public static let baseTimestampIndex = 27
    public static let maxTimestampIndex = 35
    public static let producerIdIndex = 43
    public static let producerEpochIndex = 51
    public static let baseSequenceIndex = 53
    public static let recordCountIndex = 57

    public var baseOffset: Int64
    public var batchLength: Int32
    public var partitionLeaderEpoch: Int32
    public var magic: Int8
    public var crc: UInt32
    public var attributes: RecordBatchAttributes
    public var lastOffsetDelta: Int32
    public var baseTimestamp: Int64
    public var maxTimestamp: Int64
    public var producerId: Int64
    public var producerEpoch: Int16
    public var baseSequence: Int32
    public var recordCount: Int32

    public init(
        baseOffset: Int64 = 0,
        batchLength: Int32 = 0,
        partitionLeaderEpoch: Int32 = -1,
        magic: Int8 = RecordBatchHeader.magic,
        crc: UInt32 = 0,
        attributes: RecordBatchAttributes = RecordBatchAttributes(),
        lastOffsetDelta: Int32 = 0,
        baseTimestamp: Int64 = 0,
        maxTimestamp: Int64 = 0,
        producerId: Int64 = -1,
        producerEpoch: Int16 = -1,
        baseSequence: Int32 = -1,
        recordCount: Int32 = 0
    ) {
        self.baseOffset = baseOffset
        self.batchLength = batchLength
        self.partitionLeaderEpoch = partitionLeaderEpoch
        self.magic = magic
        self.crc = crc
        self.attributes = attributes
        self.lastOffsetDelta = lastOffsetDelta
        self.baseTimestamp = baseTimestamp
        self.maxTimestamp = maxTimestamp
        self.producerId = producerId
        self.producerEpoch = producerEpoch
        self.baseSequence = baseSequence
        self.recordCount = recordCount
    }

    /// Reads the 61 header bytes at absolute index `index` of `buffer`, without validating them.
    public init(parsing buffer: ByteBuffer, at index: Int) throws {
        guard index >= buffer.readerIndex, index <= buffer.writerIndex - Self.byteCount,
              let baseOffset = buffer.getInteger(at: index + Self.baseOffsetIndex, as: Int64.self),
              let batchLength = buffer.getInteger(at: index + Self.batchLengthIndex, as: Int32.self),
              let partitionLeaderEpoch = buffer.getInteger(at: index + Self.partitionLeaderEpochIndex, as: Int32.self),
              let magic = buffer.getInteger(at: index + Self.magicIndex, as: Int8.self),
              let crc = buffer.getInteger(at: index + Self.crcIndex, as: UInt32.self),
              let attributes = buffer.getInteger(at: index + Self.attributesIndex, as: Int16.self),
              let lastOffsetDelta = buffer.getInteger(at: index + Self.lastOffsetDeltaIndex, as: Int32.self),
              let baseTimestamp = buffer.getInteger(at: index + Self.baseTimestampIndex, as: Int64.self),
              let maxTimestamp = buffer.getInteger(at: index + Self.maxTimestampIndex, as: Int64.self),
              let producerId = buffer.getInteger(at: index + Self.producerIdIndex, as: Int64.self),
              let producerEpoch = buffer.getInteger(at: index + Self.producerEpochIndex, as: Int16.self),
              let baseSequence = buffer.getInteger(at: index + Self.baseSequenceIndex, as: Int32.self),
              let recordCount = buffer.getInteger(at: index + Self.recordCountIndex, as: Int32.self)
        else {
            throw ProtocolError(.truncated, field: "RecordBatch.header", offset: index,
                                detail: "needs \(Self.byteCount) bytes, \(buffer.writerIndex - index) left")
        }
        self.init(
            baseOffset: baseOffset, batchLength: batchLength, partitionLeaderEpoch: partitionLeaderEpoch,
            magic: magic, crc: crc, attributes: RecordBatchAttributes(rawValue: attributes),
            lastOffsetDelta: lastOffsetDelta, baseTimestamp: baseTimestamp, maxTimestamp: maxTimestamp,
            producerId: producerId, producerEpoch: producerEpoch, baseSequence: baseSequence,
            recordCount: recordCount
        )
    }

    /// The whole batch's size in bytes, header included.
    public var totalByteCount: Int { Self.lengthPrefixByteCount + Int(batchLength) }

    /// The offset of the batch's last record (with compaction, records may be missing before it).
    public var lastOffset: Int64 { baseOffset &+ Int64(lastOffsetDelta) }

    /// Writes the 61 header bytes at absolute index `index`, as they are (the CRC is not recomputed).
    public func write(into buffer: inout ByteBuffer, at index: Int) {
        buffer.setInteger(baseOffset, at: index + Self.baseOffsetIndex)
        buffer.setInteger(batchLength, at: index + Self.batchLengthIndex)
        buffer.setInteger(partitionLeaderEpoch, at: index + Self.partitionLeaderEpochIndex)
        buffer.setInteger(magic, at: index + Self.magicIndex)
        buffer.setInteger(crc, at: index + Self.crcIndex)
        buffer.setInteger(attributes.rawValue, at: index + Self.attributesIndex)
        buffer.setInteger(lastOffsetDelta, at: index + Self.lastOffsetDeltaIndex)
        buffer.setInteger(baseTimestamp, at: index + Self.baseTimestampIndex)
        buffer.setInteger(maxTimestamp, at: index + Self.maxTimestampIndex)
        buffer.setInteger(producerId, at: index + Self.producerIdIndex)
        buffer.setInteger(producerEpoch, at: index + Self.producerEpochIndex)
        buffer.setInteger(baseSequence, at: index + Self.baseSequenceIndex)
        buffer.setInteger(recordCount, at: index + Self.recordCountIndex)
    }

    /// Overwrites the base offset of the batch starting at absolute index `batchIndex`, in place.
    /// The CRC does not cover the base offset, so the batch stays valid. The buffer must hold the
    /// batch's first 8 bytes; when its storage is shared, NIO copies it first (copy-on-write).
    public static func rewriteBaseOffset(_ baseOffset: Int64, in buffer: inout ByteBuffer, batchIndex: Int) throws {
        guard batchIndex >= buffer.readerIndex, batchIndex <= buffer.writerIndex - 8 else {
            throw ProtocolError(.truncated, field: "RecordBatch.baseOffset", offset: batchIndex,
                                detail: "the buffer does not hold the batch's base offset")
        }
        buffer.setInteger(baseOffset, at: batchIndex + baseOffsetIndex)
    }
}
