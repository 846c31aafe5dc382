@testable import EventFlowBroker
import EventFlowProtocol
@testable import EventFlowStorage
import EventFlowTestSupport
import Foundation
import Logging
import NIOCore
import Testing

/// Faults on the ingest path: the database going away, and a full batcher.
@Suite struct BrokerFaultTests {
    /// An idempotent producer sends 40 batches one at a time, resending a batch after a retriable
    /// error; the outage begins after 15 acknowledged batches and ends after 5 retriable errors.
    /// Returns the acknowledged base offsets.
    private func produceAcrossOutage(_ connection: TestConnection, begin: () async throws -> Void,
                                     end: () async throws -> Void) async throws -> [Int64] {
        let (_, producer) = try await connection.call(InitProducerIdRequest(transactionTimeoutMs: 60_000), version: 1)
        let batchesTotal = 40
        var acknowledged: [Int64] = []
        var retriableErrors = 0
        var sequence: Int32 = 0
        var phase = 0
        while acknowledged.count < batchesTotal {
            if phase == 0 && acknowledged.count == 15 {
                try await begin()
                phase = 1
            }
            if phase == 1 && retriableErrors == 5 {
                try await end()
                phase = 2
            }
            let batch = try producedBatch(count: 3, producerID: producer.producerId, epoch: producer.producerEpoch,
                                          baseSequence: sequence)
            let (_, response) = try await connection.call(produceRequest(topic: "orders", batch: batch), version: 7)
            let answer = try #require(response.responses.first?.partitionResponses.first)
            if answer.errorCode == .noError {
                acknowledged.append(answer.baseOffset)
                sequence += 3
            } else {
                // The same batch is sent again, as an idempotent producer does.
                #expect(answer.errorCode.isRetriable, "\(answer.errorCode) must be retriable")
                retriableErrors += 1
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        #expect(retriableErrors >= 5)
        #expect(acknowledged == (0..<batchesTotal).map { Int64($0 * 3) })
        return acknowledged
    }

    /// pg_ctl on a private cluster, as its owner (the embedded cluster runs as `postgres` under root).
    private func pgCtl(_ arguments: [String]) throws {
        let tool = try EmbeddedPostgres.locateBinaries() + "/pg_ctl"
        let result = geteuid() == 0
            ? try Program.run("/usr/sbin/runuser", ["-u", "postgres", "--", "/usr/bin/setsid", "-w", tool] + arguments)
            : try Program.run("/usr/bin/setsid", ["-w", tool] + arguments)
        try #require(result.exitCode == 0, "pg_ctl \(arguments): \(result.output)")
    }

    @Test func postgresStoppedAndRestartedMidStreamLosesNoAcknowledgedBatch() async throws {
        // A private cluster: this test stops and starts it.
        let cluster = try EmbeddedPostgres(dataDirectory: TestCluster.temporaryDirectory("restart") + "/data")
        let url = try cluster.start()
        defer { try? cluster.stop() }
        let port = try #require(cluster.port)
        let db = try PostgresConnection(url: url)
        try Migrator(directory: try Migrator.locateDirectory()).migrate(db)
        try TimePartitions().ensure(db)
        let org = try Organizations.create(db, name: "acme")
        let key = try APIKeys.create(db, org: org, label: nil)
        let stream = try Streams.create(db, org: org, name: "orders")
        db.close()
        let certificates = try DevelopmentCertificates.ensure(in: TestCluster.temporaryDirectory("tls"))
        TestLogs.noteSecret(key.secret)
        let logger = TestLogs.logger(label: "test.restart", quietLevel: .critical)
        let broker = try await Broker.start(configuration: BrokerConfiguration(
            host: "127.0.0.1", port: 0,
            transport: .tls(certificateChainPath: certificates.certificateChain, privateKeyPath: certificates.privateKey),
            groupCommit: .init(flushBytesTarget: 1 << 20, lingerMilliseconds: 2), eventLoopThreads: 1),
            databaseURL: url, logger: logger)
        let connection = try await TestConnection.connect(port: broker.port, caPath: certificates.certificateAuthority)
        _ = try await connection.call(SaslHandshakeRequest(mechanism: "PLAIN"), version: 1)
        _ = try await connection.call(SaslAuthenticateRequest(authBytes: SaslPlainCredentials(
            username: key.key.id.uuidString, password: key.secret).encoded), version: 1)

        let acknowledged = try await produceAcrossOutage(connection, begin: {
            try pgCtl(["-D", cluster.clusterDirectory, "-m", "fast", "-w", "-t", "60", "stop"])
            // A valid key while the database is down is not a wrong key: no SASL_AUTHENTICATION_FAILED
            // (fatal to Java clients); the connection closes unanswered and the client retries.
            let newcomer = try await TestConnection.connect(port: broker.port, caPath: certificates.certificateAuthority)
            _ = try await newcomer.call(SaslHandshakeRequest(mechanism: "PLAIN"), version: 1)
            let answer = try? await newcomer.call(SaslAuthenticateRequest(authBytes: SaslPlainCredentials(
                username: key.key.id.uuidString, password: key.secret).encoded), version: 1)
            #expect(answer == nil, "answered \(String(describing: answer?.1.errorCode)) while the database was down")
            // Metadata for a named stream is answered, retriably, and the connection stays open.
            let (_, metadata) = try await connection.call(MetadataRequest(topics: ["orders"]), version: 1)
            #expect(metadata.topics.map(\.errorCode) == [.leaderNotAvailable])
            #expect(metadata.topics.map(\.name) == ["orders"])
        }, end: {
            // Same port (the server sets SO_REUSEADDR), so the broker's URL stays valid.
            try pgCtl(["-D", cluster.clusterDirectory, "-l", cluster.logFile, "-w", "-t", "60", "-o", "-p \(port)", "start"])
        })
        let check = try PostgresConnection(url: url)
        defer { check.close() }
        #expect(try storedRows(check, streamID: stream.id).map(\.baseOffset) == acknowledged)
        await connection.close()
        await broker.shutdown()
    }

    @Test func databaseOutageMidStreamLosesNoAcknowledgedBatchAndStoresNoneTwice() async throws {
        // The outage: every connection of the broker is killed and new ones are refused until
        // the database allows connections again. (Stopping the shared cluster would break the
        // other tests, and a restarted private cluster cannot reclaim its port while the killed
        // connections sit in TIME_WAIT.)
        let harness = try await BrokerHarness.start(partitions: 1)
        let databaseName = try #require(harness.databaseURL.split(separator: "/").last?.split(separator: "?").first.map(String.init))
        let admin = try PostgresConnection(url: try TestCluster.cluster().url(database: "postgres"))
        defer { admin.close() }
        let quoted = PostgresConnection.quoteIdentifier(databaseName)

        let connection = try await harness.authenticatedConnection()
        let acknowledged = try await produceAcrossOutage(connection, begin: {
            try admin.execute("ALTER DATABASE \(quoted) WITH ALLOW_CONNECTIONS false")
            try admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", [databaseName])
        }, end: {
            try admin.execute("ALTER DATABASE \(quoted) WITH ALLOW_CONNECTIONS true")
        })
        let db = try harness.database()
        defer { db.close() }
        #expect(try storedRows(db, streamID: harness.stream.id).map(\.baseOffset) == acknowledged)
        await connection.close()
        await harness.broker.shutdown()
    }

    @Test func fullBatcherPausesReadingAndAnswersEveryRequest() async throws {
        // Memory for a handful of batches only; the linger holds them until the byte target.
        let harness = try await BrokerHarness.start(partitions: 1, groupCommit: .init(
            flushBytesTarget: 2048, lingerMilliseconds: 50, memoryBytesMax: 4096))
        let connection = try await harness.authenticatedConnection()
        let requests = 200
        var sent: [Int32] = []
        for _ in 0..<requests {
            sent.append(try await connection.send(produceRequest(topic: "orders", batch: try producedBatch(count: 2)), version: 7))
        }
        var answered: [Int32] = []
        var stored = 0
        var refused = 0
        for _ in 0..<requests {
            let (id, response) = try await connection.receive(ProduceResponse.self, version: 7)
            answered.append(id)
            switch response.responses.first?.partitionResponses.first?.errorCode {
            case .noError?: stored += 1
            case .requestTimedOut?: refused += 1
            default: Issue.record("unexpected answer \(response)")
            }
        }
        #expect(answered == sent)
        #expect(stored + refused == requests)
        let db = try harness.database()
        defer { db.close() }
        let rows = try storedRows(db, streamID: harness.stream.id)
        #expect(rows.count == stored)
        #expect(rows.map(\.baseOffset) == (0..<stored).map { Int64($0 * 2) })
        await connection.close()
        await harness.broker.shutdown()
    }

    @Test func connectionsBeyondTheBoundAreClosedAndOthersKeepWorking() async throws {
        let harness = try await BrokerHarness.start(connectionsMax: 2)
        let first = try await harness.authenticatedConnection()
        let second = try await harness.authenticatedConnection()
        let third = try await TestConnection.connect(port: harness.broker.port, caPath: harness.certificates.certificateAuthority)
        _ = try? await third.send(ApiVersionsRequest(), version: 2)
        #expect(await third.receiveFrame() == nil)
        let (_, metadata) = try await second.call(MetadataRequest(topics: nil), version: 1)
        #expect(metadata.topics.map(\.name) == ["orders"])
        // A closed connection frees its place.
        await first.close()
        #expect(try await eventually { harness.broker.servicesForTests.registry.count == 1 })
        let fourth = try await harness.authenticatedConnection()
        let (_, again) = try await fourth.call(MetadataRequest(topics: nil), version: 1)
        #expect(again.topics.map(\.name) == ["orders"])
        await second.close()
        await fourth.close()
        await harness.broker.shutdown()
    }
}
