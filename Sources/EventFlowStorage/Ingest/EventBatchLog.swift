import Foundation
import NIOCore

/// The columns of one `event_batches` row except the batch bytes.
public struct EventBatchRow: Hashable, Sendable {
    public var streamID: UUID
    public var partition: Int32
    public var baseOffset: Int64
    public var lastOffset: Int64
    public var recordCount: Int32
    public var firstTimestampMilliseconds: Int64
    public var maxTimestampMilliseconds: Int64
    /// RecordBatch attributes bits 0-2.
    public var codec: Int16
    /// -1 / -1 / -1 for a batch without an idempotent producer.
    public var producerID: Int64
    public var producerEpoch: Int16
    public var baseSequence: Int32

    public init(streamID: UUID, partition: Int32, baseOffset: Int64, lastOffset: Int64, recordCount: Int32,
                firstTimestampMilliseconds: Int64, maxTimestampMilliseconds: Int64, codec: Int16,
                producerID: Int64 = -1, producerEpoch: Int16 = -1, baseSequence: Int32 = -1) {
        self.streamID = streamID
        self.partition = partition
        self.baseOffset = baseOffset
        self.lastOffset = lastOffset
        self.recordCount = recordCount
        self.firstTimestampMilliseconds = firstTimestampMilliseconds
        self.maxTimestampMilliseconds = maxTimestampMilliseconds
        self.codec = codec
        self.producerID = producerID
        self.producerEpoch = producerEpoch
        self.baseSequence = baseSequence
    }
}

/// The rows of one flush, encoded for binary COPY into one daily partition of `event_batches`.
public struct EventBatchCopy: Sendable {
    /// Column order of the COPY statement and of every encoded row.
    static let columns = "stream_id, partition, base_offset, last_offset, record_count, first_timestamp, "
        + "max_timestamp, created_at, codec, producer_id, producer_epoch, base_sequence, batch"
    static let fieldCount: Int16 = 13

    /// Every row of one flush shares one `created_at`, so the flush lands in one partition.
    public let createdAt: Date
    public private(set) var rowCount = 0
    private var encoder: BinaryCopyEncoder
    private let createdAtMilliseconds: Int64

    /// Encodes into `storage`'s memory (see `BinaryCopyEncoder.init(reusing:capacity:)`);
    /// `takeStorage()` returns it.
    public init(createdAt: Date = Date(), reusing storage: consuming [UInt8] = [], capacity: Int = 64 * 1024) {
        self.createdAt = createdAt
        self.createdAtMilliseconds = Int64((createdAt.timeIntervalSince1970 * 1000).rounded(.down))
        self.encoder = BinaryCopyEncoder(reusing: consume storage, capacity: capacity)
    }

    /// Appends a row; `writeBatch` fills exactly `batchByteCount` bytes with the batch as stored.
    public mutating func append(_ row: EventBatchRow, batchByteCount: Int,
                                writeBatch: (UnsafeMutableRawBufferPointer) -> Void) {
        encoder.beginRow(fieldCount: Self.fieldCount)
        encoder.uuid(row.streamID)
        encoder.int32(row.partition)
        encoder.int64(row.baseOffset)
        encoder.int64(row.lastOffset)
        encoder.int32(row.recordCount)
        encoder.timestamp(unixMilliseconds: row.firstTimestampMilliseconds)
        encoder.timestamp(unixMilliseconds: row.maxTimestampMilliseconds)
        encoder.timestamp(unixMilliseconds: createdAtMilliseconds)
        encoder.int16(row.codec)
        encoder.int64(row.producerID)
        encoder.int16(row.producerEpoch)
        encoder.int32(row.baseSequence)
        encoder.bytea(count: batchByteCount, writeBatch)
        rowCount += 1
    }

    /// The COPY data: the encoded rows, then `BinaryCopyEncoder.trailer` (kept apart, so sending
    /// the data copies nothing).
    public var encodedBytes: [UInt8] { encoder.bytes }

    public var encodedByteCount: Int { encoder.bytes.count }

    /// The encoder's memory, for the next flush's `init(reusing:capacity:)`.
    public consuming func takeStorage() -> [UInt8] {
        encoder.takeStorage()
    }
}

/// When a flush's statements returned, monotonic nanoseconds (`CLOCK_MONOTONIC`, as `NIODeadline`):
/// the writer's share of the durable-ack latency, stage by stage.
public struct EventBatchWriteTimes: Hashable, Sendable {
    /// The write began (before BEGIN).
    public var began: UInt64
    /// The COPY's data was sent and the COPY completed (rows in the table, not yet committed).
    public var copySent: UInt64
    /// COMMIT returned: the WAL is flushed (`synchronous_commit = on`), the flush is durable.
    public var committed: UInt64

    /// NIO's monotonic clock, the one the broker's other stage times are taken with.
    public static func now() -> UInt64 { NIODeadline.now().uptimeNanoseconds }
}

/// The connection broke while COMMIT was in flight: the flush may or may not be stored.
public struct CommitOutcomeUnknown: Error, CustomStringConvertible {
    public var underlying: DatabaseError
    public var description: String { "COMMIT outcome unknown: \(underlying)" }
}

/// One committed batch of an idempotent producer, as read back at startup.
public struct StoredProducerBatch: Hashable, Sendable {
    public var producerID: Int64
    public var producerEpoch: Int16
    public var streamID: UUID
    public var partition: Int32
    public var baseSequence: Int32
    public var recordCount: Int32
    public var baseOffset: Int64

    public init(producerID: Int64, producerEpoch: Int16, streamID: UUID, partition: Int32,
                baseSequence: Int32, recordCount: Int32, baseOffset: Int64) {
        self.producerID = producerID
        self.producerEpoch = producerEpoch
        self.streamID = streamID
        self.partition = partition
        self.baseSequence = baseSequence
        self.recordCount = recordCount
        self.baseOffset = baseOffset
    }
}

/// The log table's ingest-side statements: the group-commit write and what the broker reads
/// back at startup.
public enum EventBatchLog {
    /// Batches per (producer, partition) read back for duplicate detection (the broker keeps as many).
    public static let producerBatchesRestored = 5

    /// Writes one flush in one transaction: BEGIN; COPY into the day's partition; COMMIT.
    /// With `deadLetters` (records of the flush's dead-letter-stream batches, protocol/dead-letters.md)
    /// their `dead_letter_events` rows are inserted after the COPY, in the same transaction; a flush
    /// without any issues exactly BEGIN, COPY, COMMIT.
    /// A missing partition (maintenance behind the clock) is created and the flush retried once.
    /// Throws `CommitOutcomeUnknown` when the connection broke while COMMIT was in flight.
    @discardableResult
    public static func write(_ db: PostgresConnection, _ copy: EventBatchCopy,
                             deadLetters: [DeadLetterRecord] = []) throws -> EventBatchWriteTimes {
        let began = EventBatchWriteTimes.now()
        guard copy.rowCount > 0 else { return EventBatchWriteTimes(began: began, copySent: began, committed: began) }
        let data = copy.encodedBytes
        let table = TimePartitions.partitionName("event_batches", day: copy.createdAt)
        let sql = "COPY \(PostgresConnection.quoteIdentifier(table)) (\(EventBatchCopy.columns)) FROM STDIN (FORMAT binary)"
        let failedAt = copy.createdAt
        do {
            return try copyInTransaction(db, sql: sql, data: data, deadLetters: deadLetters, failedAt: failedAt, began: began)
        } catch let error as DatabaseError where error.sqlState == "42P01" {
            try TimePartitions().ensure(db, now: copy.createdAt)
            return try copyInTransaction(db, sql: sql, data: data, deadLetters: deadLetters, failedAt: failedAt, began: began)
        }
    }

    /// Largest piece of COPY data handed to libpq at once.
    static let copyChunkBytes = 256 * 1024

    private static func copyInTransaction(_ db: PostgresConnection, sql: String, data: [UInt8],
                                          deadLetters: [DeadLetterRecord], failedAt: Date, began: UInt64) throws -> EventBatchWriteTimes {
        try db.execute("BEGIN")
        do {
            try db.copyIn(sql) { send in
                // In pieces: libpq buffers each piece whole, and keeps its send buffer at the largest one.
                try data.withUnsafeBytes { bytes in
                    for start in stride(from: 0, to: bytes.count, by: copyChunkBytes) {
                        try send(UnsafeRawBufferPointer(rebasing: bytes[start..<min(start + copyChunkBytes, bytes.count)]))
                    }
                }
                try BinaryCopyEncoder.trailer.withUnsafeBytes { try send($0) }
            }
            if !deadLetters.isEmpty {
                try DeadLetters.insert(db, deadLetters, failedAt: failedAt)
            }
        } catch {
            try? db.execute("ROLLBACK")
            throw error
        }
        let copySent = EventBatchWriteTimes.now()
        do {
            try db.execute("COMMIT")
            return EventBatchWriteTimes(began: began, copySent: copySent, committed: EventBatchWriteTimes.now())
        } catch let error as DatabaseError where error.isConnectionFailure {
            // The server may have committed before the connection broke: only a look at the
            // table can tell (see `containsBatch`).
            throw CommitOutcomeUnknown(underlying: error)
        }
    }

    /// Whether the batch starting at `baseOffset` is stored: after an unknown COMMIT outcome,
    /// the first batch of the flush tells whether the whole transaction committed.
    public static func containsBatch(_ db: PostgresConnection, streamID: UUID, partition: Int32, baseOffset: Int64) throws -> Bool {
        try !db.query("SELECT 1 FROM event_batches WHERE stream_id = $1 AND partition = $2 AND base_offset = $3 LIMIT 1",
                      [streamID.uuidString, String(partition), String(baseOffset)]).isEmpty
    }

    /// Next offset (max(last_offset) + 1, or 0) of every partition of the active streams, or of
    /// one stream. Reads the newest batch per partition through the primary key index.
    public static func nextOffsets(_ db: PostgresConnection, streamID: UUID? = nil) throws -> [(streamID: UUID, partition: Int32, next: Int64)] {
        let rows = try db.query(
            """
            SELECT s.id AS stream_id, p.partition AS partition,
                   COALESCE((SELECT b.last_offset FROM event_batches b
                             WHERE b.stream_id = s.id AND b.partition = p.partition
                             ORDER BY b.base_offset DESC LIMIT 1), -1) + 1 AS next
            FROM event_streams s CROSS JOIN LATERAL generate_series(0, s.partitions - 1) AS p(partition)
            WHERE s.is_active AND ($1::uuid IS NULL OR s.id = $1::uuid)
            """, [streamID?.uuidString])
        return rows.compactMap { row in
            guard let id = row["stream_id"].flatMap(UUID.init(uuidString:)),
                  let partition = row["partition"].flatMap({ Int32($0) }),
                  let next = row["next"].flatMap({ Int64($0) }) else { return nil }
            return (id, partition, next)
        }
    }

    /// The newest `producerBatchesRestored` batches of every (idempotent producer, partition),
    /// oldest first, so the broker can recognise retries of batches committed before a restart.
    public static func producerBatches(_ db: PostgresConnection) throws -> [StoredProducerBatch] {
        let rows = try db.query(
            """
            SELECT producer_id, producer_epoch, stream_id, partition, base_sequence, record_count, base_offset FROM (
                SELECT producer_id, producer_epoch, stream_id, partition, base_sequence, record_count, base_offset,
                       row_number() OVER (PARTITION BY producer_id, stream_id, partition ORDER BY base_offset DESC) AS newest
                FROM event_batches WHERE producer_id >= 0
            ) recent WHERE newest <= $1 ORDER BY producer_id, stream_id, partition, base_offset
            """, [String(producerBatchesRestored)])
        return rows.compactMap { row in
            guard let producerID = row["producer_id"].flatMap({ Int64($0) }),
                  let epoch = row["producer_epoch"].flatMap({ Int16($0) }),
                  let streamID = row["stream_id"].flatMap(UUID.init(uuidString:)),
                  let partition = row["partition"].flatMap({ Int32($0) }),
                  let baseSequence = row["base_sequence"].flatMap({ Int32($0) }),
                  let recordCount = row["record_count"].flatMap({ Int32($0) }),
                  let baseOffset = row["base_offset"].flatMap({ Int64($0) }) else { return nil }
            return StoredProducerBatch(producerID: producerID, producerEpoch: epoch, streamID: streamID, partition: partition,
                                       baseSequence: baseSequence, recordCount: recordCount, baseOffset: baseOffset)
        }
    }
}

/// Producer ids for InitProducerId, from the `producer_ids` sequence (unique for the cluster's life).
public enum ProducerIDs {
    public static func allocate(_ db: PostgresConnection, organizationID: UUID) throws -> (producerID: Int64, epoch: Int16) {
        let rows = try db.query("INSERT INTO producer_ids (org_id) VALUES ($1) RETURNING producer_id, producer_epoch",
                                [organizationID.uuidString])
        guard let row = rows.first, let id = row["producer_id"].flatMap({ Int64($0) }),
              let epoch = row["producer_epoch"].flatMap({ Int16($0) }) else {
            throw DatabaseError(message: "INSERT INTO producer_ids returned no id")
        }
        return (id, epoch)
    }
}
