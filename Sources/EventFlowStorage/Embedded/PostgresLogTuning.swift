import Foundation

/// PostgreSQL settings for EventFlow's log: an append-only table written by one connection in
/// group commits of ~1 MiB, already-compressed batch bytes, durable acknowledgements.
/// `eventflow serve` writes them into its embedded cluster (`EmbeddedPostgres.start(tuning:)`);
/// docs/postgres-tuning.md gives the same settings for a `DATABASE_URL` database, with the
/// measurements behind each. Durability is never traded: `fsync`, `synchronous_commit` and
/// `full_page_writes` stay on (written here explicitly, so a stray setting elsewhere cannot turn
/// them off for the embedded cluster).
public struct PostgresLogTuning: Hashable, Sendable {
    public struct Setting: Hashable, Sendable {
        public var name: String
        public var value: String
        /// Why, in one line (written as a comment above the setting).
        public var reason: String
    }

    public var settings: [Setting]

    public init(settings: [Setting]) {
        self.settings = settings
    }

    /// `shared_buffers`: 1/8 of the machine's memory, between 128 MB and 8 GB. The COPY itself
    /// goes through a 16 MB ring (PostgreSQL's bulk-write strategy) whatever the size; the buffers
    /// serve catch-up reads and the indexes, and the page cache does the rest.
    public static func sharedBuffersMegabytes(physicalMemoryBytes: UInt64) -> UInt64 {
        min(max(physicalMemoryBytes / 8 / (1 << 20), 128), 8 * 1024)
    }

    /// The settings for a machine with `physicalMemoryBytes` of memory.
    public static func forMachine(physicalMemoryBytes: UInt64) -> PostgresLogTuning {
        let sharedBuffers = sharedBuffersMegabytes(physicalMemoryBytes: physicalMemoryBytes)
        return PostgresLogTuning(settings: [
            Setting(name: "fsync", value: "on", reason: "durability: never off"),
            Setting(name: "synchronous_commit", value: "on", reason: "durability: a durable ack follows the WAL flush of its COMMIT"),
            Setting(name: "full_page_writes", value: "on", reason: "durability: torn pages are repaired from the WAL after a crash"),
            Setting(name: "shared_buffers", value: "\(sharedBuffers)MB", reason: "1/8 of memory (128 MB..8 GB): catch-up reads and indexes; the COPY uses a 16 MB ring anyway"),
            Setting(name: "wal_buffers", value: "64MB", reason: "several group commits (~1 MiB of WAL each) fit; with 8 MB the COPY backend wrote WAL itself 20,000-54,000 times per bench sweep (pg_stat_wal.wal_buffers_full), with 64 MB never"),
            Setting(name: "max_wal_size", value: "16GB", reason: "checkpoints by time, not WAL volume: with 4 GB one started every 2.2 GB of WAL (35-100 s in make bench), each ending in an fsync of every table file written"),
            Setting(name: "min_wal_size", value: "2GB", reason: "recycled WAL segments instead of new files"),
            Setting(name: "checkpoint_timeout", value: "15min", reason: "few checkpoints; crash recovery replays at most ~15 min of WAL"),
            Setting(name: "checkpoint_completion_target", value: "0.9", reason: "spread a checkpoint's writes over 90% of the interval"),
            Setting(name: "checkpoint_flush_after", value: "256kB", reason: "the checkpointer's writes are pushed to disk as it goes, not in one burst at its fsync"),
            Setting(name: "bgwriter_flush_after", value: "512kB", reason: "the same for the background writer"),
            Setting(name: "backend_flush_after", value: "2MB", reason: "the COPY backend's own table writes are pushed out every 2 MB instead of piling up as dirty pages that a COMMIT's WAL fsync later waits behind"),
            Setting(name: "wal_compression", value: "off", reason: "the batches are LZ4 already: compressing full-page images again costs CPU for nothing"),
            Setting(name: "autovacuum_vacuum_insert_threshold", value: "-1", reason: "no insert-triggered vacuum: on the log it re-read and re-dirtied every new TOAST page (an autovacuum worker was on the log's TOAST table in 65% of a bench sweep's seconds); anti-wraparound vacuum still freezes old partitions, dead-row vacuum of the control tables is unchanged"),
            Setting(name: "log_checkpoints", value: "on", reason: "each checkpoint's timing in postgres.log, to correlate with latency"),
            Setting(name: "log_autovacuum_min_duration", value: "10s", reason: "long autovacuum runs in postgres.log"),
            Setting(name: "log_min_duration_statement", value: "1s", reason: "statements slower than 1 s (a stalled COMMIT) in postgres.log"),
        ])
    }

    /// The settings for this machine (its physical memory).
    public static func forThisMachine() -> PostgresLogTuning {
        forMachine(physicalMemoryBytes: ProcessInfo.processInfo.physicalMemory)
    }

    /// The contents of the tuning file: each setting after its reason.
    public var configurationText: String {
        var text = "# EventFlow: settings for the append-only log, written by `eventflow serve` at each start.\n"
        text += "# Edits here are overwritten; set overrides with ALTER SYSTEM (postgresql.auto.conf wins).\n"
        for setting in settings {
            text += "\n# \(setting.reason)\n\(setting.name) = '\(setting.value)'\n"
        }
        return text
    }
}
