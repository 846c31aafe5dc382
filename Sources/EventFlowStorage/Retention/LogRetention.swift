import Foundation

/// A stream's retention as a retention round reads it from `event_streams` (deleted streams too:
/// their batches are kept only as long as their retention says).
public struct StreamRetention: Hashable, Sendable {
    public var streamID: UUID
    public var partitions: Int32
    public var retentionHours: Int

    public init(streamID: UUID, partitions: Int32, retentionHours: Int) {
        self.streamID = streamID
        self.partitions = partitions
        self.retentionHours = retentionHours
    }
}

/// Batches created before `createdBeforeMilliseconds` (unix milliseconds) are past the stream's retention.
public struct RetentionCutoff: Hashable, Sendable {
    public var streamID: UUID
    public var createdBeforeMilliseconds: Int64

    public init(streamID: UUID, createdBeforeMilliseconds: Int64) {
        self.streamID = streamID
        self.createdBeforeMilliseconds = createdBeforeMilliseconds
    }
}

/// One stream partition's log as retention measures it, all read in one statement (one snapshot).
public struct PartitionLogExtent: Hashable, Sendable {
    public var streamID: UUID
    public var partition: Int32
    /// The persisted log start offset (0 without a row).
    public var logStartOffset: Int64
    /// Base offset of the first batch created at or after the stream's cutoff; nil: none is.
    public var firstRetainedOffset: Int64?
    /// One past the last stored batch (0 for an empty partition).
    public var nextOffset: Int64

    public init(streamID: UUID, partition: Int32, logStartOffset: Int64, firstRetainedOffset: Int64?, nextOffset: Int64) {
        self.streamID = streamID
        self.partition = partition
        self.logStartOffset = logStartOffset
        self.firstRetainedOffset = firstRetainedOffset
        self.nextOffset = nextOffset
    }
}

/// A stream partition and an offset of it (a log start, or the last offset a day holds).
public struct StoredPartitionOffset: Hashable, Sendable {
    public var streamID: UUID
    public var partition: Int32
    public var offset: Int64

    public init(streamID: UUID, partition: Int32, offset: Int64) {
        self.streamID = streamID
        self.partition = partition
        self.offset = offset
    }
}

/// The two daily-partitioned tables retention drops whole days of.
public enum PartitionedLog: String, CaseIterable, Hashable, Sendable {
    /// The log (`event_batches`): one row per record batch.
    case batches = "event_batches"
    /// The analytics projection (`events`): one row per event.
    case events = "events"
}

/// One daily partition, e.g. `event_batches_p20261125` for 2026-11-25 (UTC).
public struct DayPartition: Hashable, Sendable, CustomStringConvertible {
    public var log: PartitionedLog
    public var table: String
    /// Midnight UTC of its day, unix milliseconds.
    public var dayStartMilliseconds: Int64

    public init(log: PartitionedLog, table: String, dayStartMilliseconds: Int64) {
        self.log = log
        self.table = table
        self.dayStartMilliseconds = dayStartMilliseconds
    }

    public init(log: PartitionedLog, day: Date) {
        let start = TimePartitions.calendar.startOfDay(for: day)
        self.init(log: log, table: TimePartitions.partitionName(log.rawValue, day: start),
                  dayStartMilliseconds: Int64((start.timeIntervalSince1970 * 1000).rounded(.down)))
    }

    /// The day of a partition named `<table>_pYYYYMMDD`, or nil for any other name.
    public init?(log: PartitionedLog, table: String) {
        let prefix = log.rawValue + "_p"
        guard table.hasPrefix(prefix) else { return nil }
        let digits = table.dropFirst(prefix.count)
        guard digits.count == 8, digits.allSatisfy(\.isASCII), let value = Int(digits) else { return nil }
        let components = DateComponents(year: value / 10_000, month: value / 100 % 100, day: value % 100)
        guard let day = TimePartitions.calendar.date(from: components),
              TimePartitions.partitionName(log.rawValue, day: day) == table else { return nil }
        self.init(log: log, day: day)
    }

    public var description: String { table }

    var dayStart: Date { Date(timeIntervalSince1970: Double(dayStartMilliseconds) / 1000) }
}

/// What dropping a day partition came to.
public enum DayPartitionDrop: Hashable, Sendable {
    /// Detached and dropped.
    case dropped
    /// Checked under an exclusive lock after the detach, found still needed, and attached again.
    case kept(reason: String)
    /// Not attached any more (dropped by someone else): nothing to do.
    case gone
}

/// Each stream partition's persisted log start offset (`log_start_offsets`), Kafka's logStartOffset.
public enum LogStartOffsets {
    /// Every persisted log start offset.
    public static func all(_ db: PostgresConnection) throws -> [StoredPartitionOffset] {
        try db.query("SELECT stream_id, partition, log_start_offset FROM log_start_offsets").compactMap { row in
            guard let stream = row["stream_id"].flatMap(UUID.init(uuidString:)), let partition = row["partition"].flatMap({ Int32($0) }),
                  let offset = row["log_start_offset"].flatMap({ Int64($0) }) else { return nil }
            return StoredPartitionOffset(streamID: stream, partition: partition, offset: offset)
        }
    }

    /// Moves log start offsets forward in one statement; one that is already further stays where
    /// it is (a log start never moves back).
    public static func advance(_ db: PostgresConnection, _ offsets: [StoredPartitionOffset]) throws {
        guard !offsets.isEmpty else { return }
        try db.execute("""
            INSERT INTO log_start_offsets (stream_id, partition, log_start_offset)
            SELECT * FROM unnest($1::uuid[], $2::int[], $3::bigint[])
            ON CONFLICT (stream_id, partition) DO UPDATE
            SET log_start_offset = GREATEST(log_start_offsets.log_start_offset, EXCLUDED.log_start_offset),
                updated_at = CURRENT_TIMESTAMP
            """, [PostgresConnection.arrayLiteral(offsets.map { $0.streamID.uuidString }),
                  PostgresConnection.arrayLiteral(offsets.map { String($0.partition) }),
                  PostgresConnection.arrayLiteral(offsets.map { String($0.offset) })])
    }
}

/// The statements of a retention round: what it measures, and the drop of a whole daily partition.
/// Nothing here deletes rows: data leaves only with its day's table.
public enum LogRetention {
    /// Every stream's partition count and retention, deleted streams included.
    public static func streams(_ db: PostgresConnection) throws -> [StreamRetention] {
        try db.query("SELECT id, partitions, retention_hours FROM event_streams ORDER BY id").compactMap { row in
            guard let id = row["id"].flatMap(UUID.init(uuidString:)), let partitions = row["partitions"].flatMap({ Int32($0) }),
                  let hours = row["retention_hours"].flatMap({ Int($0) }) else { return nil }
            return StreamRetention(streamID: id, partitions: partitions, retentionHours: hours)
        }
    }

    /// For every partition of the given streams: its persisted log start, the first batch created
    /// at or after the stream's cutoff, and its next offset. One statement, so a flush committing
    /// meanwhile is either counted in both or in neither. Index probes on the primary key
    /// (stream, partition, base_offset, created_at) per partition; no day is scanned.
    public static func measure(_ db: PostgresConnection, cutoffs: [RetentionCutoff]) throws -> [PartitionLogExtent] {
        guard !cutoffs.isEmpty else { return [] }
        let rows = try db.query("""
            SELECT s.id AS stream_id, p.partition AS partition, COALESCE(l.log_start_offset, 0) AS log_start,
                   (SELECT b.base_offset FROM event_batches b
                    WHERE b.stream_id = s.id AND b.partition = p.partition
                      AND b.created_at >= 'epoch'::timestamp + c.cutoff_ms * interval '1 millisecond'
                    ORDER BY b.base_offset LIMIT 1) AS first_retained,
                   COALESCE((SELECT b.last_offset FROM event_batches b
                             WHERE b.stream_id = s.id AND b.partition = p.partition
                             ORDER BY b.base_offset DESC LIMIT 1), -1) + 1 AS next
            FROM unnest($1::uuid[], $2::bigint[]) AS c(stream_id, cutoff_ms)
            JOIN event_streams s ON s.id = c.stream_id
            CROSS JOIN LATERAL generate_series(0, s.partitions - 1) AS p(partition)
            LEFT JOIN log_start_offsets l ON l.stream_id = s.id AND l.partition = p.partition
            ORDER BY s.id, p.partition
            """, [PostgresConnection.arrayLiteral(cutoffs.map { $0.streamID.uuidString }),
                  PostgresConnection.arrayLiteral(cutoffs.map { String($0.createdBeforeMilliseconds) })])
        return rows.compactMap { row in
            guard let stream = row["stream_id"].flatMap(UUID.init(uuidString:)), let partition = row["partition"].flatMap({ Int32($0) }),
                  let start = row["log_start"].flatMap({ Int64($0) }), let next = row["next"].flatMap({ Int64($0) }) else { return nil }
            return PartitionLogExtent(streamID: stream, partition: partition, logStartOffset: start,
                                      firstRetainedOffset: row["first_retained"].flatMap { Int64($0) }, nextOffset: next)
        }
    }

    /// The attached daily partitions of both tables, oldest first (a partition whose detach is
    /// still pending is not listed: `repairInterruptedDrops` finishes it first).
    public static func dayPartitions(_ db: PostgresConnection) throws -> [DayPartition] {
        let rows = try db.query("""
            SELECT p.relname AS parent, c.relname AS child FROM pg_inherits i
            JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
            WHERE p.relname = ANY($1::text[]) AND NOT i.inhdetachpending ORDER BY c.relname
            """, [PostgresConnection.arrayLiteral(PartitionedLog.allCases.map(\.rawValue))])
        return rows.compactMap { row in
            guard let log = row["parent"].flatMap(PartitionedLog.init(rawValue:)), let table = row["child"] else { return nil }
            return DayPartition(log: log, table: table)
        }.sorted { ($0.dayStartMilliseconds, $0.table) < ($1.dayStartMilliseconds, $1.table) }
    }

    /// The last offset each stream partition has in one daily partition of `event_batches`
    /// (partitions without batches there are left out). One index probe per stream partition.
    public static func lastOffsets(_ db: PostgresConnection, in day: DayPartition) throws -> [StoredPartitionOffset] {
        precondition(day.log == .batches, "offsets live in event_batches")
        let rows = try db.query("""
            SELECT s.id AS stream_id, p.partition AS partition, t.last_offset AS last_offset
            FROM event_streams s CROSS JOIN LATERAL generate_series(0, s.partitions - 1) AS p(partition)
            CROSS JOIN LATERAL (SELECT b.last_offset FROM \(PostgresConnection.quoteIdentifier(day.table)) b
                                WHERE b.stream_id = s.id AND b.partition = p.partition
                                ORDER BY b.base_offset DESC LIMIT 1) t
            """)
        return rows.compactMap { row in
            guard let stream = row["stream_id"].flatMap(UUID.init(uuidString:)), let partition = row["partition"].flatMap({ Int32($0) }),
                  let offset = row["last_offset"].flatMap({ Int64($0) }) else { return nil }
            return StoredPartitionOffset(streamID: stream, partition: partition, offset: offset)
        }
    }

    /// The streams with rows in one daily partition of `events`. One index probe per stream.
    public static func streamsPresent(_ db: PostgresConnection, in day: DayPartition) throws -> Set<UUID> {
        precondition(day.log == .events, "stream presence is read from events")
        let rows = try db.query("""
            SELECT s.id FROM event_streams s
            WHERE EXISTS (SELECT 1 FROM \(PostgresConnection.quoteIdentifier(day.table)) e WHERE e.stream_id = s.id)
            """)
        return Set(rows.compactMap { $0["id"].flatMap(UUID.init(uuidString:)) })
    }

    /// How long the drop's exclusive lock on the detached day may be waited for, in milliseconds.
    public static let dropLockTimeoutMilliseconds = 10_000

    /// Detaches a daily partition without blocking the writer or readers of other days, then,
    /// under an exclusive lock on the detached table, checks that nothing in it is still needed
    /// and drops it; if something is (a late flush, a retention raised meanwhile), attaches it again.
    ///
    /// `DETACH PARTITION ... CONCURRENTLY` may not run in a transaction block, so it is sent alone
    /// (libpq's simple query with one statement runs it in its own implicit transaction); it waits
    /// for queries that use the parent table, takes only SHARE UPDATE EXCLUSIVE on it, and so never
    /// blocks a COPY into today's partition.
    public static func drop(_ db: PostgresConnection, _ day: DayPartition, now: Date) throws -> DayPartitionDrop {
        let parent = PostgresConnection.quoteIdentifier(day.log.rawValue)
        let child = PostgresConnection.quoteIdentifier(day.table)
        let attached = try db.query("""
            SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
            WHERE p.relname = $1 AND c.relname = $2 AND NOT i.inhdetachpending
            """, [day.log.rawValue, day.table])
        guard !attached.isEmpty else { return .gone }
        try db.execute("ALTER TABLE \(parent) DETACH PARTITION \(child) CONCURRENTLY")
        let reason: String?
        do {
            reason = try db.transaction { () throws -> String? in
                try db.execute("SET LOCAL lock_timeout = '\(dropLockTimeoutMilliseconds)ms'")
                // Waits for a COPY or read that names the day's table directly; everything committed
                // before the lock is granted is seen by the check below.
                try db.execute("LOCK TABLE \(child) IN ACCESS EXCLUSIVE MODE")
                if let needed = try neededRows(db, day, now: now) { return needed }
                try db.execute("DROP TABLE \(child)")
                return nil
            }
        } catch {
            try? attach(db, day)
            throw error
        }
        if let reason {
            try attach(db, day)
            return .kept(reason: reason)
        }
        return .dropped
    }

    /// Why a detached day is still needed, or nil: batches at or after their partition's log
    /// start (`event_batches`), events inside their stream's retention (`events`).
    private static func neededRows(_ db: PostgresConnection, _ day: DayPartition, now: Date) throws -> String? {
        let table = PostgresConnection.quoteIdentifier(day.table)
        switch day.log {
        case .batches:
            let rows = try db.query("""
                SELECT s.id AS stream_id, p.partition AS partition
                FROM event_streams s CROSS JOIN LATERAL generate_series(0, s.partitions - 1) AS p(partition)
                LEFT JOIN log_start_offsets l ON l.stream_id = s.id AND l.partition = p.partition
                WHERE EXISTS (SELECT 1 FROM \(table) b WHERE b.stream_id = s.id AND b.partition = p.partition
                                AND b.base_offset >= COALESCE(l.log_start_offset, 0))
                LIMIT 1
                """)
            guard let row = rows.first else { return nil }
            return "holds batches of stream \(row["stream_id"] ?? "?") partition \(row["partition"] ?? "?") at or after its log start"
        case .events:
            let nowMilliseconds = Int64((now.timeIntervalSince1970 * 1000).rounded(.down))
            let rows = try db.query("""
                SELECT s.id FROM event_streams s
                WHERE EXISTS (SELECT 1 FROM \(table) e WHERE e.stream_id = s.id
                                AND e.created_at >= 'epoch'::timestamp + $1::bigint * interval '1 millisecond'
                                                    - s.retention_hours * interval '1 hour')
                LIMIT 1
                """, [String(nowMilliseconds)])
            guard let row = rows.first else { return nil }
            return "holds events of stream \(row["id"] ?? "?") inside its retention"
        }
    }

    /// Attaches a detached day again (PostgreSQL scans it once to validate its range).
    private static func attach(_ db: PostgresConnection, _ day: DayPartition) throws {
        let next = day.dayStart.addingTimeInterval(86_400)
        try db.transaction {
            try db.execute("SET LOCAL lock_timeout = '\(dropLockTimeoutMilliseconds)ms'")
            try db.execute("""
                ALTER TABLE \(PostgresConnection.quoteIdentifier(day.log.rawValue)) ATTACH PARTITION \(PostgresConnection.quoteIdentifier(day.table))
                FOR VALUES FROM ('\(TimePartitions.dayLiteral(day.dayStart))') TO ('\(TimePartitions.dayLiteral(next))')
                """)
        }
    }

    /// Finishes what an interrupted drop left behind (the connection lost between the steps):
    /// a detach still pending is finalized, and a day table no longer attached is attached again,
    /// so the round decides about it afresh. Returns the tables it attached again.
    @discardableResult
    public static func repairInterruptedDrops(_ db: PostgresConnection) throws -> [DayPartition] {
        let logs = PostgresConnection.arrayLiteral(PartitionedLog.allCases.map(\.rawValue))
        let pending = try db.query("""
            SELECT p.relname AS parent, c.relname AS child FROM pg_inherits i
            JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
            WHERE p.relname = ANY($1::text[]) AND i.inhdetachpending
            """, [logs])
        for row in pending {
            guard let parent = row["parent"], let child = row["child"] else { continue }
            try db.execute("ALTER TABLE \(PostgresConnection.quoteIdentifier(parent)) DETACH PARTITION \(PostgresConnection.quoteIdentifier(child)) FINALIZE")
        }
        let detached = try db.query("""
            SELECT c.relname AS child FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind = 'r' AND n.nspname = current_schema() AND c.relname ~ '^(event_batches|events)_p[0-9]{8}$'
              AND NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid)
            """)
        var attached: [DayPartition] = []
        for row in detached {
            guard let table = row["child"] else { continue }
            guard let day = PartitionedLog.allCases.lazy.compactMap({ DayPartition(log: $0, table: table) }).first else { continue }
            try attach(db, day)
            attached.append(day)
        }
        return attached
    }
}
