import NIOCore

/// A request frame that could not be decoded, with the header fields read before the failure
/// so the broker can still answer (an unsupported API or version gets an error response with
/// the correlation id; without one the connection can only be closed).
public struct RequestDecodingError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Context: Sendable, Hashable {
        public var apiKey: Int16?
        public var apiVersion: Int16?
        public var correlationId: Int32?
        public var clientId: String?

        public init(apiKey: Int16? = nil, apiVersion: Int16? = nil, correlationId: Int32? = nil, clientId: String? = nil) {
            self.apiKey = apiKey
            self.apiVersion = apiVersion
            self.correlationId = correlationId
            self.clientId = clientId
        }
    }

    public var protocolError: ProtocolError
    public var context: Context

    public init(_ protocolError: ProtocolError, context: Context) {
        self.protocolError = protocolError
        self.context = context
    }

    public var kind: ProtocolError.Kind { protocolError.kind }
    public var correlationId: Int32? { context.correlationId }

    public var description: String {
        let key = context.apiKey.map { "apiKey \($0)" } ?? "apiKey ?"
        let version = context.apiVersion.map { "v\($0)" } ?? "v?"
        let correlation = context.correlationId.map { "correlationId \($0)" } ?? "correlationId ?"
        return "request (\(key) \(version), \(correlation)): \(protocolError)"
    }
}

/// Every request body EventFlow serves, one case per API.
public enum KafkaRequest: Sendable, Equatable {
    case apiVersions(ApiVersionsRequest)
    case saslHandshake(SaslHandshakeRequest)
    case saslAuthenticate(SaslAuthenticateRequest)
    case metadata(MetadataRequest)
    case createTopics(CreateTopicsRequest)
    case deleteTopics(DeleteTopicsRequest)
    case initProducerId(InitProducerIdRequest)
    case produce(ProduceRequest)
    case listOffsets(ListOffsetsRequest)
    case fetch(FetchRequest)
    case findCoordinator(FindCoordinatorRequest)
    case joinGroup(JoinGroupRequest)
    case syncGroup(SyncGroupRequest)
    case heartbeat(HeartbeatRequest)
    case leaveGroup(LeaveGroupRequest)
    case offsetCommit(OffsetCommitRequest)
    case offsetFetch(OffsetFetchRequest)
    case describeGroups(DescribeGroupsRequest)
    case listGroups(ListGroupsRequest)
    case deleteGroups(DeleteGroupsRequest)
    case describeConfigs(DescribeConfigsRequest)
    case alterConfigs(AlterConfigsRequest)
    case incrementalAlterConfigs(IncrementalAlterConfigsRequest)
    case createPartitions(CreatePartitionsRequest)

    public var apiKey: APIKey {
        switch self {
        case .apiVersions: .apiVersions
        case .saslHandshake: .saslHandshake
        case .saslAuthenticate: .saslAuthenticate
        case .metadata: .metadata
        case .createTopics: .createTopics
        case .deleteTopics: .deleteTopics
        case .initProducerId: .initProducerId
        case .produce: .produce
        case .listOffsets: .listOffsets
        case .fetch: .fetch
        case .findCoordinator: .findCoordinator
        case .joinGroup: .joinGroup
        case .syncGroup: .syncGroup
        case .heartbeat: .heartbeat
        case .leaveGroup: .leaveGroup
        case .offsetCommit: .offsetCommit
        case .offsetFetch: .offsetFetch
        case .describeGroups: .describeGroups
        case .listGroups: .listGroups
        case .deleteGroups: .deleteGroups
        case .describeConfigs: .describeConfigs
        case .alterConfigs: .alterConfigs
        case .incrementalAlterConfigs: .incrementalAlterConfigs
        case .createPartitions: .createPartitions
        }
    }

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

    /// Decodes a body of `apiKey` at `version` (the header already read).
    public static func decodeBody(apiKey: APIKey, version: Int16, from buffer: inout ByteBuffer) throws -> KafkaRequest {
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
            throw ProtocolError(.unsupportedAPIKey, field: "RequestHeader.apiKey", offset: buffer.readerIndex,
                                detail: "\(apiKey) is not served")
        }
    }

    /// Decodes one frame (as `KafkaFrameDecoder` emits it): header, then the body for its API
    /// and version. Unknown API → `.unsupportedAPIKey`; unserved version → `.unsupportedVersion`;
    /// body ending early → `.truncated`; bytes left after the body → `.invalidValue`.
    /// Byte fields (records, auth bytes, group metadata) stay slices of `frame`.
    public static func decode(frame: ByteBuffer) throws(RequestDecodingError) -> DecodedRequest {
        var buffer = frame
        let header = try RequestHeader.decodeReportingContext(from: &buffer)
        let context = RequestDecodingError.Context(apiKey: header.apiKey.rawValue, apiVersion: header.apiVersion,
                                                   correlationId: header.correlationId, clientId: header.clientId)
        do {
            let body = try decodeBody(apiKey: header.apiKey, version: header.apiVersion, from: &buffer)
            try buffer.expectFullyRead("\(header.apiKey)Request")
            return DecodedRequest(header: header, body: body)
        } catch let error as ProtocolError {
            throw RequestDecodingError(error, context: context)
        } catch {
            throw RequestDecodingError(ProtocolError(.invalidValue, field: "\(header.apiKey)Request",
                                                     offset: buffer.readerIndex, detail: "\(error)"), context: context)
        }
    }
}

/// A request frame decoded: its header and body.
public struct DecodedRequest: Sendable, Equatable {
    public var header: RequestHeader
    public var body: KafkaRequest

    public init(header: RequestHeader, body: KafkaRequest) {
        self.header = header
        self.body = body
    }

    /// Header + body, as a client sends it (before the size prefix).
    public func encoded(allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 64)
        header.encode(into: &buffer)
        body.message.encode(into: &buffer, version: header.apiVersion)
        return buffer
    }
}
