import NIOCore

/// ListGroups (key 16), v0–v2: every group the coordinator knows. The request has no fields
/// before v4 (states filter), which EventFlow does not serve.
public struct ListGroupsRequest: KafkaRequestMessage {
    public typealias Response = ListGroupsResponse
    public static let apiKey = APIKey.listGroups

    public init() {}

    public func encode(into buffer: inout ByteBuffer, version: Int16) {}

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        return Self()
    }
}

public struct ListGroupsResponse: KafkaResponseMessage {
    public static let apiKey = APIKey.listGroups

    public struct Group: Sendable, Hashable {
        public var groupId: String
        /// "consumer" for consumer groups; empty for a group that only has committed offsets.
        public var protocolType: String

        public init(groupId: String, protocolType: String) {
            self.groupId = groupId
            self.protocolType = protocolType
        }
    }

    /// v1+.
    public var throttleTimeMs: Int32
    public var errorCode: ErrorCode
    public var groups: [Group]

    public init(throttleTimeMs: Int32 = 0, errorCode: ErrorCode = .noError, groups: [Group]) {
        self.throttleTimeMs = throttleTimeMs
        self.errorCode = errorCode
        self.groups = groups
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        if version >= 1 { buffer.writeInteger(throttleTimeMs) }
        buffer.writeErrorCode(errorCode)
        buffer.writeKafkaArray(groups) { buffer, group in
            buffer.writeKafkaString(group.groupId)
            buffer.writeKafkaString(group.protocolType)
        }
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        var response = Self(groups: [])
        if version >= 1 { response.throttleTimeMs = try buffer.readKafkaInt32("ListGroupsResponse.throttleTimeMs") }
        response.errorCode = try buffer.readErrorCode("ListGroupsResponse.errorCode")
        response.groups = try buffer.readKafkaArray("ListGroupsResponse.groups", minimumElementBytes: 4) { buffer in
            Group(groupId: try buffer.readKafkaString("ListGroupsResponse.groups[].groupId"),
                  protocolType: try buffer.readKafkaString("ListGroupsResponse.groups[].protocolType"))
        }
        return response
    }
}

/// DescribeGroups (key 15), v0–v4: state, protocol and members of the named groups. v3 adds
/// the authorized operations, v4 the members' group instance ids.
public struct DescribeGroupsRequest: KafkaRequestMessage {
    public typealias Response = DescribeGroupsResponse
    public static let apiKey = APIKey.describeGroups

    public var groups: [String]
    /// v3+: whether to fill `authorizedOperations` in the answer.
    public var includeAuthorizedOperations: Bool

    public init(groups: [String], includeAuthorizedOperations: Bool = false) {
        self.groups = groups
        self.includeAuthorizedOperations = includeAuthorizedOperations
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        buffer.writeKafkaArray(groups) { $0.writeKafkaString($1) }
        if version >= 3 { buffer.writeKafkaBool(includeAuthorizedOperations) }
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        var request = Self(groups: try buffer.readKafkaArray("DescribeGroupsRequest.groups", minimumElementBytes: 2) {
            try $0.readKafkaString("DescribeGroupsRequest.groups[]")
        })
        if version >= 3 {
            request.includeAuthorizedOperations = try buffer.readKafkaBool("DescribeGroupsRequest.includeAuthorizedOperations")
        }
        return request
    }
}

public struct DescribeGroupsResponse: KafkaResponseMessage {
    public static let apiKey = APIKey.describeGroups

    /// Kafka's "not requested" value of `authorizedOperations` (INT32_MIN).
    public static let authorizedOperationsOmitted = Int32.min

    public struct Member: Sendable, Equatable {
        public var memberId: String
        /// v4+: the static member's instance id, nil for a dynamic member.
        public var groupInstanceId: String?
        public var clientId: String
        public var clientHost: String
        /// The member's metadata for the group's protocol, opaque (the consumer subscription).
        public var memberMetadata: ByteBuffer
        /// The member's part of the leader's assignment, opaque.
        public var memberAssignment: ByteBuffer

        public init(memberId: String, groupInstanceId: String? = nil, clientId: String, clientHost: String,
                    memberMetadata: ByteBuffer, memberAssignment: ByteBuffer) {
            self.memberId = memberId
            self.groupInstanceId = groupInstanceId
            self.clientId = clientId
            self.clientHost = clientHost
            self.memberMetadata = memberMetadata
            self.memberAssignment = memberAssignment
        }
    }

    public struct Group: Sendable, Equatable {
        public var errorCode: ErrorCode
        public var groupId: String
        /// Kafka's state names: "Empty", "PreparingRebalance", "CompletingRebalance", "Stable", "Dead".
        public var groupState: String
        public var protocolType: String
        /// The chosen protocol (assignor) name; empty unless the group is stable.
        public var protocolData: String
        public var members: [Member]
        /// v3+: bit field of the ACL operations the caller may perform on the group, or
        /// `authorizedOperationsOmitted`.
        public var authorizedOperations: Int32

        public init(errorCode: ErrorCode = .noError, groupId: String, groupState: String, protocolType: String,
                    protocolData: String, members: [Member],
                    authorizedOperations: Int32 = DescribeGroupsResponse.authorizedOperationsOmitted) {
            self.errorCode = errorCode
            self.groupId = groupId
            self.groupState = groupState
            self.protocolType = protocolType
            self.protocolData = protocolData
            self.members = members
            self.authorizedOperations = authorizedOperations
        }
    }

    /// v1+.
    public var throttleTimeMs: Int32
    public var groups: [Group]

    public init(throttleTimeMs: Int32 = 0, groups: [Group]) {
        self.throttleTimeMs = throttleTimeMs
        self.groups = groups
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        if version >= 1 { buffer.writeInteger(throttleTimeMs) }
        buffer.writeKafkaArray(groups) { buffer, group in
            buffer.writeErrorCode(group.errorCode)
            buffer.writeKafkaString(group.groupId)
            buffer.writeKafkaString(group.groupState)
            buffer.writeKafkaString(group.protocolType)
            buffer.writeKafkaString(group.protocolData)
            buffer.writeKafkaArray(group.members) { buffer, member in
                buffer.writeKafkaString(member.memberId)
                if version >= 4 { buffer.writeKafkaNullableString(member.groupInstanceId) }
                buffer.writeKafkaString(member.clientId)
                buffer.writeKafkaString(member.clientHost)
                buffer.writeKafkaBytes(member.memberMetadata)
                buffer.writeKafkaBytes(member.memberAssignment)
            }
            if version >= 3 { buffer.writeInteger(group.authorizedOperations) }
        }
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        var response = Self(groups: [])
        if version >= 1 { response.throttleTimeMs = try buffer.readKafkaInt32("DescribeGroupsResponse.throttleTimeMs") }
        response.groups = try buffer.readKafkaArray("DescribeGroupsResponse.groups",
                                                    minimumElementBytes: version >= 3 ? 18 : 14) { buffer in
            var group = Group(errorCode: try buffer.readErrorCode("DescribeGroupsResponse.groups[].errorCode"),
                              groupId: try buffer.readKafkaString("DescribeGroupsResponse.groups[].groupId"),
                              groupState: try buffer.readKafkaString("DescribeGroupsResponse.groups[].groupState"),
                              protocolType: try buffer.readKafkaString("DescribeGroupsResponse.groups[].protocolType"),
                              protocolData: try buffer.readKafkaString("DescribeGroupsResponse.groups[].protocolData"),
                              members: [])
            group.members = try buffer.readKafkaArray("DescribeGroupsResponse.groups[].members",
                                                      minimumElementBytes: version >= 4 ? 16 : 14) { buffer in
                let memberId = try buffer.readKafkaString("DescribeGroupsResponse.groups[].members[].memberId")
                var groupInstanceId: String?
                if version >= 4 {
                    groupInstanceId = try buffer.readKafkaNullableString("DescribeGroupsResponse.groups[].members[].groupInstanceId")
                }
                return Member(memberId: memberId, groupInstanceId: groupInstanceId,
                              clientId: try buffer.readKafkaString("DescribeGroupsResponse.groups[].members[].clientId"),
                              clientHost: try buffer.readKafkaString("DescribeGroupsResponse.groups[].members[].clientHost"),
                              memberMetadata: try buffer.readKafkaBytes("DescribeGroupsResponse.groups[].members[].memberMetadata"),
                              memberAssignment: try buffer.readKafkaBytes("DescribeGroupsResponse.groups[].members[].memberAssignment"))
            }
            if version >= 3 {
                group.authorizedOperations = try buffer.readKafkaInt32("DescribeGroupsResponse.groups[].authorizedOperations")
            }
            return group
        }
        return response
    }
}

/// DeleteGroups (key 42), v0–v1: removes empty groups and their committed offsets.
public struct DeleteGroupsRequest: KafkaRequestMessage {
    public typealias Response = DeleteGroupsResponse
    public static let apiKey = APIKey.deleteGroups

    public var groupsNames: [String]

    public init(groupsNames: [String]) {
        self.groupsNames = groupsNames
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        buffer.writeKafkaArray(groupsNames) { $0.writeKafkaString($1) }
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        return Self(groupsNames: try buffer.readKafkaArray("DeleteGroupsRequest.groupsNames", minimumElementBytes: 2) {
            try $0.readKafkaString("DeleteGroupsRequest.groupsNames[]")
        })
    }
}

public struct DeleteGroupsResponse: KafkaResponseMessage {
    public static let apiKey = APIKey.deleteGroups

    public struct Result: Sendable, Hashable {
        public var groupId: String
        /// NONE, GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP, INVALID_GROUP_ID.
        public var errorCode: ErrorCode

        public init(groupId: String, errorCode: ErrorCode = .noError) {
            self.groupId = groupId
            self.errorCode = errorCode
        }
    }

    public var throttleTimeMs: Int32
    public var results: [Result]

    public init(throttleTimeMs: Int32 = 0, results: [Result]) {
        self.throttleTimeMs = throttleTimeMs
        self.results = results
    }

    public func encode(into buffer: inout ByteBuffer, version: Int16) {
        buffer.writeInteger(throttleTimeMs)
        buffer.writeKafkaArray(results) { buffer, result in
            buffer.writeKafkaString(result.groupId)
            buffer.writeErrorCode(result.errorCode)
        }
    }

    public static func decode(from buffer: inout ByteBuffer, version: Int16) throws -> Self {
        try checkVersion(version, buffer)
        let throttle = try buffer.readKafkaInt32("DeleteGroupsResponse.throttleTimeMs")
        return Self(throttleTimeMs: throttle, results: try buffer.readKafkaArray("DeleteGroupsResponse.results", minimumElementBytes: 4) { buffer in
            Result(groupId: try buffer.readKafkaString("DeleteGroupsResponse.results[].groupId"),
                   errorCode: try buffer.readErrorCode("DeleteGroupsResponse.results[].errorCode"))
        })
    }
}
