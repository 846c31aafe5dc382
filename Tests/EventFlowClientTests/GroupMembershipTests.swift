@testable import EventFlowClient
import EventFlowProtocol
import NIOCore
import Testing

/// The member's side of the classic group protocol without a socket: each test drives one
/// transition and checks the request or local action that comes next.
struct GroupMembershipTests {
    let orders0 = StreamPartition(stream: "orders", partition: 0)
    let orders1 = StreamPartition(stream: "orders", partition: 1)
    let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

    func settings(autoCommit: Bool = true, storesOnDelivery: Bool = true, instanceId: String? = nil,
                  assignors: [GroupAssignor] = [.range, .roundRobin]) -> GroupMembership.Settings {
        var group = ConsumerConfiguration.GroupSettings()
        group.autoCommit = autoCommit
        group.storesOffsetsOnDelivery = storesOnDelivery
        group.groupInstanceId = instanceId
        group.assignors = assignors
        return GroupMembership.Settings(groupId: "billing", streams: ["orders"], group: group, retriesMax: 2,
                                        retryBackoffMilliseconds: 100, retryBackoffMaxMilliseconds: 1_000)
    }

    func ms(_ value: Int64) -> NIODeadline { start + .milliseconds(value) }

    func subscription(_ streams: [String]) -> ByteBuffer { ConsumerProtocolSubscription(version: 0, topics: streams).encoded() }

    /// FindCoordinator, the MEMBER_ID_REQUIRED round and the join that makes this member `leader`'s follower or the leader.
    func joined(_ membership: inout GroupMembership, leader: Bool, others: [(String, [String])] = []) {
        guard case .findCoordinator(let find) = membership.nextAction(now: start) else { Issue.record("expected FindCoordinator"); return }
        #expect(find.key == "billing" && find.keyType == 0)
        membership.coordinatorFound(FindCoordinatorResponse(nodeId: 1, host: "h", port: 1), now: start)
        guard case .join(let first, _) = membership.nextAction(now: start) else { Issue.record("expected JoinGroup"); return }
        #expect(first.memberId == "")
        membership.joinAnswered(JoinGroupResponse(errorCode: .memberIdRequired, generationId: -1, protocolName: "", leader: "",
                                                  memberId: "m-1", members: []), now: start)
        guard case .join(let second, _) = membership.nextAction(now: start) else { Issue.record("expected the second JoinGroup"); return }
        #expect(second.memberId == "m-1")
        let members = [JoinGroupResponse.Member(memberId: "m-1", metadata: subscription(["orders"]))]
            + others.map { JoinGroupResponse.Member(memberId: $0.0, metadata: subscription($0.1)) }
        membership.joinAnswered(JoinGroupResponse(generationId: 5, protocolName: "range", leader: leader ? "m-1" : "m-0",
                                                  memberId: "m-1", members: leader ? members : []), now: start)
    }

    /// Joined as the only member, assigned both partitions, offsets fetched: stable.
    func stable(_ committed: [Int64] = [-1, -1], autoCommit: Bool = true, storesOnDelivery: Bool = true,
                instanceId: String? = nil) -> GroupMembership {
        var membership = GroupMembership(settings: settings(autoCommit: autoCommit, storesOnDelivery: storesOnDelivery, instanceId: instanceId))
        joined(&membership, leader: true)
        _ = membership.nextAction(now: start)
        membership.partitionCountsFound(["orders": 2])
        _ = membership.nextAction(now: start)
        membership.syncAnswered(SyncGroupResponse(assignment: ConsumerProtocolAssignment([orders0, orders1]).encoded()), now: start)
        _ = membership.nextAction(now: start)
        membership.offsetsFetched(OffsetFetchResponse(topics: [.init(name: "orders", partitions: [
            .init(partitionIndex: 0, committedOffset: committed[0]), .init(partitionIndex: 1, committedOffset: committed[1]),
        ])]), now: start)
        _ = membership.nextAction(now: start) // startDelivering
        _ = membership.nextAction(now: start) // announceAssigned
        return membership
    }

    @Test func firstJoinOffersEveryAssignorWithTheSubscription() throws {
        var membership = GroupMembership(settings: settings())
        membership.coordinatorFound(FindCoordinatorResponse(nodeId: 1, host: "h", port: 1), now: start)
        guard case .join(let join, let instance) = membership.nextAction(now: start) else {
            Issue.record("expected JoinGroup")
            return
        }
        #expect(instance == nil)
        #expect(join.groupId == "billing" && join.memberId == "" && join.protocolType == "consumer")
        #expect(join.sessionTimeoutMs == 45_000 && join.rebalanceTimeoutMs == 300_000)
        #expect(join.protocols.map(\.name) == ["range", "roundrobin"])
        #expect(try join.protocols.allSatisfy { try ConsumerProtocolSubscription.decode($0.metadata).topics == ["orders"] })
    }

    @Test func findCoordinatorComesFirstAndARetriableErrorBacksOff() {
        var membership = GroupMembership(settings: settings())
        guard case .findCoordinator = membership.nextAction(now: start) else { Issue.record("expected FindCoordinator"); return }
        #expect(membership.nextAction(now: start) == .wait(until: nil))
        membership.coordinatorFound(FindCoordinatorResponse(errorCode: .coordinatorNotAvailable, nodeId: -1, host: "", port: -1), now: start)
        #expect(membership.nextAction(now: start) == .wait(until: ms(100)))
        guard case .findCoordinator = membership.nextAction(now: ms(100)) else { Issue.record("expected FindCoordinator again"); return }
    }

    @Test func theLeaderLooksUpPartitionCountsAndSendsEveryMembersAssignment() throws {
        var membership = GroupMembership(settings: settings())
        joined(&membership, leader: true, others: [("m-0", ["orders"]), ("m-2", ["payments"])])
        #expect(membership.nextAction(now: start) == .lookUpPartitionCounts(["orders", "payments"]))
        membership.partitionCountsFound(["orders": 4, "payments": 1])
        guard case .sync(let sync) = membership.nextAction(now: start) else { Issue.record("expected SyncGroup"); return }
        #expect(sync.generationId == 5 && sync.memberId == "m-1")
        var assigned: [String: [StreamPartition]] = [:]
        for entry in sync.assignments { assigned[entry.memberId] = try ConsumerProtocolAssignment.decode(entry.assignment).streamPartitions }
        // Range over members sorted by id: m-0 gets orders 0–1, m-1 orders 2–3, m-2 payments.
        #expect(assigned["m-0"] == [orders0, orders1])
        #expect(assigned["m-1"] == [StreamPartition(stream: "orders", partition: 2), StreamPartition(stream: "orders", partition: 3)])
        #expect(assigned["m-2"] == [StreamPartition(stream: "payments", partition: 0)])
    }

    @Test func aFollowerSendsAnEmptySyncAndReadsItsAssignment() {
        var membership = GroupMembership(settings: settings())
        joined(&membership, leader: false)
        guard case .sync(let sync) = membership.nextAction(now: start) else { Issue.record("expected SyncGroup"); return }
        #expect(sync.assignments.isEmpty)
        membership.syncAnswered(SyncGroupResponse(assignment: ConsumerProtocolAssignment([orders1]).encoded()), now: start)
        guard case .fetchOffsets(let fetch) = membership.nextAction(now: start) else { Issue.record("expected OffsetFetch"); return }
        #expect(fetch.groupId == "billing" && fetch.topics == [.init(name: "orders", partitionIndexes: [1])])
    }

    @Test func committedOffsetsStartTheAssignedPartitionsAndMinusOneMeansNone() {
        var membership = GroupMembership(settings: settings())
        joined(&membership, leader: false)
        _ = membership.nextAction(now: start)
        membership.syncAnswered(SyncGroupResponse(assignment: ConsumerProtocolAssignment([orders0, orders1]).encoded()), now: start)
        _ = membership.nextAction(now: start)
        membership.offsetsFetched(OffsetFetchResponse(topics: [.init(name: "orders", partitions: [
            .init(partitionIndex: 0, committedOffset: 17), .init(partitionIndex: 1, committedOffset: -1),
        ])]), now: start)
        #expect(membership.nextAction(now: start) == .startDelivering([orders0: 17, orders1: nil]))
        #expect(membership.nextAction(now: start) == .announceAssigned([orders0, orders1]))
        #expect(membership.isStable)
    }

    @Test func anEmptyAssignmentIsStableWithoutAnOffsetFetch() {
        var membership = GroupMembership(settings: settings())
        joined(&membership, leader: false)
        _ = membership.nextAction(now: start)
        membership.syncAnswered(SyncGroupResponse(assignment: ByteBuffer()), now: start)
        #expect(membership.nextAction(now: start) == .startDelivering([:]))
        #expect(membership.nextAction(now: start) == .announceAssigned([]))
        #expect(membership.isStable)
    }

    @Test func heartbeatsGoOutEveryInterval() {
        var membership = stable()
        #expect(membership.nextAction(now: start) == .wait(until: ms(3_000)))
        guard case .heartbeat(let heartbeat) = membership.nextAction(now: ms(3_000)) else { Issue.record("expected Heartbeat"); return }
        #expect(heartbeat == HeartbeatRequest(groupId: "billing", generationId: 5, memberId: "m-1"))
        membership.heartbeatAnswered(HeartbeatResponse(), now: ms(3_001))
        #expect(membership.nextAction(now: ms(3_001)) == .wait(until: ms(5_000)))
    }

    @Test func autoCommitSendsWhatWasDeliveredSinceTheLastCommit() {
        var membership = stable([10, -1])
        let epoch = membership.epoch(of: orders0)!
        do {
            let outcome = membership.deliver(orders0, offset: 10, epoch: epoch)
            #expect(outcome)
        }
        do {
            let outcome = membership.deliver(orders0, offset: 11, epoch: epoch)
            #expect(outcome)
        }
        membership.heartbeatAnswered(HeartbeatResponse(), now: ms(4_000))
        guard case .commit(let commit) = membership.nextAction(now: ms(5_000)) else { Issue.record("expected OffsetCommit"); return }
        #expect(commit.generationId == 5 && commit.memberId == "m-1")
        #expect(commit.topics == [.init(name: "orders", partitions: [.init(partitionIndex: 0, committedOffset: 12)])])
        _ = membership.commitAnswered(OffsetCommitResponse(topics: [.init(name: "orders", partitions: [.init(partitionIndex: 0)])]), now: ms(5_001))
        #expect(membership.offsets[orders0] == .init(stored: 12, committed: 12))
        // Nothing new: the next interval sends nothing.
        #expect(membership.nextAction(now: ms(5_001)) == .wait(until: ms(7_000)))
        let next = membership.nextAction(now: ms(10_001))
        guard case .heartbeat = next else { Issue.record("expected only a heartbeat, got \(next)"); return }
    }

    @Test func aManualCommitWaitsForItsAnswer() {
        var membership = stable(autoCommit: false)
        do {
            let outcome = membership.commitRequested(waiter: 1)
            #expect(outcome == .nothingToCommit)
        }
        _ = membership.deliver(orders1, offset: 0, epoch: membership.epoch(of: orders1)!)
        do {
            let outcome = membership.commitRequested(waiter: 2)
            #expect(outcome == .queued)
        }
        guard case .commit(let commit) = membership.nextAction(now: start) else { Issue.record("expected OffsetCommit"); return }
        #expect(commit.topics == [.init(name: "orders", partitions: [.init(partitionIndex: 1, committedOffset: 1)])])
        let settled = membership.commitAnswered(OffsetCommitResponse(topics: [.init(name: "orders", partitions: [.init(partitionIndex: 1)])]), now: start)
        #expect(settled.map(\.waiter) == [2] && settled.allSatisfy { $0.error == nil })
    }

    @Test func aRefusedCommitFailsItsWaiter() {
        var membership = stable(autoCommit: false)
        _ = membership.deliver(orders1, offset: 0, epoch: membership.epoch(of: orders1)!)
        _ = membership.commitRequested(waiter: 7)
        _ = membership.nextAction(now: start)
        let settled = membership.commitAnswered(OffsetCommitResponse(topics: [.init(name: "orders", partitions: [
            .init(partitionIndex: 1, errorCode: .offsetMetadataTooLarge),
        ])]), now: start)
        #expect(settled.map(\.waiter) == [7] && settled.first?.error == .broker(.offsetMetadataTooLarge, message: "OffsetCommit"))
    }

    @Test func storeOffsetMarksWhatTheNextCommitSends() {
        var membership = stable(autoCommit: false, storesOnDelivery: false)
        let epoch = membership.epoch(of: orders0)!
        do {
            let outcome = membership.deliver(orders0, offset: 0, epoch: epoch)
            #expect(outcome)
        }
        do {
            let outcome = membership.deliver(orders0, offset: 1, epoch: epoch)
            #expect(outcome)
        }
        do {
            let outcome = membership.commitRequested(waiter: 1)
            #expect(outcome == .nothingToCommit)
        }
        do {
            let outcome = membership.store(orders0, offset: 0)
            #expect(outcome)
        }
        do {
            let outcome = membership.store(StreamPartition(stream: "orders", partition: 9), offset: 0)
            #expect(!outcome)
        }
        _ = membership.commitRequested(waiter: 2)
        guard case .commit(let commit) = membership.nextAction(now: start) else { Issue.record("expected OffsetCommit"); return }
        #expect(commit.topics.first?.partitions.first?.committedOffset == 1)
    }

    @Test func rebalanceInProgressStopsDeliveryCommitsThenRevokesAndRejoinsWithTheSameId() {
        var membership = stable()
        let epoch = membership.epoch(of: orders0)!
        _ = membership.deliver(orders0, offset: 4, epoch: epoch)
        _ = membership.nextAction(now: ms(3_000))
        membership.heartbeatAnswered(HeartbeatResponse(errorCode: .rebalanceInProgress), now: ms(3_000))
        #expect(membership.nextAction(now: ms(3_000)) == .stopDelivering([orders0, orders1]))
        // From now on no record of the old assignment is delivered.
        do {
            let outcome = membership.deliver(orders0, offset: 5, epoch: epoch)
            #expect(!outcome)
        }
        guard case .commit(let commit) = membership.nextAction(now: ms(3_000)) else { Issue.record("expected the commit before the revoke"); return }
        #expect(commit.generationId == 5 && commit.topics.first?.partitions == [.init(partitionIndex: 0, committedOffset: 5)])
        _ = membership.commitAnswered(OffsetCommitResponse(topics: [.init(name: "orders", partitions: [.init(partitionIndex: 0)])]), now: ms(3_001))
        #expect(membership.nextAction(now: ms(3_001)) == .announceRevoked([orders0, orders1]))
        guard case .join(let join, _) = membership.nextAction(now: ms(3_001)) else { Issue.record("expected JoinGroup"); return }
        #expect(join.memberId == "m-1")
    }

    @Test func illegalGenerationLosesThePartitionsWithoutACommit() {
        var membership = stable()
        _ = membership.deliver(orders0, offset: 4, epoch: membership.epoch(of: orders0)!)
        _ = membership.nextAction(now: ms(3_000))
        membership.heartbeatAnswered(HeartbeatResponse(errorCode: .illegalGeneration), now: ms(3_000))
        #expect(membership.nextAction(now: ms(3_000)) == .stopDelivering([orders0, orders1]))
        #expect(membership.nextAction(now: ms(3_000)) == .announceRevoked([orders0, orders1]))
        guard case .join(let join, _) = membership.nextAction(now: ms(3_000)) else { Issue.record("expected JoinGroup"); return }
        #expect(join.memberId == "m-1")
    }

    @Test func unknownMemberIdRejoinsWithAnEmptyMemberId() {
        var membership = stable()
        _ = membership.nextAction(now: ms(3_000))
        membership.heartbeatAnswered(HeartbeatResponse(errorCode: .unknownMemberId), now: ms(3_000))
        #expect(membership.nextAction(now: ms(3_000)) == .stopDelivering([orders0, orders1]))
        #expect(membership.nextAction(now: ms(3_000)) == .announceRevoked([orders0, orders1]))
        guard case .join(let join, _) = membership.nextAction(now: ms(3_000)) else { Issue.record("expected JoinGroup"); return }
        #expect(join.memberId == "")
    }

    @Test func syncErrorsRejoin() {
        for (code, memberId) in [(ErrorCode.rebalanceInProgress, "m-1"), (.illegalGeneration, "m-1"), (.unknownMemberId, "")] {
            var membership = GroupMembership(settings: settings())
            joined(&membership, leader: false)
            _ = membership.nextAction(now: start)
            membership.syncAnswered(SyncGroupResponse(errorCode: code, assignment: ByteBuffer()), now: start)
            guard case .join(let join, _) = membership.nextAction(now: start) else { Issue.record("expected JoinGroup after \(code)"); continue }
            #expect(join.memberId == memberId, "after \(code)")
        }
    }

    @Test func aFatalJoinErrorFailsTheMember() {
        var membership = GroupMembership(settings: settings())
        membership.coordinatorFound(FindCoordinatorResponse(nodeId: 1, host: "h", port: 1), now: start)
        _ = membership.nextAction(now: start)
        membership.joinAnswered(JoinGroupResponse(errorCode: .inconsistentGroupProtocol, generationId: -1, protocolName: "",
                                                  leader: "", memberId: "", members: []), now: start)
        #expect(membership.failure == .broker(.inconsistentGroupProtocol, message: "JoinGroup billing"))
        #expect(membership.nextAction(now: start) == .finished)
    }

    @Test func aLostConnectionLooksTheCoordinatorUpAgainAndRepeatsTheStep() {
        var membership = stable()
        _ = membership.nextAction(now: ms(3_000))
        _ = membership.requestFailed(.connection("reset"), now: ms(3_000))
        #expect(membership.nextAction(now: ms(3_000)) == .wait(until: ms(3_100)))
        guard case .findCoordinator = membership.nextAction(now: ms(3_100)) else { Issue.record("expected FindCoordinator"); return }
        membership.coordinatorFound(FindCoordinatorResponse(nodeId: 1, host: "h", port: 1), now: ms(3_100))
        guard case .heartbeat = membership.nextAction(now: ms(3_100)) else { Issue.record("expected the heartbeat again"); return }
        #expect(membership.isStable)
    }

    @Test func failuresBeyondTheRetriesFailTheMember() {
        var membership = GroupMembership(settings: settings())
        var now = start
        for _ in 0 ..< 3 {
            _ = membership.nextAction(now: now)
            _ = membership.requestFailed(.connection("refused"), now: now)
            now = now + .seconds(2)
        }
        #expect(membership.failure == .connection("refused"))
    }

    @Test func shutdownCommitsRevokesAndLeaves() {
        var membership = stable()
        _ = membership.deliver(orders1, offset: 2, epoch: membership.epoch(of: orders1)!)
        membership.shutDown()
        #expect(membership.nextAction(now: ms(10)) == .stopDelivering([orders0, orders1]))
        guard case .commit(let commit) = membership.nextAction(now: ms(10)) else { Issue.record("expected the final commit"); return }
        #expect(commit.topics.first?.partitions == [.init(partitionIndex: 1, committedOffset: 3)])
        _ = membership.commitAnswered(OffsetCommitResponse(topics: [.init(name: "orders", partitions: [.init(partitionIndex: 1)])]), now: ms(11))
        #expect(membership.nextAction(now: ms(11)) == .announceRevoked([orders0, orders1]))
        #expect(membership.nextAction(now: ms(11)) == .leave(LeaveGroupRequest(groupId: "billing", memberId: "m-1")))
        membership.leaveAnswered(LeaveGroupResponse())
        #expect(membership.nextAction(now: ms(12)) == .finished)
        do {
            let outcome = membership.commitRequested(waiter: 1)
            #expect(outcome == .rejected(.commitFailed("the consumer is shutting down")))
        }
    }

    @Test func shutdownWithoutAutoCommitLeavesWithoutCommitting() {
        var membership = stable(autoCommit: false)
        _ = membership.deliver(orders1, offset: 2, epoch: membership.epoch(of: orders1)!)
        membership.shutDown()
        #expect(membership.nextAction(now: ms(10)) == .stopDelivering([orders0, orders1]))
        #expect(membership.nextAction(now: ms(10)) == .announceRevoked([orders0, orders1]))
        guard case .leave = membership.nextAction(now: ms(10)) else { Issue.record("expected LeaveGroup"); return }
    }

    @Test func aStaticMemberSendsNoLeaveGroup() {
        var membership = stable(instanceId: "billing-1")
        membership.shutDown()
        #expect(membership.nextAction(now: ms(10)) == .stopDelivering([orders0, orders1]))
        #expect(membership.nextAction(now: ms(10)) == .announceRevoked([orders0, orders1]))
        #expect(membership.nextAction(now: ms(10)) == .finished)
    }

    @Test func shutdownDuringAParkedJoinLeavesWithTheMemberIdItGot() {
        var membership = GroupMembership(settings: settings())
        membership.coordinatorFound(FindCoordinatorResponse(nodeId: 1, host: "h", port: 1), now: start)
        _ = membership.nextAction(now: start)
        membership.joinAnswered(JoinGroupResponse(errorCode: .memberIdRequired, generationId: -1, protocolName: "", leader: "",
                                                  memberId: "m-1", members: []), now: start)
        _ = membership.nextAction(now: start)
        #expect(membership.inFlightMayBeParked)
        membership.shutDown()
        // The caller closes the connection under the parked join.
        _ = membership.requestFailed(.connection("closed"), now: start)
        #expect(membership.nextAction(now: start) == .leave(LeaveGroupRequest(groupId: "billing", memberId: "m-1")))
    }
}
