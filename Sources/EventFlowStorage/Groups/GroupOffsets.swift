import Crypto
import Foundation

/// Every event's id, derived from where it is in the log, so it costs no bytes and maps
/// straight back to a fetch: a name-based UUID (RFC 9562 version 5, SHA-1) in the stream's id
/// as namespace, of the name "partition:offset".
public enum EventID {
    public static func derive(streamID: UUID, partition: Int32, offset: Int64) -> UUID {
        var input = withUnsafeBytes(of: streamID.uuid) { Array($0) }
        input.append(contentsOf: Array("\(partition):\(offset)".utf8))
        var bytes = Array(Insecure.SHA1.hash(data: input).prefix(16))
        bytes[6] = (bytes[6] & 0x0F) | 0x50
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        return UUID(uuid: (bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
                           bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]))
    }
}

/// One partition's committed position.
public struct CommittedOffset: Hashable, Sendable {
    public var streamID: UUID
    public var partition: Int32
    /// The next offset the group will read.
    public var offset: Int64
    public var metadata: String?
    public var committedAt: Date?

    public init(streamID: UUID, partition: Int32, offset: Int64, metadata: String?, committedAt: Date? = nil) {
        self.streamID = streamID
        self.partition = partition
        self.offset = offset
        self.metadata = metadata
        self.committedAt = committedAt
    }
}

/// A group as stored: the seed's `consumer_groups` rows (one per stream) of one name.
public struct StoredGroup: Hashable, Sendable {
    public var name: String
    public var streams: [(id: UUID, name: String)]

    public static func == (lhs: StoredGroup, rhs: StoredGroup) -> Bool {
        lhs.name == rhs.name && lhs.streams.map(\.id) == rhs.streams.map(\.id)
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(name)
        hasher.combine(streams.map(\.id))
    }
}

/// Committed offsets of consumer groups. A group is a `consumer_groups` row per (stream, name)
/// of the key's organization (the seed's model: a group belongs to a stream); its offsets per
/// partition are `consumer_partition_offsets` rows, and the seed's `consumer_offsets` row keeps
/// the id of the last processed event of the group's latest commit on that stream.
public enum GroupOffsets {
    /// Bound on a committed offset's metadata (Kafka's `offset.metadata.max.bytes`).
    public static let metadataBytesMax = 4096

    /// Stores the commits in one transaction.
    public static func commit(_ db: PostgresConnection, group: String, _ commits: [CommittedOffset]) throws {
        guard !commits.isEmpty else { return }
        try db.transaction { try store(db, group: group, commits) }
    }

    /// The statements of `commit`, inside a transaction the caller holds (the analytics projection
    /// stores its position with the rows it projected).
    public static func store(_ db: PostgresConnection, group: String, _ commits: [CommittedOffset]) throws {
        let byStream = Dictionary(grouping: commits, by: \.streamID)
        for (streamID, partitions) in byStream.sorted(by: { $0.key.uuidString < $1.key.uuidString }) {
            let rows = try db.query("""
                INSERT INTO consumer_groups (stream_id, name) VALUES ($1::uuid, $2)
                ON CONFLICT (stream_id, name) DO UPDATE SET name = EXCLUDED.name RETURNING id
                """, [streamID.uuidString, group])
            guard let groupRowID = rows.first?["id"] else { throw DatabaseError(message: "consumer_groups upsert returned no id") }
            try db.execute("""
                INSERT INTO consumer_partition_offsets (consumer_group_id, partition, committed_offset, metadata, updated_at)
                SELECT $1::uuid, p, o, m, CURRENT_TIMESTAMP FROM unnest($2::int[], $3::bigint[], $4::text[]) AS t(p, o, m)
                ON CONFLICT (consumer_group_id, partition) DO UPDATE
                SET committed_offset = EXCLUDED.committed_offset, metadata = EXCLUDED.metadata, updated_at = EXCLUDED.updated_at
                """, [groupRowID, PostgresConnection.arrayLiteral(partitions.map { String($0.partition) }),
                      PostgresConnection.arrayLiteral(partitions.map { String($0.offset) }), PostgresConnection.arrayLiteral(partitions.map(\.metadata))])
            // The seed's one row per group: the last event the group processed (offset - 1) of this commit.
            let last = partitions.last { $0.offset > 0 }
            let eventID = last.map { EventID.derive(streamID: streamID, partition: $0.partition, offset: $0.offset - 1).uuidString }
            try db.execute("""
                INSERT INTO consumer_offsets (consumer_group_id, last_event_id, updated_at) VALUES ($1::uuid, $2::uuid, CURRENT_TIMESTAMP)
                ON CONFLICT (consumer_group_id) DO UPDATE
                SET last_event_id = COALESCE(EXCLUDED.last_event_id, consumer_offsets.last_event_id), updated_at = EXCLUDED.updated_at
                """, [groupRowID, eventID])
        }
    }

    /// The group's committed offsets on the stream (all partitions, or those given).
    public static func committed(_ db: PostgresConnection, group: String, streamID: UUID,
                                 partitions: [Int32]? = nil) throws -> [CommittedOffset] {
        guard !group.utf8.contains(0) else { return [] }  // no stored name holds a NUL (PostgreSQL text cannot)
        return try db.query("""
            SELECT o.partition, o.committed_offset, o.metadata, o.updated_at FROM consumer_groups g
            JOIN consumer_partition_offsets o ON o.consumer_group_id = g.id
            WHERE g.stream_id = $1::uuid AND g.name = $2 AND ($3::int[] IS NULL OR o.partition = ANY($3::int[]))
            ORDER BY o.partition
            """, [streamID.uuidString, group, partitions.map { PostgresConnection.arrayLiteral($0.map { String($0) }) }]).compactMap { row in
            guard let partition = row["partition"].flatMap({ Int32($0) }), let offset = row["committed_offset"].flatMap({ Int64($0) }) else {
                return nil
            }
            return CommittedOffset(streamID: streamID, partition: partition, offset: offset, metadata: row["metadata"],
                                   committedAt: row["updated_at"].flatMap(Self.parseTimestamp))
        }
    }

    /// One group's committed position on one partition, with the names a metric is labelled by.
    public struct Position: Hashable, Sendable {
        public var organization: String
        public var streamID: UUID
        public var stream: String
        public var group: String
        public var partition: Int32
        public var committedOffset: Int64
    }

    /// Every committed position of every group on an active stream, all organizations (the consumer-lag
    /// metric), at most `limit` of them, in a stable order.
    public static func positions(_ db: PostgresConnection, limit: Int) throws -> [Position] {
        try db.query("""
            SELECT o.name AS organization, s.id AS stream_id, s.name AS stream, g.name AS group_name,
                   p.partition, p.committed_offset
            FROM consumer_partition_offsets p
            JOIN consumer_groups g ON g.id = p.consumer_group_id
            JOIN event_streams s ON s.id = g.stream_id
            JOIN organizations o ON o.id = s.org_id
            WHERE s.is_active AND o.is_active
            ORDER BY o.name, s.name, g.name, p.partition
            LIMIT $1::int
            """, [String(max(limit, 0))]).compactMap { row in
            guard let organization = row["organization"], let streamID = row["stream_id"].flatMap(UUID.init(uuidString:)),
                  let stream = row["stream"], let group = row["group_name"], let partition = row["partition"].flatMap({ Int32($0) }),
                  let offset = row["committed_offset"].flatMap({ Int64($0) }) else { return nil }
            return Position(organization: organization, streamID: streamID, stream: stream, group: group,
                            partition: partition, committedOffset: offset)
        }
    }

    /// Every group name of the organization with its streams (active ones), by name.
    public static func groups(_ db: PostgresConnection, organizationID: UUID, name: String? = nil) throws -> [StoredGroup] {
        if let name, name.utf8.contains(0) { return [] }  // no stored name holds a NUL
        let rows = try db.query("""
            SELECT g.name, s.id AS stream_id, s.name AS stream_name FROM consumer_groups g
            JOIN event_streams s ON s.id = g.stream_id
            WHERE s.org_id = $1::uuid AND s.is_active AND ($2::text IS NULL OR g.name = $2)
              AND left(g.name, length($3)) <> $3
            ORDER BY g.name, s.name
            """, [organizationID.uuidString, name, EventProjection.internalGroupPrefix])
        var result: [StoredGroup] = []
        for row in rows {
            guard let group = row["name"], let id = row["stream_id"].flatMap(UUID.init(uuidString:)), let stream = row["stream_name"] else { continue }
            if result.last?.name == group { result[result.count - 1].streams.append((id, stream)) } else {
                result.append(StoredGroup(name: group, streams: [(id, stream)]))
            }
        }
        return result
    }

    /// Deletes the group's committed offsets and its rows on the organization's streams; returns
    /// how many streams it had.
    @discardableResult
    public static func delete(_ db: PostgresConnection, organizationID: UUID, group: String) throws -> Int {
        guard !group.utf8.contains(0), !group.hasPrefix(EventProjection.internalGroupPrefix) else { return 0 }
        return try db.transaction {
            let ids = try db.query("""
                SELECT g.id FROM consumer_groups g JOIN event_streams s ON s.id = g.stream_id
                WHERE s.org_id = $1::uuid AND g.name = $2
                """, [organizationID.uuidString, group]).compactMap { $0["id"] }
            guard !ids.isEmpty else { return 0 }
            let literal = PostgresConnection.arrayLiteral(ids)
            try db.execute("DELETE FROM consumer_partition_offsets WHERE consumer_group_id = ANY($1::uuid[])", [literal])
            try db.execute("DELETE FROM consumer_offsets WHERE consumer_group_id = ANY($1::uuid[])", [literal])
            try db.execute("DELETE FROM consumer_groups WHERE id = ANY($1::uuid[])", [literal])
            return ids.count
        }
    }

    static func parseTimestamp(_ text: String) -> Date? {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        for format in ["yyyy-MM-dd HH:mm:ss.SSS", "yyyy-MM-dd HH:mm:ss"] {
            formatter.dateFormat = format
            if let date = formatter.date(from: String(text.prefix(23))) { return date }
        }
        return nil
    }
}
