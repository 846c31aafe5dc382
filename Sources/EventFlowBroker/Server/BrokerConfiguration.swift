import EventFlowProtocol
import Foundation

/// Everything `eventflow serve` can set about the listener and the ingest path.
public struct BrokerConfiguration: Sendable {
    public enum Transport: Sendable {
        /// Unencrypted; only when asked for explicitly (`--plaintext`).
        case plaintext
        /// TLS with this certificate chain and key (PEM files).
        case tls(certificateChainPath: String, privateKeyPath: String)
    }

    public var host: String
    /// 0 picks a free port (tests); the bound port is reported by `Broker.port`.
    public var port: Int
    /// Host announced in Metadata; defaults to `host` (or 127.0.0.1 when listening on all addresses).
    public var advertisedHost: String?
    public var transport: Transport
    public var authentication: SessionStateMachine.Authentication
    public var nodeID: Int32
    public var clusterID: String
    /// Partitions of a stream created with CreateTopics numPartitions = -1.
    public var defaultPartitions: Int
    public var frameBytesMax: Int
    /// Largest records section one LZ4 batch may decompress to when its records are checked on produce.
    public var decompressedBatchBytesMax = 64 << 20
    /// Largest frame accepted before SASL authentication has succeeded (Kafka's
    /// `sasl.server.max.receive.size`): ApiVersions and SASL need a few hundred bytes.
    public var unauthenticatedFrameBytesMax = BrokerConfiguration.defaultUnauthenticatedFrameBytesMax
    /// Bytes of frames received before authentication, all connections together, at which those
    /// connections' reads pause (authenticated connections keep reading).
    public var unauthenticatedRequestBytesMax = 16 << 20
    public var connectionsMax: Int
    /// Open connections from one IP address.
    public var connectionsPerPeerMax = 1_000
    /// Authentication, frame and idle timeouts (`ConnectionDeadlines`).
    public var deadlines = ConnectionDeadlines.Configuration()
    public var inflightRequestsMax: Int
    public var groupCommit: GroupCommit.Configuration
    /// The read side: tail cache, long-poll and response bounds, catch-up threads.
    public var fetch: FetchService.Configuration
    /// Consumer groups: session timeout range, initial rebalance delay, bounds.
    public var groups: GroupCoordinator.Configuration
    /// Request bytes read but not yet handed to (or refused by) the batcher, all connections
    /// together, at which socket reads pause (they resume at half); nil: the batcher's `memoryBytesMax`.
    public var requestBytesMax: Int?
    /// The same bound for one connection, so one connection cannot hold the whole budget;
    /// nil: a quarter of the broker-wide bound.
    public var connectionRequestBytesMax: Int?
    /// How often open connections' API keys are checked for revocation.
    public var revocationCheckMilliseconds: Int64
    /// How long shutdown waits for connections to answer what they owe before closing them.
    public var shutdownGraceMilliseconds: Int64
    public var eventLoopThreads: Int
    /// The analytics projector (streams with `analytics` on); nil: not run.
    public var analytics: ProjectionPlan.Configuration? = ProjectionPlan.Configuration()
    /// The operators' HTTP listener (`/metrics`, `/health`, `/ready`); nil: none.
    public var http: HTTPListener?

    /// Where `HTTPEndpoint` listens, and what `/ready` checks beyond the listener and the database.
    public struct HTTPListener: Sendable {
        /// Loopback by default: metrics name organizations, streams and groups.
        public var host: String
        /// 0 picks a free port (tests); the bound port is reported by `Broker.httpPort`.
        public var port: Int
        /// The migrations `/ready` requires applied (nil: not checked).
        public var migrationsDirectory: String?

        public static let defaultPort = 9644

        public init(host: String = "127.0.0.1", port: Int = HTTPListener.defaultPort, migrationsDirectory: String? = nil) {
            self.host = host
            self.port = port
            self.migrationsDirectory = migrationsDirectory
        }
    }

    public init(
        host: String = "0.0.0.0",
        port: Int = 9092,
        advertisedHost: String? = nil,
        transport: Transport,
        authentication: SessionStateMachine.Authentication = .saslPlain,
        nodeID: Int32 = 0,
        clusterID: String = "eventflow",
        defaultPartitions: Int = 1,
        frameBytesMax: Int = KafkaFrameDecoder.defaultFrameBytesMax,
        connectionsMax: Int = 10_000,
        inflightRequestsMax: Int = 64,
        groupCommit: GroupCommit.Configuration = GroupCommit.Configuration(),
        fetch: FetchService.Configuration = FetchService.Configuration(),
        groups: GroupCoordinator.Configuration = GroupCoordinator.Configuration(),
        requestBytesMax: Int? = nil,
        connectionRequestBytesMax: Int? = nil,
        revocationCheckMilliseconds: Int64 = 500,
        shutdownGraceMilliseconds: Int64 = 10_000,
        eventLoopThreads: Int = System.coreCount
    ) {
        self.host = host
        self.port = port
        self.advertisedHost = advertisedHost
        self.transport = transport
        self.authentication = authentication
        self.nodeID = nodeID
        self.clusterID = clusterID
        self.defaultPartitions = defaultPartitions
        self.frameBytesMax = frameBytesMax
        self.connectionsMax = connectionsMax
        self.inflightRequestsMax = inflightRequestsMax
        self.groupCommit = groupCommit
        self.fetch = fetch
        self.groups = groups
        self.requestBytesMax = requestBytesMax
        self.connectionRequestBytesMax = connectionRequestBytesMax
        self.revocationCheckMilliseconds = revocationCheckMilliseconds
        self.shutdownGraceMilliseconds = shutdownGraceMilliseconds
        self.eventLoopThreads = max(eventLoopThreads, 1)
    }
}

import NIOCore

extension BrokerConfiguration {
    /// 512 KiB, as Kafka's `sasl.server.max.receive.size`.
    public static let defaultUnauthenticatedFrameBytesMax = 512 * 1024

    /// `requestBytesMax` as applied.
    public var effectiveRequestBytesMax: Int { max(requestBytesMax ?? groupCommit.memoryBytesMax, 1) }

    /// `connectionRequestBytesMax` as applied.
    public var effectiveConnectionRequestBytesMax: Int {
        max(connectionRequestBytesMax ?? effectiveRequestBytesMax / 4, 1)
    }
}
