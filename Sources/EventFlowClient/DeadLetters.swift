import EventFlowProtocol
import Logging
import NIOCore
import Synchronization

/// The header names EventFlow writes on a dead letter (protocol/dead-letters.md). Values are
/// UTF-8 text; partition and offset are decimal, so any Kafka tool can read them.
public enum DeadLetterHeader {
    public static let reason = "eventflow-reason"
    public static let originalTopic = "eventflow-original-topic"
    public static let originalPartition = "eventflow-original-partition"
    public static let originalOffset = "eventflow-original-offset"
    /// The suffix of a stream's dead-letter stream: `<stream>.dlq`.
    public static let streamSuffix = ".dlq"
}

/// A running producer and the task that runs it.
struct DeadLetterSender: Sendable {
    var producer: EventFlowProducer
    var task: Task<Void, Never>
}

extension EventFlowConsumer {
    /// Sends `message` to its stream's dead-letter stream `<stream>.dlq` (created by the broker on
    /// first use): same key, value and headers, plus EventFlow's headers naming the original
    /// stream, partition, offset and `reason`. Returns the offset in the dead-letter stream once the
    /// broker has committed it (the broker has then written its `dead_letter_events` row).
    /// Call it while `run()` runs; the producer it uses stops when `run()` returns.
    @discardableResult
    public func deadLetter(_ message: ConsumerMessage, reason: String) async throws(ConsumerError) -> Int64 {
        let producer = try deadLetterProducer()
        let ours: Set<String> = [DeadLetterHeader.reason, DeadLetterHeader.originalTopic,
                                 DeadLetterHeader.originalPartition, DeadLetterHeader.originalOffset]
        var headers = message.headers.filter { !ours.contains($0.key) }
        headers.append(RecordHeader(key: DeadLetterHeader.reason, value: Array(reason.utf8)))
        headers.append(RecordHeader(key: DeadLetterHeader.originalTopic, value: Array(message.stream.utf8)))
        headers.append(RecordHeader(key: DeadLetterHeader.originalPartition, value: Array(String(message.partition).utf8)))
        headers.append(RecordHeader(key: DeadLetterHeader.originalOffset, value: Array(String(message.offset).utf8)))
        let letter = ProducerMessage(stream: message.stream + DeadLetterHeader.streamSuffix, partition: 0, key: message.key,
                                     value: message.value, headers: headers)
        do throws(ProducerError) {
            let (_, offset) = try await producer.sendAndAwait(letter)
            return offset ?? -1
        } catch {
            switch error {
            case .broker(let code, let detail): throw .broker(code, message: detail)
            case .authenticationFailed(let detail): throw .authenticationFailed(detail)
            case .unknownStream(let name): throw .unknownStream(name)
            case .requestTimedOut: throw .requestTimedOut
            case .invalidConfiguration(let detail): throw .invalidConfiguration(detail)
            default: throw .connection("dead letter not sent: \(error)")
            }
        }
    }

    private func deadLetterProducer() throws(ConsumerError) -> EventFlowProducer {
        var producerConfiguration = ProducerConfiguration(brokers: configuration.brokers, credentials: configuration.credentials,
                                                          security: configuration.security)
        producerConfiguration.acks = .all
        producerConfiguration.idempotent = true
        producerConfiguration.retriesMax = configuration.retriesMax
        producerConfiguration.lingerMilliseconds = 0
        let result = deadLetters.withLock { sender -> Result<EventFlowProducer, ConsumerError> in
            if let sender { return .success(sender.producer) }
            do {
                let producer = try EventFlowProducer(configuration: producerConfiguration,
                                                     logger: Logger(label: "eventflow.consumer.dead-letters"))
                let task = Task { _ = try? await producer.run() }
                sender = DeadLetterSender(producer: producer, task: task)
                return .success(producer)
            } catch {
                return .failure(.invalidConfiguration("dead-letter producer: \(error)"))
            }
        }
        return try result.get()
    }

    /// Sends what is still buffered for the dead-letter stream and stops its producer.
    func shutDownDeadLetters() async {
        guard let sender = deadLetters.withLock({ sender in defer { sender = nil }; return sender }) else { return }
        await sender.producer.shutdown()
        await sender.task.value
    }
}
