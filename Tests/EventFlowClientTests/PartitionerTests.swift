@testable import EventFlowClient
import Testing

/// Values from Kafka's own murmur2 (kafka-python's `kafka.partitioner.default.murmur2`, which
/// matches the Java client's `Utils.murmur2`, e.g. "21" → -973932308).
struct PartitionerTests {
    @Test(arguments: [
        ("", Int32(bitPattern: 275_646_681)),
        ("a", Int32(bitPattern: 2_731_586_172)),
        ("ab", Int32(bitPattern: 316_155_434)),
        ("abc", Int32(bitPattern: 479_470_107)),
        ("21", Int32(-973_932_308)),
        ("foobar", Int32(-790_332_482)),
        ("a-little-bit-long-string", Int32(bitPattern: 3_308_985_760)),
        ("a-little-bit-longer-string", Int32(bitPattern: 2_808_662_467)),
        ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", Int32(bitPattern: 4_236_069_325)),
    ])
    func murmur2MatchesKafka(key: String, expected: Int32) {
        #expect(Murmur2.hash(Array(key.utf8)) == expected)
    }

    @Test func binaryKeyHashMatchesKafka() {
        #expect(Murmur2.hash((0..<37).map { UInt8($0) }) == 74_000_851)
    }

    /// Partitions as Kafka clients put them (`toPositive(murmur2) % n`), for 3 and 12 partitions.
    @Test(arguments: [
        ("a", Int32(1), Int32(4)), ("ab", 2, 2), ("21", 0, 0), ("foobar", 0, 6),
        ("a-little-bit-longer-string", 2, 11), ("order-42", 0, 0),
    ])
    func keyedPartitionMatchesKafka(key: String, of3: Int32, of12: Int32) {
        #expect(Partitioner.partition(forKey: Array(key.utf8), partitionCount: 3) == of3)
        #expect(Partitioner.partition(forKey: Array(key.utf8), partitionCount: 12) == of12)
    }

    @Test func brokerListParses() {
        #expect(BrokerAddress.parseList("127.0.0.1:9092, broker-2:19092") ==
            [BrokerAddress(host: "127.0.0.1", port: 9092), BrokerAddress(host: "broker-2", port: 19092)])
        #expect(BrokerAddress.parseList("[::1]:9093") == [BrokerAddress(host: "::1", port: 9093)])
        #expect(BrokerAddress.parseList("localhost") == [BrokerAddress(host: "localhost", port: 9092)])
        #expect(BrokerAddress.parseList("host:notaport") == nil)
        #expect(BrokerAddress.parseList("") == nil)
    }
}
