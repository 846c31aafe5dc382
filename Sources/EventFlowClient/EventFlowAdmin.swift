import EventFlowProtocol
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// The admin client's settings.
public struct AdminConfiguration: Sendable {
    public var brokers: [BrokerAddress]
    /// nil: no SASL (only for brokers that do not require it).
    public var credentials: APIKeyCredentials?
    public var security: TransportSecurity
    public var clientID: String = "eventflow-admin"
    public var requestTimeoutMilliseconds: Int = 30_000
    public var connectTimeoutMilliseconds: Int = 10_000
    /// Admin answers are small; a describe of a large group stays far below this.
    public var frameBytesMax: Int = 16 * 1024 * 1024

    public init(brokers: [BrokerAddress], credentials: APIKeyCredentials?, security: TransportSecurity) {
        self.brokers = brokers
        self.credentials = credentials
        self.security = security
    }
}

extension ConnectionSettings {
    init(_ configuration: AdminConfiguration) {
        credentials = configuration.credentials
        security = configuration.security
        clientID = configuration.clientID
        requestTimeoutMilliseconds = configuration.requestTimeoutMilliseconds
        // One question at a time: each admin step needs the answer of the one before.
        inflightRequestsMax = 1
        frameBytesMax = configuration.frameBytesMax
        connectTimeoutMilliseconds = configuration.connectTimeoutMilliseconds
    }
}

public enum AdminError: Error, Sendable, Hashable, CustomStringConvertible {
    case broker(ErrorCode, message: String?)
    case connection(String)
    case authenticationFailed(String)
    case groupNotFound(String)
    /// Offsets of a group with members are theirs to commit: the broker refuses a reset (UNKNOWN_MEMBER_ID).
    case groupHasActiveMembers(String)
    /// DeleteGroups answered NON_EMPTY_GROUP.
    case groupNotEmpty(String)
    case unknownStream(String)
    case unknownPartition(stream: String, partition: Int32, partitionCount: Int32)
    case invalidArgument(String)
    case requestTimedOut

    public var description: String {
        switch self {
        case .broker(let code, let message): "broker error \(code)" + (message.map { ": \($0)" } ?? "")
        case .connection(let detail): "connection failed: \(detail)"
        case .authenticationFailed(let detail): "authentication failed: \(detail)"
        case .groupNotFound(let group): "group \(group) does not exist"
        case .groupHasActiveMembers(let group): "group \(group) has active members; stop them first"
        case .groupNotEmpty(let group): "group \(group) has active members; stop them before deleting it"
        case .unknownStream(let name): "unknown stream \(name)"
        case .unknownPartition(let stream, let partition, let count): "stream \(stream) has no partition \(partition) (it has \(count))"
        case .invalidArgument(let detail): detail
        case .requestTimedOut: "request timed out"
        }
    }

    init(_ error: ProducerError) {
        switch error {
        case .broker(let code, let message): self = .broker(code, message: message)
        case .connection(let detail): self = .connection(detail)
        case .authenticationFailed(let detail): self = .authenticationFailed(detail)
        case .unknownStream(let name): self = .unknownStream(name)
        case .requestTimedOut: self = .requestTimedOut
        case .bufferFull, .messageTooLarge, .shutDown, .invalidConfiguration: self = .connection("\(error)")
        }
    }
}

/// A group as ListGroups and DescribeGroups show it.
public struct GroupListing: Sendable, Hashable {
    public var groupId: String
    /// Kafka's state names: Empty, PreparingRebalance, CompletingRebalance, Stable, Dead.
    public var state: String
    public var protocolType: String
    public var memberCount: Int

    public init(groupId: String, state: String, protocolType: String, memberCount: Int) {
        self.groupId = groupId
        self.state = state
        self.protocolType = protocolType
        self.memberCount = memberCount
    }
}

/// A member of a group and the partitions the leader assigned it.
public struct GroupMemberDescription: Sendable, Hashable {
    public var memberId: String
    public var groupInstanceId: String?
    public var clientId: String
    public var clientHost: String
    public var assignedPartitions: [StreamPartition]

    public init(memberId: String, groupInstanceId: String?, clientId: String, clientHost: String, assignedPartitions: [StreamPartition]) {
        self.memberId = memberId
        self.groupInstanceId = groupInstanceId
        self.clientId = clientId
        self.clientHost = clientHost
        self.assignedPartitions = assignedPartitions
    }
}

/// One partition of a stream the group reads: where the group is and how far behind the log's end.
public struct PartitionLag: Sendable, Hashable {
    public var stream: String
    public var partition: Int32
    /// nil: the group has committed nothing for this partition.
    public var committedOffset: Int64?
    /// The next offset to be written (ListOffsets −1).
    public var highWatermark: Int64
    /// The earliest offset still stored (ListOffsets −2).
    public var logStartOffset: Int64
    /// Records a consumer of the group has still to read: high watermark − committed offset, or
    /// high watermark − log start when nothing is committed (everything stored is unread); never negative.
    public var lag: Int64
    /// The member the partition is assigned to, nil when no member has it.
    public var memberId: String?

    public init(stream: String, partition: Int32, committedOffset: Int64?, highWatermark: Int64, logStartOffset: Int64,
                memberId: String?) {
        self.stream = stream
        self.partition = partition
        self.committedOffset = committedOffset
        self.highWatermark = highWatermark
        self.logStartOffset = logStartOffset
        // A commit beyond the end (OffsetCommit accepts any offset) leaves nothing to read, not a negative amount.
        self.lag = max(0, highWatermark - (committedOffset ?? logStartOffset))
        self.memberId = memberId
    }
}

public struct GroupDescription: Sendable, Hashable {
    public var groupId: String
    public var state: String
    public var protocolType: String
    /// The assignor the group chose (empty unless the group is stable).
    public var assignor: String
    public var members: [GroupMemberDescription]
    /// Every partition of every stream the group has committed offsets for or is assigned, by stream then partition.
    public var partitions: [PartitionLag]

    public init(groupId: String, state: String, protocolType: String, assignor: String, members: [GroupMemberDescription],
                partitions: [PartitionLag]) {
        self.groupId = groupId
        self.state = state
        self.protocolType = protocolType
        self.assignor = assignor
        self.members = members
        self.partitions = partitions
    }

    public var totalLag: Int64 { partitions.reduce(0) { $0 + $1.lag } }
}

/// Where `resetOffsets` moves a group's committed offsets.
public enum OffsetResetTarget: Sendable, Hashable {
    /// The earliest offset still stored.
    case earliest
    /// The high watermark: the group skips everything stored so far.
    case latest
    /// This offset, moved into [log start, high watermark] when outside it (as kafka-consumer-groups does).
    case offset(Int64)
    /// The first record at or after this time (milliseconds since the epoch); the high watermark when none is.
    case timestamp(Int64)
}

/// One partition's committed offset before and after a reset.
public struct OffsetReset: Sendable, Hashable {
    public var stream: String
    public var partition: Int32
    public var previousOffset: Int64?
    public var newOffset: Int64

    public init(stream: String, partition: Int32, previousOffset: Int64?, newOffset: Int64) {
        self.stream = stream
        self.partition = partition
        self.previousOffset = previousOffset
        self.newOffset = newOffset
    }
}

/// Group administration (as `kafka-consumer-groups.sh`): list, describe with lag, reset
/// committed offsets of an empty group, delete. Each call asks FindCoordinator for the group
/// and talks to the coordinator; connections are kept for the next call until `close()`.
public final class EventFlowAdmin: Sendable {
    private let configuration: AdminConfiguration
    private let settings: ConnectionSettings
    private let logger: Logger
    private let eventLoopGroup: any EventLoopGroup
    private let connections = Mutex<[BrokerAddress: BrokerConnection]>([:])

    public init(configuration: AdminConfiguration, logger: Logger,
                eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) throws(AdminError) {
        guard !configuration.brokers.isEmpty else { throw .invalidArgument("no broker address") }
        self.configuration = configuration
        self.settings = ConnectionSettings(configuration)
        self.logger = logger
        self.eventLoopGroup = eventLoopGroup
    }

    public func close() {
        let open = connections.withLock { connections in
            defer { connections.removeAll() }
            return Array(connections.values)
        }
        for connection in open { connection.close() }
    }

    // MARK: the operations

    /// Every group of the key's organization, with its state and member count, by name.
    public func listGroups() async throws(AdminError) -> [GroupListing] {
        // An EventFlow broker coordinates every group it is asked about (FindCoordinator names
        // itself), so one broker lists and describes them all.
        let connection = try await anyBroker()
        let listed = try await request(ListGroupsRequest(), on: connection)
        guard listed.errorCode == .noError else { throw .broker(listed.errorCode, message: "ListGroups") }
        guard !listed.groups.isEmpty else { return [] }
        let described = try await request(DescribeGroupsRequest(groups: listed.groups.map(\.groupId)), on: connection)
        return listed.groups.map { group in
            let description = described.groups.first { $0.groupId == group.groupId }
            return GroupListing(groupId: group.groupId, state: description?.groupState ?? "Unknown",
                                protocolType: group.protocolType, memberCount: description?.members.count ?? 0)
        }.sorted { $0.groupId < $1.groupId }
    }

    /// Members with their partitions, and per partition committed offset, high watermark and lag.
    public func describeGroup(_ groupId: String) async throws(AdminError) -> GroupDescription {
        let connection = try await coordinator(for: groupId)
        let group = try await describe(groupId, on: connection)
        var members: [GroupMemberDescription] = []
        for member in group.members {
            var assigned: [StreamPartition] = []
            // Only the consumer protocol's assignment has a known layout; other protocols' bytes are theirs.
            if group.protocolType == "consumer" {
                do {
                    let assignment = try ConsumerProtocolAssignment.decode(member.memberAssignment)
                    for entry in assignment.assignedPartitions {
                        assigned += entry.partitions.sorted().map { StreamPartition(stream: entry.topic, partition: $0) }
                    }
                } catch {
                    throw .connection("member \(member.memberId) of \(groupId) has an undecodable assignment: \(error)")
                }
            }
            members.append(GroupMemberDescription(memberId: member.memberId, groupInstanceId: member.groupInstanceId,
                                                  clientId: member.clientId, clientHost: member.clientHost,
                                                  assignedPartitions: assigned))
        }
        let committed = try await committedOffsets(groupId, on: connection)
        if group.groupState == "Dead" && committed.isEmpty { throw .groupNotFound(groupId) }

        var owners: [StreamPartition: String] = [:]
        for member in members { for partition in member.assignedPartitions { owners[partition] = member.memberId } }
        var streams = Set(committed.keys.map(\.stream))
        streams.formUnion(owners.keys.map(\.stream))
        let counts = try await partitionCounts(Array(streams).sorted(), on: connection, skipUnknown: true)
        var partitions: [StreamPartition] = []
        for stream in counts.keys.sorted() {
            partitions += (0..<(counts[stream] ?? 0)).map { StreamPartition(stream: stream, partition: $0) }
        }
        let highWatermarks = try await listOffsets(partitions.map { ($0, ListOffsetsRequest.latestTimestamp) }, on: connection)
        let logStarts = try await listOffsets(partitions.map { ($0, ListOffsetsRequest.earliestTimestamp) }, on: connection)
        let lags = partitions.map { partition in
            PartitionLag(stream: partition.stream, partition: partition.partition, committedOffset: committed[partition],
                         highWatermark: highWatermarks[partition] ?? 0, logStartOffset: logStarts[partition] ?? 0,
                         memberId: owners[partition])
        }
        return GroupDescription(groupId: groupId, state: group.groupState, protocolType: group.protocolType,
                                assignor: group.protocolData, members: members, partitions: lags)
    }

    /// Moves the committed offsets of `stream` (every partition, or `partitions`) to `target`.
    /// Only for a group without members; `dryRun` computes and returns the same answer without committing.
    public func resetOffsets(group groupId: String, stream: String, to target: OffsetResetTarget,
                             partitions wanted: [Int32]? = nil, dryRun: Bool = false) async throws(AdminError) -> [OffsetReset] {
        switch target {
        case .offset(let value) where value < 0: throw .invalidArgument("the offset must not be negative")
        case .timestamp(let value) where value < 0: throw .invalidArgument("the timestamp must not be negative")
        default: break
        }
        let connection = try await coordinator(for: groupId)
        // Asked first so a dry run gives the same refusal the commit would.
        let group = try await describe(groupId, on: connection)
        guard group.members.isEmpty else { throw .groupHasActiveMembers(groupId) }
        let count = try await partitionCounts([stream], on: connection, skipUnknown: false)[stream] ?? 0
        let indexes = wanted.map { Array(Set($0)).sorted() } ?? Array(0..<count)
        if let bad = indexes.first(where: { $0 < 0 || $0 >= count }) {
            throw .unknownPartition(stream: stream, partition: bad, partitionCount: count)
        }
        let partitions = indexes.map { StreamPartition(stream: stream, partition: $0) }
        let highWatermarks = try await listOffsets(partitions.map { ($0, ListOffsetsRequest.latestTimestamp) }, on: connection)
        let logStarts = try await listOffsets(partitions.map { ($0, ListOffsetsRequest.earliestTimestamp) }, on: connection)
        var found: [StreamPartition: Int64] = [:]
        if case .timestamp(let milliseconds) = target {
            found = try await listOffsets(partitions.map { ($0, milliseconds) }, on: connection)
        }
        let committed = try await committedOffsets(groupId, on: connection)
        let resets = partitions.map { partition in
            let highWatermark = highWatermarks[partition] ?? 0
            let logStart = logStarts[partition] ?? 0
            let newOffset: Int64 = switch target {
            case .earliest: logStart
            case .latest: highWatermark
            case .offset(let offset): min(max(offset, logStart), highWatermark)
            // ListOffsets answers −1 when no record is that recent: then nothing is left to read.
            case .timestamp: (found[partition].flatMap { $0 >= 0 ? $0 : nil }) ?? highWatermark
            }
            return OffsetReset(stream: stream, partition: partition.partition, previousOffset: committed[partition], newOffset: newOffset)
        }
        if dryRun || resets.isEmpty { return resets }

        // Generation −1 and no member id: a commit from outside group management, accepted only for an empty group.
        let commit = OffsetCommitRequest(groupId: groupId, generationId: -1, memberId: "", topics: [
            .init(name: stream, partitions: resets.map { .init(partitionIndex: $0.partition, committedOffset: $0.newOffset) }),
        ])
        let answer = try await request(commit, on: connection)
        for topic in answer.topics {
            for partition in topic.partitions where partition.errorCode != .noError {
                switch partition.errorCode {
                case .unknownMemberId, .illegalGeneration, .rebalanceInProgress: throw .groupHasActiveMembers(groupId)
                case let code: throw .broker(code, message: "OffsetCommit of \(topic.name)/\(partition.partitionIndex)")
                }
            }
        }
        return resets
    }

    /// Removes an empty group and its committed offsets.
    public func deleteGroup(_ groupId: String) async throws(AdminError) {
        let connection = try await coordinator(for: groupId)
        let answer = try await request(DeleteGroupsRequest(groupsNames: [groupId]), on: connection)
        guard let result = answer.results.first(where: { $0.groupId == groupId }) else {
            throw .connection("the DeleteGroups answer does not mention \(groupId)")
        }
        switch result.errorCode {
        case .noError: return
        case .nonEmptyGroup: throw .groupNotEmpty(groupId)
        case .groupIdNotFound: throw .groupNotFound(groupId)
        case let code: throw .broker(code, message: "DeleteGroups \(groupId)")
        }
    }

    // MARK: requests

    private func describe(_ groupId: String, on connection: BrokerConnection) async throws(AdminError) -> DescribeGroupsResponse.Group {
        guard !groupId.isEmpty else { throw .invalidArgument("the group id is empty") }
        let answer = try await request(DescribeGroupsRequest(groups: [groupId]), on: connection)
        guard let group = answer.groups.first(where: { $0.groupId == groupId }) else {
            throw .connection("the DescribeGroups answer does not mention \(groupId)")
        }
        switch group.errorCode {
        case .noError: return group
        case .groupIdNotFound: throw .groupNotFound(groupId)
        case let code: throw .broker(code, message: "DescribeGroups \(groupId)")
        }
    }

    /// Every committed offset of the group (OffsetFetch v2+ with no topics: "all of them").
    private func committedOffsets(_ groupId: String, on connection: BrokerConnection) async throws(AdminError) -> [StreamPartition: Int64] {
        guard let version = connection.versions[.offsetFetch], version >= 2 else {
            throw .broker(.unsupportedVersion, message: "the broker serves no OffsetFetch v2+, needed to list a group's offsets")
        }
        let answer = try await request(OffsetFetchRequest(groupId: groupId, topics: nil), on: connection)
        guard answer.errorCode == .noError else { throw .broker(answer.errorCode, message: "OffsetFetch \(groupId)") }
        var committed: [StreamPartition: Int64] = [:]
        for topic in answer.topics {
            for partition in topic.partitions where partition.errorCode == .noError && partition.committedOffset >= 0 {
                committed[StreamPartition(stream: topic.name, partition: partition.partitionIndex)] = partition.committedOffset
            }
        }
        return committed
    }

    /// Partition counts from Metadata; a stream that no longer exists is left out or, unless `skipUnknown`, an error.
    private func partitionCounts(_ streams: [String], on connection: BrokerConnection,
                                 skipUnknown: Bool) async throws(AdminError) -> [String: Int32] {
        guard !streams.isEmpty else { return [:] }
        let metadata = try await request(MetadataRequest(topics: streams, allowAutoTopicCreation: false), on: connection)
        var counts: [String: Int32] = [:]
        for stream in streams {
            let topic = metadata.topics.first { $0.name == stream }
            switch topic?.errorCode {
            case .noError?: counts[stream] = Int32(clamping: topic?.partitions.count ?? 0)
            case .unknownTopicOrPartition?, nil: if !skipUnknown { throw .unknownStream(stream) }
            case let code?: throw .broker(code, message: "Metadata of \(stream)")
            }
        }
        return counts
    }

    /// ListOffsets for each (partition, timestamp); one request, as each partition appears once.
    private func listOffsets(_ queries: [(StreamPartition, Int64)], on connection: BrokerConnection)
        async throws(AdminError) -> [StreamPartition: Int64] {
        guard !queries.isEmpty else { return [:] }
        var streams: [String] = []
        for (partition, _) in queries where !streams.contains(partition.stream) { streams.append(partition.stream) }
        let message = ListOffsetsRequest(topics: streams.map { stream in
            ListOffsetsRequest.Topic(name: stream, partitions: queries.filter { $0.0.stream == stream }.map {
                ListOffsetsRequest.Partition(partitionIndex: $0.0.partition, timestamp: $0.1)
            })
        })
        let answer = try await request(message, on: connection)
        var offsets: [StreamPartition: Int64] = [:]
        for (partition, _) in queries {
            guard let found = answer.topics.first(where: { $0.name == partition.stream })?
                .partitions.first(where: { $0.partitionIndex == partition.partition }) else {
                throw .connection("the ListOffsets answer does not mention \(partition)")
            }
            guard found.errorCode == .noError else { throw .broker(found.errorCode, message: "ListOffsets of \(partition)") }
            offsets[partition] = found.offset
        }
        return offsets
    }

    private func request<Request: KafkaRequestMessage>(_ message: Request, on connection: BrokerConnection)
        async throws(AdminError) -> Request.Response {
        do throws(ProducerError) {
            return try await connection.request(message)
        } catch {
            throw AdminError(error)
        }
    }

    // MARK: connections

    /// The group's coordinator, as FindCoordinator names it (EventFlow: the broker asked, usually).
    private func coordinator(for groupId: String) async throws(AdminError) -> BrokerConnection {
        guard !groupId.isEmpty else { throw .invalidArgument("the group id is empty") }
        let bootstrap = try await anyBroker()
        let answer = try await request(FindCoordinatorRequest(key: groupId), on: bootstrap)
        guard answer.errorCode == .noError else {
            throw .broker(answer.errorCode, message: answer.errorMessage ?? "FindCoordinator \(groupId)")
        }
        let address = BrokerAddress(host: answer.host, port: Int(answer.port))
        if address == bootstrap.address { return bootstrap }
        return try await connection(to: address)
    }

    /// A connected broker: one already open, else the first of `brokers` that answers.
    private func anyBroker() async throws(AdminError) -> BrokerConnection {
        if let open = connections.withLock({ $0.values.first { $0.isActive } }) { return open }
        var lastError = AdminError.connection("no broker address")
        for address in configuration.brokers {
            do throws(AdminError) {
                return try await connection(to: address)
            } catch {
                if case .authenticationFailed = error { throw error }
                lastError = error
            }
        }
        throw lastError
    }

    private func connection(to address: BrokerAddress) async throws(AdminError) -> BrokerConnection {
        if let open = connections.withLock({ $0[address] }), open.isActive { return open }
        let connected: BrokerConnection
        do throws(ProducerError) {
            connected = try await BrokerConnection.connect(to: address, settings: settings, eventLoopGroup: eventLoopGroup, logger: logger)
        } catch {
            throw AdminError(error)
        }
        let replaced = connections.withLock { connections in
            defer { connections[address] = connected }
            return connections[address]
        }
        replaced?.close()
        return connected
    }
}
