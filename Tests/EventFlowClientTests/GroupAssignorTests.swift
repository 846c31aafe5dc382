@testable import EventFlowClient
import EventFlowProtocol
import Testing

/// The assignors against the examples of Kafka's RangeAssignor and RoundRobinAssignor javadoc
/// (members C0, C1; topics t0, t1 with 3 partitions each), and the invariants every assignment keeps.
struct GroupAssignorTests {
    func partitions(_ list: [(String, Int32)]) -> [StreamPartition] { list.map { StreamPartition(stream: $0.0, partition: $0.1) } }

    @Test func protocolNamesAreKafkas() {
        #expect(GroupAssignor.range.protocolName == "range")
        #expect(GroupAssignor.roundRobin.protocolName == "roundrobin")
        #expect(GroupAssignor(protocolName: "cooperative-sticky") == nil)
    }

    @Test func rangeSplitsEachStreamInContiguousRangesFirstMembersGetTheExtra() {
        let members = [GroupAssignor.Member(memberId: "C1", streams: ["t0", "t1"]), .init(memberId: "C0", streams: ["t0", "t1"])]
        let result = GroupAssignor.range.assign(members, partitionCounts: ["t0": 3, "t1": 3])
        #expect(result["C0"] == partitions([("t0", 0), ("t0", 1), ("t1", 0), ("t1", 1)]))
        #expect(result["C1"] == partitions([("t0", 2), ("t1", 2)]))
    }

    @Test func roundRobinDealsAllPartitionsInOrder() {
        let members = [GroupAssignor.Member(memberId: "C1", streams: ["t0", "t1"]), .init(memberId: "C0", streams: ["t0", "t1"])]
        let result = GroupAssignor.roundRobin.assign(members, partitionCounts: ["t0": 3, "t1": 3])
        #expect(result["C0"] == partitions([("t0", 0), ("t0", 2), ("t1", 1)]))
        #expect(result["C1"] == partitions([("t0", 1), ("t1", 0), ("t1", 2)]))
    }

    /// Kafka's javadoc: C0 subscribes t0; C1 t0, t1; C2 t0, t1, t2 (1, 2, 3 partitions).
    @Test func roundRobinSkipsMembersNotSubscribedWithoutResettingTheCursor() {
        let members = [GroupAssignor.Member(memberId: "C0", streams: ["t0"]), .init(memberId: "C1", streams: ["t0", "t1"]),
                       .init(memberId: "C2", streams: ["t0", "t1", "t2"])]
        let result = GroupAssignor.roundRobin.assign(members, partitionCounts: ["t0": 1, "t1": 2, "t2": 3])
        #expect(result["C0"] == partitions([("t0", 0)]))
        #expect(result["C1"] == partitions([("t1", 0)]))
        #expect(result["C2"] == partitions([("t1", 1), ("t2", 0), ("t2", 1), ("t2", 2)]))
    }

    @Test func moreMembersThanPartitionsLeavesSomeEmptyButListed() {
        let members = (0 ..< 4).map { GroupAssignor.Member(memberId: "m\($0)", streams: ["s"]) }
        for assignor in GroupAssignor.allCases {
            let result = assignor.assign(members, partitionCounts: ["s": 2])
            #expect(result.count == 4)
            #expect(result["m0"] == partitions([("s", 0)]) && result["m1"] == partitions([("s", 1)]))
            #expect(result["m2"] == [] && result["m3"] == [])
        }
    }

    @Test func aStreamWithoutMetadataIsLeftUnassigned() {
        let members = [GroupAssignor.Member(memberId: "a", streams: ["known", "hidden"])]
        for assignor in GroupAssignor.allCases {
            #expect(assignor.assign(members, partitionCounts: ["known": 2])["a"] == partitions([("known", 0), ("known", 1)]))
        }
    }

    @Test func everyPartitionGoesToExactlyOneSubscribedMember() {
        let streams = ["a", "b", "c"]
        let counts: [String: Int32] = ["a": 7, "b": 1, "c": 12]
        for memberCount in 1 ... 9 {
            let members = (0 ..< memberCount).map { index in
                GroupAssignor.Member(memberId: "member-\(index)", streams: streams.enumerated().filter { ($0.offset + index) % 3 != 0 || index == 0 }.map(\.element))
            }
            for assignor in GroupAssignor.allCases {
                let result = assignor.assign(members, partitionCounts: counts)
                var seen: [StreamPartition] = []
                for member in members {
                    for partition in result[member.memberId] ?? [] {
                        #expect(member.streams.contains(partition.stream), "\(assignor) gave \(partition) to \(member.memberId)")
                        seen.append(partition)
                    }
                }
                let all = streams.flatMap { stream in (0 ..< counts[stream]!).map { StreamPartition(stream: stream, partition: $0) } }
                #expect(Set(seen) == Set(all) && seen.count == all.count, "\(assignor) with \(memberCount) members")
                if assignor == .range {
                    // Per stream, members' shares differ by at most one.
                    for stream in streams {
                        let shares = members.filter { $0.streams.contains(stream) }.map { member in
                            (result[member.memberId] ?? []).filter { $0.stream == stream }.count
                        }
                        #expect((shares.max() ?? 0) - (shares.min() ?? 0) <= 1)
                    }
                }
            }
        }
    }

    @Test func theAssignmentEncodesPerStreamInOrder() throws {
        let assignment = ConsumerProtocolAssignment(partitions([("b", 2), ("a", 1), ("b", 0)]))
        #expect(assignment.assignedPartitions == [.init(topic: "a", partitions: [1]), .init(topic: "b", partitions: [0, 2])])
        #expect(try ConsumerProtocolAssignment.decode(assignment.encoded()).streamPartitions == partitions([("a", 1), ("b", 0), ("b", 2)]))
    }
}
