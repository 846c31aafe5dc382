import EventFlowClient
import EventFlowProtocol
import Foundation
import Logging
import NIOCore

/// `--raw-batches`: pre-built LZ4 batches sent as Produce requests on pipelined connections,
/// bypassing the producer's accumulator. It measures the broker alone and is reported as
/// `raw-batches`, never as the producer's number.
struct RawBatchRun {
    static let batchesBuiltAhead = 8

    let configuration: ProducerConfiguration
    let stream: String
    let partitions: Int
    let load: LoadOptions
    let payloads: PayloadRing
    let logger: Logger

    func run(timing: RunTiming, recorder: Recorder, reporter: ProgressReporter) async throws {
        let recordsPerBatch = max(load.batchBytes / (load.messageSize + 21), 1)
        var builder = RecordBatchBuilder(configuration: .init(compression: load.compression == "lz4" ? .lz4() : .none))
        let timestamp = Int64(Date().timeIntervalSince1970 * 1000)
        var batches: [ByteBuffer] = []
        var next = 0
        for _ in 0..<Self.batchesBuiltAhead {
            for _ in 0..<recordsPerBatch {
                builder.append(timestamp: timestamp, key: nil, value: payloads[next])
                next += 1
            }
            batches.append(try builder.build())
        }
        let prebuilt = batches
        var connections: [BrokerConnection] = []
        for index in 0..<load.connections {
            guard let address = configuration.brokers.first else { throw LoadgenFailure("no broker address") }
            do {
                connections.append(try await BrokerConnection.connect(to: address, configuration: configuration, logger: logger))
            } catch {
                throw LoadgenFailure("connection \(index + 1) to \(address): \(error)")
            }
        }
        let ratePerPipeline = Double(load.rate) / Double(load.connections * configuration.inflightRequestsMax)
        reporter.start()
        let opened = connections
        await withDiscardingTaskGroup { group in
            for (index, connection) in opened.enumerated() {
                for pipeline in 0..<configuration.inflightRequestsMax {
                    group.addTask {
                        await sendLoop(connection, partition: Int32(index % partitions), batches: prebuilt,
                                       firstBatch: pipeline, recordsPerBatch: recordsPerBatch,
                                       pacer: Pacer(ratePerSecond: ratePerPipeline, startNanoseconds: timing.startNanoseconds),
                                       until: timing.measureEndNanoseconds, recorder: recorder)
                    }
                }
            }
        }
        for connection in connections { connection.close() }
    }

    private func sendLoop(_ connection: BrokerConnection, partition: Int32, batches: [ByteBuffer], firstBatch: Int,
                          recordsPerBatch: Int, pacer: Pacer, until endNanoseconds: UInt64, recorder: Recorder) async {
        var event = 0
        var batchIndex = firstBatch
        var sendTimes = [UInt64](repeating: 0, count: recordsPerBatch)
        while monotonicNanoseconds() < endNanoseconds {
            let now = monotonicNanoseconds()
            for record in 0..<recordsPerBatch { sendTimes[record] = pacer.due(event + record) ?? now }
            if let lastDue = pacer.due(event + recordsPerBatch - 1), lastDue > now {
                try? await Task.sleep(for: .nanoseconds(Int64(min(lastDue, endNanoseconds) - now)))
            }
            event += recordsPerBatch
            let request = ProduceRequest(acks: configuration.acks.rawValue,
                                         timeoutMs: Int32(clamping: configuration.requestTimeoutMilliseconds),
                                         topicData: [.init(name: stream, partitionData: [
                                             .init(index: partition, records: batches[batchIndex % batches.count]),
                                         ])])
            batchIndex += 1
            recorder.sent(recordsPerBatch)
            do throws(ProducerError) {
                let answer = try await connection.request(request)
                let code = answer.responses.first?.partitionResponses.first?.errorCode ?? .unknownServerError
                if code == .noError {
                    recorder.acknowledged(sendNanoseconds: sendTimes, ackNanoseconds: monotonicNanoseconds())
                } else {
                    recorder.failed(recordsPerBatch, error: "broker error \(code)")
                }
            } catch {
                recorder.failed(recordsPerBatch, error: "\(error)")
                if !connection.isActive { return }
            }
        }
    }
}
