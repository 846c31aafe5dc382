import EventFlowProtocol
import EventFlowStorage
import Foundation
import NIOCore

/// Topic configuration and growth through Kafka's admin APIs (protocol/configs.md): a topic is a
/// stream of the key's organization; only topic resources (type 2) are served. Every resource is
/// answered on its own, with a Kafka code and a sentence; nothing closes the connection.
extension RequestServer {
    private var topicConfigs: TopicConfigs { TopicConfigs(maxMessageBytes: services.configuration.frameBytesMax) }

    /// Why a resource that is not a topic is refused.
    private static func unservedResource(_ type: Int8) -> Refusal {
        if type == ConfigResourceType.broker {
            return Refusal(code: .invalidRequest, message: "broker configs are not served by EventFlow: only topic (resource type 2) configs are")
        }
        return Refusal(code: .invalidRequest, message: "resource type \(type) is not supported: EventFlow serves topic (resource type 2) configs only")
    }

    private static func unknownTopic(_ name: String) -> Refusal {
        Refusal(code: .unknownTopicOrPartition, message: "topic '\(name)' does not exist")
    }

    /// The active stream `name` of `org`, or nil (a NUL byte cannot be in a stored name).
    private static func stream(_ db: PostgresConnection, _ org: Organization, _ name: String) throws -> EventStream? {
        guard !name.utf8.contains(0) else { return nil }
        do {
            return try Streams.find(db, org: org, name: name)
        } catch TenancyError.unknownStream {
            return nil
        }
    }

    // MARK: DescribeConfigs

    func describeConfigs(_ request: DescribeConfigsRequest) -> EventLoopFuture<DescribeConfigsResponse> {
        let organizationID = principal.organizationID
        let configs = topicConfigs
        return services.controlPlane.run(on: eventLoop) { db -> DescribeConfigsResponse in
            let org = try Organizations.find(db, organizationID.uuidString)
            return DescribeConfigsResponse(results: try request.resources.map { resource in
                func refused(_ refusal: Refusal) -> DescribeConfigsResponse.Result {
                    .init(errorCode: refusal.code, errorMessage: refusal.message, resourceType: resource.resourceType,
                          resourceName: resource.resourceName)
                }
                guard resource.resourceType == ConfigResourceType.topic else { return refused(Self.unservedResource(resource.resourceType)) }
                guard let stream = try Self.stream(db, org, resource.resourceName) else { return refused(Self.unknownTopic(resource.resourceName)) }
                return .init(resourceType: resource.resourceType, resourceName: resource.resourceName,
                             configs: configs.describe(stream, keys: resource.configurationKeys, includeSynonyms: request.includeSynonyms,
                                                       includeDocumentation: request.includeDocumentation))
            })
        }.flatMapErrorThrowing { [logger] error in
            logger.error("DescribeConfigs failed", metadata: ["error": "\(error)"])
            return DescribeConfigsResponse(results: request.resources.map {
                .init(errorCode: .kafkaStorageError, errorMessage: "the configs could not be read", resourceType: $0.resourceType,
                      resourceName: $0.resourceName)
            })
        }
    }

    // MARK: AlterConfigs and IncrementalAlterConfigs

    /// One resource of either alter request.
    private struct Alteration: Sendable {
        var resourceType: Int8
        var resourceName: String
        var changes: [TopicConfigs.Change]
    }

    func alterConfigs(_ request: AlterConfigsRequest) -> EventLoopFuture<AlterConfigsResponse> {
        // AlterConfigs replaces the whole set: every entry is a SET (null = default), and the
        // configs not named go back to their defaults.
        let alterations = request.resources.map { resource in
            Alteration(resourceType: resource.resourceType, resourceName: resource.resourceName, changes: resource.configs.map {
                .init(name: $0.name, operation: $0.value == nil ? ConfigOperation.delete : ConfigOperation.set, value: $0.value)
            })
        }
        return alter(alterations, replacingAll: true, validateOnly: request.validateOnly).map { AlterConfigsResponse(responses: $0) }
    }

    func incrementalAlterConfigs(_ request: IncrementalAlterConfigsRequest) -> EventLoopFuture<IncrementalAlterConfigsResponse> {
        let alterations = request.resources.map { resource in
            Alteration(resourceType: resource.resourceType, resourceName: resource.resourceName, changes: resource.configs.map {
                .init(name: $0.name, operation: $0.configOperation, value: $0.value)
            })
        }
        return alter(alterations, replacingAll: false, validateOnly: request.validateOnly)
            .map { IncrementalAlterConfigsResponse(responses: $0) }
    }

    private func alter(_ alterations: [Alteration], replacingAll: Bool, validateOnly: Bool) -> EventLoopFuture<[AlterConfigsResourceResult]> {
        let organizationID = principal.organizationID
        let isAdmin = principal.isAdmin
        let configs = topicConfigs
        return services.controlPlane.run(on: eventLoop) { db -> [AlterConfigsResourceResult] in
            let org = try Organizations.find(db, organizationID.uuidString)
            return try alterations.map { alteration in
                func answer(_ refusal: Refusal?) -> AlterConfigsResourceResult {
                    .init(errorCode: refusal?.code ?? .noError, errorMessage: refusal?.message,
                          resourceType: alteration.resourceType, resourceName: alteration.resourceName)
                }
                guard alteration.resourceType == ConfigResourceType.topic else { return answer(Self.unservedResource(alteration.resourceType)) }
                guard isAdmin else {
                    return answer(Refusal(code: .topicAuthorizationFailed, message: "altering topic configs needs an API key with the admin role"))
                }
                guard let stream = try Self.stream(db, org, alteration.resourceName) else { return answer(Self.unknownTopic(alteration.resourceName)) }
                let start = replacingAll ? Streams.defaultRetentionHours : stream.retentionHours
                switch configs.apply(alteration.changes, to: start) {
                case .failure(let refusal):
                    return answer(refusal)
                case .success(let hours):
                    if !validateOnly && hours != stream.retentionHours {
                        try Streams.alter(db, org: org, name: stream.name, retentionHours: hours)
                    }
                    return answer(nil)
                }
            }
        }.flatMapErrorThrowing { [logger] error in
            logger.error("altering configs failed", metadata: ["error": "\(error)"])
            return alterations.map {
                .init(errorCode: .kafkaStorageError, errorMessage: "the configs could not be stored", resourceType: $0.resourceType,
                      resourceName: $0.resourceName)
            }
        }
    }

    // MARK: CreatePartitions

    func createPartitions(_ request: CreatePartitionsRequest) -> EventLoopFuture<CreatePartitionsResponse> {
        let organizationID = principal.organizationID
        let isAdmin = principal.isAdmin
        let nodeID = services.configuration.nodeID
        let streams = services.streams
        var counts: [String: Int] = [:]
        for topic in request.topics { counts[topic.name, default: 0] += 1 }
        let duplicates = counts
        return services.controlPlane.run(on: eventLoop) { db -> CreatePartitionsResponse in
            let org = try Organizations.find(db, organizationID.uuidString)
            return CreatePartitionsResponse(results: try request.topics.map { topic in
                func answer(_ refusal: Refusal?) -> CreatePartitionsResponse.TopicResult {
                    .init(name: topic.name, errorCode: refusal?.code ?? .noError, errorMessage: refusal?.message)
                }
                guard duplicates[topic.name] == 1 else {
                    return answer(Refusal(code: .invalidRequest, message: "topic '\(topic.name)' is named more than once"))
                }
                guard isAdmin else {
                    return answer(Refusal(code: .topicAuthorizationFailed, message: "adding partitions needs an API key with the admin role"))
                }
                guard let stream = try Self.stream(db, org, topic.name) else { return answer(Self.unknownTopic(topic.name)) }
                let requested = Int(topic.count)
                guard !DeadLetterStreams.isDeadLetterStream(stream.name) else {
                    return answer(Refusal(code: .invalidPartitions, message: "'\(topic.name)' is a dead-letter stream: it keeps its one partition"))
                }
                guard requested > stream.partitions else {
                    let message = requested == stream.partitions
                        ? "topic '\(topic.name)' already has \(stream.partitions) partitions"
                        : "topic '\(topic.name)' has \(stream.partitions) partitions, more than the requested \(requested); partitions can only be added"
                    return answer(Refusal(code: .invalidPartitions, message: message))
                }
                guard requested <= Streams.partitionsMax else {
                    return answer(Refusal(code: .invalidPartitions, message: "a stream has at most \(Streams.partitionsMax) partitions"))
                }
                if let assignments = topic.assignments {
                    guard assignments.count == requested - stream.partitions else {
                        return answer(Refusal(code: .invalidReplicaAssignment, message:
                            "\(requested - stream.partitions) new partitions but \(assignments.count) assignments"))
                    }
                    guard assignments.allSatisfy({ !$0.brokerIds.isEmpty && $0.brokerIds.allSatisfy { $0 == nodeID } }) else {
                        return answer(Refusal(code: .invalidReplicaAssignment, message: "this broker (node \(nodeID)) is the only node"))
                    }
                }
                if request.validateOnly { return answer(nil) }
                do {
                    let grown = try Streams.growPartitions(db, org: org, name: stream.name, to: requested)
                    try streams.streamGrew(db, streamID: grown.id, organizationID: organizationID)
                    return answer(nil)
                } catch TenancyError.partitionsCannotShrink(_, let current, _) {
                    // Another admin grew it between the read and the update.
                    return answer(Refusal(code: .invalidPartitions, message: "topic '\(topic.name)' now has \(current) partitions"))
                }
            })
        }.flatMapErrorThrowing { [logger] error in
            logger.error("CreatePartitions failed", metadata: ["error": "\(error)"])
            return CreatePartitionsResponse(results: request.topics.map {
                .init(name: $0.name, errorCode: .kafkaStorageError, errorMessage: "the partitions could not be added")
            })
        }
    }
}
