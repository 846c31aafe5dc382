import NIOCore

/// SplitMix64: a tiny seeded generator, so the same `--seed` gives the same events in every mode.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Realistic JSON events of an exact byte size, made ahead of the run.
///
/// Every event has an id, a type, a millisecond timestamp, a user number and a text field of
/// dictionary words that pads it to the requested size, so LZ4 sees what real events look
/// like (shared keys and words, random ids and numbers), not a repeated string.
struct PayloadRing: Sendable {
    static let eventTypes = ["click", "view", "signup", "search", "cart.add", "order.paid", "login", "logout"]
    static let words = ["alpha", "amber", "basket", "blue", "checkout", "coupon", "delta", "desktop", "email",
                        "express", "green", "home", "invoice", "mobile", "north", "order", "page", "price",
                        "promo", "refund", "retry", "search", "session", "south", "store", "tablet", "user",
                        "visit", "web", "widget"]
    static let idAlphabet = Array("0123456789ABCDEFGHJKMNPQRSTVWXYZ".utf8)
    static let idCharacters = 26
    /// 2026-01-01T00:00:00Z: timestamps are spread over the following day.
    static let baseTimestampMilliseconds: Int64 = 1_767_225_600_000

    /// The smallest event: every field present, the padding text empty, the longest type.
    static var minimumBytes: Int {
        let longestType = eventTypes.map(\.utf8.count).max() ?? 0
        return skeletonBytes(typeBytes: longestType)
    }

    /// `{"id":"<26>","type":"<t>","ts":<13>,"user":<5>,"text":""}`
    static func skeletonBytes(typeBytes: Int) -> Int {
        #"{"id":""#.utf8.count + idCharacters + #"","type":""#.utf8.count + typeBytes
            + #"","ts":"#.utf8.count + 13 + #","user":"#.utf8.count + 5 + #","text":""}"#.utf8.count
    }

    let payloads: [ByteBuffer]
    let byteCount: Int

    init(eventBytes: Int, count: Int, seed: UInt64) {
        precondition(eventBytes >= Self.minimumBytes, "checked by the command's validation")
        var generator = SeededGenerator(seed: seed)
        var payloads: [ByteBuffer] = []
        payloads.reserveCapacity(count)
        for _ in 0..<count {
            payloads.append(ByteBuffer(bytes: Self.event(bytes: eventBytes, using: &generator)))
        }
        self.payloads = payloads
        self.byteCount = eventBytes
    }

    static func event(bytes: Int, using generator: inout SeededGenerator) -> [UInt8] {
        var id: [UInt8] = []
        id.reserveCapacity(idCharacters)
        for _ in 0..<idCharacters { id.append(idAlphabet[Int(generator.next() % UInt64(idAlphabet.count))]) }
        let type = eventTypes[Int(generator.next() % UInt64(eventTypes.count))]
        let timestamp = baseTimestampMilliseconds + Int64(generator.next() % 86_400_000)
        let user = 10_000 + Int(generator.next() % 90_000)
        let textBytes = bytes - skeletonBytes(typeBytes: type.utf8.count)
        var text: [UInt8] = []
        text.reserveCapacity(textBytes)
        while text.count < textBytes {
            if !text.isEmpty { text.append(UInt8(ascii: " ")) }
            text.append(contentsOf: words[Int(generator.next() % UInt64(words.count))].utf8)
        }
        text.removeLast(text.count - textBytes)
        if text.last == UInt8(ascii: " ") { text[text.count - 1] = UInt8(ascii: "x") }
        var event: [UInt8] = []
        event.reserveCapacity(bytes)
        event.append(contentsOf: #"{"id":""#.utf8)
        event.append(contentsOf: id)
        event.append(contentsOf: #"","type":""#.utf8)
        event.append(contentsOf: type.utf8)
        event.append(contentsOf: #"","ts":"#.utf8)
        event.append(contentsOf: String(timestamp).utf8)
        event.append(contentsOf: #","user":"#.utf8)
        event.append(contentsOf: String(user).utf8)
        event.append(contentsOf: #","text":""#.utf8)
        event.append(contentsOf: text)
        event.append(contentsOf: #""}"#.utf8)
        return event
    }

    subscript(_ index: Int) -> ByteBuffer { payloads[index % payloads.count] }

    /// The same events in buffers of their own. Each sender thread gets one: `send` retains the
    /// payload it is given, and retaining buffers another core retains too moves their reference
    /// counts between the cores' caches on every event (measured ~4% of the machine at max rate).
    func copiedForThread() -> PayloadRing {
        PayloadRing(payloads: payloads.map { ByteBuffer(buffer: $0) }, byteCount: byteCount)
    }

    private init(payloads: [ByteBuffer], byteCount: Int) {
        self.payloads = payloads
        self.byteCount = byteCount
    }
}

/// A producer run's send time carried inside the event, so a consumer in another process can
/// measure produce → consume latency against the same origin as the durable acknowledgement.
///
/// The time (CLOCK_MONOTONIC nanoseconds, one clock for every process of the machine) replaces
/// the first 13 characters of the event's 26-character id, in the id's own Crockford base32
/// (13 × 5 bits hold 64): the event keeps its size, stays valid JSON, and its id becomes
/// ULID-like (time first, then random), so no header or extra byte is added.
enum SendTimeStamp {
    /// `{"id":"` comes first in every generated event.
    static let prefix = Array(#"{"id":""#.utf8)
    static let characters = 13

    static let decodeTable: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (value, character) in PayloadRing.idAlphabet.enumerated() { table[Int(character)] = UInt8(value) }
        return table
    }()

    /// Overwrites the stamp characters of `event` (a generated event) in place.
    static func write(_ nanoseconds: UInt64, into event: inout ByteBuffer) {
        precondition(event.readableBytes >= prefix.count + characters, "generated events are at least \(PayloadRing.minimumBytes) bytes")
        event.withUnsafeMutableReadableBytes { bytes in
            for index in 0 ..< characters {
                let shift = UInt64(5 * (characters - 1 - index))
                bytes[prefix.count + index] = PayloadRing.idAlphabet[Int((nanoseconds >> shift) & 31)]
            }
        }
    }

    /// The send time in `value`, nil when it carries no stamp.
    static func read(_ value: ByteBuffer) -> UInt64? {
        value.withUnsafeReadableBytes { bytes -> UInt64? in
            guard bytes.count >= prefix.count + characters else { return nil }
            for index in 0 ..< prefix.count where bytes[index] != prefix[index] { return nil }
            var nanoseconds: UInt64 = 0
            for index in 0 ..< characters {
                let digit = decodeTable[Int(bytes[prefix.count + index])]
                guard digit != 0xFF else { return nil }
                nanoseconds = nanoseconds << 5 | UInt64(digit)
            }
            return nanoseconds
        }
    }
}
