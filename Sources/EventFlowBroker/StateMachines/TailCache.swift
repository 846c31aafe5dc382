import NIOCore

/// Recently committed batches, per partition, in a bounded memory budget: what a consumer at the
/// tail reads, so it never touches PostgreSQL.
///
/// The commit path inserts each committed flush as one *segment*: the flush's batches as stored
/// (assigned base offsets), grouped by partition so a partition's batches of one flush are
/// adjacent. Segments are evicted whole, oldest first, once `bytesMax` is exceeded; since
/// flushes commit in offset order, what stays cached for a partition is always a contiguous run
/// of offsets ending at its high watermark, and a read below that run goes to PostgreSQL.
///
/// Pure data structure: no I/O, no clock, no locks (the fetch service holds it under its lock).
public struct TailCache: Sendable {
    /// One batch of a segment, as a consumer gets it.
    public struct CachedBatch: Hashable, Sendable {
        public var partition: StreamPartition
        public var baseOffset: Int64
        public var lastOffset: Int64
        /// Where the batch's bytes are in the segment.
        public var range: Range<Int>

        public init(partition: StreamPartition, baseOffset: Int64, lastOffset: Int64, range: Range<Int>) {
            self.partition = partition
            self.baseOffset = baseOffset
            self.lastOffset = lastOffset
            self.range = range
        }
    }

    private struct Entry: Hashable, Sendable {
        var segmentID: UInt64
        var baseOffset: Int64
        var lastOffset: Int64
        var range: Range<Int>
    }

    private struct Segment: Sendable {
        var id: UInt64
        var bytes: ByteBuffer
        var partitions: [StreamPartition]
    }

    /// What a read found.
    public enum Read: Equatable, Sendable {
        /// The offset is below what is cached for the partition (or nothing is): read PostgreSQL.
        case notCached
        /// The batches from the one containing the offset (possibly none: the budget was smaller
        /// than the first batch and it need not be whole), concatenated as stored.
        case batches(records: ByteBuffer, batchCount: Int, nextOffset: Int64)
    }

    /// Bound on cached segment bytes (configurable; 0 disables the cache).
    public let bytesMax: Int
    public private(set) var bytes = 0
    private var segments = CircularBuffer<Segment>()
    private var entries: [StreamPartition: CircularBuffer<Entry>] = [:]
    private var nextSegmentID: UInt64 = 1

    public init(bytesMax: Int) {
        self.bytesMax = max(bytesMax, 0)
    }

    public var segmentCount: Int { segments.count }

    /// The first cached offset of `partition`, if any.
    public func firstCachedOffset(of partition: StreamPartition) -> Int64? {
        entries[partition]?.first?.baseOffset
    }

    /// Adds a committed flush. `batches` are its batches in the segment's order; per partition
    /// they continue exactly where the partition's cached run ends (offsets dense). Evicts the
    /// oldest segments until the cache fits `bytesMax` again (the new one too, if alone too big).
    public mutating func insert(segment: ByteBuffer, batches: [CachedBatch]) {
        let id = nextSegmentID
        nextSegmentID += 1
        var partitions: [StreamPartition] = []
        for batch in batches {
            precondition(batch.range.upperBound <= segment.readableBytes, "a cached batch lies inside its segment")
            var run = entries[batch.partition] ?? CircularBuffer()
            if let last = run.last, batch.baseOffset != last.lastOffset + 1 {
                // Committed order equals offset order, so this does not happen; if it did, the
                // run would have a hole, so it restarts here and older reads go to PostgreSQL.
                assertionFailure("cached offsets are dense per partition")
                run.removeAll()
            }
            if run.last?.segmentID != id { partitions.append(batch.partition) }
            run.append(Entry(segmentID: id, baseOffset: batch.baseOffset, lastOffset: batch.lastOffset, range: batch.range))
            entries[batch.partition] = run
        }
        segments.append(Segment(id: id, bytes: segment, partitions: partitions))
        bytes += segment.readableBytes
        while bytes > bytesMax, let oldest = segments.popFirst() {
            bytes -= oldest.bytes.readableBytes
            for partition in oldest.partitions {
                guard var run = entries[partition] else { continue }
                while let first = run.first, first.segmentID == oldest.id { run.removeFirst() }
                entries[partition] = run.isEmpty ? nil : run
            }
        }
    }

    /// Forgets `partition`'s cached batches that end below `offset` (its new log start), so no read
    /// is served below it. Their bytes are freed with their segment, oldest first as always.
    public mutating func discard(_ partition: StreamPartition, below offset: Int64) {
        guard var run = entries[partition] else { return }
        while let first = run.first, first.lastOffset < offset { run.removeFirst() }
        entries[partition] = run.isEmpty ? nil : run
    }

    /// Forgets every cached batch.
    public mutating func removeAll() {
        segments.removeAll()
        entries.removeAll()
        bytes = 0
    }

    /// The cached batches of `partition` from the one containing `offset`, while they fit
    /// `bytesMax`; the first one whole regardless when `firstBatchWhole`. Adjacent batches of one
    /// segment are returned as one slice (no copy); a read spanning segments copies once.
    public func read(_ partition: StreamPartition, from offset: Int64, bytesMax budget: Int, firstBatchWhole: Bool) -> Read {
        guard let run = entries[partition], let first = run.first, offset >= first.baseOffset,
              let last = run.last, offset <= last.lastOffset else { return .notCached }
        // Binary search for the entry containing `offset` (entries are dense and ordered).
        var low = run.startIndex
        var high = run.endIndex
        while run.distance(from: low, to: high) > 1 {
            let middle = run.index(low, offsetBy: run.distance(from: low, to: high) / 2)
            if run[middle].baseOffset <= offset { low = middle } else { high = middle }
        }
        var slices: [ByteBuffer] = []
        var runStart: (segment: Int, start: Int, end: Int)?
        var used = 0
        var count = 0
        var nextOffset = offset
        var index = low
        while index != run.endIndex {
            let entry = run[index]
            let length = entry.range.count
            guard used + length <= budget || (count == 0 && firstBatchWhole) else { break }
            let segmentIndex = self.segmentIndex(of: entry.segmentID)
            if let current = runStart, current.segment == segmentIndex, current.end == entry.range.lowerBound {
                runStart = (current.segment, current.start, entry.range.upperBound)
            } else {
                if let current = runStart { slices.append(slice(current)) }
                runStart = (segmentIndex, entry.range.lowerBound, entry.range.upperBound)
            }
            used += length
            count += 1
            nextOffset = entry.lastOffset + 1
            index = run.index(after: index)
        }
        if let current = runStart { slices.append(slice(current)) }
        let records: ByteBuffer
        switch slices.count {
        case 0: records = ByteBuffer()
        case 1: records = slices[0]
        default:
            var joined = ByteBuffer()
            joined.reserveCapacity(used)
            for slice in slices { joined.writeImmutableBuffer(slice) }
            records = joined
        }
        return .batches(records: records, batchCount: count, nextOffset: nextOffset)
    }

    /// Segment ids are consecutive and segments leave oldest first, so an id maps to its position.
    private func segmentIndex(of id: UInt64) -> Int {
        let position = Int(id - (segments.first?.id ?? id))
        precondition(segments[offset: position].id == id, "cached entries point at live segments")
        return position
    }

    private func slice(_ run: (segment: Int, start: Int, end: Int)) -> ByteBuffer {
        let segment = segments[offset: run.segment].bytes
        return segment.getSlice(at: segment.readerIndex + run.start, length: run.end - run.start) ?? ByteBuffer()
    }
}
