import EventFlowProtocol
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// What every connection shares: configuration and the broker-wide services.
struct BrokerServices: Sendable {
    var configuration: BrokerConfiguration
    var batcher: WriteAheadBatcher
    var fetches: FetchService
    var groups: GroupService
    var requestBytes: RequestBytesGate
    var controlPlane: ControlPlane
    var streams: StreamDirectory
    var registry: ConnectionRegistry
    var advertised: NIOLockedValueBox<(host: String, port: Int32)>
    var logger: Logger
}

/// The open connections, for the connection bound, backpressure, revocation and shutdown.
final class ConnectionRegistry: Sendable {
    struct Entry: Sendable {
        var handler: NIOLoopBound<KafkaConnectionHandler>
        var eventLoop: any EventLoop
        var apiKeyID: UUID?
    }

    private let entries = NIOLockedValueBox<[ObjectIdentifier: Entry]>([:])
    private let closedPromises = NIOLockedValueBox<[EventLoopPromise<Void>]>([])

    /// Registers a connection unless `connectionsMax` are open.
    func register(_ id: ObjectIdentifier, _ entry: Entry, connectionsMax: Int) -> Bool {
        entries.withLockedValue { entries in
            guard entries.count < connectionsMax else { return false }
            entries[id] = entry
            return true
        }
    }

    func authenticated(_ id: ObjectIdentifier, apiKeyID: UUID) {
        entries.withLockedValue { $0[id]?.apiKeyID = apiKeyID }
    }

    func unregister(_ id: ObjectIdentifier) {
        let promises = entries.withLockedValue { entries -> [EventLoopPromise<Void>] in
            entries.removeValue(forKey: id)
            guard entries.isEmpty else { return [] }
            return closedPromises.withLockedValue { promises in defer { promises.removeAll() }; return promises }
        }
        for promise in promises { promise.succeed(()) }
    }

    var count: Int { entries.withLockedValue { $0.count } }

    var apiKeyIDs: Set<UUID> { Set(entries.withLockedValue { $0.values.compactMap(\.apiKeyID) }) }

    /// Runs `body` on each connection's event loop.
    func forEach(apiKeyIDs: Set<UUID>? = nil, _ body: @escaping @Sendable (KafkaConnectionHandler) -> Void) {
        let selected = entries.withLockedValue { entries in
            entries.values.filter { entry in apiKeyIDs.map { ids in entry.apiKeyID.map(ids.contains) ?? false } ?? true }
        }
        for entry in selected {
            let handler = entry.handler
            entry.eventLoop.execute { body(handler.value) }
        }
    }

    /// Completes once no connection is open.
    func allClosed(on eventLoop: any EventLoop) -> EventLoopFuture<Void> {
        let promise = eventLoop.makePromise(of: Void.self)
        let done = entries.withLockedValue { entries -> Bool in
            if entries.isEmpty { return true }
            closedPromises.withLockedValue { $0.append(promise) }
            return false
        }
        if done { promise.succeed(()) }
        return promise.futureResult
    }
}
