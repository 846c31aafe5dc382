import Benchmark
@_spi(Benchmarks) import EventFlowClient
import Logging
import NIOCore

// The producer's per-event path: `EventFlowProducer.send` of a 100-byte keyless record into an
// open batch (clock, lock, partition lookup, record encoding; batches seal on size), no broker.
// One operation is one `send`; batches are acknowledged outside the measurement. Sealing only
// swaps the open builder; building the batch (compression, CRC) is the producer loop's work, done
// here in the acknowledge step (since 2026-12-01; before, `send` built a full batch inline).

let sendsPerIteration = 10_000

func makeProducer(compression: ProducerConfiguration.Compression) -> EventFlowProducer {
    var configuration = ProducerConfiguration(brokers: [BrokerAddress(host: "127.0.0.1", port: 9)],
                                              credentials: nil, security: .plaintext)
    configuration.compression = compression
    configuration.lingerMilliseconds = 1_000_000
    do {
        let producer = try EventFlowProducer(configuration: configuration, logger: Logger(label: "bench"))
        producer.benchmarkPrime(stream: "events", partitionCount: 4)
        return producer
    } catch {
        fatalError("benchmark setup: \(error)")
    }
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(metrics: [.wallClock, .throughput, .instructions, .mallocCountTotal],
                                           scalingFactor: .kilo, maxDuration: .seconds(5), maxIterations: 1_000)

    let value = ByteBuffer(bytes: Array(repeating: UInt8(ascii: "x"), count: 100))

    for (name, stamped) in [("send (timestamp from the clock)", false), ("send (timestamp given)", true)] {
        Benchmark("Producer \(name), 100-byte record x \(sendsPerIteration)",
                  configuration: .init(scalingFactor: .one)) { benchmark in
            let producer = makeProducer(compression: .none)
            for _ in benchmark.scaledIterations {
                benchmark.startMeasurement()
                for i in 0..<sendsPerIteration {
                    let message = ProducerMessage(stream: "events", value: value,
                                                  timestampMilliseconds: stamped ? 1_700_000_000_000 + Int64(i) : nil)
                    blackHole(try? producer.send(message))
                }
                benchmark.stopMeasurement()
                producer.benchmarkAcknowledgeAll()
            }
        }
    }
}
