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
    /// Frames received before authentication (`unauthenticatedRequestBytesMax`), apart from
    /// `requestBytes` so unauthenticated peers cannot pause authenticated producers.
    var unauthenticatedBytes: RequestBytesGate
    var controlPlane: ControlPlane
    var streams: StreamDirectory
    var registry: ConnectionRegistry
    var advertised: NIOLockedValueBox<(host: String, port: Int32)>
    var metrics: BrokerMetrics
    var logger: Logger
}

/// The open connections, for the connection bound, backpressure, revocation and shutdown.
final class ConnectionRegistry: Sendable {
    struct Entry: Sendable {
        var handler: NIOLoopBound<KafkaConnectionHandler>
        var eventLoop: any EventLoop
        var apiKeyID: UUID?
        /// The peer's IP address, for `connectionsPerPeerMax`.
        var peer: String
    }

    enum Refusal: Error, Hashable, CustomStringConvertible {
        case connectionsMax(Int)
        case connectionsPerPeerMax(Int)

        var description: String {
            switch self {
            case .connectionsMax(let bound): "connectionsMax (\(bound)) reached"
            case .connectionsPerPeerMax(let bound): "connectionsPerPeerMax (\(bound)) reached for this peer address"
            }
        }
    }

    private struct Entries {
        var byID: [ObjectIdentifier: Entry] = [:]
        var perPeer: [String: Int] = [:]
    }

    private let state = NIOLockedValueBox(Entries())
    private let closedPromises = NIOLockedValueBox<[EventLoopPromise<Void>]>([])

    /// Registers a connection unless `connectionsMax` are open, or `connectionsPerPeerMax` from its address.
    func register(_ id: ObjectIdentifier, _ entry: Entry, connectionsMax: Int, connectionsPerPeerMax: Int) -> Refusal? {
        state.withLockedValue { state in
            guard state.byID.count < connectionsMax else { return .connectionsMax(connectionsMax) }
            let fromPeer = state.perPeer[entry.peer, default: 0]
            guard fromPeer < connectionsPerPeerMax else { return .connectionsPerPeerMax(connectionsPerPeerMax) }
            state.byID[id] = entry
            state.perPeer[entry.peer] = fromPeer + 1
            return nil
        }
    }

    func authenticated(_ id: ObjectIdentifier, apiKeyID: UUID) {
        state.withLockedValue { $0.byID[id]?.apiKeyID = apiKeyID }
    }

    func unregister(_ id: ObjectIdentifier) {
        let promises = state.withLockedValue { state -> [EventLoopPromise<Void>] in
            if let removed = state.byID.removeValue(forKey: id) {
                let left = state.perPeer[removed.peer, default: 1] - 1
                state.perPeer[removed.peer] = left > 0 ? left : nil
            }
            guard state.byID.isEmpty else { return [] }
            return closedPromises.withLockedValue { promises in defer { promises.removeAll() }; return promises }
        }
        for promise in promises { promise.succeed(()) }
    }

    var count: Int { state.withLockedValue { $0.byID.count } }

    var apiKeyIDs: Set<UUID> { Set(state.withLockedValue { $0.byID.values.compactMap(\.apiKeyID) }) }

    /// Runs `body` on each connection's event loop.
    func forEach(apiKeyIDs: Set<UUID>? = nil, _ body: @escaping @Sendable (KafkaConnectionHandler) -> Void) {
        let selected = state.withLockedValue { state in
            state.byID.values.filter { entry in apiKeyIDs.map { ids in entry.apiKeyID.map(ids.contains) ?? false } ?? true }
        }
        for entry in selected {
            let handler = entry.handler
            entry.eventLoop.execute { body(handler.value) }
        }
    }

    /// Completes once no connection is open.
    func allClosed(on eventLoop: any EventLoop) -> EventLoopFuture<Void> {
        let promise = eventLoop.makePromise(of: Void.self)
        let done = state.withLockedValue { state -> Bool in
            if state.byID.isEmpty { return true }
            closedPromises.withLockedValue { $0.append(promise) }
            return false
        }
        if done { promise.succeed(()) }
        return promise.futureResult
    }
}
