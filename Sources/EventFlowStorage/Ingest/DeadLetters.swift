import Foundation

/// Dead-letter streams: every stream `<name>` has `<name>.dlq` in its organization
/// (protocol/dead-letters.md). The name rule lives here so CreateTopics, the CLI and the
/// broker's auto-creation agree.
public enum DeadLetterStreams {
    public static let suffix = ".dlq"
    /// A dead-letter stream has one partition: dead letters are few and read in order.
    public static let partitions = 1

    public static func isDeadLetterStream(_ name: String) -> Bool {
        name.hasSuffix(suffix) && name.count > suffix.count
    }

    /// The stream whose dead letters `name` holds, or nil if `name` is not a dead-letter stream.
    public static func baseName(of name: String) -> String? {
        isDeadLetterStream(name) ? String(name.dropLast(suffix.count)) : nil
    }

    public static func name(for stream: String) -> String { stream + suffix }

    /// Why `name` cannot be a stream with `partitions` partitions, or nil if it can.
    static func refusal(name: String, partitions: Int) -> String? {
        guard let base = baseName(of: name) else { return nil }
        if isDeadLetterStream(base) { return "a dead-letter stream has no dead-letter stream of its own" }
        if partitions != Self.partitions { return "a dead-letter stream has exactly \(Self.partitions) partition" }
        return nil
    }

    /// Creates the dead-letter streams among `names` (of organization `orgID`) that do not exist yet
    /// while their base stream is active. Returns the names created. Names that are not dead-letter
    /// streams, or whose base is unknown, are left alone (the caller answers them as unknown).
    @discardableResult
    public static func ensure(_ db: PostgresConnection, organizationID: UUID, names: [String]) throws -> [String] {
        let wanted = names.filter { name in
            guard let base = baseName(of: name) else { return false }
            return !isDeadLetterStream(base)
        }
        guard !wanted.isEmpty else { return [] }
        // One statement: each missing `<base>.dlq` whose base is active, with the base's retention.
        // ON CONFLICT: another connection created it meanwhile (or it is a soft-deleted name).
        let rows = try db.query(
            """
            INSERT INTO event_streams (org_id, name, partitions, retention_hours)
            SELECT base.org_id, base.name || $3, $4::int, base.retention_hours
            FROM event_streams base
            WHERE base.org_id = $1 AND base.is_active AND (base.name || $3) = ANY($2::text[])
            ON CONFLICT (org_id, name) DO NOTHING
            RETURNING name
            """, [organizationID.uuidString, PostgresConnection.arrayLiteral(wanted), suffix, String(partitions)])
        return rows.compactMap { $0["name"] }
    }
}

/// One record of a dead-letter stream as the flush indexes it: where it is stored, what its
/// headers say about its origin and failure, and its value.
public struct DeadLetterRecord: Hashable, Sendable {
    public var organizationID: UUID
    public var dlqStreamID: UUID
    public var dlqPartition: Int32
    public var dlqOffset: Int64
    /// The original stream's name, from the headers (nil: none given).
    public var originalTopic: String?
    public var originalPartition: Int32?
    public var originalOffset: Int64?
    public var reason: String
    /// The record's value (nil: a null value).
    public var value: [UInt8]?

    public init(organizationID: UUID, dlqStreamID: UUID, dlqPartition: Int32, dlqOffset: Int64, originalTopic: String?,
                originalPartition: Int32?, originalOffset: Int64?, reason: String, value: [UInt8]?) {
        self.organizationID = organizationID
        self.dlqStreamID = dlqStreamID
        self.dlqPartition = dlqPartition
        self.dlqOffset = dlqOffset
        self.originalTopic = originalTopic
        self.originalPartition = originalPartition
        self.originalOffset = originalOffset
        self.reason = reason
        self.value = value
    }

    /// The row's own id: the dead-letter record's event id, so a row maps straight back to a fetch.
    public var id: UUID { EventID.derive(streamID: dlqStreamID, partition: dlqPartition, offset: dlqOffset) }
}

/// A `dead_letter_events` row as the CLI shows it.
public struct DeadLetterEvent: Sendable, Equatable, Codable {
    public var id: UUID
    public var eventID: UUID
    public var reason: String
    /// The payload as JSON text (nil: SQL NULL, a record without a value).
    public var payload: String?
    public var failedAt: String
    /// The dead-letter stream holding the record.
    public var streamID: UUID?
    public var stream: String?
    public var partition: Int32?
    public var offset: Int64?
    public var originalTopic: String?
    public var originalStream: String?
    public var originalPartition: Int32?
    public var originalOffset: Int64?
    public var replayedAt: String?
    public var replayedOffset: Int64?
}

public enum DeadLetterError: Error, CustomStringConvertible, Equatable {
    case unknownDeadLetter(String)
    case alreadyReplayed(id: String, at: String)
    case noOriginalStream(id: String)

    public var description: String {
        switch self {
        case .unknownDeadLetter(let id): return "unknown dead letter '\(id)'"
        case .alreadyReplayed(let id, let at): return "dead letter \(id) was already replayed at \(at)"
        case .noOriginalStream(let id): return "dead letter \(id) names no original stream of this organization"
        }
    }
}

public enum DeadLetters {
    /// The JSONB payload of a value: the value itself when it is JSON, else
    /// `{"encoding": "base64", "data": "..."}` (protocol/dead-letters.md). nil for a null value.
    public static func payloadJSON(_ value: [UInt8]?) -> String? {
        guard let value else { return nil }
        if let text = jsonText(value) { return text }
        return base64Payload(value)
    }

    public static func base64Payload(_ value: [UInt8]) -> String {
        #"{"encoding": "base64", "data": ""# + Data(value).base64EncodedString() + #""}"#
    }

    /// The value as text if it parses as JSON and PostgreSQL's jsonb can hold it (no NUL escapes).
    static func jsonText(_ value: [UInt8]) -> String? {
        guard !value.isEmpty, let text = String(validating: value, as: UTF8.self),
              !text.contains("\\u0000"), !text.utf8.contains(0),
              (try? JSONSerialization.jsonObject(with: Data(value), options: [.fragmentsAllowed])) != nil else { return nil }
        return text
    }

    /// Inserts the rows of one flush's dead-letter records, inside the flush's transaction (the
    /// caller's BEGIN). Original streams are resolved by name in each record's organization —
    /// deleted streams too, since a name stays reserved — and the original event's id derived
    /// from (stream, partition, offset); without a complete origin the row's event id is the
    /// dead-letter record's own. Should PostgreSQL refuse a payload the JSON check let through,
    /// the rows are written again with every payload base64, so a dead letter never fails its flush.
    public static func insert(_ db: PostgresConnection, _ records: [DeadLetterRecord], failedAt: Date) throws {
        guard !records.isEmpty else { return }
        var originals: [UUID: [String: UUID]] = [:]
        for (organizationID, group) in Dictionary(grouping: records, by: \.organizationID) {
            let names = Array(Set(group.compactMap(\.originalTopic)))
            guard !names.isEmpty else { continue }
            let rows = try db.query("SELECT id, name FROM event_streams WHERE org_id = $1 AND name = ANY($2::text[])",
                                    [organizationID.uuidString, PostgresConnection.arrayLiteral(names)])
            for row in rows {
                guard let id = row["id"].flatMap(UUID.init(uuidString:)), let name = row["name"] else { continue }
                originals[organizationID, default: [:]][name] = id
            }
        }
        let failedAtMilliseconds = Int64((failedAt.timeIntervalSince1970 * 1000).rounded(.down))
        func parameters(base64Only: Bool) -> [String?] {
            var ids: [String?] = [], eventIDs: [String?] = [], reasons: [String?] = [], payloads: [String?] = []
            var streams: [String?] = [], partitions: [String?] = [], offsets: [String?] = []
            var topics: [String?] = [], originalStreams: [String?] = [], originalPartitions: [String?] = [], originalOffsets: [String?] = []
            for record in records {
                let originalStream = record.originalTopic.flatMap { originals[record.organizationID]?[$0] }
                var eventID = record.id
                if let originalStream, let partition = record.originalPartition, let offset = record.originalOffset {
                    eventID = EventID.derive(streamID: originalStream, partition: partition, offset: offset)
                }
                ids.append(record.id.uuidString)
                eventIDs.append(eventID.uuidString)
                reasons.append(record.reason)
                payloads.append(base64Only ? record.value.map(base64Payload) : payloadJSON(record.value))
                streams.append(record.dlqStreamID.uuidString)
                partitions.append(String(record.dlqPartition))
                offsets.append(String(record.dlqOffset))
                topics.append(record.originalTopic)
                originalStreams.append(originalStream?.uuidString)
                originalPartitions.append(record.originalPartition.map(String.init))
                originalOffsets.append(record.originalOffset.map(String.init))
            }
            return [ids, eventIDs, reasons, payloads, streams, partitions, offsets, topics, originalStreams,
                    originalPartitions, originalOffsets].map(PostgresConnection.arrayLiteral) + [String(failedAtMilliseconds)]
        }
        // ON CONFLICT: the id is the record's own event id, so a row is never written twice.
        let sql = """
            INSERT INTO dead_letter_events (id, event_id, reason, payload, failed_at, dlq_stream_id, dlq_partition, dlq_offset,
                                            original_topic, original_stream_id, original_partition, original_offset)
            SELECT id, event_id, reason, payload::jsonb, to_timestamp($12::bigint / 1000.0) AT TIME ZONE 'UTC',
                   dlq_stream_id, dlq_partition, dlq_offset, original_topic, original_stream_id, original_partition, original_offset
            FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::uuid[], $6::int[], $7::bigint[], $8::text[],
                        $9::uuid[], $10::int[], $11::bigint[])
                AS r(id, event_id, reason, payload, dlq_stream_id, dlq_partition, dlq_offset, original_topic,
                     original_stream_id, original_partition, original_offset)
            ON CONFLICT (id) DO NOTHING
            """
        try insertFallingBackToBase64(db, sql, parameters)
    }

    /// Runs a dead-letter INSERT inside the caller's transaction; should PostgreSQL refuse a payload
    /// the JSON check let through (e.g. a `\u0000` escape), runs it again with every payload base64.
    static func insertFallingBackToBase64(_ db: PostgresConnection, _ sql: String,
                                          _ parameters: (_ base64Only: Bool) -> [String?]) throws {
        try db.execute("SAVEPOINT dead_letters")
        do {
            try db.execute(sql, parameters(false))
        } catch let error as DatabaseError where !error.isConnectionFailure {
            try db.execute("ROLLBACK TO SAVEPOINT dead_letters")
            try db.execute(sql, parameters(true))
        }
        try db.execute("RELEASE SAVEPOINT dead_letters")
    }

    /// A record its stream's schema refused at produce: never stored in the log, so its row has no
    /// dead-letter record and no original offset; its event id is the row's own (random) id.
    public struct RefusedRecord: Sendable, Hashable {
        /// The record's position among the partition's records in the Produce request.
        public var index: Int32
        public var reason: String
        /// The record's value (nil: a null value).
        public var value: [UInt8]?

        public init(index: Int32, reason: String, value: [UInt8]?) {
            self.index = index
            self.reason = reason
            self.value = value
        }
    }

    /// Writes one row per refused record of (stream, partition), in one transaction, so a producer
    /// answered INVALID_RECORD finds every refused record in `dead_letter_events`.
    public static func insertRefused(_ db: PostgresConnection, streamID: UUID, streamName: String, partition: Int32,
                                     _ records: [RefusedRecord], failedAt: Date) throws {
        guard !records.isEmpty else { return }
        let ids = records.map { _ in UUID().uuidString }
        let failedAtMilliseconds = Int64((failedAt.timeIntervalSince1970 * 1000).rounded(.down))
        func parameters(base64Only: Bool) -> [String?] {
            [PostgresConnection.arrayLiteral(ids), PostgresConnection.arrayLiteral(records.map(\.reason)),
             PostgresConnection.arrayLiteral(records.map { base64Only ? $0.value.map(base64Payload) : payloadJSON($0.value) }),
             streamName, streamID.uuidString, String(partition), String(failedAtMilliseconds)]
        }
        let sql = """
            INSERT INTO dead_letter_events (id, event_id, reason, payload, failed_at, original_topic, original_stream_id, original_partition)
            SELECT id, id, reason, payload::jsonb, to_timestamp($7::bigint / 1000.0) AT TIME ZONE 'UTC', $4, $5::uuid, $6::int
            FROM unnest($1::uuid[], $2::text[], $3::text[]) AS r(id, reason, payload)
            """
        try db.transaction { try insertFallingBackToBase64(db, sql, parameters) }
    }

    static let selectColumns = """
        d.id, d.event_id, d.reason, d.payload::text AS payload, \(timestampColumn("d.failed_at", as: "failed_at")),
        d.dlq_stream_id, s.name AS stream, d.dlq_partition, d.dlq_offset, d.original_topic, o.name AS original_stream,
        d.original_partition, d.original_offset, \(timestampColumn("d.replayed_at", as: "replayed_at")), d.replayed_offset
        """
    /// Rows of `.dlq` records (s) and rows with no dead-letter record — records a schema refused,
    /// values the analytics projection could not store — known by their original stream (o).
    static let from = """
        FROM dead_letter_events d LEFT JOIN event_streams s ON s.id = d.dlq_stream_id
        LEFT JOIN event_streams o ON o.id = d.original_stream_id
        """

    static func decode(_ row: Row) throws -> DeadLetterEvent {
        DeadLetterEvent(id: try uuid(row, "id"), eventID: try uuid(row, "event_id"), reason: row["reason"] ?? "",
                        payload: row["payload"], failedAt: row["failed_at"] ?? "",
                        streamID: row["dlq_stream_id"].flatMap(UUID.init(uuidString:)), stream: row["stream"],
                        partition: row["dlq_partition"].flatMap { Int32($0) }, offset: row["dlq_offset"].flatMap { Int64($0) },
                        originalTopic: row["original_topic"], originalStream: row["original_stream"],
                        originalPartition: row["original_partition"].flatMap { Int32($0) },
                        originalOffset: row["original_offset"].flatMap { Int64($0) },
                        replayedAt: row["replayed_at"], replayedOffset: row["replayed_offset"].flatMap { Int64($0) })
    }

    /// Bound on rows one `list` returns.
    public static let listRowsMax = 10_000

    /// The organization's dead letters, oldest first; only those of `stream` when given (`stream`
    /// may name the stream or its `.dlq`): its `.dlq` records and its records refused or not projected.
    public static func list(_ db: PostgresConnection, org: Organization, stream: String? = nil, limit: Int = 1000) throws -> [DeadLetterEvent] {
        let dlqName = stream.map { DeadLetterStreams.isDeadLetterStream($0) ? $0 : DeadLetterStreams.name(for: $0) }
        let baseName = dlqName.flatMap(DeadLetterStreams.baseName(of:))
        return try db.query(
            """
            SELECT \(selectColumns) \(from)
            WHERE (s.org_id = $1 OR (d.dlq_stream_id IS NULL AND o.org_id = $1))
              AND ($2::text IS NULL OR s.name = $2 OR (d.dlq_stream_id IS NULL AND o.name = $4))
            ORDER BY d.failed_at, s.name, d.dlq_offset LIMIT $3
            """, [org.id.uuidString, dlqName, String(min(max(limit, 1), listRowsMax)), baseName]).map(decode)
    }

    /// One dead letter of the organization by its id.
    public static func find(_ db: PostgresConnection, org: Organization, id: String) throws -> DeadLetterEvent {
        guard let uuid = UUID(uuidString: id) else { throw DeadLetterError.unknownDeadLetter(id) }
        let rows = try db.query("SELECT \(selectColumns) \(from) WHERE (s.org_id = $1 OR (d.dlq_stream_id IS NULL AND o.org_id = $1)) AND d.id = $2",
                                [org.id.uuidString, uuid.uuidString])
        guard let row = rows.first else { throw DeadLetterError.unknownDeadLetter(id) }
        return try decode(row)
    }

    /// The stored record batch holding `offset` of (stream, partition), as stored (nil: none, e.g.
    /// retention dropped it).
    public static func batch(_ db: PostgresConnection, streamID: UUID, partition: Int32, containing offset: Int64) throws -> [UInt8]? {
        var found: [UInt8]?
        try db.queryBinary("""
            SELECT batch FROM event_batches
            WHERE stream_id = $1::uuid AND partition = $2::int AND base_offset <= $3::bigint AND last_offset >= $3::bigint
            ORDER BY base_offset DESC LIMIT 1
            """, [streamID.uuidString, String(partition), String(offset)]) { row in
            found = row.withBytes(0) { Array($0) }
        }
        return found
    }

    /// Marks a dead letter replayed at `offset` of its original stream. Only the first replay is
    /// recorded: a second one finds `replayed_at` set and throws `alreadyReplayed`.
    @discardableResult
    public static func markReplayed(_ db: PostgresConnection, org: Organization, id: UUID, offset: Int64) throws -> DeadLetterEvent {
        let rows = try db.query(
            """
            UPDATE dead_letter_events d SET replayed_at = CURRENT_TIMESTAMP, replayed_offset = $3
            FROM event_streams s
            WHERE s.id = d.dlq_stream_id AND s.org_id = $1 AND d.id = $2 AND d.replayed_at IS NULL
            RETURNING d.id
            """, [org.id.uuidString, id.uuidString, String(offset)])
        guard rows.first != nil else {
            let current = try find(db, org: org, id: id.uuidString)
            throw DeadLetterError.alreadyReplayed(id: id.uuidString.lowercased(), at: current.replayedAt ?? "?")
        }
        return try find(db, org: org, id: id.uuidString)
    }
}
