@testable import EventFlowStorage
import Testing

/// EventFlow's matcher for simple `pattern`s must answer exactly as NSRegularExpression (ICU) does,
/// which runs every other pattern: each pattern below against each input, both ways.
@Suite struct SimplePatternTests {
    static let simplePatterns = [
        "^[0-9A-HJKMNP-TV-Z]+$", "^[a-z]+$", "[a-z]", "^abc$", "abc", "^a.c$", "^\\d{3}-\\d{4}$", "^\\w+@\\w+\\.com$",
        "^[^\\s]+$", "\\s", "^$", "^", "$", "^a*$", "^a+b?c{2,3}$", "x{2,}", "^[A-Z]{2}[0-9]{2,4}$", "^\\+?[0-9 ]{7,15}$",
        "^[\\w.-]+$", "^\\.\\*\\$$", "é+", "^[à-ÿ]+$", "^\\D+$", "^\\W*$", "^\\S+$", "^a.*z$", "^[a\\-z]$", "^.{3}$",
        "^[-a]$", "^[a-]$", "^[^-a]$", "a\\$", "^\\t\\n$", "^[\\d\\s]+$", "a{0}", "^a{2}$", "^[.]$",
    ]
    static let inputs = [
        "", "a", "abc", "ABC", "abc\n", "abc\r\n", "a\nc", "abz", "01HZX3K9M2QW7E5R8T6Y4V1A0P", "01HZX3K9M2QW7E5R8T6Y4U1A0P",
        "555-1234", "5555-1234", "ada@example.com", "ada@example.org", "x y", "xy", "aaa", "aabccc", "abcc", "xxx",
        "AB12", "AB12345", "+49 30 123456", "a.b-c_d", ".*$", "été", "ÿà", "١٢٣", "a-z", "-", "a$", "\t\n", "1 2",
        "a z", "abcdz", "résumé", "日本語", "-a", "aa", ".",
    ]

    @Test(arguments: simplePatterns)
    func simplePatternsMatchAsNSRegularExpressionDoes(pattern: String) throws {
        let compiled = try Pattern(pattern)
        #expect(compiled.isSimple, "\(pattern) should run on EventFlow's matcher")
        for input in Self.inputs {
            #expect(compiled.matches(input) == compiled.regexMatches(input), "\(pattern) against \(input.debugDescription)")
        }
    }

    @Test(arguments: ["^(ab)+$", "a|b", "^a*?$", "\\bword\\b", "\\p{L}+", "(?i)abc", "^[[:alpha:]]+$", "[]a]", "a{2}+", "(a)\\1", "[a-b-c]"])
    func otherPatternsAreLeftToNSRegularExpression(pattern: String) throws {
        let compiled = try Pattern(pattern)
        #expect(!compiled.isSimple)
        for input in Self.inputs {
            #expect(compiled.matches(input) == compiled.regexMatches(input))
        }
    }
}
