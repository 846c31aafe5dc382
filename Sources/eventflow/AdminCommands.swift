import ArgumentParser
import EventFlowStorage
import Foundation

struct Migrate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Apply pending migrations (prisma/migrations).")

    @OptionGroup var database: DatabaseOptions
    @OptionGroup var output: OutputOptions
    @Flag(name: .long, help: "List applied and pending migrations without applying.")
    var status = false

    struct Entry: Encodable { var name: String; var applied: Bool; var appliedAt: String?; var checksum: String }

    func run() throws {
        do {
            let session = try DatabaseSession(database.location)
            defer { try? session.close() }
            let connection = try session.connect()
            defer { connection.close() }
            let migrator = try Migrator(directory: try Migrator.locateDirectory())
            if status {
                let entries = try migrator.status(connection).map {
                    Entry(name: $0.name, applied: $0.isApplied, appliedAt: $0.appliedAt, checksum: $0.checksum)
                }
                if output.json { try printJSON(entries); return }
                printTable(["MIGRATION", "STATUS", "APPLIED AT"],
                           entries.map { [$0.name, $0.applied ? "applied" : "pending", $0.appliedAt ?? "-"] })
            } else {
                let applied = try migrator.migrate(connection)
                if output.json { try printJSON(["applied": applied]); return }
                if applied.isEmpty {
                    print("Database is up to date (\(migrator.migrations.count) migrations applied).")
                } else {
                    for name in applied { print("Applied \(name)") }
                }
            }
        } catch {
            throw cleanExit(error)
        }
    }
}

// MARK: org

struct OrgCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "org", abstract: "Manage organizations.", subcommands: [Create.self, List.self])

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create an organization.")
        @Argument(help: "Organization name.") var name: String
        @OptionGroup var database: DatabaseOptions
        @OptionGroup var output: OutputOptions

        func run() throws {
            let org = try withDatabase(database) { try Organizations.create($0, name: name) }
            if output.json { try printJSON(org) } else { print("Created organization \(org.name) (\(org.id.uuidString.lowercased()))") }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List organizations.")
        @OptionGroup var database: DatabaseOptions
        @OptionGroup var output: OutputOptions

        func run() throws {
            let orgs = try withDatabase(database) { try Organizations.list($0) }
            if output.json { try printJSON(orgs); return }
            printTable(["NAME", "ID", "CREATED"], orgs.map { [$0.name, $0.id.uuidString.lowercased(), $0.createdAt] })
        }
    }
}

// MARK: user

struct UserCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "user", abstract: "Manage dashboard users.", subcommands: [Create.self, List.self])

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a user (password hashed with scrypt).")
        @Option(help: "Organization name or id.") var org: String
        @Option(help: "Login email.") var email: String
        @Option(help: "admin or viewer.") var role: String = "viewer"
        @Option(help: "Password (or use --password-stdin).") var password: String?
        @Flag(help: "Read the password from the first line of stdin.") var passwordStdin = false
        @OptionGroup var database: DatabaseOptions
        @OptionGroup var output: OutputOptions

        func run() throws {
            let secret: String
            if passwordStdin {
                secret = readLine(strippingNewline: true) ?? ""
            } else if let password {
                secret = password
            } else {
                throw cleanExit(CommandFailure(description: "give --password or --password-stdin"))
            }
            let user = try withDatabase(database) { db in
                try Users.create(db, org: try Organizations.find(db, org), email: email, password: secret, role: role)
            }
            if output.json { try printJSON(user) } else { print("Created user \(user.email) (\(user.role)) \(user.id.uuidString.lowercased())") }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List an organization's users.")
        @Option(help: "Organization name or id.") var org: String
        @OptionGroup var database: DatabaseOptions
        @OptionGroup var output: OutputOptions

        func run() throws {
            let users = try withDatabase(database) { db in try Users.list(db, org: try Organizations.find(db, org)) }
            if output.json { try printJSON(users); return }
            printTable(["EMAIL", "ROLE", "ID", "CREATED"],
                       users.map { [$0.email, $0.role, $0.id.uuidString.lowercased(), $0.createdAt] })
        }
    }
}

// MARK: apikey

struct APIKeyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apikey", abstract: "Manage API keys (SASL PLAIN: username = key id, password = secret).",
        subcommands: [Create.self, List.self, Revoke.self])

    struct Created: Encodable { var id: String; var secret: String; var org: String; var label: String? }

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create an API key; the secret is printed once.")
        @Option(help: "Organization name or id.") var org: String
        @Option(help: "What the key is for.") var label: String?
        @OptionGroup var database: DatabaseOptions
        @OptionGroup var output: OutputOptions

        func run() throws {
            let (created, orgName) = try withDatabase(database) { db in
                let organization = try Organizations.find(db, org)
                return (try APIKeys.create(db, org: organization, label: label), organization.name)
            }
            let id = created.key.id.uuidString.lowercased()
            if output.json {
                try printJSON(Created(id: id, secret: created.secret, org: orgName, label: created.key.label))
                return
            }
            print("API key id:     \(id)")
            print("API key secret: \(created.secret)")
            print("The secret is shown only now; EventFlow stores only its hash.")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List an organization's API keys.")
        @Option(help: "Organization name or id.") var org: String
        @OptionGroup var database: DatabaseOptions
        @OptionGroup var output: OutputOptions

        func run() throws {
            let keys = try withDatabase(database) { db in try APIKeys.list(db, org: try Organizations.find(db, org)) }
            if output.json { try printJSON(keys); return }
            printTable(["ID", "LABEL", "CREATED", "REVOKED"],
                       keys.map { [$0.id.uuidString.lowercased(), $0.label ?? "-", $0.createdAt, $0.revokedAt ?? "-"] })
        }
    }

    struct Revoke: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke an API key (open connections are refused within a second).")
        @Argument(help: "API key id.") var id: String
        @OptionGroup var database: DatabaseOptions
        @OptionGroup var output: OutputOptions

        func run() throws {
            let key = try withDatabase(database) { try APIKeys.revoke($0, id: id) }
            if output.json { try printJSON(key) } else { print("Revoked API key \(key.id.uuidString.lowercased()) at \(key.revokedAt ?? "-")") }
        }
    }
}

// MARK: stream

struct StreamCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stream", abstract: "Manage event streams (Kafka topics).",
        subcommands: [Create.self, List.self, Describe.self, Alter.self, Delete.self])

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a stream.")
        @Option(help: "Organization name or id.") var org: String
        @Argument(help: "Stream name (letters, digits, '.', '_', '-').") var name: String
        @Option(help: "Number of partitions (1-\(Streams.partitionsMax)).") var partitions = 1
        @Option(help: "How long batches are kept, in hours.") var retentionHours = Streams.defaultRetentionHours
        @Option(help: "A JSON Schema (draft 2020-12 subset, docs/storage.md) every produced record's value must match.")
        var schema: String?
        @OptionGroup var database: DatabaseOptions
        @OptionGroup var output: OutputOptions

        func run() throws {
            let schemaText = try schema.map(readSchemaFile)
            let stream = try withDatabase(database) { db in
                try Streams.create(db, org: try Organizations.find(db, org), name: name, partitions: partitions,
                                   retentionHours: retentionHours, schema: schemaText)
            }
            if output.json { try printJSON(stream); return }
            print("Created stream \(stream.name) with \(stream.partitions) partition(s), retention \(stream.retentionHours) h (\(stream.id.uuidString.lowercased()))")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List an organization's streams.")
        @Option(help: "Organization name or id.") var org: String
        @Flag(help: "Include deleted streams.") var includeDeleted = false
        @OptionGroup var database: DatabaseOptions
        @OptionGroup var output: OutputOptions

        func run() throws {
            let streams = try withDatabase(database) { db in
                try Streams.list(db, org: try Organizations.find(db, org), includeDeleted: includeDeleted)
            }
            if output.json { try printJSON(streams); return }
            printTable(["NAME", "PARTITIONS", "RETENTION_H", "STATUS", "ID"], streams.map {
                [$0.name, String($0.partitions), String($0.retentionHours), $0.isActive ? "active" : "deleted",
                 $0.id.uuidString.lowercased()]
            })
        }
    }

    struct Describe: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a stream.")
        @Option(help: "Organization name or id.") var org: String
        @Argument(help: "Stream name.") var name: String
        @OptionGroup var database: DatabaseOptions
        @OptionGroup var output: OutputOptions

        /// The stream's fields and, per partition, its end and the analytics projection's position
        /// (`analyticsPartitions`, when the stream is or was projected).
        struct Described: Encodable {
            var stream: EventStream
            var analytics: [AnalyticsPartition]
            /// Rows of the stream in `events`.
            var analyticsRows: Int?

            enum Keys: String, CodingKey { case analyticsPartitions, analyticsRows }

            func encode(to encoder: any Encoder) throws {
                try stream.encode(to: encoder)
                var container = encoder.container(keyedBy: Keys.self)
                if !analytics.isEmpty { try container.encode(analytics, forKey: .analyticsPartitions) }
                try container.encodeIfPresent(analyticsRows, forKey: .analyticsRows)
            }
        }

        struct AnalyticsPartition: Encodable {
            var partition: Int32
            var end: Int64
            var projected: Int64
            var lag: Int64
        }

        func run() throws {
            let described = try withDatabase(database) { db -> Described in
                let stream = try Streams.find(db, org: try Organizations.find(db, org), name: name)
                let ends = Dictionary(try EventBatchLog.nextOffsets(db, streamID: stream.id).map { ($0.partition, $0.next) },
                                      uniquingKeysWith: max)
                let projected = try EventProjection.positions(db, streamID: stream.id)
                let partitions = (0..<Int32(stream.partitions)).map { partition in
                    let end = ends[partition] ?? 0, position = projected[partition] ?? 0
                    return AnalyticsPartition(partition: partition, end: end, projected: position, lag: max(end - position, 0))
                }
                let projectedOnce = stream.analytics || !projected.isEmpty
                return Described(stream: stream, analytics: projectedOnce ? partitions : [],
                                 analyticsRows: projectedOnce ? try EventProjection.rowCount(db, streamID: stream.id) : nil)
            }
            let stream = described.stream
            if output.json { try printJSON(described); return }
            print("name:        \(stream.name)")
            print("id:          \(stream.id.uuidString.lowercased())")
            print("partitions:  \(stream.partitions)")
            print("retention:   \(stream.retentionHours) h")
            print("schema:      \(stream.schema ?? "-")")
            print("analytics:   \(stream.analytics ? "on" : "off")")
            for partition in described.analytics {
                print("  partition \(partition.partition): end \(partition.end), projected to \(partition.projected), lag \(partition.lag)")
            }
            if let rows = described.analyticsRows { print("  events rows: \(rows)") }
            print("created:     \(stream.createdAt)")
        }
    }

    struct Alter: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Change a stream's retention (Kafka's retention.ms, in hours; the broker's next maintenance round applies it) or its analytics projection into `events`.")
        @Option(help: "Organization name or id.") var org: String
        @Argument(help: "Stream name.") var name: String
        @Option(help: "How long batches are kept, in hours.") var retentionHours: Int?
        @Option(help: "on: the broker copies the stream's records into `events` (JSONB, GIN index); off: it stops, keeping its position.")
        var analytics: Switch?
        @Option(help: "A JSON Schema file every produced record's value must match from now on.") var schema: String?
        @Flag(help: "Remove the stream's schema: records are no longer checked.") var noSchema = false
        @OptionGroup var database: DatabaseOptions
        @OptionGroup var output: OutputOptions

        enum Switch: String, ExpressibleByArgument, CaseIterable {
            case on, off
        }

        func validate() throws {
            guard retentionHours != nil || analytics != nil || schema != nil || noSchema else {
                throw ValidationError("nothing to change: give --retention-hours, --analytics on|off, --schema FILE or --no-schema")
            }
            guard schema == nil || !noSchema else { throw ValidationError("--schema and --no-schema exclude each other") }
        }

        func run() throws {
            let schemaText = try schema.map(readSchemaFile)
            let stream = try withDatabase(database) { db -> EventStream in
                let organization = try Organizations.find(db, org)
                var stream = try Streams.find(db, org: organization, name: name)
                if let schemaText { stream = try Streams.setSchema(db, org: organization, name: name, schemaText) }
                if noSchema { stream = try Streams.setSchema(db, org: organization, name: name, nil) }
                if let retentionHours { stream = try Streams.alter(db, org: organization, name: name, retentionHours: retentionHours) }
                if let analytics { stream = try Streams.setAnalytics(db, org: organization, name: name, analytics == .on) }
                return stream
            }
            if output.json { try printJSON(stream); return }
            print("Altered stream \(stream.name): retention \(stream.retentionHours) h, analytics \(stream.analytics ? "on" : "off"), schema \(stream.schema == nil ? "none" : "set")")
        }
    }

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a stream (soft delete: its data is kept until its retention passes).")
        @Option(help: "Organization name or id.") var org: String
        @Argument(help: "Stream name.") var name: String
        @OptionGroup var database: DatabaseOptions
        @OptionGroup var output: OutputOptions

        func run() throws {
            let stream = try withDatabase(database) { db in
                try Streams.delete(db, org: try Organizations.find(db, org), name: name)
            }
            if output.json { try printJSON(stream); return }
            print("Deleted stream \(stream.name) (soft delete; data kept)")
        }
    }
}

/// A schema file's text ("-": standard input), or a clear error when it cannot be read.
func readSchemaFile(_ path: String) throws -> String {
    let data: Data
    if path == "-" {
        data = FileHandle.standardInput.readDataToEndOfFile()
    } else {
        guard let contents = FileManager.default.contents(atPath: path) else {
            throw ValidationError("cannot read schema file '\(path)'")
        }
        data = contents
    }
    guard let text = String(data: data, encoding: .utf8) else { throw ValidationError("schema file '\(path)' is not UTF-8") }
    return text
}
