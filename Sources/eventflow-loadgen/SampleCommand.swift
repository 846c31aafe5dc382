import ArgumentParser
import EventFlowProtocol
import Foundation

/// `eventflow-loadgen sample`: prints events exactly as a run generates them, and the LZ4 ratio
/// of a full batch of them, so what is measured can be inspected.
struct Sample: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print generated events (one per line) and the LZ4 ratio of a batch of them.")

    @Option(help: "Events to print.")
    var count = 5

    @Option(help: "Bytes per JSON event (at least \(PayloadRing.minimumBytes)).")
    var messageSize = 100

    @Option(help: "Seed of the event generator.")
    var seed: UInt64 = 1

    @Option(help: "Batch size, in bytes of records, for the LZ4 ratio.")
    var batchBytes = 1 << 20

    mutating func validate() throws {
        guard count >= 0 else { throw ValidationError("--count must not be negative") }
        guard messageSize >= PayloadRing.minimumBytes, messageSize <= LoadOptions.messageBytesMax else {
            throw ValidationError("--message-size must be \(PayloadRing.minimumBytes) to \(LoadOptions.messageBytesMax) bytes "
                                  + "(\(PayloadRing.minimumBytes) is the smallest JSON event)")
        }
        guard batchBytes >= messageSize + 64 else { throw ValidationError("--batch-bytes cannot hold one event") }
    }

    func run() throws {
        let ring = PayloadRing(eventBytes: messageSize, count: 4096, seed: seed)
        for index in 0..<count {
            print(String(buffer: ring[index]))
        }
        let records = max(batchBytes / (messageSize + 21), 1)
        var plain = RecordBatchBuilder(configuration: .init(compression: .none))
        var compressed = RecordBatchBuilder(configuration: .init(compression: .lz4()))
        for index in 0..<records {
            plain.append(timestamp: 0, key: nil, value: ring[index])
            compressed.append(timestamp: 0, key: nil, value: ring[index])
        }
        let plainBytes = try plain.build().readableBytes
        let compressedBytes = try compressed.build().readableBytes
        let line = String(format: "# %d records per batch: %d bytes uncompressed, %d bytes LZ4 (ratio %.2f, %.1f bytes per event)",
                          records, plainBytes, compressedBytes, Double(plainBytes) / Double(compressedBytes),
                          Double(compressedBytes) / Double(records))
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}
