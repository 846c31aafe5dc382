import Foundation

/// A stream's payload schema (`event_streams.schema`): a JSON Schema of draft 2020-12, limited to
/// the keywords listed in `supportedKeywords` (docs/storage.md, "Schema validation"). A schema
/// that uses any other keyword is refused when it is set, so what is stored is always enforced
/// exactly as written.
public struct StreamSchema: Sendable, Hashable {
    /// The assertion keywords EventFlow checks.
    public static let supportedKeywords: [String] = [
        "type", "properties", "required", "additionalProperties", "items", "enum", "const",
        "minimum", "maximum", "minLength", "maxLength", "pattern", "format",
    ]
    /// Keywords that only annotate (they never change whether a value is valid); allowed anywhere.
    public static let annotationKeywords: Set<String> = [
        "$schema", "$id", "$comment", "title", "description", "examples", "default", "deprecated", "readOnly", "writeOnly",
    ]
    public static let supportedFormats = ["date-time", "uuid", "email"]
    public static let draft202012 = "https://json-schema.org/draft/2020-12/schema"
    /// Larger schema documents are refused (they are compiled on every stream lookup).
    public static let schemaBytesMax = 256 * 1024

    /// Longer violation messages are cut (they travel in Produce answers, logs and dead-letter rows).
    public static let violationBytesMax = 1024

    /// `text` with control characters written as `\u00XX` and cut to at most `violationBytesMax`
    /// UTF-8 bytes on a Unicode scalar boundary (ending in `...` when cut).
    static func printable(_ text: String) -> String {
        var result = ""
        for scalar in text.unicodeScalars {
            let piece = scalar.value < 0x20 || scalar.value == 0x7F
                ? "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count) + String(scalar.value, radix: 16)
                : String(scalar)
            if result.utf8.count + piece.utf8.count > violationBytesMax - 3 {
                return result + "..."
            }
            result += piece
        }
        return result
    }

    /// The schema as stored (JSON text).
    public let text: String
    let root: Node

    /// Compiles `text`, refusing what EventFlow cannot enforce.
    public init(text: String) throws(StreamSchemaError) {
        guard text.utf8.count <= Self.schemaBytesMax else {
            throw StreamSchemaError(path: "", message: "the schema is \(text.utf8.count) bytes; at most \(Self.schemaBytesMax)")
        }
        let document: JSONValue
        do {
            document = try JSONValue(parsing: Array(text.utf8))
        } catch {
            throw StreamSchemaError(path: "", message: "\(error)")
        }
        if case .object(let members) = document, let declared = members["$schema"] {
            guard declared == .string(Self.draft202012) || declared == .string(Self.draft202012 + "#") else {
                throw StreamSchemaError(path: "/$schema", message: "only draft 2020-12 (\(Self.draft202012)) is supported")
            }
        }
        self.text = text
        self.root = try Node(compiling: document, at: "")
    }

    public static func == (lhs: StreamSchema, rhs: StreamSchema) -> Bool { lhs.text == rhs.text }
    public func hash(into hasher: inout Hasher) { hasher.combine(text) }

    /// The first way `value` (a record's value bytes) breaks the schema, or nil if it is valid.
    public func violation(of value: UnsafeBufferPointer<UInt8>?) -> String? {
        guard let value else { return "the record has no value (null); the stream's schema needs a JSON value" }
        var parser = JSONParser(value)
        do {
            if let found = try root.check(&parser) { return found.description }
            guard parser.peek() == nil else { throw parser.fail("unexpected bytes after the value") }
            return nil
        } catch {
            return "\(error)"
        }
    }

}

/// Why a schema cannot be used: where in the schema (a JSON Pointer) and what is wrong.
public struct StreamSchemaError: Error, Hashable, Sendable, CustomStringConvertible {
    public var path: String
    public var message: String

    public var description: String {
        "invalid schema" + (path.isEmpty ? "" : " at \(path)") + ": " + message
    }
}

/// One compiled (sub)schema. A class so the tree is shared, not copied, between lookups.
final class Node: Sendable {
    enum Format: String, Sendable {
        case dateTime = "date-time", uuid, email
    }

    /// A boolean schema `false` (or `not`-like refusal): nothing is valid.
    let refusesEverything: Bool
    let types: [String]?
    let properties: [String: Node]
    let required: [String]
    /// Per member name: its schema (`properties`) and its bit in the mask of required names that
    /// `check` keeps per object — one lookup per member read.
    let memberRules: [String: (schema: Node?, requiredBit: UInt64)]
    /// More required names in one object are refused (they are tracked in a 64-bit mask).
    static let requiredNamesMax = 64
    /// nil: any additional property is allowed.
    let additionalProperties: Node?
    let items: Node?
    let enumValues: [JSONValue]?
    let constValue: JSONValue?
    let minimum: Double?
    let maximum: Double?
    let minLength: Int?
    let maxLength: Int?
    let pattern: Pattern?
    let format: Format?

    static let typeNames: Set<String> = ["null", "boolean", "object", "array", "number", "string", "integer"]

    init(compiling schema: JSONValue, at path: String) throws(StreamSchemaError) {
        func refuse(_ keyword: String, _ message: String) -> StreamSchemaError {
            StreamSchemaError(path: path + "/" + keyword, message: message)
        }
        let members: [String: JSONValue]
        switch schema {
        case .bool(let allowed):
            members = [:]
            refusesEverything = !allowed
        case .object(let object):
            members = object
            refusesEverything = false
        default:
            throw StreamSchemaError(path: path, message: "a schema is an object or a boolean, not \(schema.typeName)")
        }
        for keyword in members.keys.sorted() where !StreamSchema.supportedKeywords.contains(keyword)
            && !StreamSchema.annotationKeywords.contains(keyword) {
            throw refuse(keyword, "keyword '\(keyword)' is not supported (EventFlow enforces \(StreamSchema.supportedKeywords.joined(separator: ", ")))")
        }

        switch members["type"] {
        case nil: types = nil
        case .string(let name)?:
            guard Self.typeNames.contains(name) else { throw refuse("type", "unknown type '\(name)'") }
            types = [name]
        case .array(let names)?:
            var list: [String] = []
            for name in names {
                guard case .string(let text) = name, Self.typeNames.contains(text) else { throw refuse("type", "unknown type \(name)") }
                list.append(text)
            }
            guard !list.isEmpty, Set(list).count == list.count else { throw refuse("type", "a non-empty array of distinct type names") }
            types = list
        default: throw refuse("type", "a type name or an array of them")
        }

        var properties: [String: Node] = [:]
        if let value = members["properties"] {
            guard case .object(let entries) = value else { throw refuse("properties", "an object of schemas") }
            for (name, subschema) in entries {
                properties[name] = try Node(compiling: subschema, at: path + "/properties/" + Self.escaped(name))
            }
        }
        self.properties = properties

        var required: [String] = []
        if let value = members["required"] {
            guard case .array(let names) = value else { throw refuse("required", "an array of property names") }
            for name in names {
                guard case .string(let text) = name else { throw refuse("required", "an array of property names") }
                required.append(text)
            }
            guard Set(required).count == required.count else { throw refuse("required", "property names must be distinct") }
            guard required.count <= Self.requiredNamesMax else { throw refuse("required", "at most \(Self.requiredNamesMax) names") }
        }
        self.required = required
        var memberRules = properties.mapValues { (schema: Optional($0), requiredBit: UInt64(0)) }
        for (index, name) in required.enumerated() {
            memberRules[name, default: (nil, 0)].requiredBit = UInt64(1) << UInt64(index)
        }
        self.memberRules = memberRules

        additionalProperties = try members["additionalProperties"].map { value throws(StreamSchemaError) in
            try Node(compiling: value, at: path + "/additionalProperties")
        }
        items = try members["items"].map { value throws(StreamSchemaError) in try Node(compiling: value, at: path + "/items") }

        if let value = members["enum"] {
            guard case .array(let values) = value, !values.isEmpty else { throw refuse("enum", "a non-empty array") }
            enumValues = values
        } else {
            enumValues = nil
        }
        constValue = members["const"]

        func number(_ keyword: String) throws(StreamSchemaError) -> Double? {
            guard let value = members[keyword] else { return nil }
            guard case .number(let number) = value, number.isFinite else { throw refuse(keyword, "a number") }
            return number
        }
        minimum = try number("minimum")
        maximum = try number("maximum")
        func count(_ keyword: String) throws(StreamSchemaError) -> Int? {
            guard let value = try number(keyword) else { return nil }
            guard value.isWholeNumber, value >= 0, value <= Double(Int32.max) else { throw refuse(keyword, "a non-negative integer") }
            return Int(value)
        }
        minLength = try count("minLength")
        maxLength = try count("maxLength")

        if let value = members["pattern"] {
            guard case .string(let expression) = value else { throw refuse("pattern", "a regular expression string") }
            do {
                pattern = try Pattern(expression)
            } catch let refused as Pattern.Refused {
                throw refuse("pattern", "\(refused): \(expression)")
            } catch {
                throw refuse("pattern", "not a regular expression: \(expression)")
            }
        } else {
            pattern = nil
        }
        if let value = members["format"] {
            guard case .string(let name) = value, let format = Format(rawValue: name) else {
                throw refuse("format", "supported formats are \(StreamSchema.supportedFormats.joined(separator: ", "))")
            }
            self.format = format
        } else {
            format = nil
        }
    }

    /// JSON Pointer escaping of one reference token (RFC 6901).
    static func escaped(_ token: String) -> String {
        token.replacingOccurrences(of: "~", with: "~0").replacingOccurrences(of: "/", with: "~1")
    }

    /// Where a value breaks a schema: the JSON Pointer's reference tokens, innermost first (built only
    /// on the way back from a failure, so valid values allocate no paths), and why.
    struct Violation {
        var reversedPath: [String] = []
        var message: String

        /// Names in it come from the record: control characters are escaped (a NUL cannot reach
        /// libpq or a log line) and the whole is cut at `StreamSchema.violationBytesMax`.
        var description: String {
            let pointer = reversedPath.reversed().map { "/" + Node.escaped($0) }.joined()
            return StreamSchema.printable((pointer.isEmpty ? "/" : pointer) + ": " + message)
        }

        func inside(_ token: String) -> Violation {
            var copy = self
            copy.reversedPath.append(token)
            return copy
        }
    }

    /// Whether checking needs the value built: `enum` and `const` compare whole values.
    var needsWholeValue: Bool { enumValues != nil || constValue != nil }
    /// Whether a string's text is needed, or checking its syntax is enough.
    var needsStringText: Bool { minLength != nil || maxLength != nil || pattern != nil || format != nil }

    func typeViolation(_ typeName: String) -> Violation? {
        guard let types, !types.contains(where: { $0 == typeName || ($0 == "number" && typeName == "integer") }) else { return nil }
        return Violation(message: "expected \(types.joined(separator: " or ")), got \(typeName)")
    }

    func numberViolation(_ number: Double) -> Violation? {
        if let minimum, number < minimum {
            return Violation(message: "\(Self.render(.number(number))) is less than the minimum \(Self.render(.number(minimum)))")
        }
        if let maximum, number > maximum {
            return Violation(message: "\(Self.render(.number(number))) is greater than the maximum \(Self.render(.number(maximum)))")
        }
        return nil
    }

    func stringViolation(_ text: String) -> Violation? {
        if minLength != nil || maxLength != nil {
            // Code points: the UTF-8 bytes that do not continue a sequence.
            var text = text
            let length = text.withUTF8 { bytes in
                var count = 0
                for byte in bytes where byte & 0xC0 != 0x80 { count += 1 }
                return count
            }
            if let minLength, length < minLength { return Violation(message: "\(length) characters, at least \(minLength) required") }
            if let maxLength, length > maxLength { return Violation(message: "\(length) characters, at most \(maxLength) allowed") }
        }
        if let pattern {
            switch pattern.matches(text) {
            case true?: break
            case false?: return Violation(message: "does not match the pattern \(pattern.expression)")
            case nil: return Violation(message: "matching the pattern \(pattern.expression) gave up after \(SimplePattern.matchStepsMax) steps")
            }
        }
        if let format, !Self.conforms(text, to: format) { return Violation(message: "not a valid \(format.rawValue)") }
        return nil
    }

    /// The first violation of a built value (members in name order, so it does not depend on hashing).
    func violation(of value: JSONValue) -> Violation? {
        if refusesEverything { return Violation(message: "no value is allowed here") }
        if let found = typeViolation(value.typeName) { return found }
        if let constValue, value != constValue {
            return Violation(message: "must be \(Self.render(constValue))")
        }
        if let enumValues, !enumValues.contains(value) {
            return Violation(message: "must be one of \(enumValues.map(Self.render).joined(separator: ", "))")
        }
        switch value {
        case .number(let number):
            return numberViolation(number)
        case .string(let text):
            return stringViolation(text)
        case .array(let elements):
            guard let items else { return nil }
            for (index, element) in elements.enumerated() {
                if let violation = items.violation(of: element) { return violation.inside(String(index)) }
            }
        case .object(let members):
            for name in required where members[name] == nil {
                return Violation(message: "required property '\(name)' is missing")
            }
            for name in members.keys.sorted() {
                guard let member = members[name] else { continue }
                if let schema = properties[name] {
                    if let violation = schema.violation(of: member) { return violation.inside(name) }
                } else if let additionalProperties {
                    if additionalProperties.refusesEverything { return Violation(message: "property '\(name)' is not allowed") }
                    if let violation = additionalProperties.violation(of: member) { return violation.inside(name) }
                }
            }
        case .null, .bool:
            break
        }
        return nil
    }

    /// Checks the value at the parser's position while reading it, building nothing the schema does
    /// not look at (what Produce runs on every record). Stops at the first violation, in document order.
    func check(_ parser: inout JSONParser) throws(JSONParseError) -> Violation? {
        if refusesEverything { return Violation(message: "no value is allowed here") }
        guard let byte = parser.peek() else { throw parser.fail("unexpected end") }
        if needsWholeValue { return violation(of: try parser.value()) }
        switch byte {
        case UInt8(ascii: "{"):
            if let found = typeViolation("object") { return found }
            return try checkObject(&parser)
        case UInt8(ascii: "["):
            if let found = typeViolation("array") { return found }
            try parser.nest()
            parser.advance()
            if parser.peek() == UInt8(ascii: "]") {
                parser.advance()
                parser.unnest()
                return nil
            }
            var position = 0
            while true {
                if let items {
                    if let found = try items.check(&parser) { return found.inside(String(position)) }
                } else {
                    try parser.skipValue()
                }
                position += 1
                guard let next = parser.peek() else { throw parser.fail("unexpected end") }
                guard next == UInt8(ascii: ",") || next == UInt8(ascii: "]") else { throw parser.fail("expected ',' or ']'") }
                parser.advance()
                if next == UInt8(ascii: "]") {
                    parser.unnest()
                    return nil
                }
            }
        case UInt8(ascii: "\""):
            if let found = typeViolation("string") { return found }
            if needsStringText { return stringViolation(try parser.string()) }
            try parser.skipString()
            return nil
        default:
            // Numbers, true, false, null (and what is none of them: the parser names it).
            return violation(of: try parser.value())
        }
    }

    private func checkObject(_ parser: inout JSONParser) throws(JSONParseError) -> Violation? {
        try parser.nest()
        parser.advance()
        var present: UInt64 = 0
        if parser.peek() != UInt8(ascii: "}") {
            while true {
                guard parser.peek() == UInt8(ascii: "\"") else { throw parser.fail("expected a member name") }
                let name = try parser.string()
                guard parser.peek() == UInt8(ascii: ":") else { throw parser.fail("expected ':'") }
                parser.advance()
                let rule = memberRules[name]
                present |= rule?.requiredBit ?? 0
                if let schema = rule?.schema {
                    if let found = try schema.check(&parser) { return found.inside(name) }
                } else if let additionalProperties {
                    if additionalProperties.refusesEverything { return Violation(message: "property '\(name)' is not allowed") }
                    if let found = try additionalProperties.check(&parser) { return found.inside(name) }
                } else {
                    try parser.skipValue()
                }
                guard let next = parser.peek() else { throw parser.fail("unexpected end") }
                guard next == UInt8(ascii: ",") || next == UInt8(ascii: "}") else { throw parser.fail("expected ',' or '}'") }
                if next == UInt8(ascii: "}") { break }
                parser.advance()
            }
        }
        parser.advance()
        parser.unnest()
        for (index, name) in required.enumerated() where present & (1 << UInt64(index)) == 0 {
            return Violation(message: "required property '\(name)' is missing")
        }
        return nil
    }

    static func render(_ value: JSONValue) -> String {
        switch value {
        case .null: return "null"
        case .bool(let flag): return flag ? "true" : "false"
        case .number(let number): return number.isWholeNumber && abs(number) < 1e15 ? String(Int64(number)) : String(number)
        case .string(let text): return "\"" + text + "\""
        case .array(let elements): return "[" + elements.map(render).joined(separator: ",") + "]"
        case .object(let members):
            return "{" + members.keys.sorted().map { "\"\($0)\":" + render(members[$0]!) }.joined(separator: ",") + "}"
        }
    }

    static func conforms(_ text: String, to format: Format) -> Bool {
        switch format {
        case .uuid: return isUUID(text)
        case .dateTime: return isDateTime(text)
        case .email: return isEmail(text)
        }
    }

    /// RFC 4122's textual form: 8-4-4-4-12 hexadecimal digits.
    static func isUUID(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard bytes.count == 36 else { return false }
        for (index, byte) in bytes.enumerated() {
            if [8, 13, 18, 23].contains(index) {
                guard byte == UInt8(ascii: "-") else { return false }
            } else {
                guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte | 0x20) else {
                    return false
                }
            }
        }
        return true
    }

    /// RFC 3339 `date-time`: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, with real calendar days and a
    /// leap second (60) allowed, as the JSON Schema format requires.
    static func isDateTime(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        func digits(_ start: Int, _ count: Int) -> Int? {
            guard start + count <= bytes.count else { return nil }
            var value = 0
            for byte in bytes[start..<(start + count)] {
                guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
            }
            return value
        }
        guard bytes.count >= 20, let year = digits(0, 4), bytes[4] == UInt8(ascii: "-"), let month = digits(5, 2),
              bytes[7] == UInt8(ascii: "-"), let day = digits(8, 2), bytes[10] | 0x20 == UInt8(ascii: "t"),
              let hour = digits(11, 2), bytes[13] == UInt8(ascii: ":"), let minute = digits(14, 2),
              bytes[16] == UInt8(ascii: ":"), let second = digits(17, 2) else { return false }
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        let daysInMonth = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        guard (1...12).contains(month), (1...daysInMonth[month - 1]).contains(day), hour < 24, minute < 60, second <= 60 else {
            return false
        }
        var index = 19
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            let start = index
            while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) { index += 1 }
            guard index > start else { return false }
        }
        guard index < bytes.count else { return false }
        var offsetMinutesTotal = 0
        if bytes[index] | 0x20 == UInt8(ascii: "z") {
            guard index + 1 == bytes.count else { return false }
        } else {
            guard bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-"), index + 6 == bytes.count,
                  let offsetHours = digits(index + 1, 2), bytes[index + 3] == UInt8(ascii: ":"),
                  let offsetMinutes = digits(index + 4, 2), offsetHours < 24, offsetMinutes < 60 else { return false }
            offsetMinutesTotal = (offsetHours * 60 + offsetMinutes) * (bytes[index] == UInt8(ascii: "-") ? -1 : 1)
        }
        // A leap second exists only as 23:59:60 UTC.
        guard second == 60 else { return true }
        let utcMinuteOfDay = ((hour * 60 + minute - offsetMinutesTotal) % 1440 + 1440) % 1440
        return utcMinuteOfDay == 23 * 60 + 59
    }

    /// An address `local@domain` as RFC 5321 writes it without quoting: the local part of dot-separated
    /// atoms (RFC 5322 atext), the domain of dot-separated labels (letters, digits, inner hyphens) or
    /// an address literal in brackets.
    static func isEmail(_ text: String) -> Bool {
        guard let at = text.lastIndex(of: "@") else { return false }
        let local = text[..<at], domain = text[text.index(after: at)...]
        guard (1...64).contains(local.utf8.count), (1...255).contains(domain.utf8.count) else { return false }
        let atext = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~".utf8)
        for atom in local.split(separator: ".", omittingEmptySubsequences: false) {
            guard !atom.isEmpty, atom.utf8.allSatisfy({ atext.contains($0) }) else { return false }
        }
        if domain.hasPrefix("[") {
            // An address literal: IPv4 dotted decimal, or `IPv6:` and hexadecimal groups.
            guard domain.hasSuffix("]") else { return false }
            let literal = domain.dropFirst().dropLast()
            if literal.hasPrefix("IPv6:") {
                let groups = literal.dropFirst(5).split(separator: ":", omittingEmptySubsequences: false)
                return (3...8).contains(groups.count)
                    && groups.allSatisfy { $0.count <= 4 && $0.allSatisfy { $0.isASCII && $0.isHexDigit } }
            }
            let octets = literal.split(separator: ".", omittingEmptySubsequences: false)
            return octets.count == 4 && octets.allSatisfy { octet in
                (1...3).contains(octet.count) && octet.allSatisfy { $0.isASCII && $0.isNumber } && Int(octet).map { $0 <= 255 } == true
            }
        }
        let labelCharacters = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-".utf8)
        for label in domain.split(separator: ".", omittingEmptySubsequences: false) {
            guard (1...63).contains(label.utf8.count), label.utf8.allSatisfy({ labelCharacters.contains($0) }),
                  label.first != "-", label.last != "-" else { return false }
        }
        return true
    }
}

/// A compiled `pattern`: matched anywhere in the string (JSON Schema patterns are not anchored).
/// Simple patterns run on EventFlow's own matcher, the rest on NSRegularExpression (ICU), which
/// also checks every pattern's syntax when the schema is set. NSRegularExpression is immutable and
/// documented as safe to share across threads.
final class Pattern: @unchecked Sendable {
    let expression: String
    private let simple: SimplePattern?
    private let regex: NSRegularExpression

    struct Refused: Error, CustomStringConvertible {
        var description: String
    }

    init(_ expression: String) throws {
        self.expression = expression
        self.regex = try NSRegularExpression(pattern: expression)
        self.simple = SimplePattern(expression)
        if let reason = Self.exponentialBacktracking(expression) { throw Refused(description: reason) }
    }

    /// Patterns run on the event loop, for every record: a repeated group that itself repeats or
    /// alternates (`(a+)+`, `(a|aa)*`) can take time exponential in the string's length, so it is
    /// refused when the schema is set.
    static func exponentialBacktracking(_ expression: String) -> String? {
        let scalars = Array(expression.unicodeScalars)
        var groups: [Bool] = []  // per open group: holds a quantifier or an alternation
        var index = 0
        func repeats(at position: Int) -> Bool {
            guard position < scalars.count else { return false }
            switch scalars[position] {
            case "*", "+": return true
            case "{":
                guard let close = scalars[position...].firstIndex(of: "}") else { return false }
                let bounds = String(String.UnicodeScalarView(scalars[(position + 1)..<close])).split(separator: ",", omittingEmptySubsequences: false)
                return bounds.count == 2 ? (bounds[1].isEmpty || (Int(bounds[1]) ?? 0) > 1) : (Int(bounds[0]) ?? 0) > 1
            default: return false
            }
        }
        while index < scalars.count {
            let scalar = scalars[index]
            index += 1
            switch scalar {
            case "\\": index += 1
            case "[":
                while index < scalars.count, scalars[index] != "]" { index += scalars[index] == "\\" ? 2 : 1 }
                index += 1
            case "(": groups.append(false)
            case ")":
                let inner = groups.popLast() ?? false
                if inner && repeats(at: index) {
                    return "a repeated group holding a quantifier or an alternation can take exponential time"
                }
                if !groups.isEmpty { groups[groups.count - 1] = groups[groups.count - 1] || inner || repeats(at: index) }
            case "|", "*", "+", "{":
                if !groups.isEmpty { groups[groups.count - 1] = true }
            default: break
            }
        }
        return nil
    }

    var isSimple: Bool { simple != nil }

    /// nil: EventFlow's matcher gave up (`SimplePattern.matchStepsMax`).
    func matches(_ text: String) -> Bool? {
        if let simple { return simple.matches(text) }
        return regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil
    }

    /// NSRegularExpression's answer, whatever matcher `matches` uses (tests compare the two).
    func regexMatches(_ text: String) -> Bool {
        regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil
    }
}
