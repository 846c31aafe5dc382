import Foundation

/// Daily range partitions of the log (`event_batches`) and of `events`, created ahead of time.
///
/// There is no DEFAULT partition: a row for a day without a partition fails loudly instead of
/// landing where retention and pruning cannot reach it. The broker runs `ensure` at start and
/// then periodically, so today + `daysAhead` always exist.
public struct TimePartitions: Sendable {
    public static let partitionedTables = ["event_batches", "events"]
    public static let defaultDaysAhead = 7

    public var daysAhead: Int

    public init(daysAhead: Int = TimePartitions.defaultDaysAhead) {
        self.daysAhead = max(daysAhead, 1)
    }

    static let calendar: Calendar = {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? TimeZone(secondsFromGMT: 0)!
        return calendar
    }()

    /// `event_batches_p20261125` for the UTC day containing `date`.
    public static func partitionName(_ table: String, day date: Date) -> String {
        let parts = calendar.dateComponents([.year, .month, .day], from: date)
        return String(format: "%@_p%04d%02d%02d", table, parts.year ?? 0, parts.month ?? 0, parts.day ?? 0)
    }

    static func dayLiteral(_ date: Date) -> String {
        let parts = calendar.dateComponents([.year, .month, .day], from: date)
        return String(format: "%04d-%02d-%02d", parts.year ?? 0, parts.month ?? 0, parts.day ?? 0)
    }

    /// Creates the missing partitions for yesterday (late clocks) through today + daysAhead.
    /// Returns the names it created.
    @discardableResult
    public func ensure(_ db: PostgresConnection, now: Date = Date()) throws -> [String] {
        let today = Self.calendar.startOfDay(for: now)
        var created: [String] = []
        for offset in -1...daysAhead {
            guard let day = Self.calendar.date(byAdding: .day, value: offset, to: today),
                  let next = Self.calendar.date(byAdding: .day, value: 1, to: day) else { continue }
            for table in Self.partitionedTables {
                let name = Self.partitionName(table, day: day)
                let exists = try db.query("SELECT 1 FROM pg_class WHERE relname = $1 AND relkind = 'r'", [name])
                guard exists.isEmpty else { continue }
                let quoted = PostgresConnection.quoteIdentifier(name)
                do {
                    try db.transaction {
                        try db.execute("""
                            CREATE TABLE IF NOT EXISTS \(quoted) PARTITION OF \(PostgresConnection.quoteIdentifier(table))
                            FOR VALUES FROM ('\(Self.dayLiteral(day))') TO ('\(Self.dayLiteral(next))')
                            """)
                        if table == "event_batches" {
                            // Partitions do not reliably inherit the parent's storage setting.
                            try db.execute("ALTER TABLE \(quoted) ALTER COLUMN batch SET STORAGE EXTERNAL")
                        }
                    }
                    created.append(name)
                } catch let error as DatabaseError where error.sqlState == "42P07" || error.sqlState == "23505" {
                    // Created concurrently by another broker.
                }
            }
        }
        return created
    }

    /// The partitions of `table` that exist, oldest first.
    public static func existing(_ db: PostgresConnection, table: String) throws -> [String] {
        try db.query("""
            SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = $1 ORDER BY c.relname
            """, [table]).compactMap { $0["relname"] }
    }
}
