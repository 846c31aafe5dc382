/// A Kafka error code (int16) with Kafka's numbers and names.
///
/// A struct rather than a closed enum so a code EventFlow does not list (sent by a newer peer)
/// still decodes and re-encodes unchanged; the known codes are the static members below.
public struct ErrorCode: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public var rawValue: Int16

    public init(rawValue: Int16) {
        self.rawValue = rawValue
    }

    /// UNKNOWN_SERVER_ERROR (-1)
    public static let unknownServerError = ErrorCode(rawValue: -1)
    /// NONE (0)
    public static let noError = ErrorCode(rawValue: 0)
    /// OFFSET_OUT_OF_RANGE (1)
    public static let offsetOutOfRange = ErrorCode(rawValue: 1)
    /// CORRUPT_MESSAGE (2)
    public static let corruptMessage = ErrorCode(rawValue: 2)
    /// UNKNOWN_TOPIC_OR_PARTITION (3)
    public static let unknownTopicOrPartition = ErrorCode(rawValue: 3)
    /// INVALID_FETCH_SIZE (4)
    public static let invalidFetchSize = ErrorCode(rawValue: 4)
    /// LEADER_NOT_AVAILABLE (5)
    public static let leaderNotAvailable = ErrorCode(rawValue: 5)
    /// NOT_LEADER_OR_FOLLOWER (6)
    public static let notLeaderOrFollower = ErrorCode(rawValue: 6)
    /// REQUEST_TIMED_OUT (7)
    public static let requestTimedOut = ErrorCode(rawValue: 7)
    /// BROKER_NOT_AVAILABLE (8)
    public static let brokerNotAvailable = ErrorCode(rawValue: 8)
    /// REPLICA_NOT_AVAILABLE (9)
    public static let replicaNotAvailable = ErrorCode(rawValue: 9)
    /// MESSAGE_TOO_LARGE (10)
    public static let messageTooLarge = ErrorCode(rawValue: 10)
    /// STALE_CONTROLLER_EPOCH (11)
    public static let staleControllerEpoch = ErrorCode(rawValue: 11)
    /// OFFSET_METADATA_TOO_LARGE (12)
    public static let offsetMetadataTooLarge = ErrorCode(rawValue: 12)
    /// NETWORK_EXCEPTION (13)
    public static let networkException = ErrorCode(rawValue: 13)
    /// COORDINATOR_LOAD_IN_PROGRESS (14)
    public static let coordinatorLoadInProgress = ErrorCode(rawValue: 14)
    /// COORDINATOR_NOT_AVAILABLE (15)
    public static let coordinatorNotAvailable = ErrorCode(rawValue: 15)
    /// NOT_COORDINATOR (16)
    public static let notCoordinator = ErrorCode(rawValue: 16)
    /// INVALID_TOPIC_EXCEPTION (17)
    public static let invalidTopicException = ErrorCode(rawValue: 17)
    /// RECORD_LIST_TOO_LARGE (18)
    public static let recordListTooLarge = ErrorCode(rawValue: 18)
    /// NOT_ENOUGH_REPLICAS (19)
    public static let notEnoughReplicas = ErrorCode(rawValue: 19)
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND (20)
    public static let notEnoughReplicasAfterAppend = ErrorCode(rawValue: 20)
    /// INVALID_REQUIRED_ACKS (21)
    public static let invalidRequiredAcks = ErrorCode(rawValue: 21)
    /// ILLEGAL_GENERATION (22)
    public static let illegalGeneration = ErrorCode(rawValue: 22)
    /// INCONSISTENT_GROUP_PROTOCOL (23)
    public static let inconsistentGroupProtocol = ErrorCode(rawValue: 23)
    /// INVALID_GROUP_ID (24)
    public static let invalidGroupId = ErrorCode(rawValue: 24)
    /// UNKNOWN_MEMBER_ID (25)
    public static let unknownMemberId = ErrorCode(rawValue: 25)
    /// INVALID_SESSION_TIMEOUT (26)
    public static let invalidSessionTimeout = ErrorCode(rawValue: 26)
    /// REBALANCE_IN_PROGRESS (27)
    public static let rebalanceInProgress = ErrorCode(rawValue: 27)
    /// INVALID_COMMIT_OFFSET_SIZE (28)
    public static let invalidCommitOffsetSize = ErrorCode(rawValue: 28)
    /// TOPIC_AUTHORIZATION_FAILED (29)
    public static let topicAuthorizationFailed = ErrorCode(rawValue: 29)
    /// GROUP_AUTHORIZATION_FAILED (30)
    public static let groupAuthorizationFailed = ErrorCode(rawValue: 30)
    /// CLUSTER_AUTHORIZATION_FAILED (31)
    public static let clusterAuthorizationFailed = ErrorCode(rawValue: 31)
    /// INVALID_TIMESTAMP (32)
    public static let invalidTimestamp = ErrorCode(rawValue: 32)
    /// UNSUPPORTED_SASL_MECHANISM (33)
    public static let unsupportedSaslMechanism = ErrorCode(rawValue: 33)
    /// ILLEGAL_SASL_STATE (34)
    public static let illegalSaslState = ErrorCode(rawValue: 34)
    /// UNSUPPORTED_VERSION (35)
    public static let unsupportedVersion = ErrorCode(rawValue: 35)
    /// TOPIC_ALREADY_EXISTS (36)
    public static let topicAlreadyExists = ErrorCode(rawValue: 36)
    /// INVALID_PARTITIONS (37)
    public static let invalidPartitions = ErrorCode(rawValue: 37)
    /// INVALID_REPLICATION_FACTOR (38)
    public static let invalidReplicationFactor = ErrorCode(rawValue: 38)
    /// INVALID_REPLICA_ASSIGNMENT (39)
    public static let invalidReplicaAssignment = ErrorCode(rawValue: 39)
    /// INVALID_CONFIG (40)
    public static let invalidConfig = ErrorCode(rawValue: 40)
    /// NOT_CONTROLLER (41)
    public static let notController = ErrorCode(rawValue: 41)
    /// INVALID_REQUEST (42)
    public static let invalidRequest = ErrorCode(rawValue: 42)
    /// UNSUPPORTED_FOR_MESSAGE_FORMAT (43)
    public static let unsupportedForMessageFormat = ErrorCode(rawValue: 43)
    /// POLICY_VIOLATION (44)
    public static let policyViolation = ErrorCode(rawValue: 44)
    /// OUT_OF_ORDER_SEQUENCE_NUMBER (45)
    public static let outOfOrderSequenceNumber = ErrorCode(rawValue: 45)
    /// DUPLICATE_SEQUENCE_NUMBER (46)
    public static let duplicateSequenceNumber = ErrorCode(rawValue: 46)
    /// INVALID_PRODUCER_EPOCH (47)
    public static let invalidProducerEpoch = ErrorCode(rawValue: 47)
    /// INVALID_TXN_STATE (48)
    public static let invalidTxnState = ErrorCode(rawValue: 48)
    /// INVALID_PRODUCER_ID_MAPPING (49)
    public static let invalidProducerIdMapping = ErrorCode(rawValue: 49)
    /// INVALID_TRANSACTION_TIMEOUT (50)
    public static let invalidTransactionTimeout = ErrorCode(rawValue: 50)
    /// CONCURRENT_TRANSACTIONS (51)
    public static let concurrentTransactions = ErrorCode(rawValue: 51)
    /// TRANSACTION_COORDINATOR_FENCED (52)
    public static let transactionCoordinatorFenced = ErrorCode(rawValue: 52)
    /// TRANSACTIONAL_ID_AUTHORIZATION_FAILED (53)
    public static let transactionalIdAuthorizationFailed = ErrorCode(rawValue: 53)
    /// SECURITY_DISABLED (54)
    public static let securityDisabled = ErrorCode(rawValue: 54)
    /// OPERATION_NOT_ATTEMPTED (55)
    public static let operationNotAttempted = ErrorCode(rawValue: 55)
    /// KAFKA_STORAGE_ERROR (56)
    public static let kafkaStorageError = ErrorCode(rawValue: 56)
    /// LOG_DIR_NOT_FOUND (57)
    public static let logDirNotFound = ErrorCode(rawValue: 57)
    /// SASL_AUTHENTICATION_FAILED (58)
    public static let saslAuthenticationFailed = ErrorCode(rawValue: 58)
    /// UNKNOWN_PRODUCER_ID (59)
    public static let unknownProducerId = ErrorCode(rawValue: 59)
    /// REASSIGNMENT_IN_PROGRESS (60)
    public static let reassignmentInProgress = ErrorCode(rawValue: 60)
    /// INVALID_PRINCIPAL_TYPE (67)
    public static let invalidPrincipalType = ErrorCode(rawValue: 67)
    /// NON_EMPTY_GROUP (68)
    public static let nonEmptyGroup = ErrorCode(rawValue: 68)
    /// GROUP_ID_NOT_FOUND (69)
    public static let groupIdNotFound = ErrorCode(rawValue: 69)
    /// FETCH_SESSION_ID_NOT_FOUND (70)
    public static let fetchSessionIdNotFound = ErrorCode(rawValue: 70)
    /// INVALID_FETCH_SESSION_EPOCH (71)
    public static let invalidFetchSessionEpoch = ErrorCode(rawValue: 71)
    /// LISTENER_NOT_FOUND (72)
    public static let listenerNotFound = ErrorCode(rawValue: 72)
    /// TOPIC_DELETION_DISABLED (73)
    public static let topicDeletionDisabled = ErrorCode(rawValue: 73)
    /// FENCED_LEADER_EPOCH (74)
    public static let fencedLeaderEpoch = ErrorCode(rawValue: 74)
    /// UNKNOWN_LEADER_EPOCH (75)
    public static let unknownLeaderEpoch = ErrorCode(rawValue: 75)
    /// UNSUPPORTED_COMPRESSION_TYPE (76)
    public static let unsupportedCompressionType = ErrorCode(rawValue: 76)
    /// STALE_BROKER_EPOCH (77)
    public static let staleBrokerEpoch = ErrorCode(rawValue: 77)
    /// OFFSET_NOT_AVAILABLE (78)
    public static let offsetNotAvailable = ErrorCode(rawValue: 78)
    /// MEMBER_ID_REQUIRED (79)
    public static let memberIdRequired = ErrorCode(rawValue: 79)
    /// PREFERRED_LEADER_NOT_AVAILABLE (80)
    public static let preferredLeaderNotAvailable = ErrorCode(rawValue: 80)
    /// GROUP_MAX_SIZE_REACHED (81)
    public static let groupMaxSizeReached = ErrorCode(rawValue: 81)
    /// FENCED_INSTANCE_ID (82)
    public static let fencedInstanceId = ErrorCode(rawValue: 82)
    /// INVALID_RECORD (87)
    public static let invalidRecord = ErrorCode(rawValue: 87)
    /// UNSTABLE_OFFSET_COMMIT (88)
    public static let unstableOffsetCommit = ErrorCode(rawValue: 88)
    /// THROTTLING_QUOTA_EXCEEDED (89)
    public static let throttlingQuotaExceeded = ErrorCode(rawValue: 89)
    /// PRODUCER_FENCED (90)
    public static let producerFenced = ErrorCode(rawValue: 90)

    /// Kafka's name for the code (`NOT_COORDINATOR`), or `UNKNOWN_CODE_<n>`.
    public var name: String { Self.table[rawValue]?.name ?? "UNKNOWN_CODE_\(rawValue)" }

    /// Whether Kafka marks the error retriable: a client may retry the same request unchanged
    /// (possibly after refreshing metadata). Unknown codes are not retriable.
    public var isRetriable: Bool { Self.table[rawValue]?.retriable ?? false }

    public var isError: Bool { rawValue != 0 }

    public var description: String { "\(name)(\(rawValue))" }

    /// Every code this table names.
    public static var allKnown: [ErrorCode] { table.keys.sorted().map(ErrorCode.init(rawValue:)) }

    private static let table: [Int16: (name: String, retriable: Bool)] = [
        -1: ("UNKNOWN_SERVER_ERROR", false),
        0: ("NONE", false),
        1: ("OFFSET_OUT_OF_RANGE", false),
        2: ("CORRUPT_MESSAGE", true),
        3: ("UNKNOWN_TOPIC_OR_PARTITION", true),
        4: ("INVALID_FETCH_SIZE", false),
        5: ("LEADER_NOT_AVAILABLE", true),
        6: ("NOT_LEADER_OR_FOLLOWER", true),
        7: ("REQUEST_TIMED_OUT", true),
        8: ("BROKER_NOT_AVAILABLE", false),
        9: ("REPLICA_NOT_AVAILABLE", true),
        10: ("MESSAGE_TOO_LARGE", false),
        11: ("STALE_CONTROLLER_EPOCH", false),
        12: ("OFFSET_METADATA_TOO_LARGE", false),
        13: ("NETWORK_EXCEPTION", true),
        14: ("COORDINATOR_LOAD_IN_PROGRESS", true),
        15: ("COORDINATOR_NOT_AVAILABLE", true),
        16: ("NOT_COORDINATOR", true),
        17: ("INVALID_TOPIC_EXCEPTION", false),
        18: ("RECORD_LIST_TOO_LARGE", false),
        19: ("NOT_ENOUGH_REPLICAS", true),
        20: ("NOT_ENOUGH_REPLICAS_AFTER_APPEND", true),
        21: ("INVALID_REQUIRED_ACKS", false),
        22: ("ILLEGAL_GENERATION", false),
        23: ("INCONSISTENT_GROUP_PROTOCOL", false),
        24: ("INVALID_GROUP_ID", false),
        25: ("UNKNOWN_MEMBER_ID", false),
        26: ("INVALID_SESSION_TIMEOUT", false),
        27: ("REBALANCE_IN_PROGRESS", false),
        28: ("INVALID_COMMIT_OFFSET_SIZE", false),
        29: ("TOPIC_AUTHORIZATION_FAILED", false),
        30: ("GROUP_AUTHORIZATION_FAILED", false),
        31: ("CLUSTER_AUTHORIZATION_FAILED", false),
        32: ("INVALID_TIMESTAMP", false),
        33: ("UNSUPPORTED_SASL_MECHANISM", false),
        34: ("ILLEGAL_SASL_STATE", false),
        35: ("UNSUPPORTED_VERSION", false),
        36: ("TOPIC_ALREADY_EXISTS", false),
        37: ("INVALID_PARTITIONS", false),
        38: ("INVALID_REPLICATION_FACTOR", false),
        39: ("INVALID_REPLICA_ASSIGNMENT", false),
        40: ("INVALID_CONFIG", false),
        41: ("NOT_CONTROLLER", true),
        42: ("INVALID_REQUEST", false),
        43: ("UNSUPPORTED_FOR_MESSAGE_FORMAT", false),
        44: ("POLICY_VIOLATION", false),
        45: ("OUT_OF_ORDER_SEQUENCE_NUMBER", false),
        46: ("DUPLICATE_SEQUENCE_NUMBER", false),
        47: ("INVALID_PRODUCER_EPOCH", false),
        48: ("INVALID_TXN_STATE", false),
        49: ("INVALID_PRODUCER_ID_MAPPING", false),
        50: ("INVALID_TRANSACTION_TIMEOUT", false),
        51: ("CONCURRENT_TRANSACTIONS", true),
        52: ("TRANSACTION_COORDINATOR_FENCED", false),
        53: ("TRANSACTIONAL_ID_AUTHORIZATION_FAILED", false),
        54: ("SECURITY_DISABLED", false),
        55: ("OPERATION_NOT_ATTEMPTED", false),
        56: ("KAFKA_STORAGE_ERROR", true),
        57: ("LOG_DIR_NOT_FOUND", false),
        58: ("SASL_AUTHENTICATION_FAILED", false),
        59: ("UNKNOWN_PRODUCER_ID", false),
        60: ("REASSIGNMENT_IN_PROGRESS", false),
        67: ("INVALID_PRINCIPAL_TYPE", false),
        68: ("NON_EMPTY_GROUP", false),
        69: ("GROUP_ID_NOT_FOUND", false),
        70: ("FETCH_SESSION_ID_NOT_FOUND", true),
        71: ("INVALID_FETCH_SESSION_EPOCH", true),
        72: ("LISTENER_NOT_FOUND", true),
        73: ("TOPIC_DELETION_DISABLED", false),
        74: ("FENCED_LEADER_EPOCH", true),
        75: ("UNKNOWN_LEADER_EPOCH", true),
        76: ("UNSUPPORTED_COMPRESSION_TYPE", false),
        77: ("STALE_BROKER_EPOCH", false),
        78: ("OFFSET_NOT_AVAILABLE", true),
        79: ("MEMBER_ID_REQUIRED", false),
        80: ("PREFERRED_LEADER_NOT_AVAILABLE", true),
        81: ("GROUP_MAX_SIZE_REACHED", false),
        82: ("FENCED_INSTANCE_ID", false),
        87: ("INVALID_RECORD", false),
        88: ("UNSTABLE_OFFSET_COMMIT", true),
        89: ("THROTTLING_QUOTA_EXCEEDED", true),
        90: ("PRODUCER_FENCED", false),
    ]
}
