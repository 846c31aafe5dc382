import EventFlowProtocol
import EventFlowStorage
import Foundation
import NIOCore

/// What a dead-letter record's headers say about its origin and failure (protocol/dead-letters.md).
/// Pure: headers in, fields out. Headers are read defensively: an unreadable value is skipped
/// and named in `reason`, never an error.
struct DeadLetterHeaders: Equatable {
    var originalTopic: String?
    var originalPartition: Int32?
    var originalOffset: Int64?
    var reason: String

    static let noReason = "no reason given in the record's headers"
    /// Longest header value read as text (reason, topic); longer ones are cut.
    static let textBytesMax = 8 * 1024

    /// How a family of headers encodes partition and offset.
    private enum Numbers { case decimal, bigEndian }

    private struct Family {
        var topic: String
        var partition: String
        var offset: String
        var numbers: Numbers
    }

    // Most specific first: EventFlow's own, then Kafka Connect's, then Spring's.
    private static let families = [
        Family(topic: "eventflow-original-topic", partition: "eventflow-original-partition",
               offset: "eventflow-original-offset", numbers: .decimal),
        Family(topic: "__connect.errors.topic", partition: "__connect.errors.partition",
               offset: "__connect.errors.offset", numbers: .decimal),
        Family(topic: "kafka_dlt-original-topic", partition: "kafka_dlt-original-partition",
               offset: "kafka_dlt-original-offset", numbers: .bigEndian),
    ]

    init(_ headers: [RecordHeader]) {
        var byKey: [String: ByteBuffer?] = [:]
        for header in headers where byKey[header.key] == nil { byKey[header.key] = .some(header.value) }
        var problems: [String] = []

        func text(_ key: String) -> String? {
            guard let entry = byKey[key] else { return nil }
            guard let value = entry, value.readableBytes > 0 else { return nil }
            let bytes = value.getBytes(at: value.readerIndex, length: min(value.readableBytes, Self.textBytesMax)) ?? []
            guard let text = String(validating: bytes, as: UTF8.self) else {
                problems.append("header \(key) is not UTF-8")
                return nil
            }
            return text.trimmingCharacters(in: .whitespacesAndNewlines)
        }

        func number<T: FixedWidthInteger>(_ key: String, _ numbers: Numbers, as: T.Type) -> T? {
            guard let entry = byKey[key] else { return nil }
            guard let value = entry else {
                problems.append("header \(key) is null")
                return nil
            }
            if numbers == .bigEndian, value.readableBytes == MemoryLayout<T>.size,
               let parsed = value.getInteger(at: value.readerIndex, endianness: .big, as: T.self) {
                return parsed
            }
            // Decimal text: the encoding of Connect and EventFlow, and accepted from Spring too.
            if value.readableBytes <= 24, let string = value.getString(at: value.readerIndex, length: value.readableBytes),
               let parsed = T(string.trimmingCharacters(in: .whitespaces)) {
                return parsed
            }
            let expected = numbers == .bigEndian ? "a \(MemoryLayout<T>.size)-byte big-endian integer" : "a decimal integer"
            problems.append("header \(key) is unreadable (\(value.readableBytes) bytes, expected \(expected))")
            return nil
        }

        for family in Self.families where byKey[family.topic] != nil {
            guard let topic = text(family.topic) else { continue }
            originalTopic = topic
            originalPartition = number(family.partition, family.numbers, as: Int32.self)
            originalOffset = number(family.offset, family.numbers, as: Int64.self)
            if byKey[family.partition] == nil || byKey[family.offset] == nil {
                problems.append("headers give the original topic \(topic) but not its partition and offset")
            }
            if let partition = originalPartition, partition < 0 {
                problems.append("header \(family.partition) is negative")
                originalPartition = nil
            }
            if let offset = originalOffset, offset < 0 {
                problems.append("header \(family.offset) is negative")
                originalOffset = nil
            }
            break
        }

        var stated = text("eventflow-reason")
        if stated == nil, let message = text("__connect.errors.exception.message") {
            stated = text("__connect.errors.exception.class.name").map { "\($0): \(message)" } ?? message
        } else if stated == nil, let className = text("__connect.errors.exception.class.name") {
            stated = className
        }
        if stated == nil, let message = text("kafka_dlt-exception-message") {
            stated = text("kafka_dlt-exception-fqcn").map { "\($0): \(message)" } ?? message
        }
        var reason = stated ?? Self.noReason
        if !problems.isEmpty { reason += " [" + problems.joined(separator: "; ") + "]" }
        self.reason = reason
    }

    /// The dead-letter records of one stored batch of a dead-letter stream. A batch that cannot be
    /// read (it was validated on produce, so only a broken invariant gets here) yields one record
    /// per offset with no value and the reading error as reason, so every offset still has its row.
    static func records(of batch: GroupCommit.Batch, organizationID: UUID, decompressedBytesMax: Int) -> [DeadLetterRecord] {
        let partition = batch.partition
        do {
            let view = try RecordBatchView(validating: batch.receivedBytes)
            var reader = try view.records(decompressedBytesMax: decompressedBytesMax)
            var result: [DeadLetterRecord] = []
            var index: Int64 = 0
            while let record = try reader.next() {
                let headers = DeadLetterHeaders(record.headers)
                let value = record.value.map { Array($0.readableBytesView) }
                result.append(DeadLetterRecord(
                    organizationID: organizationID, dlqStreamID: partition.streamID, dlqPartition: partition.partition,
                    dlqOffset: batch.baseOffset + index, originalTopic: headers.originalTopic,
                    originalPartition: headers.originalPartition, originalOffset: headers.originalOffset,
                    reason: headers.reason, value: value))
                index += 1
            }
            return result
        } catch {
            return (batch.baseOffset...batch.lastOffset).map { offset in
                DeadLetterRecord(organizationID: organizationID, dlqStreamID: partition.streamID, dlqPartition: partition.partition,
                                 dlqOffset: offset, originalTopic: nil, originalPartition: nil, originalOffset: nil,
                                 reason: "dead-letter record unreadable: \(error)", value: nil)
            }
        }
    }
}
