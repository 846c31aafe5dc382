import CLibPQ
import Foundation

/// An error reported by PostgreSQL or libpq, with the SQLSTATE when the server sent one.
public struct DatabaseError: Error, CustomStringConvertible, Sendable {
    public var sqlState: String?
    public var message: String
    /// The constraint named by the server for integrity violations (e.g. `users_email_key`).
    public var constraint: String?

    public init(sqlState: String? = nil, message: String, constraint: String? = nil) {
        self.sqlState = sqlState
        self.message = message
        self.constraint = constraint
    }

    public var description: String {
        if let sqlState { return "database error \(sqlState): \(message)" }
        return "database error: \(message)"
    }

    public var isUniqueViolation: Bool { sqlState == "23505" }
    public var isForeignKeyViolation: Bool { sqlState == "23503" }
    public var isCheckViolation: Bool { sqlState == "23514" }
    /// Connection-level failures (class 08), admin shutdown (57P01..03), and a lost socket.
    public var isConnectionFailure: Bool {
        guard let sqlState else { return true }
        return sqlState.hasPrefix("08") || sqlState.hasPrefix("57P")
    }
}

/// One row of a text-format result.
public struct Row: Sendable {
    public var values: [String?]
    public var columns: [String]

    public subscript(_ column: String) -> String? {
        guard let index = columns.firstIndex(of: column) else { return nil }
        return values[index]
    }

    public subscript(_ index: Int) -> String? { values[index] }
}

/// One row of a binary-format result (see `PostgresConnection.queryBinary`).
/// Valid only inside the `queryBinary` call that handed it out (it points into libpq's result).
public struct BinaryRow {
    fileprivate let result: OpaquePointer
    fileprivate let row: Int32

    fileprivate init(result: OpaquePointer, row: Int32) {
        self.result = result
        self.row = row
    }

    public func isNull(_ column: Int) -> Bool { PQgetisnull(result, row, Int32(column)) == 1 }

    /// The column's bytes (empty for NULL).
    public func withBytes<T>(_ column: Int, _ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
        let length = Int(PQgetlength(result, row, Int32(column)))
        guard length > 0, let value = PQgetvalue(result, row, Int32(column)) else { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        return try body(UnsafeRawBufferPointer(start: value, count: length))
    }

    public func byteCount(_ column: Int) -> Int { Int(PQgetlength(result, row, Int32(column))) }

    /// An `int8` column (0 for NULL or a wrong width).
    public func int64(_ column: Int) -> Int64 {
        withBytes(column) { bytes in
            guard bytes.count == 8 else { return 0 }
            return Int64(bigEndian: bytes.loadUnaligned(as: Int64.self))
        }
    }

    /// A `timestamp` column as unix milliseconds (binary timestamps are microseconds since 2000-01-01).
    public func timestampMilliseconds(_ column: Int) -> Int64 {
        let microseconds = int64(column)
        let milliseconds = microseconds / 1000 - (microseconds % 1000 < 0 ? 1 : 0)
        return milliseconds + 946_684_800_000
    }
}

/// A libpq connection. Not thread-safe: one owner at a time (a task or a dedicated thread).
///
/// Control-plane statements use text parameters and text results; the ingest path uses
/// binary `COPY` through `copyIn`.
public final class PostgresConnection {
    private var connection: OpaquePointer?
    public let url: String
    /// Called with the text of every statement sent (tests use it to see what a flush issues).
    public var onStatement: ((String) -> Void)?

    public init(url: String) throws {
        self.url = url
        guard let connection = PQconnectdb(url) else {
            throw DatabaseError(message: "libpq could not allocate a connection")
        }
        self.connection = connection
        guard PQstatus(connection) == CONNECTION_OK else {
            let message = Self.trimmedMessage(PQerrorMessage(connection))
            PQfinish(connection)
            self.connection = nil
            throw DatabaseError(sqlState: "08001", message: message)
        }
        // Server NOTICEs ("already exists, skipping") are not for the user's terminal.
        PQsetNoticeProcessor(connection, { _, _ in }, nil)
        // Timestamps are stored and partitioned in UTC, whatever the server's default.
        try execute("SET TIME ZONE 'UTC'")
    }

    deinit {
        if let connection { PQfinish(connection) }
    }

    public func close() {
        if let connection { PQfinish(connection) }
        connection = nil
    }

    public var isHealthy: Bool {
        guard let connection else { return false }
        return PQstatus(connection) == CONNECTION_OK
    }

    private func requireConnection() throws -> OpaquePointer {
        guard let connection else { throw DatabaseError(sqlState: "08003", message: "connection is closed") }
        return connection
    }

    static func trimmedMessage(_ cString: UnsafePointer<CChar>?) -> String {
        guard let cString else { return "unknown error" }
        return String(cString: cString).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private func error(from result: OpaquePointer?, connection: OpaquePointer) -> DatabaseError {
        guard let result else {
            return DatabaseError(sqlState: "08006", message: Self.trimmedMessage(PQerrorMessage(connection)))
        }
        let state = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
        let primary = PQresultErrorField(result, Int32(UInt8(ascii: "M"))).map { String(cString: $0) }
        let constraint = PQresultErrorField(result, Int32(UInt8(ascii: "n"))).map { String(cString: $0) }
        let message = primary ?? Self.trimmedMessage(PQresultErrorMessage(result))
        return DatabaseError(sqlState: state, message: message, constraint: constraint)
    }

    /// Runs one statement (or, without parameters, several separated by semicolons) and returns its rows.
    @discardableResult
    public func query(_ sql: String, _ parameters: [String?] = []) throws -> [Row] {
        let connection = try requireConnection()
        onStatement?(sql)
        let result: OpaquePointer?
        if parameters.isEmpty {
            result = PQexec(connection, sql)
        } else {
            result = try withCStringArray(parameters) { pointers in
                PQexecParams(connection, sql, Int32(parameters.count), nil, pointers, nil, nil, 0)
            }
        }
        defer { PQclear(result) }
        let status = result.map { PQresultStatus($0) } ?? PGRES_FATAL_ERROR
        switch status {
        case PGRES_COMMAND_OK, PGRES_EMPTY_QUERY:
            return []
        case PGRES_TUPLES_OK:
            guard let result else { return [] }
            let rowCount = Int(PQntuples(result))
            let columnCount = Int(PQnfields(result))
            let columns = (0..<columnCount).map { String(cString: PQfname(result, Int32($0))) }
            var rows: [Row] = []
            rows.reserveCapacity(rowCount)
            for r in 0..<rowCount {
                var values: [String?] = []
                values.reserveCapacity(columnCount)
                for c in 0..<columnCount {
                    if PQgetisnull(result, Int32(r), Int32(c)) == 1 {
                        values.append(nil)
                    } else {
                        values.append(String(cString: PQgetvalue(result, Int32(r), Int32(c))))
                    }
                }
                rows.append(Row(values: values, columns: columns))
            }
            return rows
        default:
            throw error(from: result, connection: connection)
        }
    }

    /// Runs one statement with binary results and hands each row to `body` without copying
    /// (the row is valid only inside the call). For bulk reads: `bytea` arrives as its bytes,
    /// not as hex text, and integers as their big-endian bytes.
    public func queryBinary(_ sql: String, _ parameters: [String?] = [], _ body: (BinaryRow) throws -> Void) throws {
        let connection = try requireConnection()
        onStatement?(sql)
        let result = try withCStringArray(parameters) { pointers in
            PQexecParams(connection, sql, Int32(parameters.count), nil, pointers, nil, nil, 1)
        }
        defer { PQclear(result) }
        let status = result.map { PQresultStatus($0) } ?? PGRES_FATAL_ERROR
        guard status == PGRES_TUPLES_OK, let result else {
            if status == PGRES_COMMAND_OK { return }
            throw error(from: result, connection: connection)
        }
        for row in 0..<PQntuples(result) {
            try body(BinaryRow(result: result, row: row))
        }
    }

    /// Runs statements that return no rows.
    public func execute(_ sql: String, _ parameters: [String?] = []) throws {
        try query(sql, parameters)
    }

    /// Runs `body` inside BEGIN/COMMIT; rolls back if it throws.
    public func transaction<T>(_ body: () throws -> T) throws -> T {
        try execute("BEGIN")
        do {
            let value = try body()
            try execute("COMMIT")
            return value
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }

    // MARK: COPY FROM STDIN

    /// Starts `COPY ... FROM STDIN`, lets `body` send data with `send`, then ends the copy.
    /// If `body` throws, the copy is aborted and the server discards everything sent.
    public func copyIn(_ copySQL: String, _ body: (_ send: (UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws {
        let connection = try requireConnection()
        onStatement?(copySQL)
        let start = PQexec(connection, copySQL)
        let startStatus = start.map { PQresultStatus($0) } ?? PGRES_FATAL_ERROR
        guard startStatus == PGRES_COPY_IN else {
            let failure = error(from: start, connection: connection)
            PQclear(start)
            throw failure
        }
        PQclear(start)
        let send: (UnsafeRawBufferPointer) throws -> Void = { bytes in
            guard bytes.count > 0 else { return }
            let rc = PQputCopyData(connection, bytes.baseAddress?.assumingMemoryBound(to: CChar.self), Int32(bytes.count))
            guard rc == 1 else {
                throw DatabaseError(sqlState: "08006", message: Self.trimmedMessage(PQerrorMessage(connection)))
            }
        }
        do {
            try body(send)
        } catch {
            _ = PQputCopyEnd(connection, "aborted by EventFlow")
            drainResults(connection)
            throw error
        }
        guard PQputCopyEnd(connection, nil) == 1 else {
            throw DatabaseError(sqlState: "08006", message: Self.trimmedMessage(PQerrorMessage(connection)))
        }
        var failure: DatabaseError?
        while let result = PQgetResult(connection) {
            if PQresultStatus(result) != PGRES_COMMAND_OK, failure == nil {
                failure = error(from: result, connection: connection)
            }
            PQclear(result)
        }
        if let failure { throw failure }
        if PQstatus(connection) != CONNECTION_OK {
            throw DatabaseError(sqlState: "08006", message: Self.trimmedMessage(PQerrorMessage(connection)))
        }
    }

    private func drainResults(_ connection: OpaquePointer) {
        while let result = PQgetResult(connection) { PQclear(result) }
    }
}

/// Text parameters as C strings. A NUL byte would end the C string early — libpq would send a
/// shorter value than the caller's, which PostgreSQL's text cannot hold anyway — so it is refused.
private func withCStringArray<R>(_ strings: [String?], _ body: ([UnsafePointer<CChar>?]) -> R) throws -> R {
    if let index = strings.firstIndex(where: { $0?.utf8.contains(0) == true }) {
        throw DatabaseError(sqlState: "22021", message: "parameter $\(index + 1) contains a NUL byte, which PostgreSQL text cannot hold")
    }
    let storage: [UnsafeMutablePointer<CChar>?] = strings.map { $0.map { strdup($0) } ?? nil }
    defer { for pointer in storage { free(pointer) } }
    return body(storage.map { $0.map { UnsafePointer($0) } })
}

extension PostgresConnection {
    /// Quotes an identifier for SQL (partition names are generated, but quoting keeps it safe).
    public static func quoteIdentifier(_ identifier: String) -> String {
        "\"" + identifier.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// A PostgreSQL array literal (`{"a",NULL}`) of text values, quoted and escaped, for a
    /// parameter cast to `text[]`, `int[]`, `uuid[]`...; nil elements are NULL.
    public static func arrayLiteral(_ values: [String?]) -> String {
        "{" + values.map { value in
            guard let value else { return "NULL" }
            return "\"" + value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
        }.joined(separator: ",") + "}"
    }

    /// Quotes a string literal for statements that cannot take parameters (DDL).
    public static func quoteLiteral(_ literal: String) -> String {
        "'" + literal.replacingOccurrences(of: "'", with: "''") + "'"
    }
}
