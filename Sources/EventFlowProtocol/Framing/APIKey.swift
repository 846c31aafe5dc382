/// Kafka's API keys (the int16 at the start of every request header), with Kafka's numbers.
///
/// The enum lists the classic keys so logs can name them; only those in `SupportedAPIVersions`
/// are served. A key outside this enum is answered as unsupported before any body is read.
public enum APIKey: Int16, Sendable, Hashable, CaseIterable {
    case produce = 0
    case fetch = 1
    case listOffsets = 2
    case metadata = 3
    case leaderAndIsr = 4
    case stopReplica = 5
    case updateMetadata = 6
    case controlledShutdown = 7
    case offsetCommit = 8
    case offsetFetch = 9
    case findCoordinator = 10
    case joinGroup = 11
    case heartbeat = 12
    case leaveGroup = 13
    case syncGroup = 14
    case describeGroups = 15
    case listGroups = 16
    case saslHandshake = 17
    case apiVersions = 18
    case createTopics = 19
    case deleteTopics = 20
    case deleteRecords = 21
    case initProducerId = 22
    case offsetForLeaderEpoch = 23
    case addPartitionsToTxn = 24
    case addOffsetsToTxn = 25
    case endTxn = 26
    case writeTxnMarkers = 27
    case txnOffsetCommit = 28
    case describeAcls = 29
    case createAcls = 30
    case deleteAcls = 31
    case describeConfigs = 32
    case alterConfigs = 33
    case alterReplicaLogDirs = 34
    case describeLogDirs = 35
    case saslAuthenticate = 36
    case createPartitions = 37
    case createDelegationToken = 38
    case renewDelegationToken = 39
    case expireDelegationToken = 40
    case describeDelegationToken = 41
    case deleteGroups = 42
    case electLeaders = 43
    case incrementalAlterConfigs = 44
    case alterPartitionReassignments = 45
    case listPartitionReassignments = 46
    case offsetDelete = 47

    /// The first version of this API that uses the flexible encoding (compact strings and
    /// arrays, tagged fields, request header v2 / response header v1); nil if EventFlow knows none.
    /// Only needed for the APIs EventFlow serves; versions from Kafka's message definitions.
    public var firstFlexibleVersion: Int16? {
        switch self {
        case .produce: 9
        case .fetch: 12
        case .listOffsets: 6
        case .metadata: 9
        case .offsetCommit: 8
        case .offsetFetch: 6
        case .findCoordinator: 3
        case .joinGroup: 6
        case .heartbeat: 4
        case .leaveGroup: 4
        case .syncGroup: 4
        case .describeGroups: 5
        case .listGroups: 3
        case .deleteGroups: 2
        case .saslHandshake: nil
        case .apiVersions: 3
        case .createTopics: 5
        case .deleteTopics: 4
        case .initProducerId: 2
        case .saslAuthenticate: 2
        case .describeConfigs: 4
        case .alterConfigs: 2
        case .createPartitions: 2
        case .incrementalAlterConfigs: 1
        default: nil
        }
    }

    /// Whether `version` of this API uses the flexible encoding.
    public func isFlexible(version: Int16) -> Bool {
        guard let first = firstFlexibleVersion else { return false }
        return version >= first
    }

    /// Request header version for a request of this API at `version`: 2 when flexible, else 1.
    public func requestHeaderVersion(apiVersion: Int16) -> Int16 {
        isFlexible(version: apiVersion) ? 2 : 1
    }

    /// Response header version: 1 when flexible, else 0. ApiVersions always answers with
    /// header v0, so a client that sent a too-new version can still read the error.
    public func responseHeaderVersion(apiVersion: Int16) -> Int16 {
        if self == .apiVersions { return 0 }
        return isFlexible(version: apiVersion) ? 1 : 0
    }
}

/// The API versions EventFlow serves; the broker lists exactly these in its ApiVersions answer.
public enum SupportedAPIVersions {
    public static let ranges: [APIKey: ClosedRange<Int16>] = [
        .produce: 3...8,
        .fetch: 4...11,
        .listOffsets: 1...5,
        .metadata: 0...7,
        .offsetCommit: 2...7,
        .offsetFetch: 1...5,
        .findCoordinator: 0...2,
        .joinGroup: 0...5,
        .heartbeat: 0...3,
        .leaveGroup: 0...3,
        .syncGroup: 0...3,
        .describeGroups: 0...4,
        .listGroups: 0...2,
        .deleteGroups: 0...1,
        .saslHandshake: 0...1,
        .apiVersions: 0...3,
        .createTopics: 0...3,
        .deleteTopics: 0...3,
        .initProducerId: 0...1,
        .saslAuthenticate: 0...1,
        .describeConfigs: 0...4,
        .alterConfigs: 0...2,
        .createPartitions: 0...3,
        .incrementalAlterConfigs: 0...1,
    ]

    /// The supported range for `apiKey`, or nil if EventFlow does not serve it.
    public static func range(for apiKey: APIKey) -> ClosedRange<Int16>? {
        ranges[apiKey]
    }

    public static func supports(_ apiKey: APIKey, version: Int16) -> Bool {
        ranges[apiKey]?.contains(version) ?? false
    }

    /// The table as ApiVersions lists it, ordered by API key.
    public static var apiVersionsEntries: [ApiVersionsResponse.APIVersionRange] {
        ranges.sorted { $0.key.rawValue < $1.key.rawValue }.map {
            ApiVersionsResponse.APIVersionRange(apiKey: $0.key.rawValue,
                                                minVersion: $0.value.lowerBound,
                                                maxVersion: $0.value.upperBound)
        }
    }
}
