@testable import EventFlowStorage
import Testing

/// The payload schema of a stream (docs/storage.md, "Schema validation"): what is enforced, with
/// which message, and which schemas are refused when set.
@Suite struct StreamSchemaTests {
    static let order = """
        {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "order",
         "type": "object", "required": ["id", "total", "status"], "additionalProperties": false,
         "properties": {
           "id": {"type": "string", "format": "uuid"},
           "total": {"type": "integer", "minimum": 0, "maximum": 1000000},
           "status": {"enum": ["new", "paid", "refunded"]},
           "currency": {"const": "EUR"},
           "customer": {"type": "object", "properties": {"email": {"type": "string", "format": "email"},
                                                         "name": {"type": "string", "minLength": 1, "maxLength": 5}}},
           "tags": {"type": "array", "items": {"type": "string", "pattern": "^[a-z]+$"}},
           "at": {"type": "string", "format": "date-time"},
           "note": {"type": ["string", "null"]}
         }}
        """

    func violation(_ schema: String, _ value: String) throws -> String? {
        let compiled = try StreamSchema(text: schema)
        return Array(value.utf8).withUnsafeBufferPointer { compiled.violation(of: $0) }
    }

    @Test func aValidOrderPasses() throws {
        let value = """
            {"id": "6f1c2b9e-0d4a-4c1e-9a43-8f2b51e0d9aa", "total": 42.0, "status": "paid", "currency": "EUR",
             "customer": {"email": "ada@example.com", "name": "Ada"}, "tags": ["vip", "eu"],
             "at": "2026-12-05T10:17:37.5+01:00", "note": null}
            """
        #expect(try violation(Self.order, value) == nil)
    }

    @Test(arguments: [
        (#"{"id": "6f1c2b9e-0d4a-4c1e-9a43-8f2b51e0d9aa", "total": "42", "status": "new"}"#, "/total: expected integer, got string"),
        (#"{"id": "6f1c2b9e-0d4a-4c1e-9a43-8f2b51e0d9aa", "total": 4.5, "status": "new"}"#, "/total: expected integer, got number"),
        (#"{"id": "6f1c2b9e-0d4a-4c1e-9a43-8f2b51e0d9aa", "total": -1, "status": "new"}"#, "/total: -1 is less than the minimum 0"),
        (#"{"id": "6f1c2b9e-0d4a-4c1e-9a43-8f2b51e0d9aa", "total": 2000000, "status": "new"}"#,
         "/total: 2000000 is greater than the maximum 1000000"),
        (#"{"id": "6f1c2b9e-0d4a-4c1e-9a43-8f2b51e0d9aa", "total": 1}"#, "/: required property 'status' is missing"),
        (#"{"id": "6f1c2b9e-0d4a-4c1e-9a43-8f2b51e0d9aa", "total": 1, "status": "lost"}"#,
         #"/status: must be one of "new", "paid", "refunded""#),
        (#"{"id": "not-a-uuid", "total": 1, "status": "new"}"#, "/id: not a valid uuid"),
        (#"{"id": "6f1c2b9e-0d4a-4c1e-9a43-8f2b51e0d9aa", "total": 1, "status": "new", "x": 1}"#, "/: property 'x' is not allowed"),
        (#"{"id": "6f1c2b9e-0d4a-4c1e-9a43-8f2b51e0d9aa", "total": 1, "status": "new", "currency": "USD"}"#,
         #"/currency: must be "EUR""#),
        (#"{"id": "6f1c2b9e-0d4a-4c1e-9a43-8f2b51e0d9aa", "total": 1, "status": "new", "customer": {"email": "ada@"}}"#,
         "/customer/email: not a valid email"),
        (#"{"id": "6f1c2b9e-0d4a-4c1e-9a43-8f2b51e0d9aa", "total": 1, "status": "new", "customer": {"name": ""}}"#,
         "/customer/name: 0 characters, at least 1 required"),
        (#"{"id": "6f1c2b9e-0d4a-4c1e-9a43-8f2b51e0d9aa", "total": 1, "status": "new", "customer": {"name": "Émilie"}}"#,
         "/customer/name: 6 characters, at most 5 allowed"),
        (#"{"id": "6f1c2b9e-0d4a-4c1e-9a43-8f2b51e0d9aa", "total": 1, "status": "new", "tags": ["ok", "Not"]}"#,
         "/tags/1: does not match the pattern ^[a-z]+$"),
        (#"{"id": "6f1c2b9e-0d4a-4c1e-9a43-8f2b51e0d9aa", "total": 1, "status": "new", "at": "2026-02-29T10:00:00Z"}"#,
         "/at: not a valid date-time"),
        (#"{"id": "6f1c2b9e-0d4a-4c1e-9a43-8f2b51e0d9aa", "total": 1, "status": "new", "note": 3}"#,
         "/note: expected string or null, got integer"),
        (#"[1, 2]"#, "/: expected object, got array"),
        (#"{,}"#, "not JSON: expected a member name at byte 1"),
        (#"{"id": "6f1c2b9e-0d4a-4c1e-9a43-8f2b51e0d9aa", "total": 1, "status": "new"} x"#,
         "not JSON: unexpected bytes after the value at byte 76"),
        (#"{"id": "6f1c2b9e-0d4a-4c1e-9a43-8f2b51e0d9aa", "total": 1, "status": "new", "tags": ["ab\ud800"]}"#,
         "not JSON: a high surrogate must be followed by a low one at byte 94"),
        // Violations are reported in document order: the first member that breaks the schema.
        (#"{"total": "1", "id": 7}"#, "/total: expected integer, got string"),
    ])
    func anInvalidOrderIsRefusedWithWhereAndWhy(value: String, message: String) throws {
        #expect(try violation(Self.order, value) == message)
    }

    /// Members no keyword looks at are read for their syntax only (never built), and still checked.
    @Test func membersWithoutASchemaAreCheckedForSyntaxOnly() throws {
        let schema = #"{"type": "object", "properties": {"a": {"type": "integer"}}}"#
        #expect(try violation(schema, #"{"b": {"c": [1, "x\n\u00e9", {"d": null}], "e": {}}, "f": [], "a": 1}"#) == nil)
        #expect(try violation(schema, #"{"b": "ok", "a": "s"}"#) == "/a: expected integer, got string")
        #expect(try violation(schema, #"{"b": [1,], "a": 1}"#) == "not JSON: unexpected character at byte 9")
        #expect(try violation(schema, #"{"b": {"c" 1}}"#) == "not JSON: expected ':' at byte 11")
        #expect(try violation(schema, #"{"b": "\x"}"#) == "not JSON: invalid escape at byte 9")
        let invalidUTF8: [UInt8] = Array(#"{"b": ""#.utf8) + [0xC3, 0x28] + Array(#""}"#.utf8)
        let compiled = try StreamSchema(text: schema)
        #expect(invalidUTF8.withUnsafeBufferPointer { compiled.violation(of: $0) } == "not JSON: invalid UTF-8 in a string at byte 7")
    }

    @Test func aNullValueBreaksAnySchema() throws {
        let schema = try StreamSchema(text: "{}")
        #expect(schema.violation(of: nil) == "the record has no value (null); the stream's schema needs a JSON value")
        #expect(try violation("{}", "17") == nil)
        #expect(try violation("false", "17") == "/: no value is allowed here")
    }

    @Test(arguments: [
        (#"{"type": "object", "oneOf": [{"type": "string"}]}"#, "/oneOf", "keyword 'oneOf' is not supported"),
        (##"{"properties": {"a": {"$ref": "#/defs/x"}}}"##, "/properties/a/$ref", "keyword '$ref' is not supported"),
        (#"{"items": {"exclusiveMinimum": 3}}"#, "/items/exclusiveMinimum", "keyword 'exclusiveMinimum' is not supported"),
        (#"{"type": "text"}"#, "/type", "unknown type 'text'"),
        (#"{"format": "ipv4"}"#, "/format", "supported formats are date-time, uuid, email"),
        (#"{"pattern": "("}"#, "/pattern", "not a regular expression: ("),
        (#"{"minLength": -1}"#, "/minLength", "a non-negative integer"),
        (#"{"$schema": "http://json-schema.org/draft-07/schema#"}"#, "/$schema", "only draft 2020-12"),
        (#"{"required": "id"}"#, "/required", "an array of property names"),
        (#"["type"]"#, "", "a schema is an object or a boolean, not array"),
        (#"{"type": "object""#, "", "not JSON"),
    ])
    func aSchemaEventFlowCannotEnforceIsRefused(schema: String, path: String, message: String) {
        #expect(throws: StreamSchemaError.self) { try StreamSchema(text: schema) }
        do {
            _ = try StreamSchema(text: schema)
        } catch {
            #expect(error.path == path)
            #expect(error.message.hasPrefix(message), "\(error.message)")
        }
    }

    @Test func stringsWithEscapesAndSurrogatesParse() throws {
        let value = try JSONValue(parsing: Array(#"{"a\n\"b": "\u00e9\ud83d\ude00/\/", "n": -1.5e2}"#.utf8))
        #expect(value == .object(["a\n\"b": .string("é😀//"), "n": .number(-150)]))
        #expect(throws: JSONParseError.self) { try JSONValue(parsing: Array(#""\ud800""#.utf8)) }
        #expect(throws: JSONParseError.self) { try JSONValue(parsing: Array("\"\u{01}\"".utf8)) }
        #expect(throws: JSONParseError.self) { try JSONValue(parsing: [0x22, 0xFF, 0x22]) }
        #expect(throws: JSONParseError.self) { try JSONValue(parsing: Array("01".utf8)) }
        let deep = Array((String(repeating: "[", count: 300) + String(repeating: "]", count: 300)).utf8)
        #expect(throws: JSONParseError(message: "nested deeper than 256 levels", offset: 256)) { try JSONValue(parsing: deep) }
        let deepest = Array((String(repeating: "[", count: 256) + String(repeating: "]", count: 256)).utf8)
        #expect(throws: Never.self) { try JSONValue(parsing: deepest) }
        // The produce path (the check while reading, and the syntax-only skip) has the same bound.
        for schema in [#"{"items": {"items": {}}}"#, #"{"type": "array"}"#] {
            let compiled = try StreamSchema(text: schema)
            #expect(deep.withUnsafeBufferPointer { compiled.violation(of: $0) } == "not JSON: nested deeper than 256 levels at byte 256")
            #expect(deepest.withUnsafeBufferPointer { compiled.violation(of: $0) } == nil)
        }
    }

    @Test func aViolationNamingWhatTheRecordSaysIsEscapedAndBounded() throws {
        let schema = try StreamSchema(text: #"{"additionalProperties": false}"#)
        let name = #"\u0000"# + String(repeating: "a", count: 40_000)
        let message = try #require(Array(#"{"\#(name)": 1}"#.utf8).withUnsafeBufferPointer { schema.violation(of: $0) })
        #expect(message.hasPrefix(#"/: property '\u0000aaa"#), "\(message.prefix(40))")
        #expect(message.hasSuffix("..."))
        #expect(message.utf8.count <= StreamSchema.violationBytesMax)
        #expect(!message.utf8.contains(0))
    }

    @Test(arguments: ["^(a+)+$", "(a|aa)*", "((ab)*c)+", "(x{2,})*"])
    func aPatternThatCanBacktrackExponentiallyIsRefused(pattern: String) {
        let schema = #"{"pattern": "\#(pattern)"}"#
        #expect(throws: StreamSchemaError(path: "/pattern",
                                          message: "a repeated group holding a quantifier or an alternation can take exponential time: \(pattern)")) {
            try StreamSchema(text: schema)
        }
    }

    @Test func aPatternThatGivesUpIsAViolationNamingIt() throws {
        #expect(throws: Never.self) { try StreamSchema(text: #"{"pattern": "^(ab)+$"}"#) }
        let schema = try StreamSchema(text: #"{"pattern": "a*a*a*a*a*a*b"}"#)
        let value = Array(("\"" + String(repeating: "a", count: 200) + "\"").utf8)
        #expect(value.withUnsafeBufferPointer { schema.violation(of: $0) }
                == "/: matching the pattern a*a*a*a*a*a*b gave up after \(SimplePattern.matchStepsMax) steps")
    }

    @Test func dateTimesFollowRFC3339() {
        for valid in ["2024-02-29T23:59:60Z", "2026-12-05t10:17:37.123456-05:30", "1999-01-01T00:00:00+00:00",
                      "1998-12-31T15:59:60.123-08:00", "1999-01-01T00:59:60+01:00"] {
            #expect(Node.isDateTime(valid), "\(valid)")
        }
        for invalid in ["2026-12-05", "2026-13-01T00:00:00Z", "2026-04-31T00:00:00Z", "2026-12-05T24:00:00Z",
                        "2026-12-05T10:17:37", "2026-12-05T10:17:37.Z", "2026-12-05T10:17:37+0100",
                        "1998-12-31T23:59:61Z", "1998-12-31T23:58:60Z", "1998-12-31T22:59:60Z"] {
            #expect(!Node.isDateTime(invalid), "\(invalid)")
        }
    }

    @Test func emailsAreDotAtomsAtADomainOrAnAddressLiteral() {
        for valid in ["ada@example.com", "first.last+tag@sub.example.org", "x@[127.0.0.1]", "x@[IPv6:2001:db8::1]", "a!#$%&'*+-/=?^_`{|}~@b.c"] {
            #expect(Node.isEmail(valid), "\(valid)")
        }
        for invalid in ["ada", "@example.com", "ada@", ".ada@example.com", "a..b@example.com", "a@-example.com",
                        "a@[x y]", "a@[256.1.1.1]", "a@[IPv6:xyz]", "a b@example.com"] {
            #expect(!Node.isEmail(invalid), "\(invalid)")
        }
    }
}
