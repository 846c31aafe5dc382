import EventFlowProtocol
import EventFlowStorage
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// Runs the `GroupCoordinator` machine for the broker: parks JoinGroup and SyncGroup until the
/// machine answers them, runs its timers, and stores committed offsets in PostgreSQL (on the
/// control plane, never on the event loops).
public final class GroupService: Sendable {
    private struct State: Sendable {
        var machine: GroupCoordinator
        var joins: [RequestToken: EventLoopPromise<GroupCoordinator.JoinAnswer>] = [:]
        var syncs: [RequestToken: EventLoopPromise<(ErrorCode, [UInt8])>] = [:]
        var nextToken: UInt64 = 1
    }

    private let state: NIOLockedValueBox<State>
    private let timerLoop: any EventLoop
    private let controlPlane: ControlPlane
    private let logger: Logger
    /// Start of the monotonic clock the machine's milliseconds count from.
    private let epoch = NIODeadline.now()

    public init(configuration: GroupCoordinator.Configuration, controlPlane: ControlPlane, timerLoop: any EventLoop, logger: Logger) {
        self.state = NIOLockedValueBox(State(machine: GroupCoordinator(configuration: configuration)))
        self.controlPlane = controlPlane
        self.timerLoop = timerLoop
        self.logger = logger
    }

    private var nowMilliseconds: Int64 { (NIODeadline.now() - epoch).nanoseconds / 1_000_000 }

    // MARK: Membership

    func join(_ key: GroupCoordinator.GroupKey, _ join: GroupCoordinator.Join, on eventLoop: any EventLoop)
        -> EventLoopFuture<GroupCoordinator.JoinAnswer> {
        let promise = eventLoop.makePromise(of: GroupCoordinator.JoinAnswer.self)
        let now = nowMilliseconds
        let actions = state.withLockedValue { state -> [GroupCoordinator.Action] in
            let token = RequestToken(state.nextToken)
            state.nextToken += 1
            state.joins[token] = promise
            return state.machine.join(key, join, token: token, now: now)
        }
        perform(actions)
        return promise.futureResult
    }

    func sync(_ key: GroupCoordinator.GroupKey, memberID: String, generation: Int32, groupInstanceID: String?,
              assignments: [String: [UInt8]], on eventLoop: any EventLoop) -> EventLoopFuture<(ErrorCode, [UInt8])> {
        let promise = eventLoop.makePromise(of: (ErrorCode, [UInt8]).self)
        let now = nowMilliseconds
        let actions = state.withLockedValue { state -> [GroupCoordinator.Action] in
            let token = RequestToken(state.nextToken)
            state.nextToken += 1
            state.syncs[token] = promise
            return state.machine.sync(key, memberID: memberID, generation: generation, groupInstanceID: groupInstanceID,
                                      assignments: assignments, token: token, now: now)
        }
        perform(actions)
        return promise.futureResult
    }

    func heartbeat(_ key: GroupCoordinator.GroupKey, memberID: String, generation: Int32, groupInstanceID: String?) -> ErrorCode {
        let now = nowMilliseconds
        return state.withLockedValue { $0.machine.heartbeat(key, memberID: memberID, generation: generation,
                                                             groupInstanceID: groupInstanceID, now: now) }
    }

    func leave(_ key: GroupCoordinator.GroupKey, members: [(memberID: String, groupInstanceID: String?)]) -> [ErrorCode] {
        let now = nowMilliseconds
        let (codes, actions) = state.withLockedValue { $0.machine.leave(key, members: members, now: now) }
        perform(actions)
        return codes
    }

    func commitAllowed(_ key: GroupCoordinator.GroupKey, memberID: String, generation: Int32, groupInstanceID: String?) -> ErrorCode {
        let now = nowMilliseconds
        return state.withLockedValue { $0.machine.commitAllowed(key, memberID: memberID, generation: generation,
                                                                 groupInstanceID: groupInstanceID, now: now) }
    }

    /// Groups the coordinator holds (every state but Dead).
    var groupCount: Int { state.withLockedValue { $0.machine.groupCount } }

    func describe(_ key: GroupCoordinator.GroupKey) -> GroupCoordinator.GroupDescription? {
        state.withLockedValue { $0.machine.describe(key) }
    }

    func groups(of organizationID: UUID) -> [(groupID: String, state: GroupCoordinator.State, protocolType: String)] {
        state.withLockedValue { $0.machine.groups(of: organizationID) }
    }

    private func perform(_ actions: [GroupCoordinator.Action]) {
        for action in actions {
            switch action {
            case .answerJoin(let token, let answer):
                state.withLockedValue { $0.joins.removeValue(forKey: token) }?.succeed(answer)
            case .answerSync(let token, let code, let assignment):
                state.withLockedValue { $0.syncs.removeValue(forKey: token) }?.succeed((code, assignment))
            case .scheduleTimer(let deadline):
                let delay = max(deadline - nowMilliseconds, 0)
                timerLoop.scheduleTask(in: .milliseconds(delay)) { [self] in
                    let now = nowMilliseconds
                    perform(state.withLockedValue { $0.machine.timerFired(now: now) })
                }
            }
        }
    }

    // MARK: Offsets

    /// Stores the offsets of one OffsetCommit in one transaction.
    func store(_ group: String, _ commits: [CommittedOffset], on eventLoop: any EventLoop) -> EventLoopFuture<Void> {
        controlPlane.run(on: eventLoop) { db in try GroupOffsets.commit(db, group: group, commits) }
    }

    func committed(_ group: String, streams: [(id: UUID, partitions: [Int32]?)], on eventLoop: any EventLoop)
        -> EventLoopFuture<[UUID: [CommittedOffset]]> {
        controlPlane.run(on: eventLoop) { db in
            var result: [UUID: [CommittedOffset]] = [:]
            for stream in streams {
                result[stream.id] = try GroupOffsets.committed(db, group: group, streamID: stream.id, partitions: stream.partitions)
            }
            return result
        }
    }

    /// Deletes each group unless it has members: from the coordinator and its offsets from the
    /// database. GROUP_ID_NOT_FOUND for a group neither knows.
    func delete(_ keys: [GroupCoordinator.GroupKey], organizationID: UUID, on eventLoop: any EventLoop) -> EventLoopFuture<[ErrorCode]> {
        let live = state.withLockedValue { state in keys.map { ($0, state.machine.state(of: $0) != nil, state.machine.delete($0)) } }
        return controlPlane.run(on: eventLoop) { db in
            try live.map { key, known, code in
                guard code == .noError else { return code }
                let removed = try GroupOffsets.delete(db, organizationID: organizationID, group: key.groupID)
                return removed > 0 || known ? .noError : .groupIdNotFound
            }
        }
    }

    func storedGroups(organizationID: UUID, name: String?, on eventLoop: any EventLoop) -> EventLoopFuture<[StoredGroup]> {
        controlPlane.run(on: eventLoop) { db in try GroupOffsets.groups(db, organizationID: organizationID, name: name) }
    }
}
