import NIOCore
import Testing
@testable import EventFlowProtocol

/// Values built with every field set, encoded at each supported version and decoded again:
/// fields that exist at that version come back equal, the others come back as their defaults,
/// and a second encode gives the same bytes.
@Suite struct MessageRoundTripTests {
    func roundTrip<M: KafkaMessage>(_ value: M, versions: ClosedRange<Int16>, sourceLocation: SourceLocation = #_sourceLocation) throws -> [Int16: M] {
        var results: [Int16: M] = [:]
        for version in versions {
            var buffer = value.encoded(version: version)
            let bytes = Array(buffer: buffer)
            let decoded = try M.decode(from: &buffer, version: version)
            #expect(buffer.readableBytes == 0, "v\(version) left bytes", sourceLocation: sourceLocation)
            #expect(Array(buffer: decoded.encoded(version: version)) == bytes, "v\(version) re-encode", sourceLocation: sourceLocation)
            results[version] = decoded
        }
        return results
    }

    func range<M: KafkaMessage>(_: M.Type) -> ClosedRange<Int16> {
        SupportedAPIVersions.range(for: M.apiKey) ?? 0...0
    }

    @Test func produceRoundTripsAtEveryVersion() throws {
        let records = ByteBuffer(bytes: Array(repeating: 0x5A, count: 100))
        let request = ProduceRequest(acks: 1, timeoutMs: 1500, topicData: [
            .init(name: "orders", partitionData: [.init(index: 0, records: records), .init(index: 3, records: nil)]),
            .init(name: "empty", partitionData: []),
        ])
        for (_, decoded) in try roundTrip(request, versions: range(ProduceRequest.self)) {
            #expect(decoded == request)
        }
        let response = ProduceResponse(responses: [.init(name: "orders", partitionResponses: [
            .init(index: 0, baseOffset: 99, logAppendTimeMs: -1, logStartOffset: 12),
            .init(index: 3, errorCode: .notEnoughReplicas, baseOffset: -1),
        ])], throttleTimeMs: 4)
        let decoded = try roundTrip(response, versions: range(ProduceResponse.self))
        #expect(decoded[7] == response)
        #expect(decoded[4]?.responses[0].partitionResponses[0].logStartOffset == -1)  // not in v4
    }

    @Test func metadataAllTopicsIsNilAtEveryVersion() throws {
        for (_, decoded) in try roundTrip(MetadataRequest(topics: nil), versions: range(MetadataRequest.self)) {
            #expect(decoded.topics == nil)
        }
        let some = try roundTrip(MetadataRequest(topics: ["a", "b"], allowAutoTopicCreation: false),
                                 versions: range(MetadataRequest.self))
        #expect(some[0]?.topics == ["a", "b"])
        #expect(some[3]?.allowAutoTopicCreation == true)  // v3 has no such field: default
        #expect(some[4]?.allowAutoTopicCreation == false)
    }

    @Test func fetchResponseKeepsRecordsAndAbortedTransactions() throws {
        let response = FetchResponse(throttleTimeMs: 1, errorCode: .noError, sessionId: 0, responses: [
            .init(topic: "t", partitions: [
                .init(partitionIndex: 0, highWatermark: 10, lastStableOffset: 10, logStartOffset: 0,
                      abortedTransactions: [], records: ByteBuffer(bytes: [1, 2, 3])),
                .init(partitionIndex: 1, errorCode: .offsetOutOfRange, highWatermark: 5, lastStableOffset: 5,
                      logStartOffset: 2, abortedTransactions: nil, records: nil),
            ]),
        ])
        let decoded = try roundTrip(response, versions: range(FetchResponse.self))
        #expect(decoded[10] == response)
        #expect(decoded[4]?.responses[0].partitions[0].records == ByteBuffer(bytes: [1, 2, 3]))
    }

    @Test func requestBodiesRoundTripThroughTheDispatcher() throws {
        let bodies: [KafkaRequest] = [
            .apiVersions(ApiVersionsRequest(clientSoftwareName: "x", clientSoftwareVersion: "1")),
            .saslHandshake(SaslHandshakeRequest(mechanism: "PLAIN")),
            .saslAuthenticate(SaslAuthenticateRequest(authBytes: SaslPlainCredentials(username: "ak_1", password: "s").encoded)),
            .metadata(MetadataRequest(topics: ["orders"], allowAutoTopicCreation: false)),
            .createTopics(CreateTopicsRequest(topics: [.init(name: "t", numPartitions: 4, replicationFactor: 1,
                                                             configs: [.init(name: "retention.ms", value: nil)])],
                                              timeoutMs: 100, validateOnly: true)),
            .deleteTopics(DeleteTopicsRequest(topicNames: ["t"], timeoutMs: 100)),
            .initProducerId(InitProducerIdRequest(transactionTimeoutMs: 60000)),
            .listOffsets(ListOffsetsRequest(isolationLevel: 1, topics: [.init(name: "t", partitions: [
                .init(partitionIndex: 0, currentLeaderEpoch: 2, timestamp: ListOffsetsRequest.earliestTimestamp)])])),
            .fetch(FetchRequest(maxWaitMs: 500, minBytes: 1, maxBytes: 1 << 20, isolationLevel: 1, sessionId: 0,
                                sessionEpoch: -1, topics: [.init(topic: "t", partitions: [
                                    .init(partition: 0, currentLeaderEpoch: 3, fetchOffset: 7, logStartOffset: 0,
                                          partitionMaxBytes: 1 << 16)])],
                                forgottenTopicsData: [.init(topic: "old", partitions: [1, 2])])),
            .findCoordinator(FindCoordinatorRequest(key: "group", keyType: 0)),
            .joinGroup(JoinGroupRequest(groupId: "g", sessionTimeoutMs: 10000, rebalanceTimeoutMs: 30000, memberId: "",
                                        groupInstanceId: "i-1", protocolType: "consumer",
                                        protocols: [.init(name: "range", metadata: ByteBuffer(bytes: [0, 1]))])),
            .syncGroup(SyncGroupRequest(groupId: "g", generationId: 1, memberId: "m", groupInstanceId: "i-1",
                                        assignments: [.init(memberId: "m", assignment: ByteBuffer(bytes: [9]))])),
            .heartbeat(HeartbeatRequest(groupId: "g", generationId: 1, memberId: "m", groupInstanceId: "i-1")),
            .leaveGroup(LeaveGroupRequest(groupId: "g", memberId: "m")),
            .offsetCommit(OffsetCommitRequest(groupId: "g", generationId: 1, memberId: "m", groupInstanceId: "i-1", topics: [
                .init(name: "t", partitions: [.init(partitionIndex: 0, committedOffset: 5, committedMetadata: "meta")])])),
            .offsetFetch(OffsetFetchRequest(groupId: "g", topics: [.init(name: "t", partitionIndexes: [0])])),
            .listGroups(ListGroupsRequest()),
            .describeGroups(DescribeGroupsRequest(groups: ["g", "h"], includeAuthorizedOperations: true)),
            .deleteGroups(DeleteGroupsRequest(groupsNames: ["g", "h"])),
            .describeConfigs(DescribeConfigsRequest(resources: [
                .init(resourceType: ConfigResourceType.topic, resourceName: "t", configurationKeys: ["retention.ms"]),
                .init(resourceType: ConfigResourceType.broker, resourceName: "1")], includeSynonyms: true, includeDocumentation: true)),
            .alterConfigs(AlterConfigsRequest(resources: [.init(resourceType: ConfigResourceType.topic, resourceName: "t", configs: [
                .init(name: "retention.ms", value: "3600000"), .init(name: "cleanup.policy", value: nil)])], validateOnly: true)),
            .incrementalAlterConfigs(IncrementalAlterConfigsRequest(resources: [.init(
                resourceType: ConfigResourceType.topic, resourceName: "t",
                configs: [.init(name: "retention.ms", configOperation: ConfigOperation.delete, value: nil)])], validateOnly: true)),
            .createPartitions(CreatePartitionsRequest(topics: [.init(name: "t", count: 3, assignments: [.init(brokerIds: [1]), .init(brokerIds: [1])]),
                                                              .init(name: "u", count: 2)], timeoutMs: 100, validateOnly: true)),
        ]
        #expect(Set(bodies.map(\.apiKey)).count == SupportedAPIVersions.ranges.count - 1)  // Produce is tested above
        for body in bodies {
            let versions = try #require(SupportedAPIVersions.range(for: body.apiKey))
            for version in versions {
                let request = DecodedRequest(header: RequestHeader(apiKey: body.apiKey, apiVersion: version,
                                                                   correlationId: Int32(version), clientId: nil),
                                             body: body)
                let bytes = request.encoded()
                let decoded = try KafkaRequest.decode(frame: bytes)
                #expect(decoded.header == request.header)
                #expect(decoded.encoded() == bytes, "\(body.apiKey) v\(version)")
                if version == versions.upperBound {
                    #expect(decoded.body == body, "\(body.apiKey) v\(version)")
                }
            }
        }
    }

    @Test func responsesRoundTripAtEveryVersion() throws {
        let responses: [KafkaResponse] = [
            .apiVersions(ApiVersionsResponse()),
            .saslHandshake(SaslHandshakeResponse(mechanisms: ["PLAIN"])),
            .saslAuthenticate(SaslAuthenticateResponse(errorCode: .saslAuthenticationFailed, errorMessage: "bad key",
                                                       sessionLifetimeMs: 0)),
            .metadata(MetadataResponse(brokers: [.init(nodeId: 0, host: "localhost", port: 9092)], clusterId: "c",
                                       controllerId: 0, topics: [.init(name: "t", partitions: [
                                           .init(partitionIndex: 0, leaderId: 0, replicaNodes: [0], isrNodes: [0])])])),
            .createTopics(CreateTopicsResponse(topics: [.init(name: "t", errorCode: .topicAlreadyExists, errorMessage: "exists")])),
            .deleteTopics(DeleteTopicsResponse(responses: [.init(name: "t")])),
            .initProducerId(InitProducerIdResponse(producerId: 1, producerEpoch: 0)),
            .listOffsets(ListOffsetsResponse(topics: [.init(name: "t", partitions: [.init(partitionIndex: 0, timestamp: -1, offset: 8)])])),
            .findCoordinator(FindCoordinatorResponse(nodeId: 0, host: "localhost", port: 9092)),
            .joinGroup(JoinGroupResponse(errorCode: .memberIdRequired, generationId: -1, protocolName: "", leader: "",
                                         memberId: "m-1", members: [])),
            .syncGroup(SyncGroupResponse(assignment: ByteBuffer(bytes: [1, 2]))),
            .heartbeat(HeartbeatResponse(errorCode: .rebalanceInProgress)),
            .leaveGroup(LeaveGroupResponse(members: [.init(memberId: "m", errorCode: .unknownMemberId)])),
            .offsetCommit(OffsetCommitResponse(topics: [.init(name: "t", partitions: [.init(partitionIndex: 0)])])),
            .offsetFetch(OffsetFetchResponse(topics: [.init(name: "t", partitions: [.init(partitionIndex: 0, committedOffset: -1)])])),
            .listGroups(ListGroupsResponse(groups: [.init(groupId: "g", protocolType: "consumer")])),
            .describeGroups(DescribeGroupsResponse(groups: [
                .init(groupId: "g", groupState: "Stable", protocolType: "consumer", protocolData: "range",
                      members: [.init(memberId: "m", groupInstanceId: "i-1", clientId: "c", clientHost: "/127.0.0.1",
                                      memberMetadata: ByteBuffer(bytes: [1]), memberAssignment: ByteBuffer(bytes: [2]))],
                      authorizedOperations: 0x148),
            ])),
            .deleteGroups(DeleteGroupsResponse(results: [.init(groupId: "g"), .init(groupId: "h", errorCode: .nonEmptyGroup)])),
            .describeConfigs(DescribeConfigsResponse(throttleTimeMs: 1, results: [
                .init(resourceType: ConfigResourceType.topic, resourceName: "t", configs: [
                    .init(name: "retention.ms", value: "3600000", readOnly: false, configSource: ConfigSource.dynamicTopicConfig,
                          synonyms: [.init(name: "retention.ms", value: "3600000", source: ConfigSource.dynamicTopicConfig)],
                          configType: ConfigType.long, documentation: "kept")]),
                .init(errorCode: .invalidRequest, errorMessage: "no", resourceType: ConfigResourceType.broker, resourceName: "1")])),
            .alterConfigs(AlterConfigsResponse(throttleTimeMs: 2, responses: [
                .init(resourceType: ConfigResourceType.topic, resourceName: "t"),
                .init(errorCode: .invalidConfig, errorMessage: "bad", resourceType: ConfigResourceType.topic, resourceName: "u")])),
            .incrementalAlterConfigs(IncrementalAlterConfigsResponse(responses: [
                .init(errorCode: .topicAuthorizationFailed, errorMessage: "admin", resourceType: ConfigResourceType.topic, resourceName: "t")])),
            .createPartitions(CreatePartitionsResponse(throttleTimeMs: 3, results: [
                .init(name: "t"), .init(name: "u", errorCode: .invalidPartitions, errorMessage: "only grows")])),
        ]
        #expect(Set(responses.map(\.apiKey)).count == SupportedAPIVersions.ranges.count - 2)  // no Produce, no Fetch
        for response in responses {
            let versions = try #require(SupportedAPIVersions.range(for: response.apiKey))
            for version in versions {
                let bytes = response.encoded(version: version, correlationId: 9)
                let (header, decoded) = try KafkaResponse.decode(frame: bytes, apiKey: response.apiKey, version: version)
                #expect(header.correlationId == 9)
                #expect(decoded.encoded(version: version, correlationId: 9) == bytes, "\(response.apiKey) v\(version)")
                if version == versions.upperBound {
                    #expect(decoded == response, "\(response.apiKey) v\(version)")
                }
            }
        }
    }

    @Test func groupInstanceIdTravelsFromTheVersionThatHasIt() throws {
        let join = JoinGroupRequest(groupId: "g", sessionTimeoutMs: 10000, memberId: "m", groupInstanceId: "i-1",
                                    protocolType: "consumer", protocols: [])
        let joins = try roundTrip(join, versions: range(JoinGroupRequest.self))
        #expect(joins[4]?.groupInstanceId == nil)
        #expect(joins[5]?.groupInstanceId == "i-1")
        let joined = JoinGroupResponse(generationId: 1, protocolName: "range", leader: "m", memberId: "m", members: [
            .init(memberId: "m", groupInstanceId: "i-1", metadata: ByteBuffer(bytes: [7])),
            .init(memberId: "n", metadata: ByteBuffer()),
        ])
        let answers = try roundTrip(joined, versions: range(JoinGroupResponse.self))
        #expect(answers[4]?.members.map(\.groupInstanceId) == [nil, nil])
        #expect(answers[5] == joined)

        let syncs = try roundTrip(SyncGroupRequest(groupId: "g", generationId: 1, memberId: "m", groupInstanceId: "i-1",
                                                   assignments: []), versions: range(SyncGroupRequest.self))
        #expect(syncs[2]?.groupInstanceId == nil)
        #expect(syncs[3]?.groupInstanceId == "i-1")
        let beats = try roundTrip(HeartbeatRequest(groupId: "g", generationId: 1, memberId: "m", groupInstanceId: "i-1"),
                                  versions: range(HeartbeatRequest.self))
        #expect(beats[2]?.groupInstanceId == nil)
        #expect(beats[3]?.groupInstanceId == "i-1")
        let commits = try roundTrip(OffsetCommitRequest(groupId: "g", generationId: 1, memberId: "m", groupInstanceId: "i-1",
                                                        topics: []), versions: range(OffsetCommitRequest.self))
        #expect(commits[6]?.groupInstanceId == nil)
        #expect(commits[7]?.groupInstanceId == "i-1")
    }

    @Test func leaveGroupIsOneMemberUpToV2AndABatchFromV3() throws {
        let single = LeaveGroupRequest(groupId: "g", memberId: "m")
        #expect(single.members == [.init(memberId: "m")])
        for (_, decoded) in try roundTrip(single, versions: range(LeaveGroupRequest.self)) {
            #expect(decoded == single)
            #expect(decoded.memberId == "m")
        }
        let batch = LeaveGroupRequest(groupId: "g", members: [.init(memberId: "m"), .init(memberId: "", groupInstanceId: "i-2")])
        let decoded = try roundTrip(batch, versions: range(LeaveGroupRequest.self))
        #expect(decoded[3] == batch)
        #expect(decoded[2]?.members == [.init(memberId: "m")])  // v0–v2 carry the first member only
        // v2 on the wire: group id, then the one member id.
        #expect(Array(buffer: batch.encoded(version: 2)) == [0, 1, 0x67, 0, 1, 0x6D])

        var renamed = batch
        renamed.memberId = "x"
        #expect(renamed.members == [.init(memberId: "x")])

        let answer = LeaveGroupResponse(errorCode: .noError, members: [
            .init(memberId: "m"), .init(memberId: "", groupInstanceId: "i-2", errorCode: .unknownMemberId),
        ])
        let answers = try roundTrip(answer, versions: range(LeaveGroupResponse.self))
        #expect(answers[2]?.members == [])
        #expect(answers[3] == answer)
    }

    @Test func describeGroupsFieldsAppearAtTheirVersions() throws {
        let request = DescribeGroupsRequest(groups: ["g"], includeAuthorizedOperations: true)
        let requests = try roundTrip(request, versions: range(DescribeGroupsRequest.self))
        #expect(requests[2]?.includeAuthorizedOperations == false)
        #expect(requests[3] == request)

        let member = DescribeGroupsResponse.Member(memberId: "m", groupInstanceId: "i-1", clientId: "c", clientHost: "/h",
                                                   memberMetadata: ByteBuffer(bytes: [1]), memberAssignment: ByteBuffer())
        let response = DescribeGroupsResponse(throttleTimeMs: 3, groups: [
            .init(groupId: "g", groupState: "Stable", protocolType: "consumer", protocolData: "range", members: [member],
                  authorizedOperations: 0x148),
            .init(errorCode: .groupIdNotFound, groupId: "x", groupState: "Dead", protocolType: "", protocolData: "", members: []),
        ])
        let answers = try roundTrip(response, versions: range(DescribeGroupsResponse.self))
        #expect(answers[0]?.throttleTimeMs == 0)
        #expect(answers[2]?.groups[0].authorizedOperations == DescribeGroupsResponse.authorizedOperationsOmitted)
        #expect(answers[3]?.groups[0].authorizedOperations == 0x148)
        #expect(answers[3]?.groups[0].members[0].groupInstanceId == nil)
        #expect(answers[4] == response)
    }

    @Test func listGroupsHasAnEmptyRequestAndThrottleFromV1() throws {
        #expect(ListGroupsRequest().encoded(version: 2).readableBytes == 0)
        let response = ListGroupsResponse(throttleTimeMs: 7, groups: [.init(groupId: "g", protocolType: "consumer"),
                                                                      .init(groupId: "offsets-only", protocolType: "")])
        let answers = try roundTrip(response, versions: range(ListGroupsResponse.self))
        #expect(answers[0]?.throttleTimeMs == 0)
        #expect(answers[0]?.groups == response.groups)
        #expect(answers[2] == response)
    }

    @Test func groupAPIsAreNonFlexibleUpToTheirSupportedVersions() {
        let firstFlexible: [APIKey: Int16] = [
            .joinGroup: 6, .syncGroup: 4, .heartbeat: 4, .leaveGroup: 4, .offsetCommit: 8, .offsetFetch: 6,
            .findCoordinator: 3, .describeGroups: 5, .listGroups: 3, .deleteGroups: 2,
        ]
        for (apiKey, first) in firstFlexible {
            #expect(apiKey.firstFlexibleVersion == first, "\(apiKey)")
            let supported = SupportedAPIVersions.range(for: apiKey)
            #expect(supported.map { $0.upperBound < first } == true, "\(apiKey) serves a flexible version")
        }
    }

    @Test func configAPIsAreFlexibleFromKafkasVersionsAndFieldsAppearAtTheirVersions() throws {
        #expect(APIKey.describeConfigs.firstFlexibleVersion == 4)
        #expect(APIKey.alterConfigs.firstFlexibleVersion == 2)
        #expect(APIKey.incrementalAlterConfigs.firstFlexibleVersion == 1)
        #expect(APIKey.createPartitions.firstFlexibleVersion == 2)
        let request = DescribeConfigsRequest(resources: [.init(resourceType: ConfigResourceType.topic, resourceName: "t")],
                                             includeSynonyms: true, includeDocumentation: true)
        let requests = try roundTrip(request, versions: range(DescribeConfigsRequest.self))
        #expect(requests[0]?.includeSynonyms == false)
        #expect(requests[2]?.includeSynonyms == true)
        #expect(requests[2]?.includeDocumentation == false)
        #expect(requests[4] == request)
        #expect(requests[4]?.resources[0].configurationKeys == nil)
        // v0: resource type, name, null keys (-1); no flags.
        #expect(Array(buffer: request.encoded(version: 0)) == [0, 0, 0, 1, 2, 0, 1, 0x74, 0xFF, 0xFF, 0xFF, 0xFF])
        // v4: compact array of 1 (2), type, compact "t" (2, 't'), null keys (0), tags, both flags, tags.
        #expect(Array(buffer: request.encoded(version: 4)) == [2, 2, 2, 0x74, 0, 0, 1, 1, 0])

        let config = DescribeConfigsResponse.Config(name: "retention.ms", value: "3600000", readOnly: false, isDefault: true,
                                                    configSource: ConfigSource.defaultConfig,
                                                    synonyms: [.init(name: "log.retention.hours", value: "168", source: ConfigSource.defaultConfig)],
                                                    configType: ConfigType.long, documentation: "doc")
        let response = DescribeConfigsResponse(results: [.init(resourceType: ConfigResourceType.topic, resourceName: "t", configs: [config])])
        let answers = try roundTrip(response, versions: range(DescribeConfigsResponse.self))
        #expect(answers[0]?.results[0].configs[0].isDefault == true)
        #expect(answers[0]?.results[0].configs[0].configSource == -1)  // not in v0
        #expect(answers[0]?.results[0].configs[0].synonyms == [])
        #expect(answers[1]?.results[0].configs[0].isDefault == false)  // v1+ says it with the source
        #expect(answers[1]?.results[0].configs[0].synonyms == config.synonyms)
        #expect(answers[2]?.results[0].configs[0].documentation == nil)
        var flexible = config
        flexible.isDefault = false
        #expect(answers[4]?.results[0].configs == [flexible])

        let grow = CreatePartitionsRequest(topics: [.init(name: "t", count: 2, assignments: [.init(brokerIds: [1])])], timeoutMs: 5)
        for (_, decoded) in try roundTrip(grow, versions: range(CreatePartitionsRequest.self)) { #expect(decoded == grow) }
        let unplaced = CreatePartitionsRequest(topics: [.init(name: "t", count: 2)], timeoutMs: 5, validateOnly: true)
        for (_, decoded) in try roundTrip(unplaced, versions: range(CreatePartitionsRequest.self)) { #expect(decoded == unplaced) }
        let incremental = IncrementalAlterConfigsRequest(resources: [.init(resourceType: ConfigResourceType.topic, resourceName: "t", configs: [
            .init(name: "cleanup.policy", configOperation: ConfigOperation.append, value: "delete")])])
        for (_, decoded) in try roundTrip(incremental, versions: range(IncrementalAlterConfigsRequest.self)) { #expect(decoded == incremental) }
    }

    @Test func decodingAtAnUnsupportedVersionIsATypedError() {
        var buffer = ByteBuffer(bytes: [0, 0])
        #expect(throws: ProtocolError.self) { _ = try ProduceRequest.decode(from: &buffer, version: 2) }
        do {
            _ = try FetchResponse.decode(from: &buffer, version: 12)
        } catch let error as ProtocolError {
            #expect(error.kind == .unsupportedVersion)
        } catch {
            Issue.record("untyped \(error)")
        }
    }
}

@Suite struct MessageErrorCodeAndSaslTests {
    @Test func errorCodesHaveKafkasNumbersAndNames() {
        let expected: [(ErrorCode, Int16, String, Bool)] = [
            (.noError, 0, "NONE", false), (.offsetOutOfRange, 1, "OFFSET_OUT_OF_RANGE", false),
            (.corruptMessage, 2, "CORRUPT_MESSAGE", true), (.unknownTopicOrPartition, 3, "UNKNOWN_TOPIC_OR_PARTITION", true),
            (.notLeaderOrFollower, 6, "NOT_LEADER_OR_FOLLOWER", true), (.requestTimedOut, 7, "REQUEST_TIMED_OUT", true),
            (.messageTooLarge, 10, "MESSAGE_TOO_LARGE", false), (.coordinatorNotAvailable, 15, "COORDINATOR_NOT_AVAILABLE", true),
            (.notCoordinator, 16, "NOT_COORDINATOR", true), (.invalidTopicException, 17, "INVALID_TOPIC_EXCEPTION", false),
            (.recordListTooLarge, 18, "RECORD_LIST_TOO_LARGE", false), (.notEnoughReplicas, 19, "NOT_ENOUGH_REPLICAS", true),
            (.illegalGeneration, 22, "ILLEGAL_GENERATION", false), (.unknownMemberId, 25, "UNKNOWN_MEMBER_ID", false),
            (.rebalanceInProgress, 27, "REBALANCE_IN_PROGRESS", false),
            (.topicAuthorizationFailed, 29, "TOPIC_AUTHORIZATION_FAILED", false),
            (.groupAuthorizationFailed, 30, "GROUP_AUTHORIZATION_FAILED", false),
            (.clusterAuthorizationFailed, 31, "CLUSTER_AUTHORIZATION_FAILED", false),
            (.unsupportedSaslMechanism, 33, "UNSUPPORTED_SASL_MECHANISM", false),
            (.illegalSaslState, 34, "ILLEGAL_SASL_STATE", false), (.unsupportedVersion, 35, "UNSUPPORTED_VERSION", false),
            (.topicAlreadyExists, 36, "TOPIC_ALREADY_EXISTS", false), (.invalidPartitions, 37, "INVALID_PARTITIONS", false),
            (.invalidRequest, 42, "INVALID_REQUEST", false),
            (.outOfOrderSequenceNumber, 45, "OUT_OF_ORDER_SEQUENCE_NUMBER", false),
            (.duplicateSequenceNumber, 46, "DUPLICATE_SEQUENCE_NUMBER", false),
            (.invalidProducerEpoch, 47, "INVALID_PRODUCER_EPOCH", false), (.kafkaStorageError, 56, "KAFKA_STORAGE_ERROR", true),
            (.saslAuthenticationFailed, 58, "SASL_AUTHENTICATION_FAILED", false),
            (.unknownProducerId, 59, "UNKNOWN_PRODUCER_ID", false), (.memberIdRequired, 79, "MEMBER_ID_REQUIRED", false),
            (.invalidRecord, 87, "INVALID_RECORD", false),
        ]
        for (code, number, name, retriable) in expected {
            #expect(code.rawValue == number)
            #expect(code.name == name)
            #expect(code.isRetriable == retriable, "\(name)")
        }
        #expect(ErrorCode(rawValue: 999).name == "UNKNOWN_CODE_999")
        #expect(!ErrorCode(rawValue: 999).isRetriable)
    }

    @Test func saslPlainSplitsIntoKeyIdAndSecret() throws {
        let credentials = try SaslPlainCredentials(parsing: ByteBuffer(bytes: Array("\0ak_123\0secret".utf8)))
        #expect(credentials == SaslPlainCredentials(username: "ak_123", password: "secret"))
        #expect(Array(buffer: credentials.encoded) == Array("\0ak_123\0secret".utf8))
    }

    @Test(arguments: ["ak_123\0secret", "\0\0secret", "\0ak_123\0", "", "\0ak\0se\0cret"])
    func malformedSaslPlainIsRejected(_ message: String) {
        #expect(throws: ProtocolError.self) {
            _ = try SaslPlainCredentials(parsing: ByteBuffer(bytes: Array(message.utf8)))
        }
    }
}
