import NIOCore
import Testing
@testable import EventFlowProtocol

/// The consumer protocol's embedded bytes against vectors written by kafka-python 3.0.12
/// (`kafka.protocol.consumer.metadata`, the same schema Java and librdkafka use), e.g.
/// `ConsumerProtocolSubscription(0, ['orders', 'payments'], b'').encode(version=0).hex()`.
struct ConsumerProtocolTests {
    func bytes(_ hex: String) -> ByteBuffer {
        var buffer = ByteBuffer()
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            buffer.writeInteger(UInt8(hex[index ..< next], radix: 16)!)
            index = next
        }
        return buffer
    }

    func hex(_ buffer: ByteBuffer) -> String {
        buffer.readableBytesView.map { String(format: "%02x", $0) }.joined()
    }

    @Test func subscriptionV0WithEmptyUserDataMatchesKafkaPython() throws {
        let vector = "00000000000200066f726465727300087061796d656e747300000000"
        let subscription = ConsumerProtocolSubscription(version: 0, topics: ["orders", "payments"], userData: ByteBuffer())
        #expect(hex(subscription.encoded()) == vector)
        #expect(try ConsumerProtocolSubscription.decode(bytes(vector)) == subscription)
    }

    @Test func subscriptionV0WithNullUserDataMatchesKafkaPython() throws {
        let vector = "00000000000200066f726465727300087061796d656e7473ffffffff"
        let subscription = ConsumerProtocolSubscription(version: 0, topics: ["orders", "payments"], userData: nil)
        #expect(hex(subscription.encoded()) == vector)
        #expect(try ConsumerProtocolSubscription.decode(bytes(vector)) == subscription)
    }

    @Test func subscriptionV1CarriesOwnedPartitions() throws {
        let vector = "00010000000100066f72646572730000000201020000000100066f7264657273000000020000000000000002"
        let subscription = ConsumerProtocolSubscription(
            version: 1, topics: ["orders"], userData: ByteBuffer(bytes: [1, 2]),
            ownedPartitions: [.init(topic: "orders", partitions: [0, 2])])
        #expect(hex(subscription.encoded()) == vector)
        #expect(try ConsumerProtocolSubscription.decode(bytes(vector)) == subscription)
    }

    /// Kafka 3.x Java clients and recent librdkafka send v3 (generation, rack): read, fields kept.
    @Test func subscriptionV3FromANewerClientIsRead() throws {
        let vector = "00030000000100066f7264657273ffffffff000000000000000700027231"
        let subscription = try ConsumerProtocolSubscription.decode(bytes(vector))
        #expect(subscription.version == 3)
        #expect(subscription.topics == ["orders"])
        #expect(subscription.userData == nil)
        #expect(subscription.ownedPartitions.isEmpty)
        #expect(subscription.generationId == 7)
        #expect(subscription.rackId == "r1")
    }

    @Test func aSubscriptionIsWrittenAtMostAsV1() {
        let written = ConsumerProtocolSubscription(version: 3, topics: ["orders"], generationId: 7, rackId: "r1").encoded()
        #expect(written.getInteger(at: 0, as: Int16.self) == 1)
    }

    @Test func unknownTrailingFieldsOfALaterVersionAreSkipped() throws {
        var buffer = bytes("00040000000100066f7264657273ffffffff000000000000000700027231")
        buffer.writeBytes([0xde, 0xad])
        let subscription = try ConsumerProtocolSubscription.decode(from: &buffer)
        #expect(subscription.topics == ["orders"])
        #expect(buffer.readableBytes == 0)
    }

    @Test func assignmentV0MatchesKafkaPython() throws {
        let vector = "00000000000200066f726465727300000002000000000000000200087061796d656e7473000000010000000100000000"
        let assignment = ConsumerProtocolAssignment(version: 0, assignedPartitions: [
            .init(topic: "orders", partitions: [0, 2]), .init(topic: "payments", partitions: [1]),
        ], userData: ByteBuffer())
        #expect(hex(assignment.encoded()) == vector)
        #expect(try ConsumerProtocolAssignment.decode(bytes(vector)) == assignment)
    }

    @Test func assignmentV1WithNullUserDataMatchesKafkaPython() throws {
        let vector = "00010000000100066f72646572730000000100000001ffffffff"
        let assignment = ConsumerProtocolAssignment(version: 1, assignedPartitions: [.init(topic: "orders", partitions: [1])])
        #expect(hex(assignment.encoded()) == vector)
        #expect(try ConsumerProtocolAssignment.decode(bytes(vector)) == assignment)
    }

    @Test func zeroBytesAreAnEmptyAssignment() throws {
        #expect(try ConsumerProtocolAssignment.decode(ByteBuffer()).assignedPartitions.isEmpty)
    }

    @Test func truncatedOrNegativeInputIsAnErrorNotACrash() {
        #expect(throws: ProtocolError.self) { try ConsumerProtocolSubscription.decode(bytes("0000000000020006")) }
        #expect(throws: ProtocolError.self) { try ConsumerProtocolSubscription.decode(bytes("ffff00000000ffffffff")) }
        #expect(throws: ProtocolError.self) { try ConsumerProtocolAssignment.decode(bytes("00007fffffff")) }
        #expect(throws: ProtocolError.self) { try ConsumerProtocolAssignment.decode(bytes("00")) }
    }
}
