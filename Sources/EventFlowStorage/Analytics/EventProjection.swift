import Foundation
import NIOCore

/// The analytics projection's statements: which streams are projected and how far, the stored
/// batches to project, and one transaction per step that copies the step's `events` rows, writes
/// its dead letters and moves the position — so a crash mid-step neither loses nor duplicates rows.
///
/// The position of a partition is a committed offset of the internal group `groupName` in
/// `consumer_partition_offsets`, as a consumer's would be: the first offset not yet projected.
public enum EventProjection {
    /// The internal consumer group holding each projected partition's position. Client group ids
    /// starting with `internalGroupPrefix` are refused, so no client can move it.
    public static let groupName = "__eventflow.analytics"
    public static let internalGroupPrefix = "__eventflow."

    /// A projected partition and the first offset not yet in `events`.
    public struct Position: Hashable, Sendable {
        public var streamID: UUID
        public var partition: Int32
        public var offset: Int64

        public init(streamID: UUID, partition: Int32, offset: Int64) {
            self.streamID = streamID
            self.partition = partition
            self.offset = offset
        }
    }

    /// Every partition of every active stream with analytics on, with its position (0 when none yet).
    public static func positions(_ db: PostgresConnection) throws -> [Position] {
        try db.query("""
            SELECT s.id AS stream_id, n.partition, COALESCE(p.committed_offset, 0) AS position
            FROM event_streams s
            CROSS JOIN LATERAL generate_series(0, s.partitions - 1) AS n(partition)
            LEFT JOIN consumer_groups g ON g.stream_id = s.id AND g.name = $1
            LEFT JOIN consumer_partition_offsets p ON p.consumer_group_id = g.id AND p.partition = n.partition
            WHERE s.is_active AND s.analytics
            ORDER BY s.id, n.partition
            """, [groupName]).compactMap { row in
            guard let id = row["stream_id"].flatMap(UUID.init(uuidString:)), let partition = row["partition"].flatMap({ Int32($0) }),
                  let offset = row["position"].flatMap({ Int64($0) }) else { return nil }
            return Position(streamID: id, partition: partition, offset: offset)
        }
    }

    /// The projection's position of each partition of one stream (nil: never projected).
    public static func positions(_ db: PostgresConnection, streamID: UUID) throws -> [Int32: Int64] {
        Dictionary(try GroupOffsets.committed(db, group: groupName, streamID: streamID).map { ($0.partition, $0.offset) },
                   uniquingKeysWith: max)
    }

    /// Rows of the stream in `events` (through the (stream_id, created_at) index).
    public static func rowCount(_ db: PostgresConnection, streamID: UUID) throws -> Int {
        Int(try db.query("SELECT count(*) AS n FROM events WHERE stream_id = $1::uuid", [streamID.uuidString]).first?["n"] ?? "") ?? 0
    }

    /// A stored batch to project: its offsets, when the broker stored it, and its bytes as stored.
    public struct StoredBatch: Sendable {
        public var baseOffset: Int64
        public var lastOffset: Int64
        public var createdAtMilliseconds: Int64
        public var bytes: ByteBuffer
    }

    /// Batches of the partition with records at or after `offset`, in offset order with none left
    /// out between them (from the batch holding `offset`, found through the primary key from below,
    /// so a step's cost does not grow with the position), at most `batchesMax` of them and — past the first — at most `bytesMax` bytes.
    public static func batches(_ db: PostgresConnection, _ position: Position, batchesMax: Int, bytesMax: Int) throws -> [StoredBatch] {
        var batches: [StoredBatch] = []
        var bytes = 0
        var full = false
        try db.queryBinary("""
            SELECT base_offset, last_offset, created_at, batch FROM event_batches
            WHERE stream_id = $1::uuid AND partition = $2::int AND last_offset >= $3::bigint
              AND base_offset >= COALESCE((SELECT max(base_offset) FROM event_batches
                                           WHERE stream_id = $1::uuid AND partition = $2::int AND base_offset <= $3::bigint), 0)
            ORDER BY base_offset LIMIT $4::int
            """, [position.streamID.uuidString, String(position.partition), String(position.offset), String(max(batchesMax, 1))]) { row in
            // The first batch that does not fit ends the read: a later, smaller one taken instead would
            // move the position past the one left out.
            guard !full, batches.isEmpty || bytes + row.byteCount(3) <= bytesMax else {
                full = true
                return
            }
            var buffer = ByteBuffer()
            buffer.reserveCapacity(row.byteCount(3))
            row.withBytes(3) { _ = buffer.writeBytes($0) }
            bytes += buffer.readableBytes
            batches.append(StoredBatch(baseOffset: row.int64(0), lastOffset: row.int64(1),
                                       createdAtMilliseconds: row.timestampMilliseconds(2), bytes: buffer))
        }
        return batches
    }

    /// One `events` row: the event's derived id, its value as JSON text, its metadata as JSON text.
    public struct EventRow: Sendable {
        public var id: UUID
        /// The record's offset (not stored: the id derives from it).
        public var offset: Int64
        public var payloadJSON: [UInt8]
        public var metadataJSON: [UInt8]
        public var createdAtMilliseconds: Int64

        public init(id: UUID, offset: Int64, payloadJSON: [UInt8], metadataJSON: [UInt8], createdAtMilliseconds: Int64) {
            self.id = id
            self.offset = offset
            self.payloadJSON = payloadJSON
            self.metadataJSON = metadataJSON
            self.createdAtMilliseconds = createdAtMilliseconds
        }
    }

    /// A record the projection could not store as an event, for `dead_letter_events` (its origin:
    /// the projected partition and the record's offset).
    public struct DeadLetter: Sendable {
        public var eventID: UUID
        public var offset: Int64
        public var reason: String
        public var payloadJSON: String

        public init(eventID: UUID, offset: Int64, reason: String, payloadJSON: String) {
            self.eventID = eventID
            self.offset = offset
            self.reason = reason
            self.payloadJSON = payloadJSON
        }
    }

    /// The UTC days (`yyyyMMdd`) that have an `events` partition: a row's `created_at` must fall in one.
    public static func eventDays(_ db: PostgresConnection) throws -> Set<String> {
        Set(try TimePartitions.existing(db, table: "events").compactMap { name in
            name.hasPrefix("events_p") ? String(name.dropFirst("events_p".count)) : nil
        })
    }

    /// In one transaction: COPY `rows` into `events`, insert `deadLetters`, and set the partition's
    /// position to `next`. `beforeCommit` runs inside the transaction (tests cut the connection there).
    public static func store(_ db: PostgresConnection, streamID: UUID, partition: Int32, rows: [EventRow],
                             deadLetters: [DeadLetter], next: Int64, beforeCommit: () throws -> Void = {}) throws {
        try db.transaction {
            if !rows.isEmpty {
                var encoder = BinaryCopyEncoder(capacity: rows.reduce(64) { $0 + $1.payloadJSON.count + $1.metadataJSON.count + 64 })
                for row in rows {
                    encoder.beginRow(fieldCount: 5)
                    encoder.uuid(row.id)
                    encoder.uuid(streamID)
                    encoder.jsonb(row.payloadJSON)
                    encoder.jsonb(row.metadataJSON)
                    encoder.timestamp(unixMilliseconds: row.createdAtMilliseconds)
                }
                let data = encoder.bytes + BinaryCopyEncoder.trailer
                // Through a session-local staging table, so a row already in `events` (a position lost,
                // e.g. by hand) is skipped rather than failing every later step on its primary key.
                try db.execute("""
                    CREATE TEMP TABLE IF NOT EXISTS projection_rows (LIKE events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS
                    """)
                try db.copyIn("COPY projection_rows (\(columns)) FROM STDIN (FORMAT binary)") { send in
                    try data.withUnsafeBytes { try send($0) }
                }
                try db.execute("INSERT INTO events (\(columns)) SELECT \(columns) FROM projection_rows ON CONFLICT DO NOTHING")
            }
            for letter in deadLetters {
                try db.execute("""
                    INSERT INTO dead_letter_events (event_id, reason, payload, original_stream_id, original_partition, original_offset)
                    VALUES ($1::uuid, $2, $3::jsonb, $4::uuid, $5::int, $6::bigint)
                    """, [letter.eventID.uuidString, letter.reason, letter.payloadJSON, streamID.uuidString,
                          String(partition), String(letter.offset)])
            }
            // The position is an ordinary commit of the internal group, in this transaction.
            try GroupOffsets.store(db, group: groupName, [CommittedOffset(streamID: streamID, partition: partition, offset: next, metadata: nil)])
            try beforeCommit()
        }
    }

    static let columns = "id, stream_id, payload, metadata, created_at"

    /// Whether PostgreSQL takes `json` as `jsonb` (it refuses some JSON other parsers accept, such as `\u0000`).
    public static func isStorableJSON(_ db: PostgresConnection, _ json: String) -> Bool {
        (try? db.query("SELECT $1::jsonb IS NOT NULL AS ok", [json]))?.first?["ok"] == "t"
    }
}

extension BinaryCopyEncoder {
    /// A `jsonb` from JSON text: its binary format is a version byte (1) and the text.
    public mutating func jsonb(_ json: [UInt8]) {
        bytea(count: json.count + 1) { buffer in
            buffer[0] = 1
            json.withUnsafeBytes { source in
                UnsafeMutableRawBufferPointer(rebasing: buffer[1...]).copyMemory(from: source)
            }
        }
    }
}
