import NIOCore

/// JoinGroup (key 11), v0–v4. From v4 a member joining with an empty member id is answered
/// MEMBER_ID_REQUIRED with its assigned id, and must join again with it.
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
    /// "consumer" for consumer groups.
    public var protocolType: String
    public var protocols: [GroupProtocol]

    public init(groupId: String, sessionTimeoutMs: Int32, rebalanceTimeoutMs: Int32 = -1, memberId: String,
                protocolType: String, protocols: [GroupProtocol]) {
        self.groupId = groupId
        self.sessionTimeoutMs = sessionTimeoutMs
        self.rebalanceTimeoutMs = rebalanceTimeoutMs
        self.memberId = memberId
        self.protocolType = protocolType
        self.protocols = protocols
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        buffer.writeKafkaString(groupId)
        buffer.writeInteger(sessionTimeoutMs)
        if version >= 1 { buffer.writeInteger(rebalanceTimeoutMs) }
        buffer.writeKafkaString(memberId)
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
        return Self(groupId: groupId, sessionTimeoutMs: sessionTimeoutMs, rebalanceTimeoutMs: rebalanceTimeoutMs,
                    memberId: try buffer.readKafkaString("JoinGroupRequest.memberId"),
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
        public var metadata: ByteBuffer

        public init(memberId: String, metadata: ByteBuffer) {
            self.memberId = memberId
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
                    members: try buffer.readKafkaArray("JoinGroupResponse.members", minimumElementBytes: 6) { buffer in
                        Member(memberId: try buffer.readKafkaString("JoinGroupResponse.members[].memberId"),
                               metadata: try buffer.readKafkaBytes("JoinGroupResponse.members[].metadata"))
                    })
    }
}

/// SyncGroup (key 14), v0–v2: the leader sends the assignments, every member gets its own.
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
    /// Empty except from the leader.
    public var assignments: [Assignment]

    public init(groupId: String, generationId: Int32, memberId: String, assignments: [Assignment]) {
        self.groupId = groupId
        self.generationId = generationId
        self.memberId = memberId
        self.assignments = assignments
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        buffer.writeKafkaString(groupId)
        buffer.writeInteger(generationId)
        buffer.writeKafkaString(memberId)
        buffer.writeKafkaArray(assignments) { buffer, assignment in
            buffer.writeKafkaString(assignment.memberId)
            buffer.writeKafkaBytes(assignment.assignment)
        }
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        return Self(groupId: try buffer.readKafkaString("SyncGroupRequest.groupId"),
                    generationId: try buffer.readKafkaInt32("SyncGroupRequest.generationId"),
                    memberId: try buffer.readKafkaString("SyncGroupRequest.memberId"),
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

/// Heartbeat (key 12), v0–v2.
public struct HeartbeatRequest: KafkaRequestMessage {
    public typealias Response = HeartbeatResponse
    public static let apiKey = APIKey.heartbeat

    public var groupId: String
    public var generationId: Int32
    public var memberId: String

    public init(groupId: String, generationId: Int32, memberId: String) {
        self.groupId = groupId
        self.generationId = generationId
        self.memberId = memberId
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        buffer.writeKafkaString(groupId)
        buffer.writeInteger(generationId)
        buffer.writeKafkaString(memberId)
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        return Self(groupId: try buffer.readKafkaString("HeartbeatRequest.groupId"),
                    generationId: try buffer.readKafkaInt32("HeartbeatRequest.generationId"),
                    memberId: try buffer.readKafkaString("HeartbeatRequest.memberId"))
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

/// LeaveGroup (key 13), v0–v2.
public struct LeaveGroupRequest: KafkaRequestMessage {
    public typealias Response = LeaveGroupResponse
    public static let apiKey = APIKey.leaveGroup

    public var groupId: String
    public var memberId: String

    public init(groupId: String, memberId: String) {
        self.groupId = groupId
        self.memberId = memberId
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        buffer.writeKafkaString(groupId)
        buffer.writeKafkaString(memberId)
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        return Self(groupId: try buffer.readKafkaString("LeaveGroupRequest.groupId"),
                    memberId: try buffer.readKafkaString("LeaveGroupRequest.memberId"))
    }
}

public struct LeaveGroupResponse: KafkaResponseMessage {
    public static let apiKey = APIKey.leaveGroup

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
        if version >= 1 { throttle = try buffer.readKafkaInt32("LeaveGroupResponse.throttleTimeMs") }
        return Self(throttleTimeMs: throttle, errorCode: try buffer.readErrorCode("LeaveGroupResponse.errorCode"))
    }
}
