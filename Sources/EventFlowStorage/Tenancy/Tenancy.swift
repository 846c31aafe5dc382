import Foundation

/// Errors a person can act on; the CLI prints `description` as one line.
public enum TenancyError: Error, CustomStringConvertible, Equatable {
    case unknownOrganization(String)
    case duplicateOrganization(String)
    case invalidName(String, reason: String)
    case invalidEmail(String)
    case duplicateEmail(String)
    case invalidRole(String)
    case passwordTooShort(minimumCharacters: Int)
    case unknownStream(org: String, name: String)
    case duplicateStream(org: String, name: String)
    case deletedStreamNameReserved(org: String, name: String)
    case invalidPartitions(Int)
    case invalidRetention(Int)
    case partitionsCannotShrink(name: String, current: Int, requested: Int)
    /// A `<name>.dlq` stream asked for with something other than its one partition, or `<name>.dlq.dlq`.
    case invalidDeadLetterStream(String, reason: String)
    case invalidSchema(StreamSchemaError)
    case unknownAPIKey(String)
    case apiKeyRevoked(String)
    case wrongSecret

    public var description: String {
        switch self {
        case .unknownOrganization(let name): return "unknown organization '\(name)'"
        case .duplicateOrganization(let name): return "organization '\(name)' already exists"
        case .invalidName(let name, let reason): return "invalid name '\(name)': \(reason)"
        case .invalidEmail(let email): return "invalid email address '\(email)'"
        case .duplicateEmail(let email): return "a user with email '\(email)' already exists"
        case .invalidRole(let role): return "invalid role '\(role)': use admin or viewer"
        case .passwordTooShort(let minimum): return "password too short: at least \(minimum) characters"
        case .unknownStream(let org, let name): return "unknown stream '\(name)' in organization '\(org)'"
        case .duplicateStream(let org, let name): return "stream '\(name)' already exists in organization '\(org)'"
        case .deletedStreamNameReserved(let org, let name):
            return "stream '\(name)' in organization '\(org)' was deleted; its name stays reserved (its data is kept)"
        case .invalidPartitions(let count): return "invalid partition count \(count): use 1 to \(Streams.partitionsMax)"
        case .invalidRetention(let hours): return "invalid retention \(hours) hours: must be positive"
        case .partitionsCannotShrink(let name, let current, let requested):
            return "stream '\(name)' has \(current) partitions; the count can only grow (asked for \(requested))"
        case .invalidDeadLetterStream(let name, let reason): return "invalid dead-letter stream '\(name)': \(reason)"
        case .invalidSchema(let error): return error.description
        case .unknownAPIKey(let id): return "unknown API key '\(id)'"
        case .apiKeyRevoked(let id): return "API key '\(id)' is revoked"
        case .wrongSecret: return "wrong API key secret"
        }
    }
}

public struct Organization: Sendable, Equatable, Codable {
    public var id: UUID
    public var name: String
    public var createdAt: String
    public var isActive: Bool
}

public struct User: Sendable, Equatable, Codable {
    public var id: UUID
    public var orgID: UUID
    public var email: String
    public var role: String
    public var createdAt: String
    public var isActive: Bool
}

public struct APIKey: Sendable, Equatable, Codable {
    public var id: UUID
    public var orgID: UUID
    public var label: String?
    /// "admin" (may change topics) or "viewer".
    public var role: String
    public var createdAt: String
    public var revokedAt: String?

    public var isAdmin: Bool { role == "admin" }
}

public struct EventStream: Sendable, Equatable, Codable {
    public var id: UUID
    public var orgID: UUID
    public var name: String
    public var partitions: Int
    public var retentionHours: Int
    public var schema: String?
    public var createdAt: String
    public var isActive: Bool
    public var deletedAt: String?
    /// Whether the analytics projection copies the stream's records into `events`.
    public var analytics: Bool = false
}

let timestampSQL = #"to_char(%@ AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"#
func timestampColumn(_ column: String, as alias: String) -> String {
    String(format: timestampSQL, column) + " AS " + alias
}

func uuid(_ row: Row, _ column: String) throws -> UUID {
    guard let text = row[column], let value = UUID(uuidString: text) else {
        throw DatabaseError(message: "column \(column) is not a UUID")
    }
    return value
}

// MARK: Organizations

public enum Organizations {
    static let nameCharactersMax = 255

    static func validate(_ name: String) throws {
        guard !name.isEmpty, name.count <= nameCharactersMax else {
            throw TenancyError.invalidName(name, reason: "1 to \(nameCharactersMax) characters")
        }
        guard !name.contains(where: { $0.isNewline || $0 == "\0" }) else {
            throw TenancyError.invalidName(name, reason: "no control characters")
        }
    }

    static let columns = "id, name, \(timestampColumn("created_at", as: "created_at")), is_active"

    static func decode(_ row: Row) throws -> Organization {
        Organization(id: try uuid(row, "id"), name: row["name"] ?? "", createdAt: row["created_at"] ?? "",
                     isActive: row["is_active"] == "t")
    }

    public static func create(_ db: PostgresConnection, name: String) throws -> Organization {
        try validate(name)
        do {
            let rows = try db.query("INSERT INTO organizations (name) VALUES ($1) RETURNING \(columns)", [name])
            return try decode(rows[0])
        } catch let error as DatabaseError where error.isUniqueViolation {
            throw TenancyError.duplicateOrganization(name)
        }
    }

    public static func list(_ db: PostgresConnection) throws -> [Organization] {
        try db.query("SELECT \(columns) FROM organizations WHERE is_active ORDER BY name").map(decode)
    }

    /// Finds an active organization by name or id.
    public static func find(_ db: PostgresConnection, _ nameOrID: String) throws -> Organization {
        let rows: [Row]
        if let id = UUID(uuidString: nameOrID) {
            rows = try db.query("SELECT \(columns) FROM organizations WHERE id = $1 AND is_active", [id.uuidString])
        } else {
            rows = try db.query("SELECT \(columns) FROM organizations WHERE name = $1 AND is_active", [nameOrID])
        }
        guard let row = rows.first else { throw TenancyError.unknownOrganization(nameOrID) }
        return try decode(row)
    }
}

// MARK: Users

public enum Users {
    public static let passwordCharactersMin = 8
    static let roles: Set<String> = ["admin", "viewer"]

    static func validateEmail(_ email: String) throws {
        // One '@', a non-empty local part, a dotted domain, no spaces: what a login form accepts.
        let parts = email.split(separator: "@", omittingEmptySubsequences: false)
        guard email.count <= 320, parts.count == 2, !parts[0].isEmpty,
              parts[1].contains("."), !parts[1].hasPrefix("."), !parts[1].hasSuffix("."),
              !email.contains(where: { $0.isWhitespace }) else {
            throw TenancyError.invalidEmail(email)
        }
    }

    static let columns = "id, org_id, email, role, \(timestampColumn("created_at", as: "created_at")), is_active"

    static func decode(_ row: Row) throws -> User {
        User(id: try uuid(row, "id"), orgID: try uuid(row, "org_id"), email: row["email"] ?? "",
             role: row["role"] ?? "", createdAt: row["created_at"] ?? "", isActive: row["is_active"] == "t")
    }

    public static func create(_ db: PostgresConnection, org: Organization, email: String, password: String,
                              role: String, passwordRounds: Int = PasswordHasher.defaultRounds) throws -> User {
        let email = email.lowercased()
        try validateEmail(email)
        guard roles.contains(role) else { throw TenancyError.invalidRole(role) }
        guard password.count >= passwordCharactersMin else {
            throw TenancyError.passwordTooShort(minimumCharacters: passwordCharactersMin)
        }
        let hash = try PasswordHasher.hash(password, rounds: passwordRounds)
        do {
            let rows = try db.query(
                "INSERT INTO users (org_id, email, password_hash, role) VALUES ($1, $2, $3, $4) RETURNING \(columns)",
                [org.id.uuidString, email, hash, role])
            return try decode(rows[0])
        } catch let error as DatabaseError where error.isUniqueViolation {
            throw TenancyError.duplicateEmail(email)
        }
    }

    public static func list(_ db: PostgresConnection, org: Organization) throws -> [User] {
        try db.query("SELECT \(columns) FROM users WHERE org_id = $1 AND is_active ORDER BY email",
                     [org.id.uuidString]).map(decode)
    }

    /// Checks a login; nil for an unknown or inactive user or a wrong password.
    public static func authenticate(_ db: PostgresConnection, email: String, password: String) throws -> User? {
        let rows = try db.query("SELECT \(columns), password_hash FROM users WHERE email = $1 AND is_active",
                                [email.lowercased()])
        guard let row = rows.first, let stored = row["password_hash"] else { return nil }
        return PasswordHasher.verify(password, against: stored) ? try decode(row) : nil
    }
}

// MARK: API keys

public struct CreatedAPIKey: Sendable {
    public var key: APIKey
    /// Shown once; only its hash is stored.
    public var secret: String
}

public enum APIKeys {
    static func columns(prefix: String = "") -> String {
        "\(prefix)id AS id, \(prefix)org_id AS org_id, \(prefix)label AS label, \(prefix)role AS role, "
            + "\(timestampColumn(prefix + "created_at", as: "created_at")), \(timestampColumn(prefix + "revoked_at", as: "revoked_at"))"
    }
    static let columns = columns()

    static func decode(_ row: Row) throws -> APIKey {
        APIKey(id: try uuid(row, "id"), orgID: try uuid(row, "org_id"), label: row["label"], role: row["role"] ?? "viewer",
               createdAt: row["created_at"] ?? "", revokedAt: row["revoked_at"])
    }

    public static func create(_ db: PostgresConnection, org: Organization, label: String?, role: String = "admin") throws -> CreatedAPIKey {
        guard Users.roles.contains(role) else { throw TenancyError.invalidRole(role) }
        let secret = APIKeySecret.generate()
        let rows = try db.query(
            "INSERT INTO api_keys (org_id, key_hash, label, role) VALUES ($1, $2, $3, $4) RETURNING \(columns)",
            [org.id.uuidString, APIKeySecret.hash(secret), label, role])
        return CreatedAPIKey(key: try decode(rows[0]), secret: secret)
    }

    public static func list(_ db: PostgresConnection, org: Organization) throws -> [APIKey] {
        try db.query("SELECT \(columns) FROM api_keys WHERE org_id = $1 ORDER BY created_at, id",
                     [org.id.uuidString]).map(decode)
    }

    public static func revoke(_ db: PostgresConnection, id: String) throws -> APIKey {
        guard let keyID = UUID(uuidString: id) else { throw TenancyError.unknownAPIKey(id) }
        let rows = try db.query(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, CURRENT_TIMESTAMP) WHERE id = $1 RETURNING \(columns)",
            [keyID.uuidString])
        guard let row = rows.first else { throw TenancyError.unknownAPIKey(id) }
        return try decode(row)
    }

    /// Looks the key up by id and compares the secret's hash in constant time.
    /// Returns the key (with its organization) or throws why it was refused.
    public static func authenticate(_ db: PostgresConnection, id: String, secret: String) throws -> APIKey {
        guard let keyID = UUID(uuidString: id) else { throw TenancyError.unknownAPIKey(id) }
        let rows = try db.query(
            """
            SELECT \(columns(prefix: "k.")), k.key_hash FROM api_keys k JOIN organizations o ON o.id = k.org_id
            WHERE k.id = $1 AND o.is_active
            """, [keyID.uuidString])
        guard let row = rows.first, let stored = row["key_hash"] else { throw TenancyError.unknownAPIKey(id) }
        let key = try decode(row)
        // Compare before looking at revocation so both refusals cost the same.
        let matches = APIKeySecret.verify(secret, against: stored)
        guard matches else { throw TenancyError.wrongSecret }
        guard key.revokedAt == nil else { throw TenancyError.apiKeyRevoked(id) }
        return key
    }
}

// MARK: Streams

public enum Streams {
    public static let partitionsMax = 1024
    public static let defaultRetentionHours = 168
    static let nameCharactersMax = 249

    /// Stream names follow Kafka's topic rules, so every Kafka client accepts them.
    static func validate(_ name: String) throws {
        guard !name.isEmpty, name.count <= nameCharactersMax else {
            throw TenancyError.invalidName(name, reason: "1 to \(nameCharactersMax) characters")
        }
        guard name != "." && name != ".." else { throw TenancyError.invalidName(name, reason: "'.' and '..' are reserved") }
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        guard name.allSatisfy({ allowed.contains($0) }) else {
            throw TenancyError.invalidName(name, reason: "use letters, digits, '.', '_' and '-'")
        }
    }

    static let columns = """
        id, org_id, name, partitions, retention_hours, schema::text AS schema, \
        \(timestampColumn("created_at", as: "created_at")), is_active, \(timestampColumn("deleted_at", as: "deleted_at")), analytics
        """

    static func decode(_ row: Row) throws -> EventStream {
        EventStream(id: try uuid(row, "id"), orgID: try uuid(row, "org_id"), name: row["name"] ?? "",
                    partitions: Int(row["partitions"] ?? "") ?? 1, retentionHours: Int(row["retention_hours"] ?? "") ?? 0,
                    schema: row["schema"], createdAt: row["created_at"] ?? "", isActive: row["is_active"] == "t",
                    deletedAt: row["deleted_at"], analytics: row["analytics"] == "t")
    }

    public static func create(_ db: PostgresConnection, org: Organization, name: String, partitions: Int = 1,
                              retentionHours: Int = defaultRetentionHours, schema: String? = nil) throws -> EventStream {
        try validate(name)
        guard (1...partitionsMax).contains(partitions) else { throw TenancyError.invalidPartitions(partitions) }
        if let refusal = DeadLetterStreams.refusal(name: name, partitions: partitions) {
            throw TenancyError.invalidDeadLetterStream(name, reason: refusal)
        }
        guard retentionHours > 0 else { throw TenancyError.invalidRetention(retentionHours) }
        if let schema { try checkSchema(schema) }
        do {
            let rows = try db.query(
                """
                INSERT INTO event_streams (org_id, name, partitions, retention_hours, schema)
                VALUES ($1, $2, $3, $4, $5::jsonb) RETURNING \(columns)
                """, [org.id.uuidString, name, String(partitions), String(retentionHours), schema])
            return try decode(rows[0])
        } catch let error as DatabaseError where error.isUniqueViolation {
            let existing = try db.query("SELECT is_active FROM event_streams WHERE org_id = $1 AND name = $2",
                                        [org.id.uuidString, name])
            if existing.first?["is_active"] == "f" {
                throw TenancyError.deletedStreamNameReserved(org: org.name, name: name)
            }
            throw TenancyError.duplicateStream(org: org.name, name: name)
        }
    }

    public static func list(_ db: PostgresConnection, org: Organization, includeDeleted: Bool = false) throws -> [EventStream] {
        try db.query(
            "SELECT \(columns) FROM event_streams WHERE org_id = $1 AND (is_active OR $2) ORDER BY name",
            [org.id.uuidString, includeDeleted ? "true" : "false"]).map(decode)
    }

    public static func find(_ db: PostgresConnection, org: Organization, name: String) throws -> EventStream {
        let rows = try db.query("SELECT \(columns) FROM event_streams WHERE org_id = $1 AND name = $2 AND is_active",
                                [org.id.uuidString, name])
        guard let row = rows.first else { throw TenancyError.unknownStream(org: org.name, name: name) }
        return try decode(row)
    }

    /// Sets the stream's retention (Kafka's `retention.ms`, in whole hours). The next retention
    /// round applies it; a log start offset that already moved does not move back.
    @discardableResult
    public static func alter(_ db: PostgresConnection, org: Organization, name: String, retentionHours: Int) throws -> EventStream {
        guard retentionHours > 0, retentionHours <= Int(Int32.max) else { throw TenancyError.invalidRetention(retentionHours) }
        let rows = try db.query(
            "UPDATE event_streams SET retention_hours = $3 WHERE org_id = $1 AND name = $2 AND is_active RETURNING \(columns)",
            [org.id.uuidString, name, String(retentionHours)])
        guard let row = rows.first else { throw TenancyError.unknownStream(org: org.name, name: name) }
        return try decode(row)
    }

    /// Refuses a schema EventFlow cannot enforce exactly as written (StreamSchema).
    static func checkSchema(_ text: String) throws {
        do {
            _ = try StreamSchema(text: text)
        } catch {
            throw TenancyError.invalidSchema(error)
        }
    }

    /// Sets (or with nil removes) the stream's payload schema. Produce checks every record of a
    /// stream with a schema; brokers see the change within their stream lookup's cache time.
    @discardableResult
    public static func setSchema(_ db: PostgresConnection, org: Organization, name: String, _ schema: String?) throws -> EventStream {
        if let schema { try checkSchema(schema) }
        let rows = try db.query(
            "UPDATE event_streams SET schema = $3::jsonb WHERE org_id = $1 AND name = $2 AND is_active RETURNING \(columns)",
            [org.id.uuidString, name, schema])
        guard let row = rows.first else { throw TenancyError.unknownStream(org: org.name, name: name) }
        return try decode(row)
    }

    /// Turns the analytics projection of the stream on or off. Turned off, its position is kept: turned
    /// on again, the projector resumes where it stopped.
    @discardableResult
    public static func setAnalytics(_ db: PostgresConnection, org: Organization, name: String, _ enabled: Bool) throws -> EventStream {
        let rows = try db.query(
            "UPDATE event_streams SET analytics = $3 WHERE org_id = $1 AND name = $2 AND is_active RETURNING \(columns)",
            [org.id.uuidString, name, enabled ? "true" : "false"])
        guard let row = rows.first else { throw TenancyError.unknownStream(org: org.name, name: name) }
        return try decode(row)
    }

    /// Grows the stream to `partitions` (Kafka's CreatePartitions): partitions only ever grow,
    /// up to `partitionsMax`. The row is locked, so two growths cannot both pass the check.
    @discardableResult
    public static func growPartitions(_ db: PostgresConnection, org: Organization, name: String, to partitions: Int) throws -> EventStream {
        try db.transaction {
            let rows = try db.query(
                "SELECT \(columns) FROM event_streams WHERE org_id = $1 AND name = $2 AND is_active FOR UPDATE",
                [org.id.uuidString, name])
            guard let row = rows.first else { throw TenancyError.unknownStream(org: org.name, name: name) }
            let current = try decode(row)
            if DeadLetterStreams.isDeadLetterStream(name) {
                throw TenancyError.invalidDeadLetterStream(name, reason: "a dead-letter stream keeps its one partition")
            }
            guard partitions > current.partitions else {
                throw TenancyError.partitionsCannotShrink(name: name, current: current.partitions, requested: partitions)
            }
            guard partitions <= partitionsMax else { throw TenancyError.invalidPartitions(partitions) }
            let updated = try db.query("UPDATE event_streams SET partitions = $2 WHERE id = $1 RETURNING \(columns)",
                                       [current.id.uuidString, String(partitions)])
            return try decode(updated[0])
        }
    }

    /// Soft delete: the stream disappears from lists and the protocol, its rows and batches stay.
    @discardableResult
    public static func delete(_ db: PostgresConnection, org: Organization, name: String) throws -> EventStream {
        let rows = try db.query(
            """
            UPDATE event_streams SET is_active = false, deleted_at = CURRENT_TIMESTAMP
            WHERE org_id = $1 AND name = $2 AND is_active RETURNING \(columns)
            """, [org.id.uuidString, name])
        guard let row = rows.first else { throw TenancyError.unknownStream(org: org.name, name: name) }
        return try decode(row)
    }
}
