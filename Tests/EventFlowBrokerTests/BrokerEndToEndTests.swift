@testable import EventFlowBroker
import EventFlowProtocol
@testable import EventFlowStorage
import EventFlowTestSupport
import Foundation
import NIOCore
import Testing

/// End to end: a real broker over TLS, real PostgreSQL, a raw protocol client.
@Suite struct BrokerEndToEndTests {
    @Test func durableProduceIsCommittedByteExactBeforeItIsAnswered() async throws {
        let harness = try await BrokerHarness.start()
        let connection = try await harness.authenticatedConnection()
        let plain = try producedBatch(count: 3)
        let compressed = try producedBatch(count: 4, compression: .lz4())
        let (_, first) = try await connection.call(produceRequest(topic: "orders", partition: 0, batch: plain), version: 7)
        let (_, second) = try await connection.call(produceRequest(topic: "orders", partition: 0, batch: compressed), version: 3)
        #expect(first.responses.first?.partitionResponses.first?.errorCode == .noError)
        #expect(first.responses.first?.partitionResponses.first?.baseOffset == 0)
        #expect(second.responses.first?.partitionResponses.first?.baseOffset == 3)

        // acks=-1 is answered after COMMIT: the rows are there now, without waiting.
        let db = try harness.database()
        defer { db.close() }
        let rows = try storedRows(db, streamID: harness.stream.id)
        #expect(rows.map(\.baseOffset) == [0, 3])
        #expect(rows.map(\.lastOffset) == [2, 6])
        #expect(rows.map(\.codec) == [0, 3])
        #expect(rows.first?.bytes == expectedStored(plain, baseOffset: 0))
        #expect(rows.last?.bytes == expectedStored(compressed, baseOffset: 3))
        for row in rows {
            let view = try RecordBatchView(validating: ByteBuffer(bytes: row.bytes))
            #expect(view.header.baseOffset == row.baseOffset)
        }
        await connection.close()
        await harness.broker.shutdown()
    }

    @Test func acksOneAnswersAtAcceptanceAndAcksZeroIsNeverAnswered() async throws {
        let harness = try await BrokerHarness.start()
        let connection = try await harness.authenticatedConnection()
        let (_, memory) = try await connection.call(produceRequest(topic: "orders", batch: try producedBatch(count: 2), acks: 1), version: 7)
        #expect(memory.responses.first?.partitionResponses.first?.errorCode == .noError)
        #expect(memory.responses.first?.partitionResponses.first?.baseOffset == 0)

        // acks=0 owes no response: the next frame on the wire answers the Metadata sent after it.
        _ = try await connection.send(produceRequest(topic: "orders", batch: try producedBatch(count: 5), acks: 0), version: 7)
        let metadataID = try await connection.send(MetadataRequest(topics: ["orders"]), version: 5)
        let (correlationID, metadata) = try await connection.receive(MetadataResponse.self, version: 5)
        #expect(correlationID == metadataID)
        #expect(metadata.topics.first?.partitions.count == 2)

        let db = try harness.database()
        defer { db.close() }
        #expect(try await eventually { try storedRows(db, streamID: harness.stream.id).map(\.recordCount) == [2, 5] })

        // A refused acks=0 produce cannot be answered: the connection is closed instead.
        _ = try await connection.send(produceRequest(topic: "no-such-stream", batch: try producedBatch(count: 1), acks: 0), version: 7)
        #expect(await connection.receiveFrame() == nil)
        await connection.close()
        await harness.broker.shutdown()
    }

    @Test func metadataListsOnlyTheKeysOrganizationsStreams() async throws {
        let harness = try await BrokerHarness.start()
        let db = try harness.database()
        defer { db.close() }
        let other = try Organizations.create(db, name: "other")
        _ = try Streams.create(db, org: other, name: "secret-stream")
        let connection = try await harness.authenticatedConnection()
        let (_, all) = try await connection.call(MetadataRequest(topics: nil), version: 7)
        #expect(all.topics.map(\.name) == ["orders"])
        #expect(all.brokers.map(\.port) == [Int32(harness.broker.port)])
        #expect(all.topics.first?.partitions.map(\.leaderId) == [0, 0])
        let (_, named) = try await connection.call(MetadataRequest(topics: ["secret-stream"]), version: 7)
        #expect(named.topics.first?.errorCode == .unknownTopicOrPartition)
        // Producing to it is the same as producing to a stream that does not exist.
        let (_, produced) = try await connection.call(produceRequest(topic: "secret-stream", batch: try producedBatch(count: 1)), version: 7)
        #expect(produced.responses.first?.partitionResponses.first?.errorCode == .unknownTopicOrPartition)
        let (_, outOfRange) = try await connection.call(produceRequest(topic: "orders", partition: 9, batch: try producedBatch(count: 1)), version: 7)
        #expect(outOfRange.responses.first?.partitionResponses.first?.errorCode == .unknownTopicOrPartition)
        await connection.close()
        await harness.broker.shutdown()
    }

    @Test func createThenProduceThenDeleteTopic() async throws {
        let harness = try await BrokerHarness.start()
        let connection = try await harness.authenticatedConnection()
        let (_, created) = try await connection.call(CreateTopicsRequest(topics: [
            .init(name: "clicks", numPartitions: 3, replicationFactor: 1, assignments: [], configs: []),
            .init(name: "orders", numPartitions: 1, replicationFactor: 1, assignments: [], configs: []),
            .init(name: "bad name!", numPartitions: 1, replicationFactor: 1, assignments: [], configs: []),
            .init(name: "replicated", numPartitions: 1, replicationFactor: 3, assignments: [], configs: []),
        ], timeoutMs: 1000), version: 3)
        #expect(created.topics.map(\.errorCode) == [.noError, .topicAlreadyExists, .invalidTopicException, .invalidReplicationFactor])
        let (_, produced) = try await connection.call(produceRequest(topic: "clicks", partition: 2, batch: try producedBatch(count: 2)), version: 7)
        #expect(produced.responses.first?.partitionResponses.first?.errorCode == .noError)
        let (_, deleted) = try await connection.call(DeleteTopicsRequest(topicNames: ["clicks", "nothing"], timeoutMs: 1000), version: 3)
        #expect(deleted.responses.map(\.errorCode) == [.noError, .unknownTopicOrPartition])
        let (_, metadata) = try await connection.call(MetadataRequest(topics: nil), version: 7)
        #expect(metadata.topics.map(\.name) == ["orders"])
        await connection.close()
        await harness.broker.shutdown()
    }

    @Test func corruptBatchIsRefusedAndTheConnectionKeepsServing() async throws {
        let harness = try await BrokerHarness.start()
        let connection = try await harness.authenticatedConnection()
        var corrupt = try producedBatch(count: 3)
        let last = corrupt.writerIndex - 1
        corrupt.setInteger(corrupt.getInteger(at: last, as: UInt8.self).map { $0 ^ 0xFF } ?? 0, at: last)
        let (_, refused) = try await connection.call(produceRequest(topic: "orders", batch: corrupt), version: 7)
        #expect(refused.responses.first?.partitionResponses.first?.errorCode == .corruptMessage)
        let (_, accepted) = try await connection.call(produceRequest(topic: "orders", batch: try producedBatch(count: 1)), version: 7)
        #expect(accepted.responses.first?.partitionResponses.first?.errorCode == .noError)
        #expect(accepted.responses.first?.partitionResponses.first?.baseOffset == 0)
        await connection.close()
        await harness.broker.shutdown()
    }

    @Test func retriedIdempotentBatchIsAnsweredWithItsOffsetAndStoredOnce() async throws {
        let harness = try await BrokerHarness.start()
        let connection = try await harness.authenticatedConnection()
        let (_, producer) = try await connection.call(InitProducerIdRequest(transactionTimeoutMs: 60_000), version: 1)
        #expect(producer.errorCode == .noError)
        #expect(producer.producerId >= 0)
        let batch = try producedBatch(count: 4, producerID: producer.producerId, epoch: producer.producerEpoch, baseSequence: 0)
        let (_, first) = try await connection.call(produceRequest(topic: "orders", batch: batch), version: 7)
        let (_, retry) = try await connection.call(produceRequest(topic: "orders", batch: batch), version: 7)
        #expect(first.responses.first?.partitionResponses.first?.baseOffset == 0)
        #expect(retry.responses.first?.partitionResponses.first?.errorCode == .noError)
        #expect(retry.responses.first?.partitionResponses.first?.baseOffset == 0)
        let gap = try producedBatch(count: 1, producerID: producer.producerId, epoch: producer.producerEpoch, baseSequence: 9)
        let (_, refused) = try await connection.call(produceRequest(topic: "orders", batch: gap), version: 7)
        #expect(refused.responses.first?.partitionResponses.first?.errorCode == .outOfOrderSequenceNumber)

        let db = try harness.database()
        defer { db.close() }
        #expect(try storedRows(db, streamID: harness.stream.id).map(\.baseOffset) == [0])
        await connection.close()
        await harness.broker.shutdown()
    }

    @Test func idempotenceStateSurvivesABrokerRestart() async throws {
        let harness = try await BrokerHarness.start()
        let connection = try await harness.authenticatedConnection()
        let (_, producer) = try await connection.call(InitProducerIdRequest(transactionTimeoutMs: 60_000), version: 1)
        let batch = try producedBatch(count: 2, producerID: producer.producerId, epoch: 0, baseSequence: 0)
        _ = try await connection.call(produceRequest(topic: "orders", batch: batch), version: 7)
        await connection.close()
        await harness.broker.shutdown()

        let restarted = try await Broker.start(configuration: harness.broker.configuration, databaseURL: harness.databaseURL,
                                               logger: TestLogs.logger(label: "test.broker.restarted"))
        let again = try await TestConnection.connect(port: restarted.port, caPath: harness.certificates.certificateAuthority)
        _ = try await again.call(SaslHandshakeRequest(mechanism: "PLAIN"), version: 1)
        _ = try await again.call(SaslAuthenticateRequest(authBytes: SaslPlainCredentials(
            username: harness.key.key.id.uuidString, password: harness.key.secret).encoded), version: 1)
        let (_, retry) = try await again.call(produceRequest(topic: "orders", batch: batch), version: 7)
        #expect(retry.responses.first?.partitionResponses.first?.baseOffset == 0)
        let (_, next) = try await again.call(produceRequest(topic: "orders", batch: try producedBatch(count: 1)), version: 7)
        #expect(next.responses.first?.partitionResponses.first?.baseOffset == 2)
        let db = try harness.database()
        defer { db.close() }
        #expect(try storedRows(db, streamID: harness.stream.id).map(\.baseOffset) == [0, 2])
        await again.close()
        await restarted.shutdown()
    }

    @Test func wrongSecretIsRefusedWithSaslAuthenticationFailedAndClosed() async throws {
        let harness = try await BrokerHarness.start()
        let connection = try await TestConnection.connect(port: harness.broker.port, caPath: harness.certificates.certificateAuthority)
        _ = try await connection.call(SaslHandshakeRequest(mechanism: "PLAIN"), version: 1)
        let credentials = SaslPlainCredentials(username: harness.key.key.id.uuidString, password: TestLogs.wrongSecret())
        let (_, answer) = try await connection.call(SaslAuthenticateRequest(authBytes: credentials.encoded), version: 1)
        #expect(answer.errorCode == .saslAuthenticationFailed)
        #expect(await connection.receiveFrame() == nil)
        // Unauthenticated Produce: the connection is closed without an answer.
        let anonymous = try await TestConnection.connect(port: harness.broker.port, caPath: harness.certificates.certificateAuthority)
        _ = try await anonymous.send(produceRequest(topic: "orders", batch: try producedBatch(count: 1)), version: 7)
        #expect(await anonymous.receiveFrame() == nil)
        // The broker still serves others.
        let good = try await harness.authenticatedConnection()
        let (_, metadata) = try await good.call(MetadataRequest(topics: nil), version: 1)
        #expect(metadata.topics.map(\.name) == ["orders"])
        await good.close()
        await harness.broker.shutdown()
    }

    @Test func revokedKeyClosesItsOpenConnection() async throws {
        let harness = try await BrokerHarness.start()
        let connection = try await harness.authenticatedConnection()
        _ = try await connection.call(MetadataRequest(topics: nil), version: 1)
        let db = try harness.database()
        defer { db.close() }
        _ = try APIKeys.revoke(db, id: harness.key.key.id.uuidString)
        // The periodic check closes it; the client sees the end of the stream.
        #expect(await connection.receiveFrame() == nil)
        let again = try await TestConnection.connect(port: harness.broker.port, caPath: harness.certificates.certificateAuthority)
        _ = try await again.call(SaslHandshakeRequest(mechanism: "PLAIN"), version: 1)
        let (_, answer) = try await again.call(SaslAuthenticateRequest(authBytes: SaslPlainCredentials(
            username: harness.key.key.id.uuidString, password: harness.key.secret).encoded), version: 1)
        #expect(answer.errorCode == .saslAuthenticationFailed)
        await harness.broker.shutdown()
    }

    @Test func untrustworthyFramesCloseTheConnectionAndTheBrokerKeepsServing() async throws {
        let harness = try await BrokerHarness.start(frameBytesMax: 64 * 1024)
        let port = harness.broker.port
        let ca = harness.certificates.certificateAuthority

        let oversize = try await harness.authenticatedConnection()
        var prefix = ByteBuffer()
        prefix.writeInteger(Int32(64 * 1024 + 1))
        try await oversize.writeRaw(prefix)
        #expect(await oversize.receiveFrame() == nil)

        let garbage = try await TestConnection.connect(port: port, caPath: ca)
        try await garbage.writeFrame(ByteBuffer(bytes: [0x7F, 0x7F, 0x00, 0x01, 0xDE, 0xAD, 0xBE, 0xEF, 0x00]))
        #expect(await garbage.receiveFrame() == nil)

        let truncated = try await harness.authenticatedConnection()
        var body = produceRequest(topic: "orders", batch: try producedBatch(count: 2)).encodedRequest(version: 7, correlationId: 9, clientId: "t")
        body.moveWriterIndex(to: body.writerIndex - 10)
        try await truncated.writeFrame(body)
        #expect(await truncated.receiveFrame() == nil)

        // ApiVersions at a version the broker does not serve: error 35 and the v0 table, connection kept.
        let probe = try await TestConnection.connect(port: port, caPath: ca)
        var request = ApiVersionsRequest().encodedRequest(version: 3, correlationId: 77, clientId: "t")
        request.setInteger(Int16(99), at: 2)
        try await probe.writeFrame(request)
        let (correlationID, versions) = try await probe.receive(ApiVersionsResponse.self, version: 0)
        #expect(correlationID == 77)
        #expect(versions.errorCode == .unsupportedVersion)
        #expect(versions.apiKeys.contains { $0.apiKey == APIKey.produce.rawValue && $0.maxVersion == 8 })
        let (_, ok) = try await probe.call(ApiVersionsRequest(), version: 2)
        #expect(ok.errorCode == .noError)
        // Only the APIs this broker answers are advertised, so clients do not call the others.
        let advertised = Set(ok.apiKeys.map(\.apiKey))
        #expect(advertised == Set([APIKey.apiVersions, .saslHandshake, .saslAuthenticate, .metadata, .createTopics,
                                   .deleteTopics, .initProducerId, .produce, .fetch, .listOffsets,
                                   .findCoordinator, .joinGroup, .syncGroup, .heartbeat, .leaveGroup, .offsetCommit,
                                   .offsetFetch, .listGroups, .describeGroups, .deleteGroups,
                                   .describeConfigs, .alterConfigs, .incrementalAlterConfigs, .createPartitions].map(\.rawValue)))
        // librdkafka uses the v2 record format only when it sees Produce >= 3 and Fetch >= 4.
        #expect(ok.apiKeys.contains { $0.apiKey == APIKey.fetch.rawValue && $0.minVersion == 4 && $0.maxVersion == 11 })
        #expect(ok.apiKeys.contains { $0.apiKey == APIKey.listOffsets.rawValue && $0.minVersion == 1 && $0.maxVersion == 5 })
        // ... and LZ4 only when FindCoordinator is listed.
        #expect(ok.apiKeys.contains { $0.apiKey == APIKey.findCoordinator.rawValue && $0.minVersion == 0 })
        #expect(Set(versions.apiKeys.map(\.apiKey)) == advertised)

        let good = try await harness.authenticatedConnection()
        let (_, produced) = try await good.call(produceRequest(topic: "orders", batch: try producedBatch(count: 1)), version: 7)
        #expect(produced.responses.first?.partitionResponses.first?.errorCode == .noError)
        await good.close()
        await probe.close()
        await harness.broker.shutdown()
    }

    @Test func shutdownAnswersEveryInFlightProduceAndCommitsIt() async throws {
        // A long linger keeps the batches buffered until shutdown drains them.
        let harness = try await BrokerHarness.start(groupCommit: .init(flushBytesTarget: 1 << 20, lingerMilliseconds: 60_000))
        let connection = try await harness.authenticatedConnection()
        var sent: [Int32] = []
        for _ in 0..<10 {
            sent.append(try await connection.send(produceRequest(topic: "orders", batch: try producedBatch(count: 2)), version: 7))
        }
        // Wait until the broker has accepted them (offsets assigned) before shutting down.
        #expect(try await eventually { harness.broker.servicesForTests.batcher.isRegistered(StreamPartition(streamID: harness.stream.id, partition: 0))
                && (harness.broker.servicesForTests.batcher.nextOffset(of: StreamPartition(streamID: harness.stream.id, partition: 0)) ?? 0) == 20 })
        async let stopped: Void = harness.broker.shutdown()
        var answered: [Int32] = []
        var offsets: [Int64] = []
        for _ in 0..<10 {
            let (id, response) = try await connection.receive(ProduceResponse.self, version: 7)
            answered.append(id)
            offsets.append(response.responses.first?.partitionResponses.first?.baseOffset ?? -1)
        }
        await stopped
        #expect(answered == sent)
        #expect(offsets == stride(from: 0, to: 20, by: 2).map { Int64($0) })
        let db = try harness.database()
        defer { db.close() }
        #expect(try storedRows(db, streamID: harness.stream.id).count == 10)
    }

    @Test func saslHandshakeVersionZeroTakesTheBarePlainMessage() async throws {
        let harness = try await BrokerHarness.start()
        let connection = try await TestConnection.connect(port: harness.broker.port, caPath: harness.certificates.certificateAuthority)
        let (_, handshake) = try await connection.call(SaslHandshakeRequest(mechanism: "PLAIN"), version: 0)
        #expect(handshake.mechanisms == ["PLAIN"])
        try await connection.writeFrame(SaslPlainCredentials(username: harness.key.key.id.uuidString, password: harness.key.secret).encoded)
        let success = await connection.receiveFrame()
        #expect(success?.readableBytes == 0)
        let (_, metadata) = try await connection.call(MetadataRequest(topics: nil), version: 1)
        #expect(metadata.topics.map(\.name) == ["orders"])

        let refused = try await TestConnection.connect(port: harness.broker.port, caPath: harness.certificates.certificateAuthority)
        _ = try await refused.call(SaslHandshakeRequest(mechanism: "PLAIN"), version: 0)
        try await refused.writeFrame(SaslPlainCredentials(username: harness.key.key.id.uuidString, password: TestLogs.wrongSecret()).encoded)
        #expect(await refused.receiveFrame() == nil)
        await connection.close()
        await harness.broker.shutdown()
    }

    @Test func durableProduceNotCommittedWithinItsTimeoutIsAnsweredRequestTimedOut() async throws {
        // A linger far beyond the request's timeout keeps the batch uncommitted until the byte
        // target is reached.
        let harness = try await BrokerHarness.start(groupCommit: .init(flushBytesTarget: 4096, lingerMilliseconds: 60_000))
        let connection = try await harness.authenticatedConnection()
        let (_, producer) = try await connection.call(InitProducerIdRequest(transactionTimeoutMs: 60_000), version: 1)
        let batch = try producedBatch(count: 2, producerID: producer.producerId, epoch: producer.producerEpoch, baseSequence: 0)
        let (_, timedOut) = try await connection.call(produceRequest(topic: "orders", batch: batch, timeoutMs: 100), version: 7)
        #expect(timedOut.responses.first?.partitionResponses.first?.errorCode == .requestTimedOut)
        // The batch may still commit; its retry then gets the original offset and is stored once.
        // The filler after it (same connection, so accepted after the retry) reaches the byte target.
        let retryID = try await connection.send(produceRequest(topic: "orders", batch: batch), version: 7)
        let fillerID = try await connection.send(produceRequest(topic: "orders", batch: try producedBatch(count: 200)), version: 7)
        let (first, answer) = try await connection.receive(ProduceResponse.self, version: 7)
        let (second, filler) = try await connection.receive(ProduceResponse.self, version: 7)
        #expect(first == retryID)
        #expect(second == fillerID)
        #expect(answer.responses.first?.partitionResponses.first?.errorCode == .noError)
        #expect(answer.responses.first?.partitionResponses.first?.baseOffset == 0)
        #expect(filler.responses.first?.partitionResponses.first?.baseOffset == 2)
        await connection.close()
        await harness.broker.shutdown()
        let db = try harness.database()
        defer { db.close() }
        #expect(try storedRows(db, streamID: harness.stream.id).map(\.baseOffset) == [0, 2])
    }
}

