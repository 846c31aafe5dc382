import EventFlowStorage
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Control-plane database work (authentication, metadata, topic admin, producer ids) on a
/// small blocking thread pool with pooled libpq connections, never on the event loops.
public final class ControlPlane: Sendable {
    public let databaseURL: String
    private let threadPool: NIOThreadPool
    private let idleConnections = NIOLockedValueBox<[IdleConnection]>([])
    /// Bound on pooled idle connections (one per pool thread is enough).
    private let idleConnectionsMax: Int

    public init(databaseURL: String, threads: Int = 2) {
        self.databaseURL = databaseURL
        self.threadPool = NIOThreadPool(numberOfThreads: max(threads, 1))
        self.idleConnectionsMax = max(threads, 1)
        threadPool.start()
    }

    /// Runs `body` with a connection on the pool; the future completes on `eventLoop`.
    public func run<T: Sendable>(on eventLoop: any EventLoop,
                                 _ body: @escaping @Sendable (PostgresConnection) throws -> T) -> EventLoopFuture<T> {
        threadPool.runIfActive(eventLoop: eventLoop) { [self] in
            let db = try checkOut()
            do {
                let value = try body(db)
                checkIn(db)
                return value
            } catch let error as DatabaseError where error.isConnectionFailure {
                db.close()
                throw error
            } catch {
                checkIn(db)
                throw error
            }
        }
    }

    public func shutdown() {
        try? threadPool.syncShutdownGracefully()
        for idle in idleConnections.withLockedValue({ pool in defer { pool.removeAll() }; return pool }) { idle.db.close() }
    }

    private func checkOut() throws -> PostgresConnection {
        while let db = idleConnections.withLockedValue({ $0.popLast()?.db }) {
            if db.isHealthy { return db }
            db.close()
        }
        return try PostgresConnection(url: databaseURL)
    }

    private func checkIn(_ db: PostgresConnection) {
        guard db.isHealthy else { db.close(); return }
        let kept = idleConnections.withLockedValue { pool -> Bool in
            guard pool.count < idleConnectionsMax else { return false }
            pool.append(IdleConnection(db: db))
            return true
        }
        if !kept { db.close() }
    }
}

/// A pooled connection: only ever used by one pool thread at a time.
private struct IdleConnection: @unchecked Sendable {
    var db: PostgresConnection
}

/// A stream as a connection needs it to route a produce.
public struct ResolvedStream: Hashable, Sendable {
    public var id: UUID
    public var partitions: Int32
    /// A `<name>.dlq` stream: its batches get `dead_letter_events` rows when flushed.
    public var isDeadLetter: Bool = false
    /// The stream's payload schema: every produced record is checked against it. nil: none, and
    /// the stream's batches are never decoded beyond the structural check.
    public var schema: StreamSchema? = nil
    /// Set when the stored schema cannot be compiled (written around EventFlow's checks): every
    /// produce to the stream is refused with this message rather than stored unchecked.
    public var unusableSchema: String? = nil
}

/// Stream names → ids per organization, cached briefly, and registration of new streams'
/// partitions with the batcher (streams may be created by the CLI while the broker runs).
public final class StreamDirectory: Sendable {
    /// How long a name lookup is trusted; bounds how late a soft delete is noticed.
    public static let cacheMilliseconds: Int64 = 1000
    /// Bound on cached names.
    public static let cachedNamesMax = 100_000

    private struct Key: Hashable {
        var organizationID: UUID
        var name: String
    }

    private struct Entry {
        var stream: ResolvedStream?
        var expires: NIODeadline
    }

    private let cache = NIOLockedValueBox<[Key: Entry]>([:])
    private let controlPlane: ControlPlane
    private let batcher: WriteAheadBatcher

    public init(controlPlane: ControlPlane, batcher: WriteAheadBatcher) {
        self.controlPlane = controlPlane
        self.batcher = batcher
    }

    /// Resolves names of `organizationID` (nil = no such active stream). Hits complete at once.
    public func resolve(_ names: [String], organizationID: UUID, on eventLoop: any EventLoop) -> EventLoopFuture<[String: ResolvedStream?]> {
        let now = NIODeadline.now()
        var found: [String: ResolvedStream?] = [:]
        var missing: [String] = []
        cache.withLockedValue { cache in
            for name in names {
                if name.utf8.contains(0) {
                    // No stream name holds a NUL byte (PostgreSQL text cannot), so none is looked up.
                    found[name] = .some(nil)
                } else if let entry = cache[Key(organizationID: organizationID, name: name)], entry.expires > now {
                    found[name] = .some(entry.stream)
                } else {
                    missing.append(name)
                }
            }
        }
        guard !missing.isEmpty else { return eventLoop.makeSucceededFuture(found) }
        let batcher = batcher
        let cachedHits = found
        let missingNames = missing
        return controlPlane.run(on: eventLoop) { db -> [String: ResolvedStream?] in
            var looked: [String: ResolvedStream?] = [:]
            // A dead-letter stream is created by its first use (protocol/dead-letters.md); only
            // names ending in `.dlq` that missed the cache cost this statement.
            if missingNames.contains(where: DeadLetterStreams.isDeadLetterStream) {
                try DeadLetterStreams.ensure(db, organizationID: organizationID, names: missingNames)
            }
            let rows = try db.query(
                """
                SELECT id, name, partitions, schema::text AS schema FROM event_streams
                WHERE org_id = $1 AND is_active AND name = ANY($2::text[])
                """,
                [organizationID.uuidString, PostgresConnection.arrayLiteral(missingNames)])
            for name in missingNames { looked[name] = .some(nil) }
            for row in rows {
                guard let id = row["id"].flatMap(UUID.init(uuidString:)), let name = row["name"],
                      let partitions = row["partitions"].flatMap({ Int32($0) }) else { continue }
                var stream = ResolvedStream(id: id, partitions: partitions, isDeadLetter: DeadLetterStreams.isDeadLetterStream(name))
                if let text = row["schema"] {
                    do {
                        stream.schema = try StreamSchema(text: text)
                    } catch {
                        stream.unusableSchema = "the stream's stored schema cannot be used: \(error)"
                    }
                }
                looked[name] = .some(stream)
                if !batcher.isRegistered(StreamPartition(streamID: id, partition: partitions - 1)) {
                    try Self.register(db, streamID: id, batcher: batcher)
                }
            }
            return looked
        }.map { [cache] looked in
            let expires = NIODeadline.now() + .milliseconds(Self.cacheMilliseconds)
            cache.withLockedValue { cache in
                if cache.count + looked.count > Self.cachedNamesMax { cache.removeAll(keepingCapacity: true) }
                for (name, stream) in looked {
                    cache[Key(organizationID: organizationID, name: name)] = Entry(stream: stream, expires: expires)
                }
            }
            return cachedHits.merging(looked) { _, new in new }
        }
    }

    /// Registers every partition of the stream that the batcher does not know yet, at its next offset.
    private static func register(_ db: PostgresConnection, streamID: UUID, batcher: WriteAheadBatcher) throws {
        var next: [StreamPartition: Int64] = [:]
        for entry in try EventBatchLog.nextOffsets(db, streamID: streamID) {
            next[StreamPartition(streamID: entry.streamID, partition: entry.partition)] = entry.next
        }
        batcher.addPartitions(next)
    }

    /// After CreatePartitions grew a stream (on the control plane's connection `db`): its new
    /// partitions are registered with the batcher and the organization's cached names dropped, so
    /// a produce to a new partition is accepted at once.
    public func streamGrew(_ db: PostgresConnection, streamID: UUID, organizationID: UUID) throws {
        try Self.register(db, streamID: streamID, batcher: batcher)
        invalidate(organizationID: organizationID)
    }

    /// Forgets cached names of an organization (after CreateTopics / DeleteTopics on this broker).
    public func invalidate(organizationID: UUID) {
        cache.withLockedValue { cache in cache = cache.filter { $0.key.organizationID != organizationID } }
    }
}
