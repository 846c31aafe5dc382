import EventFlowStorage
import EventFlowTestSupport
import Foundation
import Testing

/// Runs the built `eventflow` binary as a user would, and checks exit codes and output.
struct CLI {
    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    static let binary: String = {
        let candidates = [
            Bundle.main.executableURL?.deletingLastPathComponent().appendingPathComponent("eventflow").path,
            URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().appendingPathComponent(".build/debug/eventflow").path,
        ].compactMap { $0 }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[candidates.count - 1]
    }()

    var environment: [String: String]
    var directory: String

    init(databaseURL: String?, directory: String = TestCluster.temporaryDirectory("cli")) {
        var environment = ProcessInfo.processInfo.environment
        environment.removeValue(forKey: "DATABASE_URL")
        environment.removeValue(forKey: "EVENTFLOW_DATA_DIR")
        if let databaseURL { environment["DATABASE_URL"] = databaseURL }
        self.environment = environment
        self.directory = directory
    }

    @discardableResult
    func run(_ arguments: String..., stdin: String? = nil) throws -> Result {
        try Shell.run(Self.binary, arguments, environment: environment, directory: directory, stdin: stdin)
    }
}

@Suite struct CLITests {
    let cli: CLI

    init() throws {
        cli = CLI(databaseURL: try TestCluster.freshDatabase(migrated: false))
    }

    @Test func orgCreateAndListForPeopleAndScripts() throws {
        let created = try cli.run("org", "create", "acme")
        #expect(created.status == 0)
        #expect(created.stdout.hasPrefix("Created organization acme ("))
        let list = try cli.run("org", "list")
        #expect(list.stdout.split(separator: "\n").first?.hasPrefix("NAME") == true)
        #expect(list.stdout.contains("acme"))
        let json = try cli.run("org", "list", "--json")
        let orgs = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]]
        #expect(orgs?.map { $0["name"] as? String } == ["acme"])

        let duplicate = try cli.run("org", "create", "acme")
        #expect(duplicate.status == 1)
        #expect(duplicate.stderr == "error: organization 'acme' already exists\n")
        #expect(duplicate.stdout.isEmpty)
    }

    @Test func streamLifecycleWithPartitionsAndRetention() throws {
        try cli.run("org", "create", "acme")
        let created = try cli.run("stream", "create", "--org", "acme", "orders", "--partitions", "3", "--retention-hours", "48")
        #expect(created.status == 0)
        #expect(created.stdout.contains("Created stream orders with 3 partition(s), retention 48 h"))

        let describe = try cli.run("stream", "describe", "--org", "acme", "orders", "--json")
        let stream = try JSONSerialization.jsonObject(with: Data(describe.stdout.utf8)) as? [String: Any]
        #expect(stream?["partitions"] as? Int == 3)
        #expect(stream?["retentionHours"] as? Int == 48)

        let duplicate = try cli.run("stream", "create", "--org", "acme", "orders")
        #expect(duplicate.status == 1)
        #expect(duplicate.stderr == "error: stream 'orders' already exists in organization 'acme'\n")

        let altered = try cli.run("stream", "alter", "--org", "acme", "orders", "--retention-hours", "12")
        #expect(altered.status == 0)
        #expect(altered.stdout == "Altered stream orders: retention 12 h, analytics off, schema none\n")
        let projected = try cli.run("stream", "alter", "--org", "acme", "orders", "--analytics", "on")
        #expect(projected.stdout == "Altered stream orders: retention 12 h, analytics on, schema none\n")
        let described = try cli.run("stream", "describe", "--org", "acme", "orders")
        #expect(described.stdout.contains("analytics:   on\n  partition 0: end 0, projected to 0, lag 0\n"), "\(described.stdout)")
        let nothing = try cli.run("stream", "alter", "--org", "acme", "orders")
        #expect(nothing.status != 0)
        #expect(nothing.stderr.contains("nothing to change: give --retention-hours, --analytics on|off, --schema FILE or --no-schema"),
                "\(nothing.stderr)")
        let afterAlter = try cli.run("stream", "describe", "--org", "acme", "orders", "--json")
        #expect((try JSONSerialization.jsonObject(with: Data(afterAlter.stdout.utf8)) as? [String: Any])?["retentionHours"] as? Int == 12)
        let zero = try cli.run("stream", "alter", "--org", "acme", "orders", "--retention-hours", "0")
        #expect(zero.status == 1)
        #expect(zero.stderr == "error: invalid retention 0 hours: must be positive\n")
        let unknownStream = try cli.run("stream", "alter", "--org", "acme", "nope", "--retention-hours", "5")
        #expect(unknownStream.status == 1)
        #expect(unknownStream.stderr == "error: unknown stream 'nope' in organization 'acme'\n")

        let unknownOrg = try cli.run("stream", "create", "--org", "nope", "orders")
        #expect(unknownOrg.status == 1)
        #expect(unknownOrg.stderr == "error: unknown organization 'nope'\n")

        let deleted = try cli.run("stream", "delete", "--org", "acme", "orders")
        #expect(deleted.status == 0)
        let list = try cli.run("stream", "list", "--org", "acme", "--json")
        let remaining = try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [Any]
        #expect(remaining?.isEmpty == true)
        let withDeleted = try cli.run("stream", "list", "--org", "acme", "--include-deleted")
        #expect(withDeleted.stdout.contains("deleted"))
        let gone = try cli.run("stream", "describe", "--org", "acme", "orders")
        #expect(gone.status == 1)
        #expect(gone.stderr == "error: unknown stream 'orders' in organization 'acme'\n")
    }

    @Test func streamSchemaIsSetCheckedAndRemoved() throws {
        try cli.run("org", "create", "acme")
        let unsupported = cli.directory + "/unsupported.json"
        try #"{"type": "object", "anyOf": [{"required": ["id"]}]}"#.write(toFile: unsupported, atomically: true, encoding: .utf8)
        let refused = try cli.run("stream", "create", "--org", "acme", "orders", "--schema", unsupported)
        #expect(refused.status == 1)
        #expect(refused.stderr.hasPrefix("error: invalid schema at /anyOf: keyword 'anyOf' is not supported (EventFlow enforces type, "),
                "\(refused.stderr)")
        #expect(try cli.run("stream", "list", "--org", "acme", "--json").stdout.contains("orders") == false)

        let schema = cli.directory + "/order.json"
        try #"{"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}"#
            .write(toFile: schema, atomically: true, encoding: .utf8)
        let created = try cli.run("stream", "create", "--org", "acme", "orders", "--schema", schema)
        #expect(created.status == 0, "\(created.stderr)")
        let described = try cli.run("stream", "describe", "--org", "acme", "orders", "--json")
        let stored = (try JSONSerialization.jsonObject(with: Data(described.stdout.utf8)) as? [String: Any])?["schema"] as? String
        let storedObject = stored.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? NSDictionary }
        #expect(storedObject?["required"] as? [String] == ["id"])

        let missing = try cli.run("stream", "alter", "--org", "acme", "orders", "--schema", cli.directory + "/nope.json")
        #expect(missing.status != 0)
        #expect(missing.stderr.contains("cannot read schema file"), "\(missing.stderr)")
        let badAlter = try cli.run("stream", "alter", "--org", "acme", "orders", "--schema", unsupported)
        #expect(badAlter.status == 1)
        #expect(badAlter.stderr.hasPrefix("error: invalid schema at /anyOf"), "\(badAlter.stderr)")
        let removed = try cli.run("stream", "alter", "--org", "acme", "orders", "--no-schema")
        #expect(removed.stdout == "Altered stream orders: retention 168 h, analytics off, schema none\n", "\(removed.stderr)")
        let set = try cli.run("stream", "alter", "--org", "acme", "orders", "--schema", schema)
        #expect(set.stdout == "Altered stream orders: retention 168 h, analytics off, schema set\n", "\(set.stderr)")
    }

    @Test func userCreateHashesAndRejectsBadEmail() throws {
        try cli.run("org", "create", "acme")
        let bad = try cli.run("user", "create", "--org", "acme", "--email", "not-an-email", "--password", "long-enough")
        #expect(bad.status == 1)
        #expect(bad.stderr == "error: invalid email address 'not-an-email'\n")
        let ok = try cli.run("user", "create", "--org", "acme", "--email", "ada@example.com", "--role", "admin", "--password-stdin",
                             stdin: "long-enough-secret\n")
        #expect(ok.status == 0)
        #expect(ok.stdout.hasPrefix("Created user ada@example.com (admin)"))
        let list = try cli.run("user", "list", "--org", "acme", "--json")
        let users = try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: Any]]
        #expect(users?.first?["email"] as? String == "ada@example.com")
        #expect(!list.stdout.contains("long-enough-secret"))
        let db = try PostgresConnection(url: cli.environment["DATABASE_URL"] ?? "")
        defer { db.close() }
        #expect(Users.authenticateForTest(db, "ada@example.com", "long-enough-secret"))
    }

    @Test func apiKeyIsShownOnceAndRevokedKeysAreRefused() throws {
        try cli.run("org", "create", "acme")
        let created = try cli.run("apikey", "create", "--org", "acme", "--label", "ingest", "--json")
        #expect(created.status == 0)
        let key = try JSONSerialization.jsonObject(with: Data(created.stdout.utf8)) as? [String: Any]
        let id = try #require(key?["id"] as? String)
        let secret = try #require(key?["secret"] as? String)
        #expect(secret.hasPrefix("efs_"))

        let list = try cli.run("apikey", "list", "--org", "acme")
        #expect(list.stdout.contains(id))
        #expect(!list.stdout.contains(secret))

        let db = try PostgresConnection(url: cli.environment["DATABASE_URL"] ?? "")
        defer { db.close() }
        #expect(try APIKeys.authenticate(db, id: id, secret: secret).label == "ingest")

        let revoked = try cli.run("apikey", "revoke", id)
        #expect(revoked.status == 0)
        #expect(revoked.stdout.hasPrefix("Revoked API key \(id)"))
        #expect(throws: TenancyError.apiKeyRevoked(id)) { try APIKeys.authenticate(db, id: id, secret: secret) }

        let unknown = try cli.run("apikey", "revoke", UUID().uuidString)
        #expect(unknown.status == 1)
        #expect(unknown.stderr.hasPrefix("error: unknown API key"))
    }

    @Test func migrateAppliesThenReportsUpToDateAndStatus() throws {
        let first = try cli.run("migrate")
        #expect(first.status == 0)
        #expect(first.stdout.contains("Applied 20261125090000_init"))
        let second = try cli.run("migrate")
        #expect(second.stdout.hasPrefix("Database is up to date"))
        let status = try cli.run("migrate", "--status", "--json")
        let entries = try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [[String: Any]]
        #expect(entries?.allSatisfy { $0["applied"] as? Bool == true } == true)
    }

    @Test func serveOnAPortInUseIsOneClearLine() throws {
        let busy = try #require(try TestCluster.cluster().port)  // PostgreSQL listens there
        let result = try cli.run("serve", "--host", "127.0.0.1", "--port", String(busy), "--plaintext")
        #expect(result.status == 1)
        #expect(result.stderr.hasSuffix("error: cannot listen on 127.0.0.1:\(busy): the port is already in use; choose another with --port\n"))
    }

    @Test func badArgumentsExitNonZeroWithUsage() throws {
        let result = try cli.run("stream", "create", "--org", "acme", "orders", "--partitions", "many")
        #expect(result.status != 0)
        #expect(result.stderr.contains("--partitions"))
    }
}

@Suite(.serialized) struct EmbeddedCLITests {
    @Test func adminCommandsStartTheEmbeddedDatabaseAndStopItAgain() throws {
        let cli = CLI(databaseURL: nil)
        let first = try cli.run("org", "create", "acme")
        #expect(first.status == 0, "\(first.stderr)")
        let stream = try cli.run("stream", "create", "--org", "acme", "orders", "--partitions", "3")
        #expect(stream.status == 0, "\(stream.stderr)")
        // Data lives in ./eventflow-data and survives between commands; no server is left running.
        #expect(FileManager.default.fileExists(atPath: cli.directory + "/eventflow-data/pgdata/PG_VERSION"))
        #expect(!FileManager.default.fileExists(atPath: cli.directory + "/eventflow-data/pgdata/postmaster.pid"))
        let list = try cli.run("stream", "list", "--org", "acme", "--json")
        #expect(list.stdout.contains("\"orders\""))
    }

    @Test func serveRunsUntilSIGTERMAndAdminCommandsUseItsCluster() throws {
        let cli = CLI(databaseURL: nil)
        let serve = Process()
        serve.executableURL = URL(fileURLWithPath: CLI.binary)
        serve.arguments = ["serve"] + ServeTestArguments.extra
        serve.environment = cli.environment
        serve.currentDirectoryURL = URL(fileURLWithPath: cli.directory)
        let err = Pipe()
        serve.standardError = err
        serve.standardOutput = FileHandle.nullDevice
        try serve.run()
        let log = ServeTestArguments.logUntilReady(serve, err)
        #expect(log.contains("EventFlow is ready"), "\(log)")
        #expect(log.contains("****"))  // the database URL is logged with its password masked
        let password = try String(contentsOfFile: cli.directory + "/eventflow-data/db-password", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(!log.contains(password))

        let pidFile = cli.directory + "/eventflow-data/pgdata/postmaster.pid"
        let created = try cli.run("org", "create", "acme")
        #expect(created.status == 0)
        // The admin command attached to serve's cluster and left it running.
        #expect(FileManager.default.fileExists(atPath: pidFile))
        let second = try cli.run("serve", "--port", "0")
        #expect(second.status == 1)
        #expect(second.stderr.contains("another `eventflow serve`"))

        serve.terminate()  // SIGTERM
        serve.waitUntilExit()
        #expect(serve.terminationStatus == 0)
        #expect(!FileManager.default.fileExists(atPath: pidFile))

        // Restart: the data is still there.
        let list = try cli.run("org", "list", "--json")
        #expect(list.stdout.contains("\"acme\""))
    }
}

enum ServeTestArguments {
    /// Flags that keep a test's `serve` off fixed ports.
    static let extra: [String] = ["--port", "0", "--host", "127.0.0.1", "--http-port", "0"]

    /// What `serve` wrote to standard error until its "EventFlow is ready" line (or its exit, or a minute).
    static func logUntilReady(_ serve: Process, _ err: Pipe) -> String {
        var log = ""
        let deadline = Date().addingTimeInterval(60)
        while !log.contains("EventFlow is ready"), Date() < deadline, serve.isRunning {
            let chunk = err.fileHandleForReading.availableData
            log += String(decoding: chunk, as: UTF8.self)
        }
        return log
    }

    /// The listening port in the "ready" line (`port=N`).
    static func readyPort(_ log: String) -> Int? {
        guard let line = log.split(separator: "\n").first(where: { $0.contains("EventFlow is ready") }),
              let match = line.firstMatch(of: /port=(\d+)/) else { return nil }
        return Int(match.1)
    }
}

/// `serve --tls-cert/--tls-key`: the broker presents exactly the certificate it was given.
@Suite struct ServeTLSTests {
    @Test func serveUsesTheCertificateAndKeyGivenWithTLSCertAndTLSKey() throws {
        let cli = CLI(databaseURL: try TestCluster.freshDatabase())
        let certificate = cli.directory + "/given-cert.pem", key = cli.directory + "/given-key.pem"
        let made = try Shell.run("/usr/bin/openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                                 "-nodes", "-keyout", key, "-out", certificate, "-days", "2",
                                 "-subj", "/CN=eventflow-given-certificate", "-addext", "subjectAltName=IP:127.0.0.1")
        try #require(made.status == 0, "\(made.stderr)")

        let alone = try cli.run("serve", "--tls-cert", certificate)
        #expect(alone.status != 0)
        #expect(alone.stderr.contains("--tls-cert and --tls-key go together"))

        let serve = Process()
        serve.executableURL = URL(fileURLWithPath: CLI.binary)
        serve.arguments = ["serve", "--tls-cert", certificate, "--tls-key", key] + ServeTestArguments.extra
        serve.environment = cli.environment
        serve.currentDirectoryURL = URL(fileURLWithPath: cli.directory)
        let err = Pipe()
        serve.standardError = err
        serve.standardOutput = FileHandle.nullDevice
        try serve.run()
        defer { serve.terminate(); serve.waitUntilExit() }
        let log = ServeTestArguments.logUntilReady(serve, err)
        let port = try #require(ServeTestArguments.readyPort(log), "\(log)")
        #expect(!log.contains("development certificate"))

        // A client that trusts only the given certificate completes the handshake, and the
        // certificate the broker presents is that file's.
        let client = try Shell.run("/usr/bin/openssl", "s_client", "-connect", "127.0.0.1:\(port)", "-CAfile", certificate,
                                   "-verify_return_error", "-showcerts", stdin: "")
        #expect(client.stdout.contains("Verify return code: 0 (ok)"), "\(client.stdout)\(client.stderr)")
        let presented = client.stdout.firstMatch(of: /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/).map { String($0.0) }
        let given = try String(contentsOfFile: certificate, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(presented == given)
        #expect(client.stdout.contains("eventflow-given-certificate"))

        // TLS 1.2 with forward secrecy and an AEAD cipher is served; a CBC suite is refused.
        let aead = try Shell.run("/usr/bin/openssl", "s_client", "-connect", "127.0.0.1:\(port)", "-CAfile", certificate,
                                 "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256", stdin: "")
        #expect(aead.status == 0, "\(aead.stdout)\(aead.stderr)")
        #expect(aead.stdout.contains("ECDHE-ECDSA-AES128-GCM-SHA256"))
        let cbc = try Shell.run("/usr/bin/openssl", "s_client", "-connect", "127.0.0.1:\(port)", "-CAfile", certificate,
                                "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA", stdin: "")
        #expect(cbc.status != 0, "\(cbc.stdout)")
    }
}

/// Runs a program with arguments and optional standard input; waits for it.
enum Shell {
    static func run(_ program: String, _ arguments: String..., stdin: String? = nil) throws -> CLI.Result {
        try run(program, arguments, stdin: stdin)
    }

    static func run(_ program: String, _ arguments: [String], environment: [String: String]? = nil,
                    directory: String? = nil, stdin: String? = nil) throws -> CLI.Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: program)
        process.arguments = arguments
        if let environment { process.environment = environment }
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        let out = Pipe(), err = Pipe(), input = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = input
        try process.run()
        if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
        try input.fileHandleForWriting.close()
        let stdoutData = out.fileHandleForReading.readDataToEndOfFile()
        let stderrData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return CLI.Result(status: process.terminationStatus, stdout: String(decoding: stdoutData, as: UTF8.self),
                          stderr: String(decoding: stderrData, as: UTF8.self))
    }
}

extension Users {
    static func authenticateForTest(_ db: PostgresConnection, _ email: String, _ password: String) -> Bool {
        (try? authenticate(db, email: email, password: password)) != nil
    }
}

/// `serve --log-format json`: every line the broker writes is one JSON object, for log shippers.
@Suite struct ServeLogFormatTests {
    @Test func serveWithLogFormatJSONWritesOneJSONObjectPerLine() throws {
        let cli = CLI(databaseURL: try TestCluster.freshDatabase())
        let wrongFormat = try cli.run("serve", "--log-format", "xml")
        #expect(wrongFormat.status != 0)
        #expect(wrongFormat.stderr.contains("--log-format"), "\(wrongFormat.stderr)")
        let wrongLevel = try cli.run("serve", "--log-level", "loud")
        #expect(wrongLevel.status != 0)
        #expect(wrongLevel.stderr.contains("--log-level must be one of trace, debug, info, notice, warning, error, critical"), "\(wrongLevel.stderr)")

        let serve = Process()
        serve.executableURL = URL(fileURLWithPath: CLI.binary)
        serve.arguments = ["serve", "--log-format", "json"] + ServeTestArguments.extra
        serve.environment = cli.environment
        serve.currentDirectoryURL = URL(fileURLWithPath: cli.directory)
        let err = Pipe()
        serve.standardError = err
        serve.standardOutput = FileHandle.nullDevice
        try serve.run()
        defer { serve.terminate(); serve.waitUntilExit() }
        var log = ServeTestArguments.logUntilReady(serve, err)
        while !log.hasSuffix("\n"), serve.isRunning { log += String(decoding: err.fileHandleForReading.availableData, as: UTF8.self) }
        let lines = log.split(separator: "\n")
        try #require(lines.count >= 3, "\(log)")
        var events: [[String: Any]] = []
        for line in lines {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8))
            events.append(try #require(object as? [String: Any], "not a JSON object: \(line)"))
        }
        let ready = try #require(events.first { ($0["message"] as? String)?.contains("EventFlow is ready") == true })
        #expect(ready["level"] as? String == "info")
        #expect(ready["label"] as? String == "eventflow.serve")
        let port = try #require((ready["metadata"] as? [String: String])?["port"].flatMap(Int.init))
        #expect(port > 0)
        let httpPort = try #require((ready["metadata"] as? [String: String])?["httpPort"].flatMap(Int.init))
        #expect(httpPort > 0 && httpPort != port)
        #expect(events.allSatisfy { $0["time"] is String && $0["level"] is String && $0["message"] is String })
    }
}
