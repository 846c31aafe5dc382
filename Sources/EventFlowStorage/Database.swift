import Foundation
import Logging

/// Where EventFlow's database is: `DATABASE_URL` when set, otherwise the embedded cluster in the data folder.
public enum DatabaseLocation: Sendable, Equatable {
    case external(url: String)
    case embedded(dataDirectory: String, port: Int?)

    public static let defaultDataDirectory = "eventflow-data"

    /// `databaseURL` wins; then the `DATABASE_URL` environment variable; then the embedded cluster.
    public static func resolve(databaseURL: String?, dataDirectory: String?, port: Int?,
                               environment: [String: String] = ProcessInfo.processInfo.environment) -> DatabaseLocation {
        if let url = databaseURL ?? environment["DATABASE_URL"], !url.isEmpty {
            return .external(url: url)
        }
        let folder = dataDirectory ?? environment["EVENTFLOW_DATA_DIR"] ?? defaultDataDirectory
        return .embedded(dataDirectory: folder, port: port)
    }
}

/// An open database for one command or one `serve`: connects (starting the embedded cluster if needed),
/// and on `close` stops what it started.
public final class DatabaseSession: @unchecked Sendable {
    public let url: String
    public let embedded: EmbeddedPostgres?
    private let ownsServeClaim: Bool

    /// `tuning`: written into the embedded cluster's configuration before it starts (`serve`
    /// passes `PostgresLogTuning.forThisMachine()`; an empty one removes earlier settings).
    public init(_ location: DatabaseLocation, forServe: Bool = false, tuning: PostgresLogTuning? = nil) throws {
        switch location {
        case .external(let url):
            self.url = url
            self.embedded = nil
            self.ownsServeClaim = false
        case .embedded(let dataDirectory, let port):
            let cluster = try EmbeddedPostgres(dataDirectory: dataDirectory, port: port)
            if forServe, let pid = cluster.servingPid() {
                throw EmbeddedPostgresError.alreadyServed(path: cluster.dataDirectory, pid: pid)
            }
            self.url = try cluster.start(tuning: tuning)
            if forServe { try cluster.claimForServe() }
            self.embedded = cluster
            self.ownsServeClaim = forServe
        }
    }

    public func connect() throws -> PostgresConnection {
        try PostgresConnection(url: url)
    }

    /// Stops the embedded cluster if this session started it (or owns it as `serve`).
    public func close() throws {
        guard let embedded else { return }
        defer { if ownsServeClaim { embedded.releaseServeClaim() } }
        try embedded.stop()
    }
}
