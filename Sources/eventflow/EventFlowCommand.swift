import ArgumentParser
import EventFlowStorage
import Foundation
import Logging

@main
struct EventFlowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eventflow",
        abstract: "EventFlow: an event broker that keeps its log in PostgreSQL.",
        subcommands: [
            Serve.self, Migrate.self, OrgCommand.self, UserCommand.self, APIKeyCommand.self, StreamCommand.self, ProduceCommand.self,
            ConsumeCommand.self, GroupCommand.self, DeadLetterCommand.self,
        ]
    )
}

/// Where the database is. The same flags on every command, so admin commands reach the database `serve` uses.
struct DatabaseOptions: ParsableArguments {
    @Option(name: .long, help: "PostgreSQL URL (default: $DATABASE_URL; unset: the embedded cluster).")
    var databaseURL: String?

    @Option(name: .long, help: "Data folder of the embedded PostgreSQL (default: $EVENTFLOW_DATA_DIR or ./eventflow-data).")
    var dataDir: String?

    @Option(name: .long, help: "Port for the embedded PostgreSQL (default: a free port).")
    var dbPort: Int?

    var location: DatabaseLocation {
        DatabaseLocation.resolve(databaseURL: databaseURL, dataDirectory: dataDir, port: dbPort)
    }
}

struct OutputOptions: ParsableArguments {
    @Flag(name: .long, help: "Print JSON for scripts.")
    var json = false
}

/// A command-line failure: one line on stderr, exit status 1.
struct CommandFailure: Error, CustomStringConvertible {
    var description: String
}

/// Runs `body` against a migrated database, turning known errors into one clear line and exit 1.
func withDatabase<T>(_ options: DatabaseOptions, _ body: (PostgresConnection) throws -> T) throws -> T {
    do {
        let session = try DatabaseSession(options.location)
        defer { try? session.close() }
        let connection = try session.connect()
        defer { connection.close() }
        try Migrator(directory: try Migrator.locateDirectory()).migrate(connection)
        return try body(connection)
    } catch {
        throw cleanExit(error)
    }
}

func cleanExit(_ error: Error) -> Error {
    if error is ExitCode || error is CleanExit { return error }
    if let error = error as? ValidationError { return error }
    let message: String
    switch error {
    case let error as TenancyError: message = error.description
    case let error as MigrationError: message = error.description
    case let error as EmbeddedPostgresError: message = error.description
    case let error as DatabaseError: message = error.description
    case let error as CommandFailure: message = error.description
    default: message = String(describing: error)
    }
    FileHandle.standardError.write(Data("error: \(message)\n".utf8))
    return ExitCode.failure
}

func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

/// A plain aligned table for people.
func printTable(_ header: [String], _ rows: [[String]]) {
    for line in tableLines(header, rows) { print(line) }
}
