import Foundation
import NIOCore
import Testing
@testable import EventFlowProtocol

/// Vectors written by kafka-python 3.0.12 (`scripts/gen_message_vectors.py`): EventFlow must
/// read each one and write it back byte for byte.
struct MessageVector: CustomStringConvertible, Sendable {
    enum Kind: String, Sendable { case request, response }

    var name: String
    var apiKey: APIKey
    var version: Int16
    var kind: Kind
    var bytes: [UInt8]

    var description: String { name }
    var buffer: ByteBuffer { ByteBuffer(bytes: bytes) }

    static let apiKeysByStem: [String: APIKey] = [
        "api_versions": .apiVersions, "sasl_handshake": .saslHandshake, "sasl_authenticate": .saslAuthenticate,
        "metadata": .metadata, "create_topics": .createTopics, "delete_topics": .deleteTopics,
        "init_producer_id": .initProducerId, "produce": .produce, "list_offsets": .listOffsets, "fetch": .fetch,
        "find_coordinator": .findCoordinator, "join_group": .joinGroup, "sync_group": .syncGroup,
        "heartbeat": .heartbeat, "leave_group": .leaveGroup, "offset_commit": .offsetCommit,
        "offset_fetch": .offsetFetch, "list_groups": .listGroups, "delete_groups": .deleteGroups, "describe_groups": .describeGroups,
        "describe_configs": .describeConfigs, "alter_configs": .alterConfigs,
        "incremental_alter_configs": .incrementalAlterConfigs, "create_partitions": .createPartitions,
    ]

    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("protocol/vectors/messages")

    static func load(_ file: String) -> [UInt8] {
        let text = (try? String(contentsOf: directory.appendingPathComponent(file), encoding: .utf8)) ?? ""
        let hex = Array(text.trimmingCharacters(in: .whitespacesAndNewlines).utf8)
        var bytes: [UInt8] = []
        var index = 0
        while index + 1 < hex.count {
            let pair = String(decoding: hex[index...index + 1], as: UTF8.self)
            bytes.append(UInt8(pair, radix: 16) ?? 0)
            index += 2
        }
        return bytes
    }

    /// Every `<api>_v<N>_<request|response>.hex` in the folder.
    static let all: [MessageVector] = {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return files.sorted().compactMap { file -> MessageVector? in
            guard file.hasSuffix(".hex") else { return nil }
            let parts = file.dropLast(4).split(separator: "_")
            guard parts.count >= 3, let kind = Kind(rawValue: String(parts[parts.count - 1])),
                  parts[parts.count - 2].hasPrefix("v"), let version = Int16(parts[parts.count - 2].dropFirst()),
                  let apiKey = apiKeysByStem[parts.dropLast(2).joined(separator: "_")] else { return nil }
            return MessageVector(name: file, apiKey: apiKey, version: version, kind: kind, bytes: load(file))
        }
    }()
}

@Suite struct MessageVectorTests {
    @Test func everySupportedAPIVersionHasARequestAndAResponseVector() {
        for (apiKey, range) in SupportedAPIVersions.ranges {
            for version in range {
                for kind in [MessageVector.Kind.request, .response] {
                    #expect(MessageVector.all.contains { $0.apiKey == apiKey && $0.version == version && $0.kind == kind },
                            "missing vector \(apiKey) v\(version) \(kind)")
                }
            }
        }
        #expect(MessageVector.all.count == 202)
    }

    @Test(arguments: MessageVector.all)
    func vectorDecodesAndReencodesByteForByte(_ vector: MessageVector) throws {
        switch vector.kind {
        case .request:
            let decoded = try KafkaRequest.decode(frame: vector.buffer)
            #expect(decoded.header == RequestHeader(apiKey: vector.apiKey, apiVersion: vector.version,
                                                    correlationId: 0x0102_0304, clientId: "eventflow-vectors"))
            #expect(decoded.body.apiKey == vector.apiKey)
            #expect(Array(buffer: decoded.encoded()) == vector.bytes)
        case .response:
            let (header, body) = try KafkaResponse.decode(frame: vector.buffer, apiKey: vector.apiKey, version: vector.version)
            #expect(header.correlationId == 0x0102_0304)
            #expect(body.apiKey == vector.apiKey)
            #expect(Array(buffer: body.encoded(version: vector.version, correlationId: header.correlationId)) == vector.bytes)
        }
    }

    @Test(arguments: MessageVector.all)
    func everyStrictPrefixIsATypedError(_ vector: MessageVector) {
        for length in 0..<vector.bytes.count {
            let prefix = ByteBuffer(bytes: vector.bytes[0..<length])
            switch vector.kind {
            case .request:
                #expect(throws: RequestDecodingError.self, "prefix of \(length) bytes") {
                    _ = try KafkaRequest.decode(frame: prefix)
                }
                do {
                    _ = try KafkaRequest.decode(frame: prefix)
                } catch {
                    #expect([.truncated, .invalidValue].contains(error.kind), "prefix of \(length) bytes: \(error)")
                }
            case .response:
                do {
                    _ = try KafkaResponse.decode(frame: prefix, apiKey: vector.apiKey, version: vector.version)
                    Issue.record("prefix of \(length) bytes decoded")
                } catch let error as ProtocolError {
                    #expect([.truncated, .invalidValue].contains(error.kind), "prefix of \(length) bytes: \(error)")
                } catch {
                    Issue.record("untyped error \(error)")
                }
            }
        }
    }

    @Test(arguments: MessageVector.all.filter { $0.kind == .request })
    func trailingBytesAfterARequestBodyAreRejected(_ vector: MessageVector) {
        var bytes = vector.bytes
        bytes.append(0)
        do {
            _ = try KafkaRequest.decode(frame: ByteBuffer(bytes: bytes))
            Issue.record("trailing byte accepted")
        } catch {
            #expect(error.kind == .invalidValue)
            #expect(error.correlationId == 0x0102_0304)
        }
    }

    @Test func produceRequestV3CarriesRecordsAsTheSentBytes() throws {
        let bytes = MessageVector.load("produce_v3_request.hex")
        let decoded = try KafkaRequest.decode(frame: ByteBuffer(bytes: bytes))
        guard case .produce(let produce) = decoded.body else {
            Issue.record("not a produce request: \(decoded.body)")
            return
        }
        #expect(produce.acks == -1)
        #expect(produce.timeoutMs == 30000)
        #expect(produce.transactionalId == nil)
        #expect(produce.topicData.map(\.name) == ["orders"])
        let partitions = produce.topicData[0].partitionData
        #expect(partitions.map(\.index) == [0, 1])
        let records = try #require(partitions[0].records)
        #expect(Array(buffer: records) == [0, 0, 0, 0, 0, 0, 0, 0] + (1..<60).map { UInt8($0) })
        #expect(partitions[1].records == nil)
    }

    @Test func metadataResponseV7DecodesToTheSentValues() throws {
        let bytes = MessageVector.load("metadata_v7_response.hex")
        let (_, body) = try KafkaResponse.decode(frame: ByteBuffer(bytes: bytes), apiKey: .metadata, version: 7)
        let expected = MetadataResponse(
            brokers: [.init(nodeId: 1, host: "127.0.0.1", port: 9092)], clusterId: "eventflow-cluster", controllerId: 1,
            topics: [
                .init(name: "orders", partitions: (0..<2).map {
                    .init(partitionIndex: $0, leaderId: 1, leaderEpoch: 0, replicaNodes: [1], isrNodes: [1])
                }),
                .init(errorCode: .unknownTopicOrPartition, name: "payments", partitions: []),
            ])
        #expect(body == .metadata(expected))
    }

    @Test func staticMemberFieldsDecodeFromKafkaPythonVectors() throws {
        let join = try KafkaRequest.decode(frame: ByteBuffer(bytes: MessageVector.load("join_group_v5_request.hex")))
        guard case .joinGroup(let request) = join.body else {
            Issue.record("not a join: \(join.body)")
            return
        }
        #expect(request.memberId == "")
        #expect(request.groupInstanceId == "billing-1")
        #expect(request.protocols.map(\.name) == ["range"])

        let (_, joined) = try KafkaResponse.decode(frame: ByteBuffer(bytes: MessageVector.load("join_group_v5_response.hex")),
                                                   apiKey: .joinGroup, version: 5)
        guard case .joinGroup(let answer) = joined else {
            Issue.record("not a join answer: \(joined)")
            return
        }
        #expect(answer.members.map(\.memberId) == ["member-1", "member-2"])
        #expect(answer.members.map(\.groupInstanceId) == ["billing-1", nil])

        let leave = try KafkaRequest.decode(frame: ByteBuffer(bytes: MessageVector.load("leave_group_v3_request.hex")))
        #expect(leave.body == .leaveGroup(LeaveGroupRequest(groupId: "billing-consumers", members: [
            .init(memberId: "member-1"), .init(memberId: "", groupInstanceId: "billing-2"),
        ])))
        let leaveV2 = try KafkaRequest.decode(frame: ByteBuffer(bytes: MessageVector.load("leave_group_v2_request.hex")))
        #expect(leaveV2.body == .leaveGroup(LeaveGroupRequest(groupId: "billing-consumers", memberId: "member-1")))
        let (_, left) = try KafkaResponse.decode(frame: ByteBuffer(bytes: MessageVector.load("leave_group_v3_response.hex")),
                                                 apiKey: .leaveGroup, version: 3)
        #expect(left == .leaveGroup(LeaveGroupResponse(members: [
            .init(memberId: "member-1"), .init(memberId: "", groupInstanceId: "billing-2", errorCode: .unknownMemberId),
        ])))
    }

    @Test func describeGroupsResponseV4DecodesToTheSentValues() throws {
        let bytes = MessageVector.load("describe_groups_v4_response.hex")
        let (_, body) = try KafkaResponse.decode(frame: ByteBuffer(bytes: bytes), apiKey: .describeGroups, version: 4)
        let subscription: [UInt8] = [0, 0, 0, 0, 0, 1, 0, 6] + Array("orders".utf8) + [0xFF, 0xFF, 0xFF, 0xFF]
        let assignment: [UInt8] = [0, 0, 0, 0, 0, 1, 0, 6] + Array("orders".utf8) + [0, 0, 0, 1, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]
        let expected = DescribeGroupsResponse(groups: [
            .init(groupId: "billing-consumers", groupState: "Stable", protocolType: "consumer", protocolData: "range",
                  members: [.init(memberId: "member-1", groupInstanceId: "billing-1", clientId: "rdkafka",
                                  clientHost: "/10.0.0.7", memberMetadata: ByteBuffer(bytes: subscription),
                                  memberAssignment: ByteBuffer(bytes: assignment))],
                  authorizedOperations: 0x148),  // READ, DELETE, DESCRIBE
            .init(errorCode: .groupIdNotFound, groupId: "missing", groupState: "Dead", protocolType: "", protocolData: "",
                  members: []),
        ])
        #expect(body == .describeGroups(expected))
    }

    @Test func apiVersionsUnsupportedAnswerIsReadAsV0WhateverVersionWasAsked() throws {
        let bytes = MessageVector.load("api_versions_unsupported_response.hex")
        for version: Int16 in 0...3 {
            let (header, response) = try ApiVersionsResponse.decodeResponse(frame: ByteBuffer(bytes: bytes), version: version)
            #expect(header.correlationId == 0x0102_0304)
            #expect(response.errorCode == .unsupportedVersion)
            #expect(response.apiKeys == [.init(apiKey: 18, minVersion: 0, maxVersion: 3)])
        }
        let answer = ApiVersionsResponse(errorCode: .unsupportedVersion, apiKeys: [.init(apiKey: 18, minVersion: 0, maxVersion: 3)])
        #expect(Array(buffer: answer.encodedResponse(version: 0, correlationId: 0x0102_0304)) == bytes)
    }
}
