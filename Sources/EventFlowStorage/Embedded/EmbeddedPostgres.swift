import Foundation
#if canImport(Glibc)
import Glibc
#endif

public enum EmbeddedPostgresError: Error, CustomStringConvertible {
    case binariesNotFound(searched: [String])
    case portInUse(Int)
    case dataDirectoryOwnedByOther(path: String, owner: String, expected: String)
    case dataDirectoryNotReachable(path: String, user: String)
    case commandFailed(command: String, output: String)
    case alreadyServed(path: String, pid: Int32)

    public var description: String {
        switch self {
        case .binariesNotFound(let searched):
            return "PostgreSQL server binaries (initdb, pg_ctl) not found in \(searched.joined(separator: ", ")); install them (apt-get install postgresql) or set DATABASE_URL"
        case .portInUse(let port):
            return "port \(port) on 127.0.0.1 is already in use; choose another with --db-port or leave it unset to pick a free one"
        case .dataDirectoryOwnedByOther(let path, let owner, let expected):
            return "data folder \(path) is owned by \(owner), but the embedded PostgreSQL runs as \(expected); use another --data-dir or fix its owner"
        case .dataDirectoryNotReachable(let path, let user):
            return "data folder \(path) is not reachable by the '\(user)' user that runs the embedded PostgreSQL (a parent folder is private); use a --data-dir such as /var/lib/eventflow"
        case .commandFailed(let command, let output):
            let lastLines = output.split(separator: "\n").suffix(5).joined(separator: " | ")
            return "\(command) failed: \(lastLines)"
        case .alreadyServed(let path, let pid):
            return "another `eventflow serve` (pid \(pid)) is using data folder \(path)"
        }
    }
}

/// A private PostgreSQL cluster in a data folder, made and run with the machine's own `initdb` and `pg_ctl`.
///
/// Layout of the data folder:
/// - `pgdata/`      the cluster
/// - `postgres.log` the server's log
/// - `db-password`  the generated superuser password (mode 0600)
/// - `serve.pid`    the pid of the `eventflow serve` that owns the running cluster, if any
/// When started as root, the cluster runs as the `postgres` user, which owns the folder.
public final class EmbeddedPostgres: @unchecked Sendable {
    public static let databaseName = "eventflow"
    public static let superuser = "eventflow"

    public let dataDirectory: String
    public let requestedPort: Int?
    /// `max_connections` written into a new cluster's configuration (a broker holds up to ~6).
    public let connectionsMax: Int
    private let binDirectory: String
    private let runAsUser: String?
    /// True when this instance started the server, so `stop()` stops it.
    public private(set) var startedByUs = false
    public private(set) var port: Int?

    public var clusterDirectory: String { dataDirectory + "/pgdata" }
    var logFile: String { dataDirectory + "/postgres.log" }
    var passwordFile: String { dataDirectory + "/db-password" }
    var servePidFile: String { dataDirectory + "/serve.pid" }

    public init(dataDirectory: String, port: Int? = nil, connectionsMax: Int = 200) throws {
        self.dataDirectory = URL(fileURLWithPath: dataDirectory).standardizedFileURL.path
        self.requestedPort = port
        self.connectionsMax = max(connectionsMax, 10)
        self.binDirectory = try Self.locateBinaries()
        self.runAsUser = geteuid() == 0 ? "postgres" : nil
    }

    // MARK: Locating the binaries

    static func locateBinaries() throws -> String {
        var candidates: [String] = []
        if let fromPgConfig = try? Program.run("/usr/bin/pg_config", ["--bindir"]), fromPgConfig.exitCode == 0 {
            candidates.append(fromPgConfig.output.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []
        for version in versions.sorted(by: { (Int($0) ?? 0) > (Int($1) ?? 0) }) {
            candidates.append("/usr/lib/postgresql/\(version)/bin")
        }
        for candidate in candidates
        where FileManager.default.isExecutableFile(atPath: candidate + "/initdb")
            && FileManager.default.isExecutableFile(atPath: candidate + "/pg_ctl") {
            return candidate
        }
        throw EmbeddedPostgresError.binariesNotFound(searched: candidates.isEmpty ? ["pg_config --bindir", "/usr/lib/postgresql/*/bin"] : candidates)
    }

    // MARK: Running helpers as the cluster's owner

    private func runAsOwner(_ tool: String, _ arguments: [String]) throws -> ProgramResult {
        let path = binDirectory + "/" + tool
        // setsid: the server gets its own session, so a Ctrl-C meant for EventFlow does not reach
        // the postmaster; EventFlow drains first and then stops it itself.
        if let runAsUser {
            return try Program.run("/usr/sbin/runuser", ["-u", runAsUser, "--", "/usr/bin/setsid", "-w", path] + arguments)
        }
        return try Program.run("/usr/bin/setsid", ["-w", path] + arguments)
    }

    private func check(_ result: ProgramResult, _ command: String) throws {
        guard result.exitCode == 0 else {
            throw EmbeddedPostgresError.commandFailed(command: command, output: result.output)
        }
    }

    // MARK: Ownership

    private func expectedOwner() -> (uid: uid_t, name: String) {
        if let runAsUser, let entry = getpwnam(runAsUser) {
            return (entry.pointee.pw_uid, runAsUser)
        }
        let uid = geteuid()
        let name = getpwuid(uid).map { String(cString: $0.pointee.pw_name) } ?? "uid \(uid)"
        return (uid, name)
    }

    private func ownerName(of path: String) -> (uid: uid_t, name: String)? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        let name = getpwuid(info.st_uid).map { String(cString: $0.pointee.pw_name) } ?? "uid \(info.st_uid)"
        return (info.st_uid, name)
    }

    /// Creates the data folder (owned by the cluster's user) or checks the one that is there.
    private func prepareDataDirectory() throws {
        let fm = FileManager.default
        let expected = expectedOwner()
        if !fm.fileExists(atPath: dataDirectory) {
            try fm.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true,
                                   attributes: [.posixPermissions: 0o700])
            if runAsUser != nil {
                guard chown(dataDirectory, expected.uid, getpwnam(expected.name)?.pointee.pw_gid ?? 0) == 0 else {
                    throw EmbeddedPostgresError.commandFailed(command: "chown \(dataDirectory)", output: String(cString: strerror(errno)))
                }
            }
        }
        if let owner = ownerName(of: dataDirectory), owner.uid != expected.uid {
            throw EmbeddedPostgresError.dataDirectoryOwnedByOther(path: dataDirectory, owner: owner.name, expected: expected.name)
        }
        if let runAsUser {
            let probe = try Program.run("/usr/sbin/runuser", ["-u", runAsUser, "--", "/usr/bin/test", "-w", dataDirectory])
            if probe.exitCode != 0 {
                throw EmbeddedPostgresError.dataDirectoryNotReachable(path: dataDirectory, user: runAsUser)
            }
        }
    }

    private func writeOwnedFile(_ path: String, _ contents: String) throws {
        let fm = FileManager.default
        guard fm.createFile(atPath: path, contents: Data(contents.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw EmbeddedPostgresError.commandFailed(command: "write \(path)", output: String(cString: strerror(errno)))
        }
        if runAsUser != nil {
            let owner = expectedOwner()
            _ = chown(path, owner.uid, getpwnam(owner.name)?.pointee.pw_gid ?? 0)
        }
    }

    private func password() throws -> String {
        if let data = FileManager.default.contents(atPath: passwordFile) {
            return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        var bytes = [UInt8](repeating: 0, count: 24)
        for i in bytes.indices { bytes[i] = UInt8.random(in: 0...255) }
        let generated = bytes.map { String(format: "%02x", $0) }.joined()
        try writeOwnedFile(passwordFile, generated + "\n")
        return generated
    }

    // MARK: Lifecycle

    public var isInitialized: Bool {
        FileManager.default.fileExists(atPath: clusterDirectory + "/PG_VERSION")
    }

    /// The port of the running cluster, from `postmaster.pid` (line 4), when the server is up.
    public func runningPort() -> Int? {
        guard let result = try? runAsOwner("pg_ctl", ["-D", clusterDirectory, "status"]), result.exitCode == 0 else {
            return nil
        }
        guard let data = FileManager.default.contents(atPath: clusterDirectory + "/postmaster.pid") else { return nil }
        let lines = String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.count > 3 else { return nil }
        return Int(lines[3].trimmingCharacters(in: .whitespaces))
    }

    private func initialize() throws {
        let password = try self.password()
        _ = password
        let result = try runAsOwner("initdb", [
            "-D", clusterDirectory, "-U", Self.superuser, "--pwfile=\(passwordFile)",
            "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
        ])
        try check(result, "initdb")
        // Loopback TCP only; durability settings stay at PostgreSQL's safe defaults (fsync on).
        let settings = """

            # EventFlow embedded cluster
            listen_addresses = '127.0.0.1'
            unix_socket_directories = ''
            max_connections = \(connectionsMax)
            shared_buffers = 256MB
            max_wal_size = 4GB
            checkpoint_timeout = 15min
            timezone = 'UTC'
            log_timezone = 'UTC'

            """
        let conf = clusterDirectory + "/postgresql.conf"
        guard let handle = FileHandle(forWritingAtPath: conf) else {
            throw EmbeddedPostgresError.commandFailed(command: "write \(conf)", output: "cannot open")
        }
        handle.seekToEndOfFile()
        handle.write(Data(settings.utf8))
        handle.closeFile()
    }

    static func isPortFree(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }

    static func freePort() -> Int? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
        guard bound else { return nil }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) == 0 }
        }
        return named ? Int(UInt16(bigEndian: address.sin_port)) : nil
    }

    // MARK: Tuning for the log

    /// The file `serve` writes its settings into (in the cluster folder, included last by
    /// `postgresql.conf`, so it overrides what `initdb` and older versions wrote there).
    static let tuningFileName = "eventflow-tuning.conf"
    var tuningFile: String { clusterDirectory + "/" + Self.tuningFileName }

    /// Writes `settings` into the tuning file (replacing it) and makes sure `postgresql.conf` includes it.
    func writeTuning(_ settings: PostgresLogTuning) throws {
        try writeOwnedFile(tuningFile, settings.configurationText)
        let conf = clusterDirectory + "/postgresql.conf"
        let text = (try? String(contentsOfFile: conf, encoding: .utf8)) ?? ""
        let include = "include_if_exists = '\(Self.tuningFileName)'"
        guard !text.contains(include) else { return }
        guard let handle = FileHandle(forWritingAtPath: conf) else {
            throw EmbeddedPostgresError.commandFailed(command: "write \(conf)", output: "cannot open")
        }
        handle.seekToEndOfFile()
        handle.write(Data("\n# Written by `eventflow serve` (the log's WAL, checkpoint and autovacuum settings)\n\(include)\n".utf8))
        handle.closeFile()
    }

    /// Makes the cluster if needed and starts it, or attaches to it if it already runs.
    /// With `tuning` (what `serve` passes), its settings are written first; a cluster already
    /// running reloads them (those that need a restart apply at its next start).
    /// Returns the connection URL of the `eventflow` database.
    @discardableResult
    public func start(tuning: PostgresLogTuning? = nil) throws -> String {
        try prepareDataDirectory()
        if !isInitialized { try initialize() }
        if let tuning { try writeTuning(tuning) }
        if let running = runningPort() {
            port = running
            startedByUs = false
            let url = try ensureDatabase()
            if tuning != nil {
                let db = try PostgresConnection(url: url)
                defer { db.close() }
                _ = try db.query("SELECT pg_reload_conf()")
            }
            return url
        }
        let chosen: Int
        if let requestedPort {
            guard Self.isPortFree(requestedPort) else { throw EmbeddedPostgresError.portInUse(requestedPort) }
            chosen = requestedPort
        } else {
            guard let free = Self.freePort() else { throw EmbeddedPostgresError.commandFailed(command: "pick a free port", output: "") }
            chosen = free
        }
        let result = try runAsOwner("pg_ctl", [
            "-D", clusterDirectory, "-l", logFile, "-w", "-t", "60", "-o", "-p \(chosen)", "start",
        ])
        if result.exitCode != 0 {
            // Another EventFlow process may have started it at the same moment: attach to it.
            if let running = runningPort() {
                port = running
                startedByUs = false
                return try ensureDatabase()
            }
            let log = (try? String(contentsOfFile: logFile, encoding: .utf8)) ?? ""
            throw EmbeddedPostgresError.commandFailed(command: "pg_ctl start", output: result.output + "\n" + log)
        }
        port = chosen
        startedByUs = true
        return try ensureDatabase()
    }

    /// Connection URL for a database of this cluster.
    public func url(database: String = EmbeddedPostgres.databaseName) throws -> String {
        guard let port else { throw EmbeddedPostgresError.commandFailed(command: "connect", output: "cluster is not running") }
        return "postgresql://\(Self.superuser):\(try password())@127.0.0.1:\(port)/\(database)?connect_timeout=10"
    }

    private func ensureDatabase() throws -> String {
        let admin = try PostgresConnection(url: try url(database: "postgres"))
        defer { admin.close() }
        let exists = try admin.query("SELECT 1 FROM pg_database WHERE datname = $1", [Self.databaseName])
        if exists.isEmpty {
            do {
                try admin.execute("CREATE DATABASE \(PostgresConnection.quoteIdentifier(Self.databaseName))")
            } catch let error as DatabaseError where error.sqlState == "42P04" {
                // created concurrently by another EventFlow process
            }
        }
        return try url()
    }

    /// Stops the cluster if this instance started it (fast shutdown: clients are disconnected,
    /// committed data is safe).
    public func stop() throws {
        guard startedByUs else { return }
        let result = try runAsOwner("pg_ctl", ["-D", clusterDirectory, "-m", "fast", "-w", "-t", "60", "stop"])
        try check(result, "pg_ctl stop")
        startedByUs = false
    }

    // MARK: serve's claim on the folder

    /// Records that an `eventflow serve` owns this cluster; refuses if another live one does.
    public func claimForServe() throws {
        if let pid = servingPid() {
            throw EmbeddedPostgresError.alreadyServed(path: dataDirectory, pid: pid)
        }
        try writeOwnedFile(servePidFile, "\(getpid())\n")
        // A cluster left running by an admin command is now the server's to stop.
        startedByUs = true
    }

    public func releaseServeClaim() {
        try? FileManager.default.removeItem(atPath: servePidFile)
    }

    /// The pid of the live `eventflow serve` that owns the cluster, if any.
    public func servingPid() -> Int32? {
        guard let data = FileManager.default.contents(atPath: servePidFile),
              let pid = Int32(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)),
              pid != getpid(), kill(pid, 0) == 0 else {
            return nil
        }
        return pid
    }
}

/// Hides the password of a `postgresql://user:password@host/db` URL for logs.
public func maskedDatabaseURL(_ url: String) -> String {
    guard let schemeEnd = url.range(of: "://"),
          let at = url.range(of: "@", range: schemeEnd.upperBound..<url.endIndex) else { return url }
    let credentials = url[schemeEnd.upperBound..<at.lowerBound]
    guard let colon = credentials.firstIndex(of: ":") else { return url }
    return String(url[..<colon]) + ":****" + String(url[at.lowerBound...])
}
