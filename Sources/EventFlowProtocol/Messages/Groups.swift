import NIOCore

/// JoinGroup (key 11), v0–v5. From v4 a member joining with an empty member id is answered
/// MEMBER_ID_REQUIRED with its assigned id, and must join again with it. v5 adds the group
/// instance id of a static member.
public struct JoinGroupRequest: KafkaRequestMessage {
    public typealias Response = JoinGroupResponse
    public static let apiKey = APIKey.joinGroup

    public struct GroupProtocol: Sendable, Equatable {
        /// The assignor name, e.g. "range" or "roundrobin".
        public var name: String
        /// Opaque to the broker (the client's subscription); passed to the leader as sent.
        public var metadata: ByteBuffer

        public init(name: String, metadata: ByteBuffer) {
            self.name = name
            self.metadata = metadata
        }
    }

    public var groupId: String
    public var sessionTimeoutMs: Int32
    /// v1+ (v0: the session timeout is used).
    public var rebalanceTimeoutMs: Int32
    /// Empty on a member's first join.
    public var memberId: String
    /// v5+: set by a static member (`group.instance.id`); nil for a dynamic one.
    public var groupInstanceId: String?
    /// "consumer" for consumer groups.
    public var protocolType: String
    public var protocols: [GroupProtocol]

    public init(groupId: String, sessionTimeoutMs: Int32, rebalanceTimeoutMs: Int32 = -1, memberId: String,
                groupInstanceId: String? = nil, protocolType: String, protocols: [GroupProtocol]) {
        self.groupId = groupId
        self.sessionTimeoutMs = sessionTimeoutMs
        self.rebalanceTimeoutMs = rebalanceTimeoutMs
        self.memberId = memberId
        self.groupInstanceId = groupInstanceId
        self.protocolType = protocolType
        self.protocols = protocols
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        buffer.writeKafkaString(groupId)
        buffer.writeInteger(sessionTimeoutMs)
        if version >= 1 { buffer.writeInteger(rebalanceTimeoutMs) }
        buffer.writeKafkaString(memberId)
        if version >= 5 { buffer.writeKafkaNullableString(groupInstanceId) }
        buffer.writeKafkaString(protocolType)
        buffer.writeKafkaArray(protocols) { buffer, proto in
            buffer.writeKafkaString(proto.name)
            buffer.writeKafkaBytes(proto.metadata)
        }
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        let groupId = try buffer.readKafkaString("JoinGroupRequest.groupId")
        let sessionTimeoutMs = try buffer.readKafkaInt32("JoinGroupRequest.sessionTimeoutMs")
        var rebalanceTimeoutMs: Int32 = -1
        if version >= 1 { rebalanceTimeoutMs = try buffer.readKafkaInt32("JoinGroupRequest.rebalanceTimeoutMs") }
        let memberId = try buffer.readKafkaString("JoinGroupRequest.memberId")
        var groupInstanceId: String?
        if version >= 5 { groupInstanceId = try buffer.readKafkaNullableString("JoinGroupRequest.groupInstanceId") }
        return Self(groupId: groupId, sessionTimeoutMs: sessionTimeoutMs, rebalanceTimeoutMs: rebalanceTimeoutMs,
                    memberId: memberId, groupInstanceId: groupInstanceId,
                    protocolType: try buffer.readKafkaString("JoinGroupRequest.protocolType"),
                    protocols: try buffer.readKafkaArray("JoinGroupRequest.protocols", minimumElementBytes: 6) { buffer in
                        GroupProtocol(name: try buffer.readKafkaString("JoinGroupRequest.protocols[].name"),
                                 metadata: try buffer.readKafkaBytes("JoinGroupRequest.protocols[].metadata"))
                    })
    }
}

public struct JoinGroupResponse: KafkaResponseMessage {
    public static let apiKey = APIKey.joinGroup

    public struct Member: Sendable, Equatable {
        public var memberId: String
        /// v5+: the member's static instance id, nil for a dynamic member.
        public var groupInstanceId: String?
        public var metadata: ByteBuffer

        public init(memberId: String, groupInstanceId: String? = nil, metadata: ByteBuffer) {
            self.memberId = memberId
            self.groupInstanceId = groupInstanceId
            self.metadata = metadata
        }
    }

    /// v2+.
    public var throttleTimeMs: Int32
    public var errorCode: ErrorCode
    public var generationId: Int32
    public var protocolName: String
    public var leader: String
    public var memberId: String
    /// Filled only in the leader's answer: every member with its subscription metadata.
    public var members: [Member]

    public init(throttleTimeMs: Int32 = 0, errorCode: ErrorCode = .noError, generationId: Int32, protocolName: String,
                leader: String, memberId: String, members: [Member]) {
        self.throttleTimeMs = throttleTimeMs
        self.errorCode = errorCode
        self.generationId = generationId
        self.protocolName = protocolName
        self.leader = leader
        self.memberId = memberId
        self.members = members
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        if version >= 2 { buffer.writeInteger(throttleTimeMs) }
        buffer.writeErrorCode(errorCode)
        buffer.writeInteger(generationId)
        buffer.writeKafkaString(protocolName)
        buffer.writeKafkaString(leader)
        buffer.writeKafkaString(memberId)
        buffer.writeKafkaArray(members) { buffer, member in
            buffer.writeKafkaString(member.memberId)
            if version >= 5 { buffer.writeKafkaNullableString(member.groupInstanceId) }
            buffer.writeKafkaBytes(member.metadata)
        }
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        var throttle: Int32 = 0
        if version >= 2 { throttle = try buffer.readKafkaInt32("JoinGroupResponse.throttleTimeMs") }
        return Self(throttleTimeMs: throttle,
                    errorCode: try buffer.readErrorCode("JoinGroupResponse.errorCode"),
                    generationId: try buffer.readKafkaInt32("JoinGroupResponse.generationId"),
                    protocolName: try buffer.readKafkaString("JoinGroupResponse.protocolName"),
                    leader: try buffer.readKafkaString("JoinGroupResponse.leader"),
                    memberId: try buffer.readKafkaString("JoinGroupResponse.memberId"),
                    members: try buffer.readKafkaArray("JoinGroupResponse.members",
                                                       minimumElementBytes: version >= 5 ? 8 : 6) { buffer in
                        let memberId = try buffer.readKafkaString("JoinGroupResponse.members[].memberId")
                        var groupInstanceId: String?
                        if version >= 5 {
                            groupInstanceId = try buffer.readKafkaNullableString("JoinGroupResponse.members[].groupInstanceId")
                        }
                        return Member(memberId: memberId, groupInstanceId: groupInstanceId,
                                      metadata: try buffer.readKafkaBytes("JoinGroupResponse.members[].metadata"))
                    })
    }
}

/// SyncGroup (key 14), v0–v3: the leader sends the assignments, every member gets its own.
/// v3 adds the group instance id.
public struct SyncGroupRequest: KafkaRequestMessage {
    public typealias Response = SyncGroupResponse
    public static let apiKey = APIKey.syncGroup

    public struct Assignment: Sendable, Equatable {
        public var memberId: String
        /// Opaque to the broker; handed to that member as sent.
        public var assignment: ByteBuffer

        public init(memberId: String, assignment: ByteBuffer) {
            self.memberId = memberId
            self.assignment = assignment
        }
    }

    public var groupId: String
    public var generationId: Int32
    public var memberId: String
    /// v3+: the static member's instance id, nil for a dynamic member.
    public var groupInstanceId: String?
    /// Empty except from the leader.
    public var assignments: [Assignment]

    public init(groupId: String, generationId: Int32, memberId: String, groupInstanceId: String? = nil,
                assignments: [Assignment]) {
        self.groupId = groupId
        self.generationId = generationId
        self.memberId = memberId
        self.groupInstanceId = groupInstanceId
        self.assignments = assignments
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        buffer.writeKafkaString(groupId)
        buffer.writeInteger(generationId)
        buffer.writeKafkaString(memberId)
        if version >= 3 { buffer.writeKafkaNullableString(groupInstanceId) }
        buffer.writeKafkaArray(assignments) { buffer, assignment in
            buffer.writeKafkaString(assignment.memberId)
            buffer.writeKafkaBytes(assignment.assignment)
        }
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        let groupId = try buffer.readKafkaString("SyncGroupRequest.groupId")
        let generationId = try buffer.readKafkaInt32("SyncGroupRequest.generationId")
        let memberId = try buffer.readKafkaString("SyncGroupRequest.memberId")
        var groupInstanceId: String?
        if version >= 3 { groupInstanceId = try buffer.readKafkaNullableString("SyncGroupRequest.groupInstanceId") }
        return Self(groupId: groupId, generationId: generationId, memberId: memberId, groupInstanceId: groupInstanceId,
                    assignments: try buffer.readKafkaArray("SyncGroupRequest.assignments", minimumElementBytes: 6) { buffer in
                        Assignment(memberId: try buffer.readKafkaString("SyncGroupRequest.assignments[].memberId"),
                                   assignment: try buffer.readKafkaBytes("SyncGroupRequest.assignments[].assignment"))
                    })
    }
}

public struct SyncGroupResponse: KafkaResponseMessage {
    public static let apiKey = APIKey.syncGroup

    /// v1+.
    public var throttleTimeMs: Int32
    public var errorCode: ErrorCode
    public var assignment: ByteBuffer

    public init(throttleTimeMs: Int32 = 0, errorCode: ErrorCode = .noError, assignment: ByteBuffer) {
        self.throttleTimeMs = throttleTimeMs
        self.errorCode = errorCode
        self.assignment = assignment
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        if version >= 1 { buffer.writeInteger(throttleTimeMs) }
        buffer.writeErrorCode(errorCode)
        buffer.writeKafkaBytes(assignment)
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        var throttle: Int32 = 0
        if version >= 1 { throttle = try buffer.readKafkaInt32("SyncGroupResponse.throttleTimeMs") }
        return Self(throttleTimeMs: throttle,
                    errorCode: try buffer.readErrorCode("SyncGroupResponse.errorCode"),
                    assignment: try buffer.readKafkaBytes("SyncGroupResponse.assignment"))
    }
}

/// Heartbeat (key 12), v0–v3. v3 adds the group instance id.
public struct HeartbeatRequest: KafkaRequestMessage {
    public typealias Response = HeartbeatResponse
    public static let apiKey = APIKey.heartbeat

    public var groupId: String
    public var generationId: Int32
    public var memberId: String
    /// v3+: the static member's instance id, nil for a dynamic member.
    public var groupInstanceId: String?

    public init(groupId: String, generationId: Int32, memberId: String, groupInstanceId: String? = nil) {
        self.groupId = groupId
        self.generationId = generationId
        self.memberId = memberId
        self.groupInstanceId = groupInstanceId
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        buffer.writeKafkaString(groupId)
        buffer.writeInteger(generationId)
        buffer.writeKafkaString(memberId)
        if version >= 3 { buffer.writeKafkaNullableString(groupInstanceId) }
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        var request = Self(groupId: try buffer.readKafkaString("HeartbeatRequest.groupId"),
                           generationId: try buffer.readKafkaInt32("HeartbeatRequest.generationId"),
                           memberId: try buffer.readKafkaString("HeartbeatRequest.memberId"))
        if version >= 3 { request.groupInstanceId = try buffer.readKafkaNullableString("HeartbeatRequest.groupInstanceId") }
        return request
    }
}

/// An error code, and from v1 a throttle time.
public struct HeartbeatResponse: KafkaResponseMessage {
    public static let apiKey = APIKey.heartbeat

    /// v1+.
    public var throttleTimeMs: Int32
    public var errorCode: ErrorCode

    public init(throttleTimeMs: Int32 = 0, errorCode: ErrorCode = .noError) {
        self.throttleTimeMs = throttleTimeMs
        self.errorCode = errorCode
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        if version >= 1 { buffer.writeInteger(throttleTimeMs) }
        buffer.writeErrorCode(errorCode)
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        var throttle: Int32 = 0
        if version >= 1 { throttle = try buffer.readKafkaInt32("HeartbeatResponse.throttleTimeMs") }
        return Self(throttleTimeMs: throttle, errorCode: try buffer.readErrorCode("HeartbeatResponse.errorCode"))
    }
}

/// LeaveGroup (key 13), v0–v3. v0–v2 name one member (`memberId`); v3 names a batch of
/// members, each by member id and/or group instance id (an admin removing static members
/// sends an empty member id). The value always holds `members`; v0–v2 carry exactly one.
public struct LeaveGroupRequest: KafkaRequestMessage {
    public typealias Response = LeaveGroupResponse
    public static let apiKey = APIKey.leaveGroup

    public struct Member: Sendable, Hashable {
        public var memberId: String
        /// v3+: the static member's instance id, nil for a dynamic member.
        public var groupInstanceId: String?

        public init(memberId: String, groupInstanceId: String? = nil) {
            self.memberId = memberId
            self.groupInstanceId = groupInstanceId
        }
    }

    public var groupId: String
    /// The members leaving. v0–v2 have room for one member id: encoding writes the first
    /// member's (empty if there is none); decoding gives exactly one.
    public var members: [Member]

    /// The single member of v0–v2: the first member's id (empty if none). Setting it makes
    /// the request name exactly that member.
    public var memberId: String {
        get { members.first?.memberId ?? "" }
        set { members = [Member(memberId: newValue)] }
    }

    /// One member leaving, as every version can say.
    public init(groupId: String, memberId: String) {
        self.groupId = groupId
        self.members = [Member(memberId: memberId)]
    }

    /// A batch of members leaving (v3+; older versions send only the first).
    public init(groupId: String, members: [Member]) {
        self.groupId = groupId
        self.members = members
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        buffer.writeKafkaString(groupId)
        if version >= 3 {
            buffer.writeKafkaArray(members) { buffer, member in
                buffer.writeKafkaString(member.memberId)
                buffer.writeKafkaNullableString(member.groupInstanceId)
            }
        } else {
            buffer.writeKafkaString(memberId)
        }
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        let groupId = try buffer.readKafkaString("LeaveGroupRequest.groupId")
        guard version >= 3 else {
            return Self(groupId: groupId, memberId: try buffer.readKafkaString("LeaveGroupRequest.memberId"))
        }
        return Self(groupId: groupId,
                    members: try buffer.readKafkaArray("LeaveGroupRequest.members", minimumElementBytes: 4) { buffer in
                        Member(memberId: try buffer.readKafkaString("LeaveGroupRequest.members[].memberId"),
                               groupInstanceId: try buffer.readKafkaNullableString("LeaveGroupRequest.members[].groupInstanceId"))
                    })
    }
}

/// A top-level error code; from v3 also one error code per member named in the request.
public struct LeaveGroupResponse: KafkaResponseMessage {
    public static let apiKey = APIKey.leaveGroup

    public struct Member: Sendable, Hashable {
        public var memberId: String
        public var groupInstanceId: String?
        public var errorCode: ErrorCode

        public init(memberId: String, groupInstanceId: String? = nil, errorCode: ErrorCode = .noError) {
            self.memberId = memberId
            self.groupInstanceId = groupInstanceId
            self.errorCode = errorCode
        }
    }

    /// v1+.
    public var throttleTimeMs: Int32
    public var errorCode: ErrorCode
    /// v3+: the outcome per member of the request (empty when decoded at v0–v2).
    public var members: [Member]

    public init(throttleTimeMs: Int32 = 0, errorCode: ErrorCode = .noError, members: [Member] = []) {
        self.throttleTimeMs = throttleTimeMs
        self.errorCode = errorCode
        self.members = members
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        if version >= 1 { buffer.writeInteger(throttleTimeMs) }
        buffer.writeErrorCode(errorCode)
        if version >= 3 {
            buffer.writeKafkaArray(members) { buffer, member in
                buffer.writeKafkaString(member.memberId)
                buffer.writeKafkaNullableString(member.groupInstanceId)
                buffer.writeErrorCode(member.errorCode)
            }
        }
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        var response = Self()
        if version >= 1 { response.throttleTimeMs = try buffer.readKafkaInt32("LeaveGroupResponse.throttleTimeMs") }
        response.errorCode = try buffer.readErrorCode("LeaveGroupResponse.errorCode")
        if version >= 3 {
            response.members = try buffer.readKafkaArray("LeaveGroupResponse.members", minimumElementBytes: 6) { buffer in
                Member(memberId: try buffer.readKafkaString("LeaveGroupResponse.members[].memberId"),
                       groupInstanceId: try buffer.readKafkaNullableString("LeaveGroupResponse.members[].groupInstanceId"),
                       errorCode: try buffer.readErrorCode("LeaveGroupResponse.members[].errorCode"))
            }
        }
        return response
    }
}
