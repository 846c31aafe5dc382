import EventFlowProtocol
import Foundation

/// Kafka's classic consumer-group protocol, broker side: membership, generations and the
/// JoinGroup/SyncGroup rendezvous of every group, as Kafka's `ClassicGroup` keeps them.
///
/// A group is Empty (no members), PreparingRebalance (members (re)join; a join is answered when
/// every member has rejoined or the rebalance timeout ends, and a group that was empty first
/// waits `initialRebalanceDelayMilliseconds` for more members), CompletingRebalance (the leader
/// computes the assignment and sends it in SyncGroup; the others' SyncGroups wait for it),
/// Stable, or Dead (removed). Member metadata and assignments are opaque bytes: the leader
/// member assigns, never the broker. Members that neither heartbeat nor rejoin within their
/// session timeout are removed and the group rebalances.
///
/// Pure state machine: no I/O, no clock (monotonic milliseconds are passed in). Requests that
/// wait (JoinGroup, SyncGroup) carry a token the I/O layer answers when an action says so.
public struct GroupCoordinator: Sendable {
    public struct Configuration: Hashable, Sendable {
        public var sessionTimeoutMillisecondsMin: Int32
        public var sessionTimeoutMillisecondsMax: Int32
        /// Kafka's `group.initial.rebalance.delay.ms`.
        public var initialRebalanceDelayMilliseconds: Int64
        public var groupsMax: Int
        public var membersPerGroupMax: Int
        /// Bound on one member's protocol metadata (all protocols together).
        public var memberMetadataBytesMax: Int
        /// Bound on one member's assignment.
        public var assignmentBytesMax: Int

        public init(sessionTimeoutMillisecondsMin: Int32 = 6_000, sessionTimeoutMillisecondsMax: Int32 = 1_800_000,
                    initialRebalanceDelayMilliseconds: Int64 = 3_000, groupsMax: Int = 10_000, membersPerGroupMax: Int = 1_000,
                    memberMetadataBytesMax: Int = 64 << 10, assignmentBytesMax: Int = 1 << 20) {
            self.sessionTimeoutMillisecondsMin = sessionTimeoutMillisecondsMin
            self.sessionTimeoutMillisecondsMax = sessionTimeoutMillisecondsMax
            self.initialRebalanceDelayMilliseconds = max(initialRebalanceDelayMilliseconds, 0)
            self.groupsMax = max(groupsMax, 1)
            self.membersPerGroupMax = max(membersPerGroupMax, 1)
            self.memberMetadataBytesMax = memberMetadataBytesMax
            self.assignmentBytesMax = assignmentBytesMax
        }
    }

    /// A group's name within its organization (group ids are scoped per organization).
    public struct GroupKey: Hashable, Sendable, CustomStringConvertible {
        public var organizationID: UUID
        public var groupID: String
        public init(organizationID: UUID, groupID: String) {
            self.organizationID = organizationID
            self.groupID = groupID
        }
        public var description: String { groupID }
    }

    public enum State: String, Hashable, Sendable {
        case empty = "Empty"
        case preparingRebalance = "PreparingRebalance"
        case completingRebalance = "CompletingRebalance"
        case stable = "Stable"
        case dead = "Dead"
    }

    public struct MemberProtocol: Hashable, Sendable {
        public var name: String
        public var metadata: [UInt8]
        public init(name: String, metadata: [UInt8]) {
            self.name = name
            self.metadata = metadata
        }
    }

    public struct Join: Hashable, Sendable {
        public var memberID: String
        public var groupInstanceID: String?
        public var clientID: String
        public var clientHost: String
        public var sessionTimeoutMilliseconds: Int32
        public var rebalanceTimeoutMilliseconds: Int32
        public var protocolType: String
        public var protocols: [MemberProtocol]
        /// JoinGroup v4+: a member without an id first gets MEMBER_ID_REQUIRED and its id.
        public var requiresKnownMemberID: Bool

        public init(memberID: String, groupInstanceID: String? = nil, clientID: String, clientHost: String = "",
                    sessionTimeoutMilliseconds: Int32, rebalanceTimeoutMilliseconds: Int32, protocolType: String = "consumer",
                    protocols: [MemberProtocol], requiresKnownMemberID: Bool) {
            self.memberID = memberID
            self.groupInstanceID = groupInstanceID
            self.clientID = clientID
            self.clientHost = clientHost
            self.sessionTimeoutMilliseconds = sessionTimeoutMilliseconds
            self.rebalanceTimeoutMilliseconds = rebalanceTimeoutMilliseconds < 0 ? sessionTimeoutMilliseconds : rebalanceTimeoutMilliseconds
            self.protocolType = protocolType
            self.protocols = protocols
            self.requiresKnownMemberID = requiresKnownMemberID
        }
    }

    /// The answer to a JoinGroup.
    public struct JoinAnswer: Hashable, Sendable {
        public var error: ErrorCode
        public var generation: Int32
        public var protocolName: String
        public var leader: String
        public var memberID: String
        /// Every member and its metadata for the chosen protocol: for the leader only.
        public var members: [(memberID: String, groupInstanceID: String?, metadata: [UInt8])]

        static func failure(_ error: ErrorCode, memberID: String = "") -> JoinAnswer {
            JoinAnswer(error: error, generation: -1, protocolName: "", leader: "", memberID: memberID, members: [])
        }

        public static func == (lhs: JoinAnswer, rhs: JoinAnswer) -> Bool {
            lhs.error == rhs.error && lhs.generation == rhs.generation && lhs.protocolName == rhs.protocolName
                && lhs.leader == rhs.leader && lhs.memberID == rhs.memberID
                && lhs.members.map { "\($0.memberID)/\($0.groupInstanceID ?? "")/\($0.metadata)" }
                    == rhs.members.map { "\($0.memberID)/\($0.groupInstanceID ?? "")/\($0.metadata)" }
        }

        public func hash(into hasher: inout Hasher) {
            hasher.combine(error)
            hasher.combine(generation)
            hasher.combine(memberID)
        }
    }

    public enum Action: Hashable, Sendable {
        case answerJoin(RequestToken, JoinAnswer)
        case answerSync(RequestToken, ErrorCode, assignment: [UInt8])
        /// Call `timerFired` at (or after) this monotonic time.
        case scheduleTimer(deadlineMilliseconds: Int64)
    }

    /// One member as DescribeGroups shows it.
    public struct MemberDescription: Hashable, Sendable {
        public var memberID: String
        public var groupInstanceID: String?
        public var clientID: String
        public var clientHost: String
        public var metadata: [UInt8]
        public var assignment: [UInt8]
    }

    public struct GroupDescription: Hashable, Sendable {
        public var state: State
        public var protocolType: String
        public var protocolName: String
        public var generation: Int32
        public var members: [MemberDescription]
    }

    private struct Member: Sendable {
        var id: String
        var groupInstanceID: String?
        var clientID: String
        var clientHost: String
        var sessionTimeoutMilliseconds: Int64
        var rebalanceTimeoutMilliseconds: Int64
        var protocols: [MemberProtocol]
        var assignment: [UInt8] = []
        var joinToken: RequestToken?
        var syncToken: RequestToken?
        var sessionDeadline: Int64
    }

    private struct Group: Sendable {
        var state = State.empty
        var generation: Int32 = 0
        var protocolType = ""
        var protocolName = ""
        var leader: String?
        var members: [String: Member] = [:]
        /// Join order, for a stable leader choice and member listing.
        var memberOrder: [String] = []
        /// Ids handed out with MEMBER_ID_REQUIRED, waiting for their second join (id → deadline).
        var pendingMembers: [String: Int64] = [:]
        var staticMembers: [String: String] = [:]
        /// End of the join phase (PreparingRebalance).
        var joinDeadline: Int64?
        /// The join phase started from an empty group: it waits the initial delay for more members.
        var initialDelayUntil: Int64?
        var rebalanceStarted: Int64 = 0
    }

    public let configuration: Configuration
    private var groups: [GroupKey: Group] = [:]
    private var nextMemberNumber: UInt64 = 1
    private var timerDeadline: Int64?

    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
    }

    // MARK: Queries

    public func state(of key: GroupKey) -> State? { groups[key]?.state }
    public var groupCount: Int { groups.count }

    public func describe(_ key: GroupKey) -> GroupDescription? {
        guard let group = groups[key] else { return nil }
        return GroupDescription(state: group.state, protocolType: group.protocolType, protocolName: group.protocolName,
                                generation: group.generation, members: group.memberOrder.compactMap { id in
            guard let member = group.members[id] else { return nil }
            return MemberDescription(memberID: id, groupInstanceID: member.groupInstanceID, clientID: member.clientID,
                                     clientHost: member.clientHost,
                                     metadata: member.protocols.first { $0.name == group.protocolName }?.metadata ?? [],
                                     assignment: member.assignment)
        })
    }

    /// The groups of one organization with their state.
    public func groups(of organizationID: UUID) -> [(groupID: String, state: State, protocolType: String)] {
        groups.filter { $0.key.organizationID == organizationID }
            .map { ($0.key.groupID, $0.value.state, $0.value.protocolType) }
            .sorted { $0.groupID < $1.groupID }
    }

    // MARK: JoinGroup

    public mutating func join(_ key: GroupKey, _ join: Join, token: RequestToken, now: Int64) -> [Action] {
        guard (configuration.sessionTimeoutMillisecondsMin...configuration.sessionTimeoutMillisecondsMax)
                .contains(join.sessionTimeoutMilliseconds) else {
            return [.answerJoin(token, .failure(.invalidSessionTimeout, memberID: join.memberID))]
        }
        guard !join.protocols.isEmpty, !join.protocolType.isEmpty,
              join.protocols.reduce(0, { $0 + $1.metadata.count + $1.name.utf8.count }) <= configuration.memberMetadataBytesMax else {
            return [.answerJoin(token, .failure(.inconsistentGroupProtocol, memberID: join.memberID))]
        }
        if groups[key] == nil {
            guard groups.count < configuration.groupsMax || evictEmptyGroup() else {
                return [.answerJoin(token, .failure(.coordinatorNotAvailable, memberID: join.memberID))]
            }
            groups[key] = Group()
        }
        var group = groups[key]!
        let actions = self.join(&group, join, token: token, now: now)
        groups[key] = group
        return actions + schedule(now: now)
    }

    private mutating func join(_ group: inout Group, _ join: Join, token: RequestToken, now: Int64) -> [Action] {
        var actions: [Action] = []
        // Every member must be able to speak one protocol with every other (Kafka's vote needs it).
        if group.state != .empty || !group.members.isEmpty {
            let names = Set(join.protocols.map(\.name))
            let shared = group.members.values.reduce(names) { $0.intersection($1.protocols.map(\.name)) }
            if join.protocolType != group.protocolType || shared.isEmpty {
                return [.answerJoin(token, .failure(.inconsistentGroupProtocol, memberID: join.memberID))]
            }
        }

        var memberID = join.memberID
        if memberID.isEmpty {
            // A static member rejoining takes over its old member id's place.
            if let instance = join.groupInstanceID, let old = group.staticMembers[instance], group.members[old] != nil {
                memberID = makeMemberID(join.clientID)
                replaceMember(&group, old: old, new: memberID)
                group.staticMembers[instance] = memberID
                if group.state == .stable, group.members[memberID]?.protocols == join.protocols {
                    group.members[memberID]?.sessionDeadline = now + Int64(join.sessionTimeoutMilliseconds)
                    actions.append(.answerJoin(token, answer(group, for: memberID)))
                    return actions
                }
            } else {
                memberID = makeMemberID(join.clientID)
                if join.requiresKnownMemberID && join.groupInstanceID == nil {
                    group.pendingMembers[memberID] = now + Int64(join.sessionTimeoutMilliseconds)
                    actions.append(.answerJoin(token, .failure(.memberIdRequired, memberID: memberID)))
                    return actions
                }
            }
        } else if group.members[memberID] == nil && group.pendingMembers[memberID] == nil {
            return [.answerJoin(token, .failure(.unknownMemberId, memberID: memberID))]
        }

        if group.members[memberID] == nil {
            guard group.members.count < configuration.membersPerGroupMax else {
                group.pendingMembers[memberID] = nil
                return [.answerJoin(token, .failure(.groupMaxSizeReached, memberID: memberID))]
            }
            group.pendingMembers[memberID] = nil
            group.members[memberID] = Member(
                id: memberID, groupInstanceID: join.groupInstanceID, clientID: join.clientID, clientHost: join.clientHost,
                sessionTimeoutMilliseconds: Int64(join.sessionTimeoutMilliseconds),
                rebalanceTimeoutMilliseconds: Int64(join.rebalanceTimeoutMilliseconds), protocols: join.protocols,
                sessionDeadline: now + Int64(join.sessionTimeoutMilliseconds))
            group.memberOrder.append(memberID)
            if let instance = join.groupInstanceID { group.staticMembers[instance] = memberID }
            if group.protocolType.isEmpty { group.protocolType = join.protocolType }
            group.members[memberID]?.joinToken = token
            actions += prepareRebalance(&group, now: now, newMember: true)
            actions += completeJoinIfReady(&group, now: now)
            return actions
        }

        // A known member (re)joins.
        let member = group.members[memberID]!
        let unchanged = member.protocols == join.protocols
        group.members[memberID]?.protocols = join.protocols
        group.members[memberID]?.sessionTimeoutMilliseconds = Int64(join.sessionTimeoutMilliseconds)
        group.members[memberID]?.rebalanceTimeoutMilliseconds = Int64(join.rebalanceTimeoutMilliseconds)
        group.members[memberID]?.sessionDeadline = now + Int64(join.sessionTimeoutMilliseconds)
        if let old = member.joinToken, old != token {
            // A second join while one waits: the first is answered as superseded (Kafka does the same).
            actions.append(.answerJoin(old, .failure(.unknownMemberId, memberID: memberID)))
        }
        switch group.state {
        case .preparingRebalance:
            group.members[memberID]?.joinToken = token
            actions += completeJoinIfReady(&group, now: now)
        case .completingRebalance, .stable:
            if unchanged && (group.state == .completingRebalance || group.leader != memberID) {
                // Nothing changed: the member gets the current generation again, no rebalance.
                actions.append(.answerJoin(token, answer(group, for: memberID)))
            } else {
                group.members[memberID]?.joinToken = token
                actions += prepareRebalance(&group, now: now, newMember: false)
                actions += completeJoinIfReady(&group, now: now)
            }
        case .empty, .dead:
            group.members[memberID]?.joinToken = token
            actions += prepareRebalance(&group, now: now, newMember: true)
            actions += completeJoinIfReady(&group, now: now)
        }
        return actions
    }

    // MARK: SyncGroup

    public mutating func sync(_ key: GroupKey, memberID: String, generation: Int32, groupInstanceID: String? = nil,
                              assignments: [String: [UInt8]], token: RequestToken, now: Int64) -> [Action] {
        guard var group = groups[key], group.members[memberID] != nil else {
            return [.answerSync(token, .unknownMemberId, assignment: [])]
        }
        defer { groups[key] = group }
        if let fenced = fencedInstance(group, memberID: memberID, groupInstanceID: groupInstanceID) {
            return [.answerSync(token, fenced, assignment: [])]
        }
        guard generation == group.generation else { return [.answerSync(token, .illegalGeneration, assignment: [])] }
        Self.touch(&group, memberID, now: now)
        switch group.state {
        case .empty, .dead:
            return [.answerSync(token, .unknownMemberId, assignment: [])]
        case .preparingRebalance:
            return [.answerSync(token, .rebalanceInProgress, assignment: [])]
        case .stable:
            return [.answerSync(token, .noError, assignment: group.members[memberID]?.assignment ?? [])]
        case .completingRebalance:
            group.members[memberID]?.syncToken = token
            guard memberID == group.leader else { return [] }
            guard assignments.values.allSatisfy({ $0.count <= configuration.assignmentBytesMax }) else {
                group.members[memberID]?.syncToken = nil
                return [.answerSync(token, .invalidRequest, assignment: [])]
            }
            var actions: [Action] = []
            for id in group.memberOrder {
                group.members[id]?.assignment = assignments[id] ?? []
            }
            group.state = .stable
            for id in group.memberOrder {
                guard let waiting = group.members[id]?.syncToken else { continue }
                group.members[id]?.syncToken = nil
                actions.append(.answerSync(waiting, .noError, assignment: group.members[id]?.assignment ?? []))
            }
            return actions
        }
    }

    // MARK: Heartbeat, LeaveGroup, commits

    public mutating func heartbeat(_ key: GroupKey, memberID: String, generation: Int32, groupInstanceID: String? = nil,
                                   now: Int64) -> ErrorCode {
        guard var group = groups[key], group.members[memberID] != nil else { return .unknownMemberId }
        if let fenced = fencedInstance(group, memberID: memberID, groupInstanceID: groupInstanceID) { return fenced }
        guard generation == group.generation else { return .illegalGeneration }
        Self.touch(&group, memberID, now: now)
        groups[key] = group
        switch group.state {
        case .preparingRebalance: return .rebalanceInProgress
        case .completingRebalance, .stable: return .noError
        case .empty, .dead: return .unknownMemberId
        }
    }

    /// Members leave (LeaveGroup v0–3): each answered with its own code; the group rebalances
    /// at once without them.
    public mutating func leave(_ key: GroupKey, members leaving: [(memberID: String, groupInstanceID: String?)],
                               now: Int64) -> (codes: [ErrorCode], actions: [Action]) {
        guard var group = groups[key] else { return (leaving.map { _ in .unknownMemberId }, []) }
        var codes: [ErrorCode] = []
        var actions: [Action] = []
        var removed = false
        for leaver in leaving {
            var id = leaver.memberID
            if id.isEmpty, let instance = leaver.groupInstanceID, let known = group.staticMembers[instance] { id = known }
            guard group.members[id] != nil else {
                codes.append(.unknownMemberId)
                continue
            }
            if let instance = leaver.groupInstanceID, group.staticMembers[instance] != id {
                codes.append(.fencedInstanceId)
                continue
            }
            actions += removeMember(&group, id)
            removed = true
            codes.append(.noError)
        }
        if removed { actions += afterMembershipLoss(&group, now: now) }
        groups[key] = group
        return (codes, actions + schedule(now: now))
    }

    /// Whether an OffsetCommit may be stored: from the current generation's member, or from
    /// outside group management (generation −1, empty member id) while the group has no members.
    public mutating func commitAllowed(_ key: GroupKey, memberID: String, generation: Int32, groupInstanceID: String? = nil,
                                       now: Int64) -> ErrorCode {
        guard var group = groups[key] else {
            return generation < 0 && memberID.isEmpty ? .noError : .unknownMemberId
        }
        if generation < 0 && memberID.isEmpty { return group.members.isEmpty ? .noError : .unknownMemberId }
        guard group.members[memberID] != nil else { return .unknownMemberId }
        if let fenced = fencedInstance(group, memberID: memberID, groupInstanceID: groupInstanceID) { return fenced }
        guard generation == group.generation else { return .illegalGeneration }
        Self.touch(&group, memberID, now: now)
        groups[key] = group
        return group.state == .completingRebalance ? .rebalanceInProgress : .noError
    }

    /// Removes an empty group (admin delete); refused while it has members.
    public mutating func delete(_ key: GroupKey) -> ErrorCode {
        guard let group = groups[key] else { return .noError }
        guard group.members.isEmpty else { return .nonEmptyGroup }
        groups[key] = nil
        return .noError
    }

    // MARK: Timers

    public mutating func timerFired(now: Int64) -> [Action] {
        timerDeadline = nil
        var actions: [Action] = []
        for key in Array(groups.keys) {
            guard var group = groups[key] else { continue }
            group.pendingMembers = group.pendingMembers.filter { $0.value > now }
            // Members waiting in a join are governed by the rebalance timeout, not their session.
            let expired = group.members.values.filter { $0.sessionDeadline <= now && $0.joinToken == nil }.map(\.id)
            for id in expired { actions += removeMember(&group, id) }
            if !expired.isEmpty { actions += afterMembershipLoss(&group, now: now) }
            if group.state == .preparingRebalance, let deadline = group.joinDeadline, deadline <= now {
                actions += completeJoin(&group, now: now)
            } else if group.state == .preparingRebalance {
                actions += completeJoinIfReady(&group, now: now)
            }
            groups[key] = group
        }
        return actions + schedule(now: now)
    }

    // MARK: Transitions

    private mutating func makeMemberID(_ clientID: String) -> String {
        defer { nextMemberNumber += 1 }
        let prefix = clientID.isEmpty ? "member" : String(clientID.prefix(64))
        return "\(prefix)-\(nextMemberNumber)-\(UUID().uuidString.lowercased())"
    }

    /// A request from the member: its session starts again.
    private static func touch(_ group: inout Group, _ id: String, now: Int64) {
        guard let timeout = group.members[id]?.sessionTimeoutMilliseconds else { return }
        group.members[id]?.sessionDeadline = now + timeout
    }

    private func fencedInstance(_ group: Group, memberID: String, groupInstanceID: String?) -> ErrorCode? {
        guard let instance = groupInstanceID, let current = group.staticMembers[instance], current != memberID else { return nil }
        return .fencedInstanceId
    }

    private func replaceMember(_ group: inout Group, old: String, new: String) {
        guard var member = group.members.removeValue(forKey: old) else { return }
        member.id = new
        group.members[new] = member
        group.memberOrder = group.memberOrder.map { $0 == old ? new : $0 }
        if group.leader == old { group.leader = new }
    }

    private func answer(_ group: Group, for memberID: String) -> JoinAnswer {
        let isLeader = memberID == group.leader
        return JoinAnswer(
            error: .noError, generation: group.generation, protocolName: group.protocolName, leader: group.leader ?? "",
            memberID: memberID,
            members: isLeader ? group.memberOrder.compactMap { id in
                guard let member = group.members[id] else { return nil }
                return (id, member.groupInstanceID, member.protocols.first { $0.name == group.protocolName }?.metadata ?? [])
            } : [])
    }

    private func prepareRebalance(_ group: inout Group, now: Int64, newMember: Bool) -> [Action] {
        var actions: [Action] = []
        if group.state == .completingRebalance {
            // Syncs waiting for the leader's assignment will not get one: they rejoin.
            for id in group.memberOrder {
                guard let waiting = group.members[id]?.syncToken else { continue }
                group.members[id]?.syncToken = nil
                actions.append(.answerSync(waiting, .rebalanceInProgress, assignment: []))
            }
        }
        let rebalanceTimeout = group.members.values.map(\.rebalanceTimeoutMilliseconds).max() ?? 0
        if group.state == .empty || group.state == .dead {
            group.rebalanceStarted = now
            group.initialDelayUntil = now + min(configuration.initialRebalanceDelayMilliseconds, rebalanceTimeout)
            group.joinDeadline = group.initialDelayUntil
        } else if group.state != .preparingRebalance {
            group.rebalanceStarted = now
            group.initialDelayUntil = nil
            group.joinDeadline = now + rebalanceTimeout
        } else if newMember, let until = group.initialDelayUntil, until > now {
            // Kafka's initial delay: each new member extends it, up to the rebalance timeout.
            let extended = min(now + configuration.initialRebalanceDelayMilliseconds, group.rebalanceStarted + rebalanceTimeout)
            group.initialDelayUntil = max(until, extended)
            group.joinDeadline = group.initialDelayUntil
        }
        group.state = .preparingRebalance
        return actions
    }

    private func completeJoinIfReady(_ group: inout Group, now: Int64) -> [Action] {
        guard group.state == .preparingRebalance else { return [] }
        if let until = group.initialDelayUntil, until > now { return [] }
        let allJoined = group.members.values.allSatisfy { $0.joinToken != nil } && group.pendingMembers.isEmpty
        return allJoined ? completeJoin(&group, now: now) : []
    }

    /// The join phase ends: members that did not rejoin are dropped, the generation moves on,
    /// the protocol is chosen by vote, and every waiting JoinGroup is answered.
    private func completeJoin(_ group: inout Group, now: Int64) -> [Action] {
        var actions: [Action] = []
        for id in group.memberOrder where group.members[id]?.joinToken == nil {
            actions += removeMember(&group, id)
        }
        group.joinDeadline = nil
        group.initialDelayUntil = nil
        group.pendingMembers = [:]
        guard !group.members.isEmpty else {
            group.state = .empty
            group.generation += 1
            group.protocolName = ""
            group.leader = nil
            group.protocolType = ""
            return actions
        }
        group.generation += 1
        group.protocolName = Self.vote(group.memberOrder.compactMap { group.members[$0]?.protocols.map(\.name) })
        if group.leader.map({ group.members[$0] == nil }) ?? true { group.leader = group.memberOrder.first }
        group.state = .completingRebalance
        for id in group.memberOrder {
            guard let waiting = group.members[id]?.joinToken else { continue }
            group.members[id]?.joinToken = nil
            group.members[id]?.assignment = []
            Self.touch(&group, id, now: now)
            actions.append(.answerJoin(waiting, answer(group, for: id)))
        }
        return actions
    }

    /// Kafka's protocol selection: among the protocols every member supports, each member votes
    /// for the one it lists first; most votes wins (ties: the earliest joined member's preference).
    static func vote(_ preferences: [[String]]) -> String {
        guard let first = preferences.first else { return "" }
        let candidates = preferences.reduce(Set(first)) { $0.intersection($1) }
        var votes: [String: Int] = [:]
        for list in preferences {
            if let choice = list.first(where: candidates.contains) { votes[choice, default: 0] += 1 }
        }
        let best = votes.values.max() ?? 0
        return first.first { candidates.contains($0) && votes[$0] == best } ?? candidates.sorted().first ?? ""
    }

    private func removeMember(_ group: inout Group, _ id: String) -> [Action] {
        guard let member = group.members.removeValue(forKey: id) else { return [] }
        group.memberOrder.removeAll { $0 == id }
        if let instance = member.groupInstanceID, group.staticMembers[instance] == id { group.staticMembers[instance] = nil }
        if group.leader == id { group.leader = nil }
        var actions: [Action] = []
        if let join = member.joinToken { actions.append(.answerJoin(join, .failure(.unknownMemberId, memberID: id))) }
        if let sync = member.syncToken { actions.append(.answerSync(sync, .unknownMemberId, assignment: [])) }
        return actions
    }

    private func afterMembershipLoss(_ group: inout Group, now: Int64) -> [Action] {
        if group.members.isEmpty && group.state != .preparingRebalance {
            group.state = .empty
            group.generation += 1
            group.leader = nil
            group.protocolName = ""
            group.protocolType = ""
            return []
        }
        switch group.state {
        case .stable, .completingRebalance:
            return prepareRebalance(&group, now: now, newMember: false) + completeJoinIfReady(&group, now: now)
        case .preparingRebalance:
            return completeJoinIfReady(&group, now: now)
        case .empty, .dead:
            return []
        }
    }

    private mutating func evictEmptyGroup() -> Bool {
        guard let key = groups.first(where: { $0.value.members.isEmpty && $0.value.pendingMembers.isEmpty })?.key else { return false }
        groups[key] = nil
        return true
    }

    /// The earliest deadline of any group (sessions, join phases, pending members), scheduled
    /// when it is earlier than the timer already set.
    private mutating func schedule(now: Int64) -> [Action] {
        var next: Int64?
        for group in groups.values {
            for member in group.members.values where member.joinToken == nil { next = min(next ?? member.sessionDeadline, member.sessionDeadline) }
            for deadline in group.pendingMembers.values { next = min(next ?? deadline, deadline) }
            if let deadline = group.joinDeadline { next = min(next ?? deadline, deadline) }
        }
        guard let next else { return [] }
        if let scheduled = timerDeadline, scheduled <= next, scheduled > now { return [] }
        timerDeadline = next
        return [.scheduleTimer(deadlineMilliseconds: next)]
    }
}
