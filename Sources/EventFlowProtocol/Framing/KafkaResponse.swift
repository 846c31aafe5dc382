import NIOCore

/// Every response body EventFlow sends, one case per API (the client decodes these).
public enum KafkaResponse: Sendable, Equatable {
    case apiVersions(ApiVersionsResponse)
    case saslHandshake(SaslHandshakeResponse)
    case saslAuthenticate(SaslAuthenticateResponse)
    case metadata(MetadataResponse)
    case createTopics(CreateTopicsResponse)
    case deleteTopics(DeleteTopicsResponse)
    case initProducerId(InitProducerIdResponse)
    case produce(ProduceResponse)
    case listOffsets(ListOffsetsResponse)
    case fetch(FetchResponse)
    case findCoordinator(FindCoordinatorResponse)
    case joinGroup(JoinGroupResponse)
    case syncGroup(SyncGroupResponse)
    case heartbeat(HeartbeatResponse)
    case leaveGroup(LeaveGroupResponse)
    case offsetCommit(OffsetCommitResponse)
    case offsetFetch(OffsetFetchResponse)
    case describeGroups(DescribeGroupsResponse)
    case listGroups(ListGroupsResponse)
    case deleteGroups(DeleteGroupsResponse)
    case describeConfigs(DescribeConfigsResponse)
    case alterConfigs(AlterConfigsResponse)
    case incrementalAlterConfigs(IncrementalAlterConfigsResponse)
    case createPartitions(CreatePartitionsResponse)

    public var apiKey: APIKey { type(of: message).apiKey }

    /// The body as its message type, for generic encoding.
    public var message: any KafkaMessage {
        switch self {
        case .apiVersions(let m): m
        case .saslHandshake(let m): m
        case .saslAuthenticate(let m): m
        case .metadata(let m): m
        case .createTopics(let m): m
        case .deleteTopics(let m): m
        case .initProducerId(let m): m
        case .produce(let m): m
        case .listOffsets(let m): m
        case .fetch(let m): m
        case .findCoordinator(let m): m
        case .joinGroup(let m): m
        case .syncGroup(let m): m
        case .heartbeat(let m): m
        case .leaveGroup(let m): m
        case .offsetCommit(let m): m
        case .offsetFetch(let m): m
        case .describeGroups(let m): m
        case .listGroups(let m): m
        case .deleteGroups(let m): m
        case .describeConfigs(let m): m
        case .alterConfigs(let m): m
        case .incrementalAlterConfigs(let m): m
        case .createPartitions(let m): m
        }
    }

    public static func decodeBody(apiKey: APIKey, version: Int16, from buffer: inout ByteBuffer) throws -> KafkaResponse {
        switch apiKey {
        case .apiVersions: .apiVersions(try .decode(from: &buffer, version: version))
        case .saslHandshake: .saslHandshake(try .decode(from: &buffer, version: version))
        case .saslAuthenticate: .saslAuthenticate(try .decode(from: &buffer, version: version))
        case .metadata: .metadata(try .decode(from: &buffer, version: version))
        case .createTopics: .createTopics(try .decode(from: &buffer, version: version))
        case .deleteTopics: .deleteTopics(try .decode(from: &buffer, version: version))
        case .initProducerId: .initProducerId(try .decode(from: &buffer, version: version))
        case .produce: .produce(try .decode(from: &buffer, version: version))
        case .listOffsets: .listOffsets(try .decode(from: &buffer, version: version))
        case .fetch: .fetch(try .decode(from: &buffer, version: version))
        case .findCoordinator: .findCoordinator(try .decode(from: &buffer, version: version))
        case .joinGroup: .joinGroup(try .decode(from: &buffer, version: version))
        case .syncGroup: .syncGroup(try .decode(from: &buffer, version: version))
        case .heartbeat: .heartbeat(try .decode(from: &buffer, version: version))
        case .leaveGroup: .leaveGroup(try .decode(from: &buffer, version: version))
        case .offsetCommit: .offsetCommit(try .decode(from: &buffer, version: version))
        case .offsetFetch: .offsetFetch(try .decode(from: &buffer, version: version))
        case .describeGroups: .describeGroups(try .decode(from: &buffer, version: version))
        case .listGroups: .listGroups(try .decode(from: &buffer, version: version))
        case .deleteGroups: .deleteGroups(try .decode(from: &buffer, version: version))
        case .describeConfigs: .describeConfigs(try .decode(from: &buffer, version: version))
        case .alterConfigs: .alterConfigs(try .decode(from: &buffer, version: version))
        case .incrementalAlterConfigs: .incrementalAlterConfigs(try .decode(from: &buffer, version: version))
        case .createPartitions: .createPartitions(try .decode(from: &buffer, version: version))
        default:
            throw ProtocolError(.unsupportedAPIKey, field: "response", offset: buffer.readerIndex,
                                detail: "\(apiKey) is not served")
        }
    }

    /// Decodes a response frame for a request of `apiKey` sent at `version` (the client keeps
    /// both per correlation id). Bytes left after the body are an error.
    public static func decode(frame: ByteBuffer, apiKey: APIKey, version: Int16) throws -> (ResponseHeader, KafkaResponse) {
        var buffer = frame
        let header = try ResponseHeader.decode(from: &buffer, headerVersion: apiKey.responseHeaderVersion(apiVersion: version))
        let body = try decodeBody(apiKey: apiKey, version: version, from: &buffer)
        try buffer.expectFullyRead("\(apiKey)Response")
        return (header, body)
    }

    /// Response header + body, ready for `KafkaFrameEncoder`.
    public func encoded(version: Int16, correlationId: Int32,
                        allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 64)
        ResponseHeader(correlationId: correlationId)
            .encode(into: &buffer, headerVersion: apiKey.responseHeaderVersion(apiVersion: version))
        message.encode(into: &buffer, version: version)
        return buffer
    }
}
