import Foundation
import NIOCore

/// Where one stream partition's batches sit in one daily partition of `event_batches`.
public struct StoredDayRange: Hashable, Sendable {
    /// The daily partition's table, e.g. `event_batches_p20261203`.
    public var table: String
    public var firstOffset: Int64
    public var lastOffset: Int64

    public init(table: String, firstOffset: Int64, lastOffset: Int64) {
        self.table = table
        self.firstOffset = firstOffset
        self.lastOffset = lastOffset
    }
}

/// Stored batches read back for a fetch: their bytes concatenated exactly as stored.
public struct StoredBatches: Sendable {
    /// The batches, one after another, as Fetch sends them.
    public var records: ByteBuffer
    public var batchCount: Int
    /// One past the last offset of the last batch read (the offset a next read continues from);
    /// the requested offset when nothing was read.
    public var nextOffset: Int64
    /// The read stopped because the byte or row budget was used up (more batches may follow
    /// below the bound), not because the table had no more.
    public var stoppedAtBudget: Bool
}

/// A batch found by timestamp (ListOffsets).
public struct StoredBatch: Sendable {
    public var baseOffset: Int64
    public var maxTimestampMilliseconds: Int64
    public var bytes: ByteBuffer
}

/// The log table's read side: catch-up reads for Fetch and timestamp lookups for ListOffsets.
/// Results come back in binary format, so a batch's bytes travel from the table into a
/// `ByteBuffer` without hex decoding or re-encoding.
public enum EventBatchReads {
    /// The stream partition's first and last offset in every daily partition that holds some of
    /// it, ordered by first offset: the offset → day index a catch-up read prunes with. Two
    /// index probes per daily partition (the primary key leads with stream, partition, offset).
    public static func dayRanges(_ db: PostgresConnection, streamID: UUID, partition: Int32) throws -> [StoredDayRange] {
        let tables = try TimePartitions.existing(db, table: "event_batches")
        guard !tables.isEmpty else { return [] }
        let probes = tables.map { table in
            let quoted = PostgresConnection.quoteIdentifier(table)
            return """
                SELECT \(PostgresConnection.quoteLiteral(table)) AS day_table,
                       (SELECT base_offset FROM \(quoted) WHERE stream_id = $1::uuid AND partition = $2::int
                        ORDER BY base_offset LIMIT 1) AS first_offset,
                       (SELECT last_offset FROM \(quoted) WHERE stream_id = $1::uuid AND partition = $2::int
                        ORDER BY base_offset DESC LIMIT 1) AS last_offset
                """
        }
        let rows = try db.query(probes.joined(separator: "\nUNION ALL\n"), [streamID.uuidString, String(partition)])
        return rows.compactMap { row -> StoredDayRange? in
            guard let table = row["day_table"], let first = row["first_offset"].flatMap({ Int64($0) }),
                  let last = row["last_offset"].flatMap({ Int64($0) }) else { return nil }
            return StoredDayRange(table: table, firstOffset: first, lastOffset: last)
        }.sorted { $0.firstOffset < $1.firstOffset }
    }

    /// Bound on rows one read looks at, whatever its byte budget.
    public static let rowsPerReadMax = 8192

    /// Batches of (stream, partition) in offset order, starting with the one that contains
    /// `offset`, with base offsets below `endOffset`, while their bytes fit `bytesMax`; with
    /// `firstBatchWhole` the first batch is returned even if it alone is larger.
    ///
    /// `table` names the daily partition to read (the day index says which); nil reads through
    /// the parent table, which scans every daily partition's index.
    public static func batches(_ db: PostgresConnection, table: String?, streamID: UUID, partition: Int32,
                               containing offset: Int64, below endOffset: Int64, bytesMax: Int,
                               firstBatchWhole: Bool) throws -> StoredBatches {
        var read = StoredBatches(records: ByteBuffer(), batchCount: 0, nextOffset: offset, stoppedAtBudget: false)
        guard offset < endOffset, bytesMax > 0 || firstBatchWhole else {
            read.stoppedAtBudget = offset < endOffset
            return read
        }
        let source = PostgresConnection.quoteIdentifier(table ?? "event_batches")
        // A few rows per KiB of budget: small batches still fill most of it, large ones do not
        // make the scan walk thousands of index entries it will not return.
        let rowsMax = min(max(bytesMax / 512, 64), rowsPerReadMax)
        // The running sum of octet_length reads the TOAST pointers' sizes, not the batches, so
        // only the batches returned are detoasted. The first batch that does not fit comes back
        // with a NULL batch: it tells the caller the budget, not the table, ended the read.
        let sql = """
            SELECT base_offset, last_offset,
                   CASE WHEN through <= $6::bigint OR ($7::boolean AND through = octet_length(batch)) THEN batch END
            FROM (
                SELECT base_offset, last_offset, batch,
                       sum(octet_length(batch)) OVER (ORDER BY base_offset ROWS UNBOUNDED PRECEDING) AS through
                FROM \(source)
                WHERE stream_id = $1::uuid AND partition = $2::int AND base_offset < $4::bigint
                  AND base_offset >= COALESCE((SELECT base_offset FROM \(source)
                                               WHERE stream_id = $1::uuid AND partition = $2::int AND base_offset <= $3::bigint
                                               ORDER BY base_offset DESC LIMIT 1), $3::bigint)
                ORDER BY base_offset LIMIT $5::int
            ) window_rows
            WHERE through - octet_length(batch) <= $6::bigint OR ($7::boolean AND through = octet_length(batch))
            ORDER BY base_offset
            """
        var rows = 0
        var cutByBudget = false
        try db.queryBinary(sql, [streamID.uuidString, String(partition), String(offset), String(endOffset),
                                 String(rowsMax), String(bytesMax), firstBatchWhole ? "true" : "false"]) { row in
            rows += 1
            guard !row.isNull(2) else {
                cutByBudget = true
                return
            }
            if read.batchCount == 0 {
                // One allocation for the common case: the budget, or the first batch if larger.
                read.records.reserveCapacity(max(min(bytesMax, 1 << 24), row.byteCount(2)))
            }
            row.withBytes(2) { bytes in
                _ = read.records.writeBytes(bytes)
            }
            read.batchCount += 1
            read.nextOffset = row.int64(1) + 1
        }
        read.stoppedAtBudget = cutByBudget || rows == rowsMax || read.records.readableBytes >= bytesMax
        return read
    }

    /// The first batch of (stream, partition) at or after `offset` (the log start: batches below
    /// it may still be stored) whose max timestamp is at least `timestamp` (unix milliseconds),
    /// or nil: ListOffsets by time, as Kafka's time index answers it.
    public static func firstBatch(_ db: PostgresConnection, streamID: UUID, partition: Int32, from offset: Int64 = 0,
                                  timestampAtLeast timestamp: Int64) throws -> StoredBatch? {
        // Stored max timestamps are clamped into PostgreSQL's range (`BinaryCopyEncoder.timestamp`):
        // none is later than its end, and every one is at least its start.
        guard timestamp <= BinaryCopyEncoder.timestampMaxUnixMilliseconds else { return nil }
        let sincePostgresEpoch = max(timestamp, BinaryCopyEncoder.timestampMinUnixMilliseconds)
            - BinaryCopyEncoder.postgresEpochUnixMilliseconds
        var found: StoredBatch?
        // Whole days plus the milliseconds left: exact integer arithmetic for any timestamp in range
        // (one interval of all the milliseconds would pass through a float8 and overflow near the end).
        try db.queryBinary("""
            SELECT base_offset, max_timestamp, batch FROM event_batches
            WHERE stream_id = $1::uuid AND partition = $2::int AND base_offset >= $4::bigint
              AND max_timestamp >= '2000-01-01'::timestamp + ($3::bigint / 86400000) * interval '1 day'
                                                           + ($3::bigint % 86400000) * interval '1 millisecond'
            ORDER BY base_offset LIMIT 1
            """, [streamID.uuidString, String(partition), String(sincePostgresEpoch), String(offset)]) { row in
            var bytes = ByteBuffer()
            row.withBytes(2) { _ = bytes.writeBytes($0) }
            found = StoredBatch(baseOffset: row.int64(0), maxTimestampMilliseconds: row.timestampMilliseconds(1), bytes: bytes)
        }
        return found
    }
}
