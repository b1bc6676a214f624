import Foundation
import Yams

/// Readers for single values: strings, numbers, booleans, durations, enumerations and lists of strings.
///
/// Every scalar goes through ``text(_:_:)`` first, so `${VAR}` expansion happens before a value is interpreted
/// (`port: ${PORT:-8080}` is an integer). Types are read from the text, not from the YAML tag: `"5"` is accepted
/// where an integer is expected and `5` where a string is, because an expanded variable always arrives as text.
extension ConfigReader {
    /// The text of a scalar after `${VAR}` expansion; errors for lists, mappings, null and unset variables.
    func text(_ node: Node, _ name: String) -> LocatedText? {
        guard case .scalar(let scalar) = node, !Self.isNull(node) else {
            self.error("\(name): expected a string, got \(Self.describe(node))", at: node)
            return nil
        }
        let raw = scalar.string
        let located = LocatedText(
            value: raw,
            position: self.position(of: node),
            contentStart: self.contentStart(of: scalar, raw: raw)
        )
        switch EnvironmentExpansion.expand(raw, environment: self.environment) {
        case .expanded(let expanded):
            guard expanded != raw else { return located }
            // Offsets into the expanded text no longer match the file: point at the scalar instead.
            return LocatedText(value: expanded, position: located.position, contentStart: nil)
        case .failed(let problems):
            for problem in problems {
                self.error(problem.message, at: located.position(atOffset: problem.offset))
            }
            return nil
        }
    }

    /// Reports a parser's complaint about `text` at the character it points to.
    func error(_ problem: ValueSyntaxError, in text: LocatedText) {
        self.error(problem.message, at: text.position(atOffset: problem.offset))
    }

    func string(_ node: Node, _ name: String) -> String? {
        self.text(node, name)?.value
    }

    /// A string that must not be empty (file paths, content types).
    func nonEmptyString(_ node: Node, _ name: String) -> String? {
        guard let text = self.text(node, name) else { return nil }
        guard !text.value.isEmpty else {
            self.error("\(name): must not be empty", at: text.position)
            return nil
        }
        return text.value
    }

    /// The path of a file Sluice reads when it starts or reloads (TLS certificates, keys, CAs); a file that is
    /// missing or unreadable is reported here, with its position, so `sluice check` catches it too.
    func readableFile(_ node: Node, _ name: String) -> String? {
        guard let path = self.nonEmptyString(node, name) else { return nil }
        if let problem = ConfigFile.problem(reading: path) {
            self.error("\(name): cannot read '\(path)': \(problem)", at: node)
            return nil
        }
        return path
    }

    /// An integer in `range`; YAML 1.1 digit separators (`1_000_000`) are accepted.
    func integer(_ node: Node, _ name: String, in range: ClosedRange<Int> = Int.min...Int.max) -> Int? {
        guard let text = self.text(node, name) else { return nil }
        let digits = text.value.trimmingSpaces.replacingOccurrences(of: "_", with: "")
        guard let value = Int(digits) else {
            self.error("\(name): expected an integer, got '\(text.value)'", at: text.position)
            return nil
        }
        guard range.contains(value) else {
            let bound: String
            // "at least" only for a value below the range: one above a large bound (2^31-1) is told the range.
            if value < range.lowerBound && range.upperBound >= Int(Int32.max) {
                bound = "at least \(range.lowerBound)"
            } else if value > range.upperBound && range.lowerBound == Int.min {
                bound = "at most \(range.upperBound)"
            } else {
                bound = "between \(range.lowerBound) and \(range.upperBound)"
            }
            self.error("\(name): must be \(bound), got \(value)", at: text.position)
            return nil
        }
        return value
    }

    /// `true`/`false`, and the YAML 1.1 spellings `yes`/`no`/`on`/`off` in any case.
    func boolean(_ node: Node, _ name: String) -> Bool? {
        guard let text = self.text(node, name) else { return nil }
        switch text.value.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default:
            self.error("\(name): expected true or false, got '\(text.value)'", at: text.position)
            return nil
        }
    }

    /// A duration such as `250ms`, `2s` or `1m30s`; zero only if `allowZero`.
    func duration(_ node: Node, _ name: String, allowZero: Bool) -> Duration? {
        guard let text = self.text(node, name) else { return nil }
        switch DurationSyntax.parse(text.value) {
        case .failure(let problem):
            self.error("\(name): \(problem.message)", at: text.position(atOffset: problem.offset))
            return nil
        case .success(let duration):
            if duration == .zero && !allowZero {
                self.error("\(name): must be greater than 0", at: text.position)
                return nil
            }
            return duration
        }
    }

    /// One of a fixed set of words, compared case-insensitively if `caseInsensitive`.
    func choice<T>(_ node: Node, _ name: String, _ choices: [(String, T)], caseInsensitive: Bool = false) -> T? {
        guard let text = self.text(node, name) else { return nil }
        let value = caseInsensitive ? text.value.lowercased() : text.value
        if let match = choices.first(where: { (caseInsensitive ? $0.0.lowercased() : $0.0) == value }) {
            return match.1
        }
        let words = choices.map(\.0)
        let list = words.count == 1 ? words[0] : words.dropLast().joined(separator: ", ") + " or " + words.last!
        self.error("\(name): expected \(list), got '\(text.value)'", at: text.position)
        return nil
    }

    /// A list of scalars, or one scalar standing for a list of one (`listen: ":8080"`, `methods: POST`).
    func textList(_ node: Node, _ name: String) -> [LocatedText]? {
        switch node {
        case .scalar:
            return self.text(node, name).map { [$0] }
        case .sequence(let sequence):
            return sequence.compactMap { self.text($0, name) }
        default:
            self.error("\(name): expected a string or a list of strings, got \(Self.describe(node))", at: node)
            return nil
        }
    }
}

extension String {
    /// The string without leading and trailing spaces and tabs.
    var trimmingSpaces: String {
        var scalars = Substring(self).unicodeScalars[...]
        while let first = scalars.first, first == " " || first == "\t" { scalars.removeFirst() }
        while let last = scalars.last, last == " " || last == "\t" { scalars.removeLast() }
        return String(String.UnicodeScalarView(scalars))
    }
}
