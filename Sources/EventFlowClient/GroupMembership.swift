import EventFlowProtocol
import NIOCore

/// One member's side of Kafka's classic group protocol, as a value: no I/O, no clock.
///
/// The group loop asks `nextAction(now:)`, performs it (at most one request to the coordinator
/// is in flight: Kafka answers a connection's requests one at a time anyway, and a parked JoinGroup
/// would hold everything behind it) and reports the answer with the matching `…Answered` method.
/// Local actions (`startDelivering`, `stopDelivering`, `announce…`) are done by the caller at once.
///
/// Phases: unjoined → (FindCoordinator) → joining → [leader: assigning] → syncing →
/// fetchingOffsets → stable; from stable a rebalance goes back to joining (eager protocol: every
/// partition is given up first, offsets committed before), a shutdown goes to leaving → left.
struct GroupMembership: Sendable {
    struct Settings: Sendable {
        var groupId: String
        var streams: [String]
        var sessionTimeoutMilliseconds: Int
        var rebalanceTimeoutMilliseconds: Int
        var heartbeatIntervalMilliseconds: Int
        var groupInstanceId: String?
        var assignors: [GroupAssignor]
        var autoCommit: Bool
        var autoCommitIntervalMilliseconds: Int
        var storesOffsetsOnDelivery: Bool
        var retriesMax: Int
        var retryBackoffMilliseconds: Int
        var retryBackoffMaxMilliseconds: Int
        /// Manual commits waiting for an answer, at most.
        var commitWaitersMax: Int = 1_024

        init(groupId: String, streams: [String], group: ConsumerConfiguration.GroupSettings, retriesMax: Int,
             retryBackoffMilliseconds: Int, retryBackoffMaxMilliseconds: Int) {
            self.groupId = groupId
            self.streams = streams
            sessionTimeoutMilliseconds = group.sessionTimeoutMilliseconds
            rebalanceTimeoutMilliseconds = group.rebalanceTimeoutMilliseconds
            heartbeatIntervalMilliseconds = group.heartbeatIntervalMilliseconds
            groupInstanceId = group.groupInstanceId
            assignors = group.assignors
            autoCommit = group.autoCommit
            autoCommitIntervalMilliseconds = group.autoCommitIntervalMilliseconds
            storesOffsetsOnDelivery = group.storesOffsetsOnDelivery
            self.retriesMax = retriesMax
            self.retryBackoffMilliseconds = retryBackoffMilliseconds
            self.retryBackoffMaxMilliseconds = retryBackoffMaxMilliseconds
        }
    }

    /// A completed join: the generation this member is part of.
    struct Generation: Sendable, Hashable {
        var generationId: Int32
        var memberId: String
        var protocolName: String
        var isLeader: Bool
    }

    enum Phase: Sendable, Equatable {
        case unjoined
        case joining
        /// The leader waits for the partition counts of every member's streams.
        case assigning(Generation, members: [GroupAssignor.Member])
        case syncing(Generation, assignments: [SyncGroupRequest.Assignment])
        case fetchingOffsets(Generation, assigned: [StreamPartition])
        case stable(Generation)
        /// Giving up the partitions before joining again: commit (if due), then announce.
        case revoking(Generation?, commitDone: Bool)
        case leaving(Generation?, commitDone: Bool)
        case left
        case failed(ConsumerError)
    }

    /// Why a request is in flight; its answer is expected next.
    enum Request: Sendable, Equatable {
        case findCoordinator, join, partitionCounts, sync, offsetFetch, heartbeat, commit, leave
    }

    enum Action: Sendable, Equatable {
        case findCoordinator(FindCoordinatorRequest)
        case join(JoinGroupRequest, groupInstanceId: String?)
        /// The leader's Metadata lookup: the partition count of each stream, for the assignor.
        case lookUpPartitionCounts([String])
        case sync(SyncGroupRequest)
        case fetchOffsets(OffsetFetchRequest)
        case heartbeat(HeartbeatRequest)
        case commit(OffsetCommitRequest)
        case leave(LeaveGroupRequest)
        /// Start fetching these partitions, each from its committed offset (nil: none committed).
        case startDelivering([StreamPartition: Int64?])
        /// Drop these partitions' fetched records: from now on none of them is handed out.
        case stopDelivering([StreamPartition])
        case announceAssigned([StreamPartition])
        case announceRevoked([StreamPartition])
        /// Nothing to do until woken (an answer, a commit asked, shutdown) or the deadline passes.
        case wait(until: NIODeadline?)
        /// The member left (or failed); the group loop ends.
        case finished
    }

    /// One partition's commit position.
    struct PartitionOffsets: Sendable, Equatable {
        /// What the next commit sends (the offset after the last record delivered, or stored).
        var stored: Int64?
        /// What the coordinator acknowledged.
        var committed: Int64?
    }

    let settings: Settings
    private(set) var phase: Phase = .unjoined
    private(set) var memberId = ""
    private(set) var coordinatorKnown = false
    private(set) var inFlight: Request?
    /// Partitions being delivered, with the assignment epoch they were given in: a record fetched
    /// for an earlier assignment of the same partition is not delivered in a later one.
    private(set) var owned: [StreamPartition: UInt64] = [:]
    private(set) var assignmentEpoch: UInt64 = 0
    private(set) var offsets: [StreamPartition: PartitionOffsets] = [:]
    private var rejoinRequested = false
    private var shutdownRequested = false
    private var lostPartitions = false
    private var nextHeartbeat: NIODeadline?
    private var nextAutoCommit: NIODeadline?
    private var notBefore: NIODeadline?
    private var failures = 0
    /// Manual commits asked and not yet sent / sent and not yet answered.
    private var commitWaiting: [UInt64] = []
    private var commitSent: [UInt64] = []
    private var sentOffsets: [StreamPartition: Int64] = [:]
    private var announcedRevoked: [StreamPartition] = []
    /// Local actions to hand out before anything else, in order (at most start + announce).
    private var pendingLocalActions: [Action] = []

    init(settings: Settings) {
        self.settings = settings
    }

    var isStable: Bool { if case .stable = phase { true } else { false } }
    var isFinished: Bool { phase == .left || { if case .failed = phase { true } else { false } }() }
    var failure: ConsumerError? { if case .failed(let error) = phase { error } else { nil } }
    var generation: Generation? {
        switch phase {
        case .assigning(let generation, _), .syncing(let generation, _), .fetchingOffsets(let generation, _),
             .stable(let generation):
            generation
        case .revoking(let generation, _), .leaving(let generation, _):
            generation
        default:
            nil
        }
    }

    /// A JoinGroup or SyncGroup may be parked by the coordinator for up to the rebalance timeout.
    var inFlightMayBeParked: Bool { inFlight == .join || inFlight == .sync }

    // MARK: what the application does

    /// Whether a record of `partition` taken under `epoch` may be handed out; if so it counts as
    /// delivered and (with `storesOffsetsOnDelivery`) the next commit covers it.
    mutating func deliver(_ partition: StreamPartition, offset: Int64, epoch: UInt64) -> Bool {
        guard owned[partition] == epoch else { return false }
        if settings.storesOffsetsOnDelivery { offsets[partition, default: .init()].stored = offset + 1 }
        return true
    }

    /// Marks `offset + 1` as what the next commit sends for the partition (`storeOffset(message)`).
    mutating func store(_ partition: StreamPartition, offset: Int64) -> Bool {
        guard owned[partition] != nil else { return false }
        offsets[partition, default: .init()].stored = offset + 1
        return true
    }

    func epoch(of partition: StreamPartition) -> UInt64? { owned[partition] }

    enum CommitRequestOutcome: Equatable {
        /// Waits for the commit that will carry it.
        case queued
        /// Nothing stored that is not committed yet.
        case nothingToCommit
        case rejected(ConsumerError)
    }

    /// `commit()`: the stored offsets go out with the next request slot.
    mutating func commitRequested(waiter: UInt64) -> CommitRequestOutcome {
        if shutdownRequested || isFinished { return .rejected(.commitFailed("the consumer is shutting down")) }
        guard isStable else { return .rejected(.commitFailed("the group is rebalancing; the partitions may have moved")) }
        if pendingCommitPartitions().isEmpty && commitSent.isEmpty { return .nothingToCommit }
        guard commitWaiting.count + commitSent.count < settings.commitWaitersMax else {
            return .rejected(.commitFailed("more than \(settings.commitWaitersMax) commits waiting"))
        }
        commitWaiting.append(waiter)
        return .queued
    }

    mutating func shutDown() {
        shutdownRequested = true
    }

    // MARK: the next step

    mutating func nextAction(now: NIODeadline) -> Action {
        if !pendingLocalActions.isEmpty { return pendingLocalActions.removeFirst() }
        if isFinished { return .finished }
        if inFlight != nil { return .wait(until: nil) }
        if shutdownRequested {
            if let action = beginLeaving() { return action }
        } else if let notBefore, notBefore > now {
            return .wait(until: notBefore)
        }
        notBefore = nil
        if !coordinatorKnown, needsCoordinator {
            inFlight = .findCoordinator
            return .findCoordinator(FindCoordinatorRequest(key: settings.groupId, keyType: 0))
        }
        switch phase {
        case .unjoined, .joining:
            phase = .joining
            inFlight = .join
            return .join(joinRequest(), groupInstanceId: settings.groupInstanceId)
        case .assigning(_, let members):
            var streams = Set<String>()
            for member in members { streams.formUnion(member.streams) }
            inFlight = .partitionCounts
            return .lookUpPartitionCounts(streams.sorted())
        case .syncing(let generation, let assignments):
            inFlight = .sync
            return .sync(SyncGroupRequest(groupId: settings.groupId, generationId: generation.generationId,
                                          memberId: generation.memberId, assignments: assignments))
        case .fetchingOffsets(_, let assigned):
            inFlight = .offsetFetch
            return .fetchOffsets(OffsetFetchRequest(groupId: settings.groupId, topics: Self.topics(assigned).map {
                OffsetFetchRequest.Topic(name: $0.stream, partitionIndexes: $0.partitions)
            }))
        case .stable(let generation):
            if rejoinRequested {
                rejoinRequested = false
                return beginRevoking(generation, lost: lostPartitions)
            }
            if !commitWaiting.isEmpty || (settings.autoCommit && (nextAutoCommit.map { $0 <= now } ?? false)) {
                nextAutoCommit = now + .milliseconds(Int64(settings.autoCommitIntervalMilliseconds))
                if let commit = commitAction(generation) { return commit }
            }
            if let heartbeat = nextHeartbeat, heartbeat <= now {
                inFlight = .heartbeat
                return .heartbeat(HeartbeatRequest(groupId: settings.groupId, generationId: generation.generationId,
                                                   memberId: generation.memberId))
            }
            let commitDue = settings.autoCommit ? nextAutoCommit : nil
            return .wait(until: [nextHeartbeat, commitDue].compactMap { $0 }.min())
        case .revoking(let generation, let commitDone):
            if !commitDone, let generation, settings.autoCommit || !commitWaiting.isEmpty,
               let commit = commitAction(generation, partitions: announcedRevoked) {
                phase = .revoking(generation, commitDone: true)
                return commit
            }
            // The group takes the partitions from here: announce, then join again.
            phase = .joining
            let revoked = announcedRevoked
            announcedRevoked = []
            offsets = [:]
            failAll(commitWaiting, .commitFailed("the group is rebalancing; the partitions may have moved"))
            return .announceRevoked(revoked)
        case .leaving(let generation, let commitDone):
            if !commitDone, let generation, settings.autoCommit || !commitWaiting.isEmpty,
               let commit = commitAction(generation, partitions: announcedRevoked) {
                phase = .leaving(generation, commitDone: true)
                return commit
            }
            if !announcedRevoked.isEmpty {
                let revoked = announcedRevoked
                announcedRevoked = []
                return .announceRevoked(revoked)
            }
            // A static member stays in the group over a restart: that is what its instance id is for.
            if !memberId.isEmpty && settings.groupInstanceId == nil {
                let request = LeaveGroupRequest(groupId: settings.groupId, memberId: memberId)
                memberId = ""
                inFlight = .leave
                return .leave(request)
            }
            phase = .left
            return .finished
        case .left, .failed:
            return .finished
        }
    }

    private var needsCoordinator: Bool {
        switch phase {
        case .leaving, .left, .failed: false
        default: true
        }
    }

    private func joinRequest() -> JoinGroupRequest {
        let owned = Self.topics(Array(self.owned.keys))
        return JoinGroupRequest(
            groupId: settings.groupId, sessionTimeoutMs: Int32(clamping: settings.sessionTimeoutMilliseconds),
            rebalanceTimeoutMs: Int32(clamping: settings.rebalanceTimeoutMilliseconds), memberId: memberId,
            protocolType: "consumer",
            protocols: settings.assignors.map { assignor in
                JoinGroupRequest.GroupProtocol(name: assignor.protocolName, metadata: ConsumerProtocolSubscription(
                    version: 1, topics: settings.streams, userData: nil,
                    ownedPartitions: owned.map { .init(topic: $0.stream, partitions: $0.partitions) }).encoded())
            })
    }

    /// Partitions grouped by stream, both in order, as the requests list them.
    static func topics(_ partitions: [StreamPartition]) -> [(stream: String, partitions: [Int32])] {
        var byStream: [String: [Int32]] = [:]
        for partition in partitions { byStream[partition.stream, default: []].append(partition.partition) }
        return byStream.keys.sorted().map { ($0, byStream[$0]!.sorted()) }
    }

    private func pendingCommitPartitions(_ among: [StreamPartition]? = nil) -> [(StreamPartition, Int64)] {
        let candidates = among ?? Array(owned.keys)
        return candidates.compactMap { partition in
            guard let entry = offsets[partition], let stored = entry.stored, stored != entry.committed else { return nil }
            return (partition, stored)
        }
    }

    /// An OffsetCommit of every stored offset not yet committed; nil (and the waiters answered) when there is none.
    private mutating func commitAction(_ generation: Generation, partitions: [StreamPartition]? = nil) -> Action? {
        let pending = pendingCommitPartitions(partitions)
        guard !pending.isEmpty else {
            completeWaiters(commitWaiting, error: nil)
            commitWaiting = []
            return nil
        }
        sentOffsets = Dictionary(uniqueKeysWithValues: pending)
        commitSent = commitWaiting
        commitWaiting = []
        inFlight = .commit
        let byStream = Self.topics(pending.map(\.0))
        return .commit(OffsetCommitRequest(groupId: settings.groupId, generationId: generation.generationId,
                                           memberId: generation.memberId, topics: byStream.map { entry in
            OffsetCommitRequest.Topic(name: entry.stream, partitions: entry.partitions.map { partition in
                OffsetCommitRequest.Partition(partitionIndex: partition,
                                              committedOffset: sentOffsets[StreamPartition(stream: entry.stream, partition: partition)]!)
            })
        }))
    }

    /// Eager rebalance: every partition stops being delivered now (so the commit that follows
    /// covers exactly what the application got); announced once committed. Lost partitions
    /// (the coordinator no longer knows this generation) are not committed: the commit would fail.
    private mutating func beginRevoking(_ generation: Generation, lost: Bool) -> Action {
        lostPartitions = false
        let revoked = Array(owned.keys).sorted { ($0.stream, $0.partition) < ($1.stream, $1.partition) }
        owned = [:]
        announcedRevoked = revoked
        nextHeartbeat = nil
        nextAutoCommit = nil
        phase = .revoking(lost ? nil : generation, commitDone: lost)
        return .stopDelivering(revoked)
    }

    private mutating func beginLeaving() -> Action? {
        switch phase {
        case .leaving, .left, .failed: return nil
        default: break
        }
        let revoked = Array(owned.keys).sorted { ($0.stream, $0.partition) < ($1.stream, $1.partition) }
        let stable: Generation? = if case .stable(let generation) = phase { generation } else { nil }
        // From revoking: its commit may already be done; the partitions are stopped already.
        if case .revoking(let generation, let commitDone) = phase {
            phase = .leaving(generation, commitDone: commitDone)
            return nil
        }
        owned = [:]
        announcedRevoked = revoked
        phase = .leaving(stable, commitDone: stable == nil)
        return revoked.isEmpty ? nil : .stopDelivering(revoked)
    }

    // MARK: answers

    /// The in-flight request got no answer.
    mutating func requestFailed(_ error: ConsumerError, now: NIODeadline) -> [(waiter: UInt64, error: ConsumerError?)] {
        let request = inFlight
        inFlight = nil
        coordinatorKnown = false
        var answered: [(UInt64, ConsumerError?)] = []
        if request == .commit {
            answered = commitSent.map { ($0, .commitFailed("\(error)")) }
            commitSent = []
        }
        switch phase {
        case .leaving:
            // Shutting down: no retries, the session timeout removes the member if the leave is lost.
            if request == .leave {
                phase = .left
            } else if case .leaving(let generation, _) = phase {
                phase = .leaving(generation, commitDone: true)
            }
            return answered
        case .revoking(let generation, _):
            phase = .revoking(generation, commitDone: true)
        default:
            break
        }
        if !shutdownRequested { backOff(error, now: now) }
        return answered
    }

    mutating func coordinatorFound(_ response: FindCoordinatorResponse, now: NIODeadline) {
        inFlight = nil
        switch response.errorCode {
        case .noError:
            coordinatorKnown = true
            failures = 0
        case let code where code.isRetriable:
            backOff(.broker(code, message: response.errorMessage ?? "FindCoordinator"), now: now)
        case let code:
            phase = .failed(.broker(code, message: response.errorMessage ?? "FindCoordinator \(settings.groupId)"))
        }
    }

    mutating func joinAnswered(_ response: JoinGroupResponse, now: NIODeadline) {
        inFlight = nil
        switch response.errorCode {
        case .noError:
            failures = 0
            memberId = response.memberId
            let generation = Generation(generationId: response.generationId, memberId: response.memberId,
                                        protocolName: response.protocolName, isLeader: response.leader == response.memberId)
            if generation.isLeader {
                guard GroupAssignor(protocolName: response.protocolName) != nil else {
                    phase = .failed(.broker(.inconsistentGroupProtocol, message: "the group chose \(response.protocolName), which this consumer does not run"))
                    return
                }
                // A member whose subscription cannot be read gets nothing, rather than the whole group stalling.
                let members = response.members.map { member in
                    GroupAssignor.Member(memberId: member.memberId,
                                         streams: (try? ConsumerProtocolSubscription.decode(member.metadata))?.topics ?? [])
                }
                phase = .assigning(generation, members: members)
            } else {
                phase = .syncing(generation, assignments: [])
            }
        case .memberIdRequired:
            // KIP-394: the coordinator hands out the id on a first join; join again with it, at once.
            memberId = response.memberId
            phase = .joining
        case let code:
            rejoinAfter(code, of: "JoinGroup", now: now)
        }
    }

    /// The leader's Metadata answer; nil means the lookup failed (retried like any request).
    mutating func partitionCountsFound(_ counts: [String: Int32]) {
        inFlight = nil
        guard case .assigning(let generation, let members) = phase else { return }
        let assignor = GroupAssignor(protocolName: generation.protocolName) ?? .range
        let assignment = assignor.assign(members, partitionCounts: counts)
        phase = .syncing(generation, assignments: members.map { member in
            SyncGroupRequest.Assignment(memberId: member.memberId,
                                        assignment: ConsumerProtocolAssignment(assignment[member.memberId] ?? []).encoded())
        })
    }

    mutating func syncAnswered(_ response: SyncGroupResponse, now: NIODeadline) {
        inFlight = nil
        guard case .syncing(let generation, _) = phase else { return }
        switch response.errorCode {
        case .noError:
            failures = 0
            guard let assignment = try? ConsumerProtocolAssignment.decode(response.assignment) else {
                phase = .failed(.broker(.inconsistentGroupProtocol, message: "the leader's assignment cannot be read"))
                return
            }
            // Only the streams subscribed to: a leader running another assignor might hand out more.
            let assigned = assignment.streamPartitions.filter { settings.streams.contains($0.stream) }
            phase = .fetchingOffsets(generation, assigned: assigned)
            if assigned.isEmpty { becomeStable(generation, committed: [:], assigned: [], now: now) }
        case let code:
            rejoinAfter(code, of: "SyncGroup", now: now)
        }
    }

    /// A JoinGroup or SyncGroup error: join again (from scratch for an unknown member id, after
    /// finding the coordinator again, or after a backoff for other retriable codes), or fail.
    private mutating func rejoinAfter(_ code: ErrorCode, of api: String, now: NIODeadline) {
        switch code {
        case .unknownMemberId:
            memberId = ""
            phase = .joining
        case .illegalGeneration, .rebalanceInProgress:
            phase = .joining
        case .notCoordinator, .coordinatorNotAvailable:
            coordinatorKnown = false
            phase = .joining
            backOff(.broker(code, message: api), now: now)
        case let code where code.isRetriable:
            phase = .joining
            backOff(.broker(code, message: api), now: now)
        case let code:
            phase = .failed(.broker(code, message: "\(api) \(settings.groupId)"))
        }
    }

    mutating func offsetsFetched(_ response: OffsetFetchResponse, now: NIODeadline) {
        inFlight = nil
        guard case .fetchingOffsets(let generation, let assigned) = phase else { return }
        switch response.errorCode {
        case .noError: break
        case .notCoordinator, .coordinatorNotAvailable:
            coordinatorKnown = false
            return backOff(.broker(response.errorCode, message: "OffsetFetch"), now: now)
        case let code where code.isRetriable || code == .unstableOffsetCommit:
            return backOff(.broker(code, message: "OffsetFetch"), now: now)
        case let code:
            phase = .failed(.broker(code, message: "OffsetFetch \(settings.groupId)"))
            return
        }
        var committed: [StreamPartition: Int64] = [:]
        for topic in response.topics {
            for partition in topic.partitions {
                let key = StreamPartition(stream: topic.name, partition: partition.partitionIndex)
                guard assigned.contains(key) else { continue }
                switch partition.errorCode {
                case .noError:
                    if partition.committedOffset >= 0 { committed[key] = partition.committedOffset }
                case let code where code.isRetriable || code == .unstableOffsetCommit:
                    return backOff(.broker(code, message: "OffsetFetch of \(key)"), now: now)
                case let code:
                    phase = .failed(.broker(code, message: "OffsetFetch of \(key)"))
                    return
                }
            }
        }
        becomeStable(generation, committed: committed, assigned: assigned, now: now)
    }

    private mutating func becomeStable(_ generation: Generation, committed: [StreamPartition: Int64],
                                       assigned: [StreamPartition], now: NIODeadline) {
        assignmentEpoch += 1
        owned = [:]
        offsets = [:]
        var starts: [StreamPartition: Int64?] = [:]
        for partition in assigned {
            owned[partition] = assignmentEpoch
            offsets[partition] = PartitionOffsets(stored: committed[partition], committed: committed[partition])
            starts[partition] = committed[partition]
        }
        phase = .stable(generation)
        nextHeartbeat = now + .milliseconds(Int64(settings.heartbeatIntervalMilliseconds))
        nextAutoCommit = now + .milliseconds(Int64(settings.autoCommitIntervalMilliseconds))
        // Fetching starts first, the application hears of it right after.
        pendingLocalActions = [.startDelivering(starts),
                               .announceAssigned(assigned.sorted { ($0.stream, $0.partition) < ($1.stream, $1.partition) })]
    }

    mutating func heartbeatAnswered(_ response: HeartbeatResponse, now: NIODeadline) {
        inFlight = nil
        nextHeartbeat = now + .milliseconds(Int64(settings.heartbeatIntervalMilliseconds))
        guard case .stable = phase else { return }
        switch response.errorCode {
        case .noError:
            failures = 0
        case .rebalanceInProgress:
            rejoinRequested = true
        case .illegalGeneration, .fencedInstanceId:
            rejoinRequested = true
            lostPartitions = true
        case .unknownMemberId:
            memberId = ""
            rejoinRequested = true
            lostPartitions = true
        case .notCoordinator, .coordinatorNotAvailable:
            coordinatorKnown = false
            backOff(.broker(response.errorCode, message: "Heartbeat"), now: now)
        case let code where code.isRetriable:
            backOff(.broker(code, message: "Heartbeat"), now: now)
        case let code:
            phase = .failed(.broker(code, message: "Heartbeat \(settings.groupId)"))
        }
    }

    /// The commit's answer; returns the manual commits it settles (nil error: committed).
    mutating func commitAnswered(_ response: OffsetCommitResponse, now: NIODeadline) -> [(waiter: UInt64, error: ConsumerError?)] {
        inFlight = nil
        var firstError: ErrorCode?
        for topic in response.topics {
            for partition in topic.partitions {
                let key = StreamPartition(stream: topic.name, partition: partition.partitionIndex)
                guard let sent = sentOffsets[key] else { continue }
                if partition.errorCode == .noError {
                    if offsets[key] != nil { offsets[key]?.committed = sent }
                } else if firstError == nil {
                    firstError = partition.errorCode
                }
            }
        }
        sentOffsets = [:]
        let waiters = commitSent
        commitSent = []
        let error = firstError.map { ConsumerError.broker($0, message: "OffsetCommit") }
        switch firstError {
        case .rebalanceInProgress?:
            if isStable { rejoinRequested = true }
        case .illegalGeneration?, .unknownMemberId?, .fencedInstanceId?:
            if firstError == .unknownMemberId { memberId = "" }
            if isStable {
                rejoinRequested = true
                lostPartitions = true
            }
        case .notCoordinator?, .coordinatorNotAvailable?:
            coordinatorKnown = false
        default:
            break
        }
        return waiters.map { ($0, error) }
    }

    mutating func leaveAnswered(_ response: LeaveGroupResponse) {
        inFlight = nil
        // Whatever the answer: the member is gone either way (an unknown member is already out).
        phase = .left
    }

    // MARK: helpers

    private var failedWaiters: [(UInt64, ConsumerError?)] = []

    /// Manual commits settled without a request (nothing to commit, a rebalance); taken by the caller.
    mutating func takeSettledWaiters() -> [(waiter: UInt64, error: ConsumerError?)] {
        defer { failedWaiters = [] }
        return failedWaiters
    }

    private mutating func completeWaiters(_ waiters: [UInt64], error: ConsumerError?) {
        failedWaiters += waiters.map { ($0, error) }
    }

    private mutating func failAll(_ waiters: [UInt64], _ error: ConsumerError) {
        completeWaiters(waiters, error: error)
        commitWaiting = []
    }

    private mutating func backOff(_ error: ConsumerError, now: NIODeadline) {
        failures += 1
        if failures > settings.retriesMax {
            phase = .failed(error)
            failAll(commitWaiting + commitSent, error)
            commitSent = []
            return
        }
        let milliseconds = min(settings.retryBackoffMilliseconds << min(failures - 1, 16), settings.retryBackoffMaxMilliseconds)
        notBefore = now + .milliseconds(Int64(milliseconds))
    }
}
