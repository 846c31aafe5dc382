/// A JSON value as a stream's schema sees it (RFC 8259). Numbers are IEEE doubles, so integers
/// beyond 2^53 compare approximately; objects keep the last of duplicate keys, as `jsonb` does.
public enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// The JSON Schema type name of the value (`integer` for a number with no fractional part).
    var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "boolean"
        case .number(let value): return value.isWholeNumber ? "integer" : "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }

    /// Parses exactly one JSON value (whitespace around it allowed).
    public init(parsing bytes: some Collection<UInt8>) throws(JSONParseError) {
        let contiguous = Array(bytes)
        let parsed = contiguous.withUnsafeBufferPointer { buffer -> Result<JSONValue, JSONParseError> in
            var parser = JSONParser(buffer)
            do throws(JSONParseError) {
                let value = try parser.document()
                return .success(value)
            } catch {
                return .failure(error)
            }
        }
        self = try parsed.get()
    }
}

extension Double {
    var isWholeNumber: Bool { isFinite && rounded(.towardZero) == self }
}

/// Why bytes are not JSON: what was wrong and the byte offset where it was found.
public struct JSONParseError: Error, Hashable, Sendable, CustomStringConvertible {
    public var message: String
    public var offset: Int

    public var description: String { "not JSON: \(message) at byte \(offset)" }
}

/// A strict recursive-descent parser over bytes (no copies of the input).
struct JSONParser {
    /// Deeper nesting is refused: bounds the parser's stack on hostile input.
    static let nestingDepthMax = 256

    private let bytes: UnsafeBufferPointer<UInt8>
    private(set) var index = 0
    private(set) var depth = 0

    init(_ bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
    }

    mutating func document() throws(JSONParseError) -> JSONValue {
        skipWhitespace()
        let value = try value()
        skipWhitespace()
        guard index == bytes.count else { throw fail("unexpected bytes after the value") }
        return value
    }

    func fail(_ message: String) -> JSONParseError {
        JSONParseError(message: message, offset: index)
    }

    mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    mutating func value() throws(JSONParseError) -> JSONValue {
        guard index < bytes.count else { throw fail("unexpected end") }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try object()
        case UInt8(ascii: "["): return try array()
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try number())
        default: throw fail("unexpected character")
        }
    }

    mutating func literal(_ word: StaticString) throws(JSONParseError) {
        let count = word.utf8CodeUnitCount
        guard bytes.count - index >= count else { throw fail("unexpected end") }
        for offset in 0..<count where bytes[index + offset] != word.utf8Start[offset] {
            throw fail("invalid literal")
        }
        index += count
    }

    mutating func nest() throws(JSONParseError) {
        depth += 1
        guard depth <= Self.nestingDepthMax else { throw fail("nested deeper than \(Self.nestingDepthMax) levels") }
    }

    mutating func unnest() { depth -= 1 }

    /// The byte at the current position (after whitespace), or nil at the end.
    mutating func peek() -> UInt8? {
        skipWhitespace()
        return index < bytes.count ? bytes[index] : nil
    }

    mutating func advance() { index += 1 }

    var isAtEnd: Bool { index == bytes.count }

    /// Checks one value of any kind without building it (strings are checked, not decoded).
    mutating func skipValue() throws(JSONParseError) {
        guard let byte = peek() else { throw fail("unexpected end") }
        switch byte {
        case UInt8(ascii: "\""): try skipString()
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            try forEachElement(decodingNames: false) { parser, _ throws(JSONParseError) in try parser.skipValue() }
        default: _ = try value()
        }
    }

    /// Checks a string (escapes, surrogate pairs, UTF-8, no control characters) without decoding it.
    mutating func skipString() throws(JSONParseError) {
        _ = try readString(keeping: false)
    }

    /// Well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF).
    private func checkUTF8(_ range: Range<Int>) throws(JSONParseError) {
        var position = range.lowerBound
        while position < range.upperBound {
            let lead = bytes[position]
            if lead < 0x80 {
                position += 1
                continue
            }
            let invalid = JSONParseError(message: "invalid UTF-8 in a string", offset: position)
            let continuation: Int
            var low: UInt8 = 0x80, high: UInt8 = 0xBF
            switch lead {
            case 0xC2...0xDF: continuation = 1
            case 0xE0: continuation = 2; low = 0xA0
            case 0xE1...0xEC, 0xEE...0xEF: continuation = 2
            case 0xED: continuation = 2; high = 0x9F
            case 0xF0: continuation = 3; low = 0x90
            case 0xF1...0xF3: continuation = 3
            case 0xF4: continuation = 3; high = 0x8F
            default: throw invalid
            }
            guard position + continuation < range.upperBound else { throw invalid }
            for offset in 1...continuation {
                let byte = bytes[position + offset]
                guard offset == 1 ? (low...high).contains(byte) : (0x80...0xBF).contains(byte) else { throw invalid }
            }
            position += continuation + 1
        }
    }

    private mutating func object() throws(JSONParseError) -> JSONValue {
        var members: [String: JSONValue] = [:]
        try forEachElement(decodingNames: true) { parser, name throws(JSONParseError) in members[name ?? ""] = try parser.value() }
        return .object(members)
    }

    private mutating func array() throws(JSONParseError) -> JSONValue {
        var elements: [JSONValue] = []
        try forEachElement(decodingNames: true) { parser, _ throws(JSONParseError) in elements.append(try parser.value()) }
        return .array(elements)
    }

    /// Reads the object or array at the current `{` or `[`, calling `element` at each member's
    /// value (after its name, given when `decodingNames`, and its `:`) or each element.
    mutating func forEachElement(decodingNames: Bool,
                                 _ element: (inout JSONParser, String?) throws(JSONParseError) -> Void) throws(JSONParseError) {
        let isObject = bytes[index] == UInt8(ascii: "{")
        let close = isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")
        try nest()
        index += 1
        if peek() == close {
            index += 1
            depth -= 1
            return
        }
        while true {
            var name: String?
            if isObject {
                guard peek() == UInt8(ascii: "\"") else { throw fail("expected a member name") }
                if decodingNames { name = try string() } else { try skipString() }
                guard peek() == UInt8(ascii: ":") else { throw fail("expected ':'") }
                index += 1
            }
            skipWhitespace()
            try element(&self, name)
            guard let next = peek() else { throw fail("unexpected end") }
            guard next == UInt8(ascii: ",") || next == close else { throw fail(isObject ? "expected ',' or '}'" : "expected ',' or ']'") }
            index += 1
            if next == close {
                depth -= 1
                return
            }
        }
    }

    mutating func number() throws(JSONParseError) -> Double {
        let start = index
        if bytes[index] == UInt8(ascii: "-") { index += 1 }
        func digits(_ parser: inout JSONParser) -> Int {
            let first = parser.index
            while parser.index < parser.bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(parser.bytes[parser.index]) {
                parser.index += 1
            }
            return parser.index - first
        }
        guard index < bytes.count else { throw fail("unexpected end") }
        let integerStart = index
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
        } else if digits(&self) == 0 {
            throw fail("expected a digit")
        }
        let integerDigits = index - integerStart
        let isPlainInteger = index == bytes.count
            || (bytes[index] != UInt8(ascii: ".") && bytes[index] | 0x20 != UInt8(ascii: "e"))
        if isPlainInteger && integerDigits <= 15 {
            // Exact in a double: no text conversion (most numbers in events are such integers).
            var value: Int64 = 0
            for byte in bytes[integerStart..<index] { value = value * 10 + Int64(byte - UInt8(ascii: "0")) }
            return Double(bytes[start] == UInt8(ascii: "-") ? -value : value)
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            guard digits(&self) > 0 else { throw fail("expected a digit after '.'") }
        }
        if index < bytes.count, bytes[index] | 0x20 == UInt8(ascii: "e") {
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard digits(&self) > 0 else { throw fail("expected a digit in the exponent") }
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
        guard let value = Double(text) else { throw JSONParseError(message: "invalid number", offset: start) }
        return value
    }

    mutating func string() throws(JSONParseError) -> String {
        try readString(keeping: true) ?? ""
    }

    /// Reads the string at the current `"`: checked throughout, decoded only when `keeping` (nil
    /// otherwise). Without escapes the text is decoded straight from the input.
    private mutating func readString(keeping: Bool) throws(JSONParseError) -> String? {
        index += 1
        var runStart = index
        var unescaped: [UInt8] = []  // the text so far, once an escape was met (no allocation before)
        var hadEscape = false
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                // Checked here, then decoded: `String(validating:)` is several times slower (unspecialized).
                try checkUTF8(runStart..<index)
                let run = UnsafeBufferPointer(rebasing: bytes[runStart..<index])
                index += 1
                guard keeping else { return nil }
                guard hadEscape else { return String(decoding: run, as: UTF8.self) }
                unescaped.append(contentsOf: run)
                return String(decoding: unescaped, as: UTF8.self)
            }
            if byte == UInt8(ascii: "\\") {
                try checkUTF8(runStart..<index)
                if keeping { unescaped.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<index])) }
                hadEscape = true
                try escape(into: &unescaped)
                if !keeping { unescaped.removeAll(keepingCapacity: true) }
                runStart = index
                continue
            }
            guard byte >= 0x20 else { throw fail("control character in a string") }
            index += 1
        }
        throw fail("unterminated string")
    }

    /// Reads the escape at the current backslash and appends what it stands for, as UTF-8.
    private mutating func escape(into scalars: inout [UInt8]) throws(JSONParseError) {
        index += 1
        guard index < bytes.count else { throw fail("unexpected end") }
        let escaped = bytes[index]
        index += 1
        switch escaped {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): scalars.append(escaped)
        case UInt8(ascii: "b"): scalars.append(0x08)
        case UInt8(ascii: "f"): scalars.append(0x0C)
        case UInt8(ascii: "n"): scalars.append(0x0A)
        case UInt8(ascii: "r"): scalars.append(0x0D)
        case UInt8(ascii: "t"): scalars.append(0x09)
        case UInt8(ascii: "u"):
            var code = try hex4()
            if (0xD800...0xDBFF).contains(code) {
                guard bytes.count - index >= 6, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                    throw fail("a high surrogate must be followed by a low one")
                }
                index += 2
                let low = try hex4()
                guard (0xDC00...0xDFFF).contains(low) else { throw fail("a high surrogate must be followed by a low one") }
                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
            } else if (0xDC00...0xDFFF).contains(code) {
                throw fail("a low surrogate without a high one")
            }
            guard let scalar = Unicode.Scalar(code) else { throw fail("invalid \\u escape") }
            scalars.append(contentsOf: String(Character(scalar)).utf8)
        default:
            throw fail("invalid escape")
        }
    }

    private mutating func hex4() throws(JSONParseError) -> UInt32 {
        guard bytes.count - index >= 4 else { throw fail("unexpected end") }
        var code: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw fail("invalid \\u escape")
            }
            code = code << 4 | UInt32(digit)
            index += 1
        }
        return code
    }
}
