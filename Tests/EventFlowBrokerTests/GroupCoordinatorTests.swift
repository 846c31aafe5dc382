@testable import EventFlowBroker
import EventFlowProtocol
import Foundation
import Testing

private let group = GroupCoordinator.GroupKey(organizationID: UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1)), groupID: "billing")

private func join(_ memberID: String = "", protocols: [String] = ["range"], metadata: [UInt8] = [1],
                  session: Int32 = 10_000, rebalance: Int32 = 20_000, knownRequired: Bool = false,
                  instance: String? = nil, type: String = "consumer") -> GroupCoordinator.Join {
    GroupCoordinator.Join(memberID: memberID, groupInstanceID: instance, clientID: "client", sessionTimeoutMilliseconds: session,
                          rebalanceTimeoutMilliseconds: rebalance, protocolType: type,
                          protocols: protocols.map { .init(name: $0, metadata: metadata) }, requiresKnownMemberID: knownRequired)
}

private func joins(_ actions: [GroupCoordinator.Action]) -> [(RequestToken, GroupCoordinator.JoinAnswer)] {
    actions.compactMap { if case .answerJoin(let token, let answer) = $0 { (token, answer) } else { nil } }
}

private func syncs(_ actions: [GroupCoordinator.Action]) -> [(RequestToken, ErrorCode, [UInt8])] {
    actions.compactMap { if case .answerSync(let token, let code, let assignment) = $0 { (token, code, assignment) } else { nil } }
}

/// A stable group with the given members (joined at time 0, initial delay passed at 3 s), each
/// assigned [index]; returns the member ids in join order and the generation.
private func stableGroup(_ coordinator: inout GroupCoordinator, members count: Int, session: Int32 = 10_000) -> ([String], Int32) {
    for index in 0..<count { _ = coordinator.join(group, join(session: session), token: RequestToken(UInt64(100 + index)), now: 0) }
    let answers = joins(coordinator.timerFired(now: 3_000))
    let ids = answers.map(\.1.memberID)
    let generation = answers.first?.1.generation ?? -1
    let leader = answers.first { !$0.1.members.isEmpty }?.1.memberID ?? ""
    var assignments: [String: [UInt8]] = [:]
    for (index, id) in ids.enumerated() { assignments[id] = [UInt8(index)] }
    for (index, id) in ids.enumerated() where id != leader {
        _ = coordinator.sync(group, memberID: id, generation: generation, assignments: [:], token: RequestToken(UInt64(200 + index)), now: 3_000)
    }
    _ = coordinator.sync(group, memberID: leader, generation: generation, assignments: assignments, token: RequestToken(299), now: 3_000)
    return (ids, generation)
}

@Suite struct GroupCoordinatorTests {
    @Test func aFirstJoinWithoutAMemberIdGetsOneThenTheGroupFormsAfterTheInitialDelay() throws {
        var coordinator = GroupCoordinator()
        let first = joins(coordinator.join(group, join(knownRequired: true), token: RequestToken(1), now: 0))
        #expect(first.count == 1)
        #expect(first[0].1.error == .memberIdRequired)
        let id = first[0].1.memberID
        #expect(!id.isEmpty)
        #expect(coordinator.state(of: group) == .empty)

        let second = coordinator.join(group, join(id, knownRequired: true), token: RequestToken(2), now: 10)
        #expect(joins(second).isEmpty)
        #expect(second.contains(.scheduleTimer(deadlineMilliseconds: 3_010)))
        #expect(coordinator.state(of: group) == .preparingRebalance)
        #expect(joins(coordinator.timerFired(now: 3_009)).isEmpty)
        let formed = joins(coordinator.timerFired(now: 3_010))
        let answer = try #require(formed.first)
        #expect(answer.0 == RequestToken(2))
        #expect(answer.1.error == .noError)
        #expect(answer.1.generation == 1)
        #expect(answer.1.leader == id)
        #expect(answer.1.protocolName == "range")
        #expect(answer.1.members.map(\.memberID) == [id])
        #expect(coordinator.state(of: group) == .completingRebalance)
    }

    @Test func theLeadersSyncAnswersEveryWaitingMemberWithItsAssignment() {
        var coordinator = GroupCoordinator()
        _ = coordinator.join(group, join(), token: RequestToken(1), now: 0)
        _ = coordinator.join(group, join(), token: RequestToken(2), now: 100)
        let answers = joins(coordinator.timerFired(now: 3_100))
        #expect(answers.count == 2)
        let leader = answers.first { $0.0 == RequestToken(1) }!.1
        let follower = answers.first { $0.0 == RequestToken(2) }!.1
        #expect(leader.leader == leader.memberID)
        #expect(leader.members.count == 2)
        #expect(follower.members.isEmpty, "only the leader sees the members' metadata")
        #expect(coordinator.sync(group, memberID: follower.memberID, generation: 1, assignments: [:], token: RequestToken(3), now: 3_200).isEmpty)
        let synced = syncs(coordinator.sync(group, memberID: leader.memberID, generation: 1,
                                            assignments: [leader.memberID: [0xA], follower.memberID: [0xB]], token: RequestToken(4), now: 3_300))
        #expect(synced.map(\.0).sorted { $0.rawValue < $1.rawValue } == [RequestToken(3), RequestToken(4)])
        #expect(synced.first { $0.0 == RequestToken(3) }?.2 == [0xB])
        #expect(synced.first { $0.0 == RequestToken(4) }?.2 == [0xA])
        #expect(coordinator.state(of: group) == .stable)
        // In Stable, a SyncGroup is answered with the member's assignment at once.
        #expect(syncs(coordinator.sync(group, memberID: follower.memberID, generation: 1, assignments: [:], token: RequestToken(5), now: 3_400))
            .first?.2 == [0xB])
    }

    @Test func heartbeatsAnswerUnknownMemberStaleGenerationAndRebalance() {
        var coordinator = GroupCoordinator()
        let (ids, generation) = stableGroup(&coordinator, members: 1)
        #expect(coordinator.heartbeat(group, memberID: ids[0], generation: generation, now: 4_000) == .noError)
        #expect(coordinator.heartbeat(group, memberID: "nobody", generation: generation, now: 4_000) == .unknownMemberId)
        #expect(coordinator.heartbeat(group, memberID: ids[0], generation: generation - 1, now: 4_000) == .illegalGeneration)
        // A new member: the group rebalances and the old member learns it from its heartbeat.
        _ = coordinator.join(group, join(), token: RequestToken(10), now: 4_100)
        #expect(coordinator.state(of: group) == .preparingRebalance)
        #expect(coordinator.heartbeat(group, memberID: ids[0], generation: generation, now: 4_200) == .rebalanceInProgress)
        // It rejoins: everyone has, so the join completes at once (no initial delay: the group was not empty).
        let rejoined = joins(coordinator.join(group, join(ids[0]), token: RequestToken(11), now: 4_300))
        #expect(rejoined.count == 2)
        #expect(rejoined.allSatisfy { $0.1.generation == generation + 1 })
        #expect(rejoined.first { $0.0 == RequestToken(11) }?.1.leader == ids[0], "the leader stays the leader")
    }

    @Test func aMemberThatStopsHeartbeatingIsRemovedAfterItsSessionAndTheOthersRebalance() {
        var coordinator = GroupCoordinator()
        let (ids, generation) = stableGroup(&coordinator, members: 2)
        #expect(coordinator.heartbeat(group, memberID: ids[0], generation: generation, now: 9_000) == .noError)
        // Sessions are 10 s: the second member's ran out at 13 s (its last request was at 3 s).
        _ = coordinator.timerFired(now: 13_000)
        #expect(coordinator.state(of: group) == .preparingRebalance)
        #expect(coordinator.describe(group)?.members.map(\.memberID) == [ids[0]])
        let rejoined = joins(coordinator.join(group, join(ids[0]), token: RequestToken(20), now: 13_100))
        #expect(rejoined.first?.1.generation == generation + 1)
        #expect(rejoined.first?.1.members.map(\.memberID) == [ids[0]])
    }

    @Test func membersThatDoNotRejoinWithinTheRebalanceTimeoutAreDropped() {
        var coordinator = GroupCoordinator()
        // Sessions (30 s) outlast the rebalance timeout (20 s): only the rebalance timeout can drop the member.
        let (ids, generation) = stableGroup(&coordinator, members: 2, session: 30_000)
        _ = coordinator.join(group, join(session: 30_000), token: RequestToken(30), now: 4_000)
        _ = coordinator.join(group, join(ids[0], session: 30_000), token: RequestToken(31), now: 4_100)
        #expect(coordinator.heartbeat(group, memberID: ids[1], generation: generation, now: 5_000) == .rebalanceInProgress)
        // The rebalance timeout is 20 s from 4 s: the second member never rejoined.
        #expect(joins(coordinator.timerFired(now: 23_999)).isEmpty)
        let answered = joins(coordinator.timerFired(now: 24_000))
        #expect(answered.map(\.0).sorted { $0.rawValue < $1.rawValue } == [RequestToken(30), RequestToken(31)])
        #expect(coordinator.describe(group)?.members.count == 2)
        #expect(coordinator.describe(group)?.members.contains { $0.memberID == ids[1] } == false)
    }

    @Test func leavingRebalancesAtOnceAndTheLastOneLeavesAnEmptyGroup() {
        var coordinator = GroupCoordinator()
        let (ids, generation) = stableGroup(&coordinator, members: 2)
        let (codes, _) = coordinator.leave(group, members: [(ids[1], nil), ("nobody", nil)], now: 5_000)
        #expect(codes == [.noError, .unknownMemberId])
        #expect(coordinator.state(of: group) == .preparingRebalance)
        #expect(joins(coordinator.join(group, join(ids[0]), token: RequestToken(40), now: 5_100)).first?.1.generation == generation + 1)
        let (last, _) = coordinator.leave(group, members: [(ids[0], nil)], now: 6_000)
        #expect(last == [.noError])
        #expect(coordinator.state(of: group) == .empty)
    }

    @Test func joinsAreRefusedForABadSessionTimeoutAMismatchedProtocolOrAFullGroup() {
        var coordinator = GroupCoordinator(configuration: .init(membersPerGroupMax: 1))
        #expect(joins(coordinator.join(group, join(session: 1_000), token: RequestToken(1), now: 0)).first?.1.error == .invalidSessionTimeout)
        _ = coordinator.join(group, join(protocols: ["range"]), token: RequestToken(2), now: 0)
        #expect(joins(coordinator.join(group, join(protocols: ["roundrobin"]), token: RequestToken(3), now: 0)).first?.1.error
                == .inconsistentGroupProtocol)
        #expect(joins(coordinator.join(group, join(type: "connect"), token: RequestToken(4), now: 0)).first?.1.error == .inconsistentGroupProtocol)
        #expect(joins(coordinator.join(group, join(), token: RequestToken(5), now: 0)).first?.1.error == .groupMaxSizeReached)
        #expect(joins(coordinator.join(group, join("made-up-id"), token: RequestToken(6), now: 0)).first?.1.error == .unknownMemberId)
    }

    @Test func theProtocolIsChosenByVoteAmongThoseEveryMemberSupports() {
        #expect(GroupCoordinator.vote([["range", "roundrobin"], ["range", "roundrobin"], ["roundrobin", "range"]]) == "range")
        #expect(GroupCoordinator.vote([["sticky", "roundrobin"], ["roundrobin"]]) == "roundrobin")
    }

    @Test func commitsComeFromTheCurrentGenerationOrFromOutsideAnEmptyGroup() {
        var coordinator = GroupCoordinator()
        #expect(coordinator.commitAllowed(group, memberID: "", generation: -1, now: 0) == .noError)
        let (ids, generation) = stableGroup(&coordinator, members: 1)
        #expect(coordinator.commitAllowed(group, memberID: ids[0], generation: generation, now: 4_000) == .noError)
        #expect(coordinator.commitAllowed(group, memberID: ids[0], generation: generation + 1, now: 4_000) == .illegalGeneration)
        #expect(coordinator.commitAllowed(group, memberID: "", generation: -1, now: 4_000) == .unknownMemberId)
        #expect(coordinator.commitAllowed(group, memberID: "other", generation: generation, now: 4_000) == .unknownMemberId)
        // Between JoinGroup and SyncGroup the assignment is not known yet.
        _ = coordinator.join(group, join(ids[0], metadata: [9]), token: RequestToken(50), now: 4_100)
        #expect(coordinator.state(of: group) == .completingRebalance)
        #expect(coordinator.commitAllowed(group, memberID: ids[0], generation: generation + 1, now: 4_200) == .rebalanceInProgress)
    }

    @Test func aStaticMemberRejoiningAStableGroupTakesItsPlaceWithoutARebalance() {
        var coordinator = GroupCoordinator()
        _ = coordinator.join(group, join(instance: "worker-1"), token: RequestToken(1), now: 0)
        let formed = joins(coordinator.timerFired(now: 3_000))
        let old = formed[0].1.memberID
        _ = coordinator.sync(group, memberID: old, generation: 1, assignments: [old: [7]], token: RequestToken(2), now: 3_000)
        let again = joins(coordinator.join(group, join(instance: "worker-1"), token: RequestToken(3), now: 5_000))
        #expect(again.first?.1.generation == 1)
        #expect(again.first?.1.memberID != old)
        #expect(coordinator.state(of: group) == .stable)
        #expect(coordinator.heartbeat(group, memberID: old, generation: 1, now: 5_100) == .unknownMemberId, "the old id is fenced")
        let newID = again.first?.1.memberID ?? ""
        #expect(syncs(coordinator.sync(group, memberID: newID, generation: 1, assignments: [:], token: RequestToken(4), now: 5_200)).first?.2 == [7])
    }
}
