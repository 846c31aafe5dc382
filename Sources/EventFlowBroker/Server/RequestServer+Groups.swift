import EventFlowProtocol
import EventFlowStorage
import Foundation
import NIOCore

/// The group APIs of one connection: membership through the `GroupService`, committed offsets
/// in PostgreSQL. Group ids are scoped to the key's organization.
extension RequestServer {
    /// Kafka refuses an empty group id; a NUL byte is refused too, since PostgreSQL's text cannot store it,
    /// and so are the broker's internal groups (`__eventflow.`: the analytics projection's positions).
    private static func isValidGroupID(_ groupID: String) -> Bool {
        !groupID.isEmpty && !groupID.utf8.contains(0) && !groupID.hasPrefix(EventProjection.internalGroupPrefix)
    }

    private func groupKey(_ groupID: String) -> GroupCoordinator.GroupKey {
        GroupCoordinator.GroupKey(organizationID: principal.organizationID, groupID: groupID)
    }

    func joinGroup(_ request: JoinGroupRequest, version: Int16, clientID: String?, clientHost: String) -> EventLoopFuture<JoinGroupResponse> {
        guard Self.isValidGroupID(request.groupId) else {
            return eventLoop.makeSucceededFuture(JoinGroupResponse(errorCode: .invalidGroupId, generationId: -1, protocolName: "",
                                                                   leader: "", memberId: request.memberId, members: []))
        }
        let join = GroupCoordinator.Join(
            memberID: request.memberId, groupInstanceID: request.groupInstanceId, clientID: clientID ?? "", clientHost: clientHost,
            sessionTimeoutMilliseconds: request.sessionTimeoutMs,
            rebalanceTimeoutMilliseconds: version >= 1 ? request.rebalanceTimeoutMs : request.sessionTimeoutMs,
            protocolType: request.protocolType,
            protocols: request.protocols.map { .init(name: $0.name, metadata: Array($0.metadata.readableBytesView)) },
            requiresKnownMemberID: version >= 4)
        return services.groups.join(groupKey(request.groupId), join, on: eventLoop).map { answer in
            JoinGroupResponse(errorCode: answer.error, generationId: answer.generation, protocolName: answer.protocolName,
                              leader: answer.leader, memberId: answer.memberID,
                              members: answer.members.map { .init(memberId: $0.memberID, metadata: ByteBuffer(bytes: $0.metadata)) })
        }
    }

    func syncGroup(_ request: SyncGroupRequest) -> EventLoopFuture<SyncGroupResponse> {
        var assignments: [String: [UInt8]] = [:]
        for assignment in request.assignments { assignments[assignment.memberId] = Array(assignment.assignment.readableBytesView) }
        return services.groups.sync(groupKey(request.groupId), memberID: request.memberId, generation: request.generationId,
                                    groupInstanceID: request.groupInstanceId, assignments: assignments, on: eventLoop).map { code, assignment in
            SyncGroupResponse(errorCode: code, assignment: ByteBuffer(bytes: assignment))
        }
    }

    func heartbeat(_ request: HeartbeatRequest) -> HeartbeatResponse {
        HeartbeatResponse(errorCode: services.groups.heartbeat(groupKey(request.groupId), memberID: request.memberId,
                                                              generation: request.generationId, groupInstanceID: request.groupInstanceId))
    }

    /// v0–2 name one member; v3 a batch, each answered with its own code (the top-level code
    /// is the first member's, as older clients read it).
    func leaveGroup(_ request: LeaveGroupRequest) -> LeaveGroupResponse {
        let codes = services.groups.leave(groupKey(request.groupId), members: request.members.map { ($0.memberId, $0.groupInstanceId) })
        return LeaveGroupResponse(errorCode: request.members.count == 1 ? (codes.first ?? .unknownMemberId) : .noError,
                                  members: zip(request.members, codes).map {
                                      .init(memberId: $0.memberId, groupInstanceId: $0.groupInstanceId, errorCode: $1)
                                  })
    }

    func listGroups() -> EventLoopFuture<ListGroupsResponse> {
        let live = services.groups.groups(of: principal.organizationID)
        return services.groups.storedGroups(organizationID: principal.organizationID, name: nil, on: eventLoop).map { stored in
            // Groups with members (or known since start), and those that only have committed offsets.
            var listed = live.map { ListGroupsResponse.Group(groupId: $0.groupID, protocolType: $0.protocolType) }
            let names = Set(live.map(\.groupID))
            listed += stored.filter { !names.contains($0.name) }.map { .init(groupId: $0.name, protocolType: "consumer") }
            return ListGroupsResponse(groups: listed.sorted { $0.groupId < $1.groupId })
        }.recover { _ in ListGroupsResponse(errorCode: .coordinatorNotAvailable, groups: []) }
    }

    func describeGroups(_ request: DescribeGroupsRequest) -> EventLoopFuture<DescribeGroupsResponse> {
        let groups = services.groups
        let organizationID = principal.organizationID
        let described = request.groups.map { ($0, groups.describe(groupKey($0))) }
        return groups.storedGroups(organizationID: organizationID, name: nil, on: eventLoop).map { stored in
            let storedNames = Set(stored.map(\.name))
            return DescribeGroupsResponse(groups: described.map { name, description in
                guard let description, description.state != .empty || !storedNames.contains(name) || !description.members.isEmpty else {
                    // Known only by its committed offsets (or not at all: Kafka answers Dead).
                    return .init(groupId: name, groupState: storedNames.contains(name) ? "Empty" : "Dead",
                                 protocolType: storedNames.contains(name) ? "consumer" : "", protocolData: "", members: [])
                }
                return .init(groupId: name, groupState: description.state.rawValue, protocolType: description.protocolType,
                             protocolData: description.protocolName, members: description.members.map {
                                 .init(memberId: $0.memberID, groupInstanceId: $0.groupInstanceID, clientId: $0.clientID,
                                       clientHost: $0.clientHost, memberMetadata: ByteBuffer(bytes: $0.metadata),
                                       memberAssignment: ByteBuffer(bytes: $0.assignment))
                             })
            })
        }.recover { _ in
            DescribeGroupsResponse(groups: request.groups.map {
                .init(errorCode: .coordinatorNotAvailable, groupId: $0, groupState: "", protocolType: "", protocolData: "", members: [])
            })
        }
    }

    /// Deletes empty groups: their committed offsets and rows; a group with members is refused.
    func deleteGroups(_ request: DeleteGroupsRequest) -> EventLoopFuture<DeleteGroupsResponse> {
        let groups = services.groups
        let organizationID = principal.organizationID
        let keys = request.groupsNames.map { groupKey($0) }
        return groups.delete(keys, organizationID: organizationID, on: eventLoop).map { codes in
            DeleteGroupsResponse(results: zip(request.groupsNames, codes).map { .init(groupId: $0, errorCode: $1) })
        }.recover { _ in
            DeleteGroupsResponse(results: request.groupsNames.map { .init(groupId: $0, errorCode: .coordinatorNotAvailable) })
        }
    }

    func offsetCommit(_ request: OffsetCommitRequest) -> EventLoopFuture<OffsetCommitResponse> {
        func everyPartition(_ code: ErrorCode) -> OffsetCommitResponse {
            OffsetCommitResponse(topics: request.topics.map { topic in
                .init(name: topic.name, partitions: topic.partitions.map { .init(partitionIndex: $0.partitionIndex, errorCode: code) })
            })
        }
        guard Self.isValidGroupID(request.groupId) else { return eventLoop.makeSucceededFuture(everyPartition(.invalidGroupId)) }
        let allowed = services.groups.commitAllowed(groupKey(request.groupId), memberID: request.memberId,
                                                    generation: request.generationId, groupInstanceID: request.groupInstanceId)
        guard allowed == .noError else { return eventLoop.makeSucceededFuture(everyPartition(allowed)) }
        let groups = services.groups
        let eventLoop = eventLoop
        let logger = logger
        return services.streams.resolve(Array(Set(request.topics.map(\.name))), organizationID: principal.organizationID, on: eventLoop)
            .flatMap { streams -> EventLoopFuture<OffsetCommitResponse> in
                var response = OffsetCommitResponse(topics: [])
                var commits: [CommittedOffset] = []
                for topic in request.topics {
                    let stream = streams[topic.name] ?? nil
                    var answered = OffsetCommitResponse.Topic(name: topic.name, partitions: [])
                    for partition in topic.partitions {
                        let code: ErrorCode
                        if let stream, (0..<stream.partitions).contains(partition.partitionIndex) {
                            if (partition.committedMetadata?.utf8.count ?? 0) > GroupOffsets.metadataBytesMax {
                                code = .offsetMetadataTooLarge
                            } else if partition.committedOffset < 0 {
                                code = .invalidRequest
                            } else {
                                code = .noError
                                commits.append(CommittedOffset(streamID: stream.id, partition: partition.partitionIndex,
                                                               offset: partition.committedOffset, metadata: partition.committedMetadata))
                            }
                        } else {
                            code = .unknownTopicOrPartition
                        }
                        answered.partitions.append(.init(partitionIndex: partition.partitionIndex, errorCode: code))
                    }
                    response.topics.append(answered)
                }
                let answered = response
                return groups.store(request.groupId, commits, on: eventLoop).map { answered }.recover { error in
                    logger.error("offset commit failed", metadata: ["group": "\(request.groupId)", "error": "\(error)"])
                    var failed = answered
                    for t in failed.topics.indices {
                        for p in failed.topics[t].partitions.indices where failed.topics[t].partitions[p].errorCode == .noError {
                            failed.topics[t].partitions[p].errorCode = .coordinatorNotAvailable
                        }
                    }
                    return failed
                }
            }
    }

    func offsetFetch(_ request: OffsetFetchRequest) -> EventLoopFuture<OffsetFetchResponse> {
        let groups = services.groups
        let eventLoop = eventLoop
        let organizationID = principal.organizationID
        let failed = OffsetFetchResponse(topics: [], errorCode: .coordinatorNotAvailable)
        guard let topics = request.topics else {
            // Every partition the group has committed, on every stream it has.
            return groups.storedGroups(organizationID: organizationID, name: request.groupId, on: eventLoop).flatMap { stored in
                let streams = stored.first?.streams ?? []
                return groups.committed(request.groupId, streams: streams.map { ($0.id, nil) }, on: eventLoop).map { committed in
                    OffsetFetchResponse(topics: streams.map { stream in
                        .init(name: stream.name, partitions: (committed[stream.id] ?? []).map {
                            .init(partitionIndex: $0.partition, committedOffset: $0.offset, metadata: $0.metadata ?? "")
                        })
                    })
                }
            }.recover { _ in failed }
        }
        return services.streams.resolve(Array(Set(topics.map(\.name))), organizationID: organizationID, on: eventLoop)
            .flatMap { streams in
                let known = topics.compactMap { topic in (streams[topic.name] ?? nil).map { ($0.id, Optional(topic.partitionIndexes)) } }
                return groups.committed(request.groupId, streams: known, on: eventLoop).map { committed in
                    OffsetFetchResponse(topics: topics.map { topic in
                        guard let stream = streams[topic.name] ?? nil else {
                            return .init(name: topic.name, partitions: topic.partitionIndexes.map {
                                .init(partitionIndex: $0, committedOffset: -1, metadata: "", errorCode: .unknownTopicOrPartition)
                            })
                        }
                        let byPartition = Dictionary((committed[stream.id] ?? []).map { ($0.partition, $0) }, uniquingKeysWith: { first, _ in first })
                        return .init(name: topic.name, partitions: topic.partitionIndexes.map { index in
                            guard let offset = byPartition[index] else { return .init(partitionIndex: index, committedOffset: -1, metadata: "") }
                            return .init(partitionIndex: index, committedOffset: offset.offset, metadata: offset.metadata ?? "")
                        })
                    })
                }
            }.recover { _ in failed }
    }
}
