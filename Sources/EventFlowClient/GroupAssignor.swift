import EventFlowProtocol

/// How the group's leader shares partitions out among the members: Kafka's eager assignors, with
/// their protocol names, so that any member of a mixed group (Java, librdkafka, kafka-python) that
/// becomes leader computes the same assignment for the same input.
public enum GroupAssignor: String, Sendable, Hashable, CaseIterable {
    /// Per stream, contiguous ranges of partitions over the members sorted by member id; the
    /// first `partitions % members` members get one more (Kafka's RangeAssignor).
    case range = "range"
    /// Every subscribed partition, sorted by (stream, partition), dealt in turn to the members
    /// sorted by member id, skipping members not subscribed to its stream (Kafka's RoundRobinAssignor).
    case roundRobin = "roundrobin"

    /// The name in JoinGroup's protocol list and the coordinator's vote.
    public var protocolName: String { rawValue }

    public init?(protocolName: String) {
        self.init(rawValue: protocolName)
    }

    /// One member as the leader sees it in the JoinGroup answer.
    public struct Member: Sendable, Hashable {
        public var memberId: String
        public var streams: [String]

        public init(memberId: String, streams: [String]) {
            self.memberId = memberId
            self.streams = streams
        }
    }

    /// Assigns every partition of every subscribed stream to exactly one member subscribed to it.
    /// `partitionCounts` holds the streams the leader could see; a stream missing there is left
    /// unassigned (Kafka's leader skips topics without metadata). Every member gets an entry.
    public func assign(_ members: [Member], partitionCounts: [String: Int32]) -> [String: [StreamPartition]] {
        var result: [String: [StreamPartition]] = [:]
        for member in members { result[member.memberId] = [] }
        let sorted = members.sorted { $0.memberId < $1.memberId }
        switch self {
        case .range:
            var streams = Set<String>()
            for member in members { streams.formUnion(member.streams) }
            for stream in streams.sorted() {
                guard let count = partitionCounts[stream], count > 0 else { continue }
                let subscribers = sorted.filter { $0.streams.contains(stream) }
                let each = Int(count) / subscribers.count
                let extra = Int(count) % subscribers.count
                for (index, member) in subscribers.enumerated() {
                    let start = each * index + min(index, extra)
                    let length = each + (index < extra ? 1 : 0)
                    result[member.memberId, default: []] += (start ..< start + length).map {
                        StreamPartition(stream: stream, partition: Int32($0))
                    }
                }
            }
        case .roundRobin:
            var streams = Set<String>()
            for member in members { streams.formUnion(member.streams) }
            guard !sorted.isEmpty else { return result }
            // The cursor walks the sorted members cyclically across all partitions, as Kafka's
            // CircularIterator does: it is not reset per stream.
            var cursor = 0
            for stream in streams.sorted() {
                guard let count = partitionCounts[stream], count > 0 else { continue }
                for partition in 0 ..< count {
                    while !sorted[cursor % sorted.count].streams.contains(stream) { cursor += 1 }
                    result[sorted[cursor % sorted.count].memberId, default: []].append(StreamPartition(stream: stream, partition: partition))
                    cursor += 1
                }
            }
        }
        return result
    }
}

extension ConsumerProtocolAssignment {
    /// The consumer protocol's form of one member's partitions, grouped per stream in name order.
    init(_ partitions: [StreamPartition]) {
        var byStream: [String: [Int32]] = [:]
        for partition in partitions { byStream[partition.stream, default: []].append(partition.partition) }
        self.init(version: 0, assignedPartitions: byStream.keys.sorted().map {
            TopicPartitions(topic: $0, partitions: byStream[$0]!.sorted())
        }, userData: nil)
    }

    var streamPartitions: [StreamPartition] {
        assignedPartitions.flatMap { entry in entry.partitions.map { StreamPartition(stream: entry.topic, partition: $0) } }
    }
}
