import EventFlowProtocol
import EventFlowStorage
import Foundation
import Logging
import NIOCore

/// Serves the authenticated APIs of one connection: each method turns a request into the
/// future of its response body. Database work runs on the control plane; produced batches go
/// to the batcher. Results complete on the connection's event loop.
struct RequestServer {
    var services: BrokerServices
    var principal: SessionStateMachine.Principal
    var eventLoop: any EventLoop
    var logger: Logger

    private var organizationID: UUID { principal.organizationID }
    private var nodeID: Int32 { services.configuration.nodeID }

    // MARK: Metadata

    func metadata(_ request: MetadataRequest) -> EventLoopFuture<MetadataResponse> {
        let organizationID = organizationID
        let nodeID = nodeID
        let advertised = services.advertised.withLockedValue { $0 }
        let clusterID = services.configuration.clusterID
        return services.controlPlane.run(on: eventLoop) { db -> [(name: String, partitions: Int32)] in
            // Asking for `<name>.dlq` creates it (protocol/dead-letters.md), as Kafka's topic
            // auto-creation would, so any client can dead-letter without an admin step.
            if let names = request.topics, names.contains(where: DeadLetterStreams.isDeadLetterStream) {
                try DeadLetterStreams.ensure(db, organizationID: organizationID, names: names)
            }
            return try db.query("SELECT name, partitions FROM event_streams WHERE org_id = $1 AND is_active ORDER BY name",
                         [organizationID.uuidString]).compactMap { row in
                guard let name = row["name"], let partitions = row["partitions"].flatMap({ Int32($0) }) else { return nil }
                return (name, partitions)
            }
        }.map { streams in
            let byName = Dictionary(streams.map { ($0.name, $0.partitions) }, uniquingKeysWith: { first, _ in first })
            let names = request.topics ?? streams.map(\.name)
            let topics = names.map { name -> MetadataResponse.Topic in
                guard let count = byName[name] else {
                    return MetadataResponse.Topic(errorCode: .unknownTopicOrPartition, name: name, partitions: [])
                }
                return MetadataResponse.Topic(name: name, partitions: (0..<count).map { index in
                    MetadataResponse.Partition(partitionIndex: index, leaderId: nodeID, leaderEpoch: 0,
                                               replicaNodes: [nodeID], isrNodes: [nodeID])
                })
            }
            return MetadataResponse(brokers: [.init(nodeId: nodeID, host: advertised.host, port: advertised.port)],
                                    clusterId: clusterID, controllerId: nodeID, topics: topics)
        }.flatMapErrorThrowing { [logger] error in
            // The database is away: each named topic is answered LEADER_NOT_AVAILABLE, which every
            // client retries, rather than closing the connection (whose reconnect would then meet
            // the same outage at SASL). A request for all topics has no such answer — an empty list
            // would tell a regex subscriber its topics are gone — so it fails and the connection closes.
            guard let names = request.topics, !names.isEmpty else { throw error }
            logger.warning("metadata unavailable; topics answered LEADER_NOT_AVAILABLE", metadata: ["error": "\(error)"])
            return MetadataResponse(brokers: [.init(nodeId: nodeID, host: advertised.host, port: advertised.port)],
                                    clusterId: clusterID, controllerId: nodeID,
                                    topics: names.map { MetadataResponse.Topic(errorCode: .leaderNotAvailable, name: $0, partitions: []) })
        }
    }

    // MARK: Topics

    private struct ValidateOnlyRollback: Error {}

    func createTopics(_ request: CreateTopicsRequest) -> EventLoopFuture<CreateTopicsResponse> {
        guard principal.isAdmin else {
            return eventLoop.makeSucceededFuture(CreateTopicsResponse(topics: request.topics.map {
                .init(name: $0.name, errorCode: .clusterAuthorizationFailed, errorMessage: "creating topics needs an API key with the admin role")
            }))
        }
        let organizationID = organizationID
        let configuration = services.configuration
        let streams = services.streams
        return services.controlPlane.run(on: eventLoop) { db -> CreateTopicsResponse in
            let org = try Organizations.find(db, organizationID.uuidString)
            let results = request.topics.map { topic -> CreateTopicsResponse.TopicResult in
                let plan: (partitions: Int, retentionHours: Int)
                switch Self.plan(topic, configuration: configuration) {
                case .success(let value): plan = value
                case .failure(let refusal): return .init(name: topic.name, errorCode: refusal.code, errorMessage: refusal.message)
                }
                do {
                    if request.validateOnly {
                        do {
                            try db.transaction {
                                _ = try Streams.create(db, org: org, name: topic.name, partitions: plan.partitions,
                                                       retentionHours: plan.retentionHours)
                                throw ValidateOnlyRollback()
                            }
                        } catch is ValidateOnlyRollback {}
                    } else {
                        _ = try Streams.create(db, org: org, name: topic.name, partitions: plan.partitions,
                                               retentionHours: plan.retentionHours)
                    }
                    return .init(name: topic.name)
                } catch let error as TenancyError {
                    let code: ErrorCode
                    switch error {
                    case .invalidName: code = .invalidTopicException
                    case .duplicateStream, .deletedStreamNameReserved: code = .topicAlreadyExists
                    case .invalidPartitions: code = .invalidPartitions
                    case .invalidDeadLetterStream(let name, _):
                        code = DeadLetterStreams.baseName(of: name).map(DeadLetterStreams.isDeadLetterStream) == true
                            ? .invalidTopicException : .invalidPartitions
                    case .invalidRetention: code = .invalidConfig
                    default: code = .unknownServerError
                    }
                    return .init(name: topic.name, errorCode: code, errorMessage: error.description)
                } catch {
                    return .init(name: topic.name, errorCode: .unknownServerError, errorMessage: "\(error)")
                }
            }
            streams.invalidate(organizationID: organizationID)
            return CreateTopicsResponse(topics: results)
        }
    }

    struct Refusal: Error {
        var code: ErrorCode
        var message: String
        /// Produce v8+: the records that caused the refusal (a schema's violations).
        var recordErrors: [ProduceResponse.RecordError] = []
        /// Records refused by the stream's schema, for `dead_letter_events`.
        var refusedRecords: [DeadLetters.RefusedRecord] = []
    }

    /// Partition count and retention for a CreateTopics entry, or why it is refused (topics.md).
    static func plan(_ topic: CreateTopicsRequest.Topic, configuration: BrokerConfiguration) -> Result<(partitions: Int, retentionHours: Int), Refusal> {
        // A dead-letter stream has one partition: the broker default does not apply to it.
        let defaultPartitions = DeadLetterStreams.isDeadLetterStream(topic.name) ? DeadLetterStreams.partitions : configuration.defaultPartitions
        var partitions = topic.numPartitions == -1 ? defaultPartitions : Int(topic.numPartitions)
        if !topic.assignments.isEmpty {
            guard topic.numPartitions == -1, topic.replicationFactor == -1 else {
                return .failure(Refusal(code: .invalidRequest, message: "give either assignments or numPartitions/replicationFactor"))
            }
            guard topic.assignments.allSatisfy({ $0.brokerIds.allSatisfy { $0 == configuration.nodeID } }) else {
                return .failure(Refusal(code: .invalidReplicaAssignment, message: "this broker (node \(configuration.nodeID)) is the only node"))
            }
            partitions = topic.assignments.count
        } else if topic.replicationFactor != -1 && topic.replicationFactor != 1 {
            return .failure(Refusal(code: .invalidReplicationFactor, message: "the replication factor must be 1 or -1"))
        }
        guard (1...Streams.partitionsMax).contains(partitions) else {
            return .failure(Refusal(code: .invalidPartitions, message: "partitions must be 1...\(Streams.partitionsMax)"))
        }
        var retentionHours = Streams.defaultRetentionHours
        for config in topic.configs {
            switch config.name {
            case "retention.ms":
                guard let value = config.value else { continue }
                guard let milliseconds = Int64(value), milliseconds > 0 else {
                    return .failure(Refusal(code: .invalidConfig, message: "retention.ms must be a positive number of milliseconds"))
                }
                retentionHours = Int(min((milliseconds + 3_599_999) / 3_600_000, Int64(Int32.max)))
            case "cleanup.policy":
                guard config.value == nil || config.value == "delete" else {
                    return .failure(Refusal(code: .invalidConfig, message: "only cleanup.policy=delete is supported"))
                }
            case "max.message.bytes", "compression.type":
                continue
            default:
                return .failure(Refusal(code: .invalidConfig, message: "unknown config \(config.name)"))
            }
        }
        return .success((partitions, retentionHours))
    }

    func deleteTopics(_ request: DeleteTopicsRequest) -> EventLoopFuture<DeleteTopicsResponse> {
        guard principal.isAdmin else {
            return eventLoop.makeSucceededFuture(DeleteTopicsResponse(responses: request.topicNames.map {
                .init(name: $0, errorCode: .clusterAuthorizationFailed)
            }))
        }
        let organizationID = organizationID
        let streams = services.streams
        return services.controlPlane.run(on: eventLoop) { db -> DeleteTopicsResponse in
            let org = try Organizations.find(db, organizationID.uuidString)
            let results = request.topicNames.map { name -> DeleteTopicsResponse.TopicResult in
                do {
                    try Streams.delete(db, org: org, name: name)
                    return .init(name: name)
                } catch is TenancyError {
                    return .init(name: name, errorCode: .unknownTopicOrPartition)
                } catch {
                    return .init(name: name, errorCode: .unknownServerError)
                }
            }
            streams.invalidate(organizationID: organizationID)
            return DeleteTopicsResponse(responses: results)
        }
    }

    // MARK: Consumers

    /// This broker coordinates every group. Served ahead of the group APIs because librdkafka
    /// enables LZ4 only for brokers that list FindCoordinator (its proxy for Kafka >= 0.8.2).
    func findCoordinator(_ request: FindCoordinatorRequest) -> FindCoordinatorResponse {
        guard request.keyType == 0 else {
            return FindCoordinatorResponse(errorCode: .coordinatorNotAvailable, errorMessage: "EventFlow has no transactions",
                                           nodeId: -1, host: "", port: -1)
        }
        let advertised = services.advertised.withLockedValue { $0 }
        return FindCoordinatorResponse(nodeId: nodeID, host: advertised.host, port: advertised.port)
    }

    func fetch(_ request: FetchRequest) -> EventLoopFuture<FetchResponse> {
        // Fetch sessions are not kept: sessionId 0 (a full fetch every time) is the only one.
        if request.sessionId != 0 || request.sessionEpoch > 0 {
            let code: ErrorCode = request.sessionId != 0 ? .fetchSessionIdNotFound : .invalidFetchSessionEpoch
            return eventLoop.makeSucceededFuture(FetchResponse(errorCode: code, responses: []))
        }
        let names = request.topics.map(\.topic)
        let fetches = services.fetches
        let eventLoop = eventLoop
        let logger = logger
        return services.streams.resolve(Array(Set(names)), organizationID: organizationID, on: eventLoop).flatMap { streams in
            var partitions: [FetchPartitionPlan] = []
            for (topicIndex, topic) in request.topics.enumerated() {
                let stream = streams[topic.topic] ?? nil
                for partition in topic.partitions {
                    let known = stream.flatMap { stream in
                        (0..<stream.partitions).contains(partition.partition)
                            ? StreamPartition(streamID: stream.id, partition: partition.partition) : nil
                    }
                    partitions.append(FetchPartitionPlan(topicIndex: topicIndex, partitionIndex: partition.partition, partition: known,
                                                         fetchOffset: partition.fetchOffset,
                                                         partitionMaxBytes: Int(partition.partitionMaxBytes)))
                }
            }
            let plan = FetchPlan(topics: names, partitions: partitions, minBytes: Int(request.minBytes),
                                 maxBytes: Int(request.maxBytes), maxWaitMilliseconds: Int64(request.maxWaitMs))
            return fetches.fetch(plan, on: eventLoop)
        }.flatMapError { error in
            logger.error("fetch failed", metadata: ["error": "\(error)"])
            return eventLoop.makeSucceededFuture(FetchResponse(responses: request.topics.map { topic in
                .init(topic: topic.topic, partitions: topic.partitions.map {
                    .init(partitionIndex: $0.partition, errorCode: .kafkaStorageError, highWatermark: -1, records: ByteBuffer())
                })
            }))
        }
    }

    func listOffsets(_ request: ListOffsetsRequest) -> EventLoopFuture<ListOffsetsResponse> {
        let names = request.topics.map(\.name)
        let fetches = services.fetches
        let eventLoop = eventLoop
        return services.streams.resolve(Array(Set(names)), organizationID: organizationID, on: eventLoop).flatMap { streams in
            var queries: [FetchService.OffsetQuery] = []
            for (topicIndex, topic) in request.topics.enumerated() {
                let stream = streams[topic.name] ?? nil
                for partition in topic.partitions {
                    let known = stream.flatMap { stream in
                        (0..<stream.partitions).contains(partition.partitionIndex)
                            ? StreamPartition(streamID: stream.id, partition: partition.partitionIndex) : nil
                    }
                    queries.append(.init(topicIndex: topicIndex, partitionIndex: partition.partitionIndex, partition: known,
                                         timestamp: partition.timestamp))
                }
            }
            return fetches.listOffsets(topics: names, queries: queries, on: eventLoop)
        }.flatMapErrorThrowing { _ in
            ListOffsetsResponse(topics: request.topics.map { topic in
                .init(name: topic.name, partitions: topic.partitions.map { .init(partitionIndex: $0.partitionIndex, errorCode: .kafkaStorageError) })
            })
        }
    }

    // MARK: Producers

    func initProducerId(_ request: InitProducerIdRequest) -> EventLoopFuture<InitProducerIdResponse> {
        guard request.transactionalId == nil else {
            return eventLoop.makeSucceededFuture(InitProducerIdResponse(errorCode: .invalidRequest, producerId: -1, producerEpoch: -1))
        }
        let organizationID = organizationID
        let logger = logger
        return services.controlPlane.run(on: eventLoop) { db in
            try ProducerIDs.allocate(db, organizationID: organizationID)
        }.map { allocated in
            InitProducerIdResponse(producerId: allocated.producerID, producerEpoch: allocated.epoch)
        }.recover { error in
            logger.error("InitProducerId failed", metadata: ["error": "\(error)"])
            return InitProducerIdResponse(errorCode: .kafkaStorageError, producerId: -1, producerEpoch: -1)
        }
    }

    /// Validates and hands the batches to the batcher once `previous` (the connection's earlier
    /// produce) has; returns when this one's batches are accepted, and the response.
    func produce(_ request: ProduceRequest, after previous: EventLoopFuture<Void>)
        -> (accepted: EventLoopFuture<Void>, answered: EventLoopFuture<ProduceResponse>) {
        let everyPartition: @Sendable (ErrorCode) -> ProduceResponse = { code in
            ProduceResponse(responses: request.topicData.map { topic in
                .init(name: topic.name, partitionResponses: topic.partitionData.map { .init(index: $0.index, errorCode: code, baseOffset: -1) })
            })
        }
        if request.transactionalId != nil {
            return (previous, eventLoop.makeSucceededFuture(everyPartition(.invalidRequest)))
        }
        guard let ackMode = AckMode(kafkaAcks: request.acks) else {
            return (previous, eventLoop.makeSucceededFuture(everyPartition(.invalidRequiredAcks)))
        }
        let names = Array(Set(request.topicData.map(\.name)))
        let organizationID = organizationID
        let streams = services.streams
        let eventLoop = eventLoop
        let resolved = previous.flatMap { streams.resolve(names, organizationID: organizationID, on: eventLoop) }
        let promise = eventLoop.makePromise(of: ProduceResponse.self)
        let batcher = services.batcher
        let decompressedBytesMax = services.configuration.decompressedBatchBytesMax
        let controlPlane = services.controlPlane
        let logger = logger
        // Records a stream's schema refused are written to dead_letter_events before the answer.
        let writeRefused: ProduceCollector.RefusedRecordsWriter = { stream, partition, records in
            controlPlane.run(on: eventLoop) { db in
                try DeadLetters.insertRefused(db, streamID: stream.id, streamName: stream.name, partition: partition, records,
                                              failedAt: Date())
            }.map { true }.recover { error in
                logger.error("refused records could not be written to dead_letter_events; answering KAFKA_STORAGE_ERROR",
                             metadata: ["stream": "\(stream.name)", "partition": "\(partition)", "records": "\(records.count)",
                                        "error": "\(error)"])
                return false
            }
        }
        let accepted = resolved.map { streams -> Void in
            let collector = ProduceCollector(request: request, ackMode: ackMode, decompressedBatchBytesMax: decompressedBytesMax,
                                             promise: promise)
            collector.start(streams: streams, organizationID: organizationID, batcher: batcher, eventLoop: eventLoop,
                            writeRefused: writeRefused)
        }
        accepted.whenFailure { error in
            logger.error("stream lookup failed", metadata: ["error": "\(error)"])
            promise.succeed(everyPartition(.kafkaStorageError))
        }
        return (accepted.recover { _ in }, promise.futureResult)
    }
}

/// Gathers the outcomes of one Produce request's batches into its response (loop-confined).
final class ProduceCollector {
    private struct Slot {
        var topic: Int
        var partition: Int
        var index: Int32
        var remaining = 0
        var baseOffset: Int64 = -1
        var error: ErrorCode?
        var errorMessage: String?
        var recordErrors: [ProduceResponse.RecordError] = []
        /// Refused records whose dead_letter_events rows are being written: answered after them.
        var writingDeadLetters = false
    }

    /// Writes a partition's schema-refused records to dead_letter_events; true once they are written.
    typealias RefusedRecordsWriter = @Sendable (_ stream: (id: UUID, name: String), _ partition: Int32,
                                                _ records: [DeadLetters.RefusedRecord]) -> EventLoopFuture<Bool>

    /// What the refused records of one request may keep in memory until their rows are written: the
    /// first records up to these bounds become rows and `recordErrors`, the rest are only counted in
    /// the partition's message (a 64 MiB LZ4 batch can hold millions of records).
    static let refusedRecordsMax = 1000
    static let refusedValueBytesMax = 4 << 20

    /// The bounds above, spent across the partitions of one request.
    struct RefusalBudget {
        var records = ProduceCollector.refusedRecordsMax
        var valueBytes = ProduceCollector.refusedValueBytesMax
    }

    private let request: ProduceRequest
    private let ackMode: AckMode
    private let decompressedBatchBytesMax: Int
    private let promise: EventLoopPromise<ProduceResponse>
    private var slots: [Slot] = []
    private var unanswered = 0
    private var timeout: Scheduled<Void>?
    private var done = false

    init(request: ProduceRequest, ackMode: AckMode, decompressedBatchBytesMax: Int, promise: EventLoopPromise<ProduceResponse>) {
        self.request = request
        self.ackMode = ackMode
        self.decompressedBatchBytesMax = decompressedBatchBytesMax
        self.promise = promise
    }

    func start(streams: [String: ResolvedStream?], organizationID: UUID, batcher: WriteAheadBatcher, eventLoop: any EventLoop,
               writeRefused: RefusedRecordsWriter) {
        var seen: [String: [Int32: Int]] = [:]
        var accepted: [(slot: Int, batches: [ValidatedBatch])] = []
        var refused: [(slot: Int, stream: (id: UUID, name: String), records: [DeadLetters.RefusedRecord])] = []
        var budget = RefusalBudget()
        for (topicIndex, topic) in request.topicData.enumerated() {
            for (partitionIndex, data) in topic.partitionData.enumerated() {
                let slotIndex = slots.count
                slots.append(Slot(topic: topicIndex, partition: partitionIndex, index: data.index))
                if let earlier = seen[topic.name]?[data.index] {
                    // The same partition twice in one request: both are refused (produce.md).
                    slots[earlier].error = .invalidRequest
                    slots[slotIndex].error = .invalidRequest
                    slots[earlier].errorMessage = "partition \(data.index) of \(topic.name) appears twice in the request"
                    slots[slotIndex].errorMessage = slots[earlier].errorMessage
                    slots[earlier].recordErrors = []
                    accepted.removeAll { $0.slot == earlier }
                    refused.removeAll { $0.slot == earlier }
                    continue
                }
                seen[topic.name, default: [:]][data.index] = slotIndex
                guard let stream = streams[topic.name] ?? nil, data.index >= 0, data.index < stream.partitions else {
                    slots[slotIndex].error = .unknownTopicOrPartition
                    continue
                }
                if let unusable = stream.unusableSchema {
                    slots[slotIndex].error = .invalidRecord
                    slots[slotIndex].errorMessage = unusable
                    continue
                }
                switch Self.validate(data.records, partition: StreamPartition(streamID: stream.id, partition: data.index),
                                     ackMode: ackMode, decompressedBytesMax: decompressedBatchBytesMax, batcher: batcher,
                                     deadLetterOrganizationID: stream.isDeadLetter ? organizationID : nil, schema: stream.schema,
                                     refusalBudget: &budget) {
                case .success(let batches): accepted.append((slotIndex, batches))
                case .failure(let refusal):
                    slots[slotIndex].error = refusal.code
                    slots[slotIndex].errorMessage = refusal.message
                    slots[slotIndex].recordErrors = refusal.recordErrors
                    if !refusal.refusedRecords.isEmpty {
                        refused.append((slotIndex, (stream.id, topic.name), refusal.refusedRecords))
                    }
                }
            }
        }
        for (slot, batches) in accepted { slots[slot].remaining = batches.count }
        for (slot, _, _) in refused where ackMode != .none {
            slots[slot].writingDeadLetters = true
            slots[slot].remaining = 1
        }
        unanswered = ackMode == .none ? 0 : slots.filter { ($0.error == nil || $0.writingDeadLetters) && $0.remaining > 0 }.count
        if ackMode == .durable || !refused.isEmpty, unanswered > 0 {
            let bound = NIOLoopBound(self, eventLoop: eventLoop)
            timeout = eventLoop.scheduleTask(in: .milliseconds(Int64(max(request.timeoutMs, 0)))) {
                bound.value.timedOut()
            }
        }
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        for (slot, stream, records) in refused {
            let partition = slots[slot].index
            writeRefused(stream, partition, records).hop(to: eventLoop).whenSuccess { written in
                bound.value.deadLettersWritten(slot: slot, written: written)
            }
        }
        for (slot, batches) in accepted {
            for (position, batch) in batches.enumerated() {
                batcher.accept(batch) { outcome in
                    eventLoop.execute { bound.value.completed(slot: slot, position: position, outcome) }
                }
            }
        }
        finishIfAnswered()
    }

    /// The partition's batches, validated, or the error for the whole partition.
    ///
    /// Each batch's records are walked (LZ4 decompressed, at most `decompressedBytesMax` bytes): a
    /// batch whose CRC matches but whose records contradict its header is INVALID_RECORD, as
    /// Kafka's log validator answers, so no consumer ever meets an unreadable batch.
    ///
    /// With a `schema`, every record's value is parsed and checked against it instead: one record
    /// that breaks it refuses the partition's batches (INVALID_RECORD, as Kafka refuses a batch), each
    /// offending record named in `recordErrors` by its position among the partition's records and
    /// returned for `dead_letter_events`. Streams without a schema never pay for this.
    static func validate(_ records: ByteBuffer?, partition: StreamPartition, ackMode: AckMode,
                         decompressedBytesMax: Int, batcher: WriteAheadBatcher,
                         deadLetterOrganizationID: UUID? = nil, schema: StreamSchema? = nil,
                         refusalBudget: inout RefusalBudget) -> Result<[ValidatedBatch], RequestServer.Refusal> {
        guard let records, records.readableBytes > 0 else {
            return .failure(.init(code: .invalidRecord, message: "no record batch"))
        }
        var sequence = RecordBatchSequence(records)
        var batches: [ValidatedBatch] = []
        var recordIndex: Int32 = 0
        var refusedRecords: [DeadLetters.RefusedRecord] = []
        var recordErrors: [ProduceResponse.RecordError] = []
        var invalidCount = 0
        var firstViolation: (index: Int32, message: String)?
        do {
            while let view = try sequence.next() {
                let header = view.header
                if header.attributes.isTransactional {
                    return .failure(.init(code: .invalidRequest, message: "transactions are not supported"))
                }
                guard !header.attributes.isControl, header.recordCount > 0 else {
                    return .failure(.init(code: .invalidRecord, message: "control batch or no records"))
                }
                do {
                    if let schema {
                        var reader = try view.records(decompressedBytesMax: decompressedBytesMax)
                        while let record = try reader.next() {
                            let violation = record.value.map { value in
                                value.withUnsafeReadableBytes { schema.violation(of: $0.assumingMemoryBound(to: UInt8.self)) }
                            } ?? schema.violation(of: nil)
                            if let violation {
                                invalidCount += 1
                                if firstViolation == nil { firstViolation = (recordIndex, violation) }
                                let valueBytes = record.value?.readableBytes ?? 0
                                if refusalBudget.records > 0, refusalBudget.valueBytes >= valueBytes {
                                    refusalBudget.records -= 1
                                    refusalBudget.valueBytes -= valueBytes
                                    recordErrors.append(.init(batchIndex: recordIndex, message: violation))
                                    refusedRecords.append(.init(index: recordIndex, reason: "schema validation: \(violation)",
                                                                value: record.value.map { Array($0.readableBytesView) }))
                                }
                            }
                            recordIndex &+= 1
                        }
                    } else {
                        try view.validateRecords(decompressedBytesMax: decompressedBytesMax)
                    }
                } catch {
                    return .failure(.init(code: .invalidRecord, message: "records do not match the batch header: \(error)"))
                }
                let producer = header.producerId >= 0
                    ? ProducerBatchInfo(producerID: header.producerId, epoch: header.producerEpoch, baseSequence: header.baseSequence)
                    : nil
                batches.append(ValidatedBatch(partition: partition, recordCount: header.recordCount, bytes: view.bytes,
                                              producer: producer, ackMode: ackMode, token: batcher.makeToken(),
                                              deadLetterOrganizationID: deadLetterOrganizationID))
            }
        } catch let error as ProtocolError {
            let intactButRefused = error.kind == .compression || error.field == "RecordBatch.magic"
            return .failure(.init(code: intactButRefused ? .invalidRecord : .corruptMessage, message: "\(error)"))
        } catch {
            return .failure(.init(code: .corruptMessage, message: "\(error)"))
        }
        if let first = firstViolation {
            var message = "\(invalidCount) of \(recordIndex) records do not match the stream's schema; record \(first.index): \(first.message)"
            if refusedRecords.count < invalidCount {
                message += " (\(refusedRecords.count) of them named and dead-lettered: at most \(refusedRecordsMax) records and "
                    + "\(refusedValueBytesMax >> 20) MiB of values per request)"
            }
            return .failure(.init(code: .invalidRecord, message: message, recordErrors: recordErrors, refusedRecords: refusedRecords))
        }
        return .success(batches)
    }

    /// The refused records' rows are written (or could not be: then the partition is answered the
    /// retriable KAFKA_STORAGE_ERROR, so the producer sends it again instead of losing them).
    private func deadLettersWritten(slot: Int, written: Bool) {
        guard !done, slots[slot].writingDeadLetters, slots[slot].remaining > 0 else { return }
        if !written {
            slots[slot].error = .kafkaStorageError
            slots[slot].errorMessage = "the refused records could not be written to dead_letter_events; retry"
            slots[slot].recordErrors = []
        }
        slots[slot].remaining = 0
        unanswered -= 1
        finishIfAnswered()
    }

    private func completed(slot: Int, position: Int, _ outcome: BatchOutcome) {
        guard !done, slots[slot].remaining > 0 else { return }
        switch outcome {
        case .stored(let baseOffset):
            if position == 0 { slots[slot].baseOffset = baseOffset }
        case .failed(let code):
            if slots[slot].error == nil { slots[slot].error = code }
        }
        slots[slot].remaining -= 1
        if slots[slot].remaining == 0 { unanswered -= 1 }
        finishIfAnswered()
    }

    private func timedOut() {
        guard !done else { return }
        for index in slots.indices where slots[index].remaining > 0 && (slots[index].error == nil || slots[index].writingDeadLetters) {
            // Refused records whose rows are not written yet: they may still be, as a batch may still commit.
            slots[index].error = .requestTimedOut
            slots[index].errorMessage = nil
            slots[index].recordErrors = []
        }
        unanswered = 0
        finishIfAnswered()
    }

    private func finishIfAnswered() {
        guard !done, unanswered == 0 else { return }
        done = true
        timeout?.cancel()
        var responses = request.topicData.map { ProduceResponse.TopicResponse(name: $0.name, partitionResponses: []) }
        for slot in slots {
            let failed = slot.error != nil
            responses[slot.topic].partitionResponses.append(.init(
                index: slot.index, errorCode: slot.error ?? .noError, baseOffset: failed ? -1 : slot.baseOffset,
                logStartOffset: failed ? -1 : 0, recordErrors: slot.recordErrors, errorMessage: slot.errorMessage))
        }
        promise.succeed(ProduceResponse(responses: responses))
    }
}
