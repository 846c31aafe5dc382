/// A matcher for the patterns schemas mostly use — anchors, literals, `.`, character classes and
/// quantified single atoms, e.g. `^[A-Z]{3}-[0-9]+$` — that runs over the string's UTF-8 without
/// NSRegularExpression's bridging (≈ 7.7k instructions a match on Linux, BENCHMARKS.md). It follows
/// ICU's meaning of each construct, so a pattern matches the same whichever matcher runs it; a
/// pattern with anything else (groups, alternation, lazy quantifiers, back references, `\b`,
/// `\p{...}`) is nil here and left to NSRegularExpression.
struct SimplePattern: Sendable {
    struct CharacterClass: Sendable {
        var ranges: [ClosedRange<UInt32>] = []
        var digit = false, notDigit = false, word = false, notWord = false, space = false, notSpace = false
        var negated = false

        func contains(_ scalar: Unicode.Scalar) -> Bool {
            let value = scalar.value
            var found = ranges.contains { $0.contains(value) }
            if !found {
                found = (digit && Atom.isDigit(scalar)) || (notDigit && !Atom.isDigit(scalar))
                    || (word && Atom.isWord(scalar)) || (notWord && !Atom.isWord(scalar))
                    || (space && Atom.isSpace(scalar)) || (notSpace && !Atom.isSpace(scalar))
            }
            return found != negated
        }
    }

    enum Atom: Sendable {
        case scalar(Unicode.Scalar)
        case any
        case set(CharacterClass)

        func matches(_ scalar: Unicode.Scalar) -> Bool {
            switch self {
            case .scalar(let expected): return scalar == expected
            case .any: return !Self.isLineTerminator(scalar)
            case .set(let set): return set.contains(scalar)
            }
        }

        // ICU's classes: \d is any decimal digit, \w letters, marks, digits and connector
        // punctuation, \s tab, newline, form feed, carriage return and Unicode separators.
        static func isDigit(_ scalar: Unicode.Scalar) -> Bool {
            scalar.isASCII ? (0x30...0x39).contains(scalar.value) : scalar.properties.generalCategory == .decimalNumber
        }

        static func isWord(_ scalar: Unicode.Scalar) -> Bool {
            if scalar.isASCII {
                let value = scalar.value
                return (0x30...0x39).contains(value) || (0x41...0x5A).contains(value) || (0x61...0x7A).contains(value) || value == 0x5F
            }
            let properties = scalar.properties
            switch properties.generalCategory {
            case .decimalNumber, .nonspacingMark, .spacingMark, .enclosingMark, .connectorPunctuation: return true
            default: return properties.isAlphabetic || properties.isJoinControl
            }
        }

        static func isSpace(_ scalar: Unicode.Scalar) -> Bool {
            switch scalar.value {
            case 0x09, 0x0A, 0x0C, 0x0D: return true
            default:
                switch scalar.properties.generalCategory {
                case .spaceSeparator, .lineSeparator, .paragraphSeparator: return true
                default: return false
                }
            }
        }

        static func isLineTerminator(_ scalar: Unicode.Scalar) -> Bool {
            [0x0A, 0x0B, 0x0C, 0x0D, 0x85, 0x2028, 0x2029].contains(scalar.value)
        }
    }

    struct Item: Sendable {
        var atom: Atom
        var minimum: Int
        var maximum: Int  // Int.max: unbounded
    }

    let anchoredStart: Bool
    let anchoredEnd: Bool
    let items: [Item]

    /// nil when the pattern uses anything this matcher leaves to NSRegularExpression.
    init?(_ pattern: String) {
        var scalars = Array(pattern.unicodeScalars)
        anchoredStart = scalars.first == "^"
        if anchoredStart { scalars.removeFirst() }
        // A final `$` that is not itself escaped (an odd number of backslashes before it would escape it).
        var backslashes = 0
        if scalars.last == "$" {
            var index = scalars.count - 2
            while index >= 0, scalars[index] == "\\" { backslashes += 1; index -= 1 }
        }
        anchoredEnd = scalars.last == "$" && backslashes % 2 == 0
        if anchoredEnd { scalars.removeLast() }

        var items: [Item] = []
        var index = 0
        while index < scalars.count {
            let scalar = scalars[index]
            index += 1
            let atom: Atom
            switch scalar {
            case "\\":
                guard index < scalars.count, let escaped = Self.escape(scalars[index]) else { return nil }
                index += 1
                atom = escaped
            case "[":
                guard let (set, next) = Self.characterClass(scalars, from: index) else { return nil }
                index = next
                atom = .set(set)
            case ".":
                atom = .any
            case "^", "$", "|", "(", ")", "?", "*", "+", "{", "}", "]":
                return nil
            default:
                atom = .scalar(scalar)
            }
            var item = Item(atom: atom, minimum: 1, maximum: 1)
            if index < scalars.count {
                switch scalars[index] {
                case "*": (item.minimum, item.maximum) = (0, .max); index += 1
                case "+": (item.minimum, item.maximum) = (1, .max); index += 1
                case "?": (item.minimum, item.maximum) = (0, 1); index += 1
                case "{":
                    guard let (minimum, maximum, next) = Self.bounds(scalars, from: index + 1) else { return nil }
                    (item.minimum, item.maximum) = (minimum, maximum)
                    index = next
                default: break
                }
                // Lazy (`*?`) and possessive (`*+`) forms, or a quantifier on a quantifier: not here.
                if item.minimum != 1 || item.maximum != 1, index < scalars.count,
                   ["?", "+", "*", "{"].contains(scalars[index]) { return nil }
            }
            items.append(item)
        }
        self.items = items
    }

    /// `\d \D \w \W \s \S`, control escapes, and an escaped punctuation character standing for itself.
    static func escape(_ scalar: Unicode.Scalar) -> Atom? {
        var set = CharacterClass()
        switch scalar {
        case "d": set.digit = true
        case "D": set.notDigit = true
        case "w": set.word = true
        case "W": set.notWord = true
        case "s": set.space = true
        case "S": set.notSpace = true
        case "t": return .scalar("\t")
        case "n": return .scalar("\n")
        case "r": return .scalar("\r")
        case "f": return .scalar("\u{0C}")
        default:
            // Letters and digits after a backslash are other escapes (\b, \p, \1, \u...): not here.
            guard scalar.isASCII, !scalar.properties.isAlphabetic, !(0x30...0x39).contains(scalar.value) else { return nil }
            return .scalar(scalar)
        }
        return .set(set)
    }

    /// A `[...]` class starting after its `[`: its members and the index after its `]`.
    static func characterClass(_ scalars: [Unicode.Scalar], from start: Int) -> (CharacterClass, Int)? {
        var set = CharacterClass()
        var index = start
        if index < scalars.count, scalars[index] == "^" {
            set.negated = true
            index += 1
        }
        var first = true
        while index < scalars.count {
            var scalar = scalars[index]
            if scalar == "]" { return first ? nil : (set, index + 1) }
            first = false
            // ICU gives `[`, `&` and `-` at odd places meanings of their own (nested sets, intersections).
            if scalar == "[" || scalar == "&" { return nil }
            index += 1
            if scalar == "\\" {
                guard index < scalars.count, let escaped = escape(scalars[index]) else { return nil }
                index += 1
                switch escaped {
                case .set(let inner):
                    set.digit = set.digit || inner.digit
                    set.notDigit = set.notDigit || inner.notDigit
                    set.word = set.word || inner.word
                    set.notWord = set.notWord || inner.notWord
                    set.space = set.space || inner.space
                    set.notSpace = set.notSpace || inner.notSpace
                    continue
                case .scalar(let literal): scalar = literal
                case .any: return nil
                }
            } else if scalar == "-" {
                // A `-` is itself only first in the class or last before its `]`.
                let last = index < scalars.count && scalars[index] == "]"
                guard index - 1 == start + (set.negated ? 1 : 0) || last else { return nil }
            }
            if index + 1 < scalars.count, scalars[index] == "-", scalars[index + 1] != "]" {
                var upper = scalars[index + 1]
                index += 2
                if upper == "\\" {
                    guard index < scalars.count, case .scalar(let literal)? = escape(scalars[index]) else { return nil }
                    upper = literal
                    index += 1
                } else if upper == "[" || upper == "-" {
                    return nil
                }
                guard scalar.value <= upper.value else { return nil }
                set.ranges.append(scalar.value...upper.value)
            } else {
                set.ranges.append(scalar.value...scalar.value)
            }
        }
        return nil
    }

    /// `{n}`, `{n,}` or `{n,m}` after its `{`: the bounds and the index after its `}`.
    static func bounds(_ scalars: [Unicode.Scalar], from start: Int) -> (Int, Int, Int)? {
        guard let close = scalars[start...].firstIndex(of: "}") else { return nil }
        let text = String(String.UnicodeScalarView(scalars[start..<close]))
        let parts = text.split(separator: ",", omittingEmptySubsequences: false)
        guard parts.count <= 2, let minimum = Int(parts[0]), minimum <= 100_000 else { return nil }
        var maximum = minimum
        if parts.count == 2 {
            if parts[1].isEmpty {
                maximum = .max
            } else {
                guard let value = Int(parts[1]), value >= minimum, value <= 100_000 else { return nil }
                maximum = value
            }
        }
        return (minimum, maximum, close + 1)
    }

    /// Bound on the positions one match may try: several unbounded items (`a*a*a*b`) backtrack in
    /// time polynomial in the string's length, and this runs on the event loop.
    static let matchStepsMax = 1_000_000

    /// Whether the pattern matches somewhere in `text`; nil when it gave up after `matchStepsMax`.
    func matches(_ text: String) -> Bool? {
        let scalars = Array(text.unicodeScalars)
        var steps = 0
        if anchoredStart {
            let found = match(scalars, item: 0, at: 0, steps: &steps)
            return steps > Self.matchStepsMax ? nil : found
        }
        for start in 0...scalars.count {
            if match(scalars, item: 0, at: start, steps: &steps) { return steps > Self.matchStepsMax ? nil : true }
            if steps > Self.matchStepsMax { return nil }
        }
        return false
    }

    /// Whether items from `item` on match `scalars` from `position` (greedy, backtracking).
    private func match(_ scalars: [Unicode.Scalar], item: Int, at position: Int, steps: inout Int) -> Bool {
        steps += 1
        guard steps <= Self.matchStepsMax else { return false }
        guard item < items.count else {
            guard anchoredEnd else { return true }
            // ICU's `$` also matches before a line terminator that ends the input.
            let rest = scalars.count - position
            if rest == 0 { return true }
            if rest == 2 { return scalars[position] == "\r" && scalars[position + 1] == "\n" }
            return rest == 1 && Atom.isLineTerminator(scalars[position]) && scalars[position].value != 0x0B && scalars[position].value != 0x0C
        }
        let current = items[item]
        var count = 0
        while count < current.maximum, position + count < scalars.count, current.atom.matches(scalars[position + count]) {
            count += 1
        }
        guard count >= current.minimum else { return false }
        if item + 1 == items.count && !anchoredEnd { return true }
        while count >= current.minimum {
            if match(scalars, item: item + 1, at: position + count, steps: &steps) { return true }
            if steps > Self.matchStepsMax { return false }
            count -= 1
        }
        return false
    }
}
