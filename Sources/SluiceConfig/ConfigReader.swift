import Yams

/// A 1-based line and column in the configuration file; columns count Unicode scalars, as libyaml does.
struct SourcePosition: Hashable, Comparable, Sendable {
    var line: Int
    var column: Int

    static let start = SourcePosition(line: 1, column: 1)

    static func < (lhs: SourcePosition, rhs: SourcePosition) -> Bool {
        (lhs.line, lhs.column) < (rhs.line, rhs.column)
    }
}

/// A problem found inside a scalar's text, `offset` Unicode scalars from its start.
///
/// The small parsers (limits, durations, URLs, ...) know nothing about YAML; the reader turns the offset into
/// a file position when the scalar's text can be found verbatim on one source line.
struct ValueSyntaxError: Error, Sendable {
    var offset: Int
    var message: String

    init(_ message: String, at offset: Int = 0) {
        self.offset = offset
        self.message = message
    }
}

/// The string value of a scalar after `${VAR}` expansion, and where it came from.
struct LocatedText {
    var value: String
    /// The position of the scalar node (the opening quote for a quoted scalar).
    var position: SourcePosition
    /// Where `value`'s first character sits when `value` is a verbatim copy of text on one source line;
    /// `nil` for multi-line scalars, escaped quoted scalars and values changed by `${VAR}` expansion.
    var contentStart: SourcePosition?

    /// The file position of the character `offset` scalars into ``value``, or the scalar's position if the
    /// text cannot be mapped back onto the file.
    func position(atOffset offset: Int) -> SourcePosition {
        guard let start = self.contentStart else { return self.position }
        return SourcePosition(line: start.line, column: start.column + offset)
    }

    /// A piece of this text (for `;`-separated lists) that still maps onto the file.
    func slice(from offset: Int, value: String) -> LocatedText {
        LocatedText(
            value: value,
            position: self.position(atOffset: offset),
            contentStart: self.contentStart.map { SourcePosition(line: $0.line, column: $0.column + offset) }
        )
    }
}

/// One `key: value` pair of a mapping with a fixed set of keys.
struct MappingEntry {
    var key: String
    var keyNode: Node
    var value: Node
}

/// The entries of a fixed-schema mapping, after unknown keys were reported.
///
/// Entries whose value is YAML null (`key:` with nothing after it, `~`, `null`) are left out, so they mean the
/// same as an absent key and take the default.
struct MappingFields {
    var node: Node
    var entries: [MappingEntry]

    subscript(key: String) -> MappingEntry? {
        self.entries.first { $0.key == key }
    }
}

/// Walks a composed YAML tree, turning it into the configuration model and collecting every error it finds.
///
/// Yams `Node`s are not `Sendable`; they live only inside one `ConfigLoader.parse` call and none is stored in
/// the model. Each `read…` method reports its own errors and returns `nil` (or a default) for a bad value, so the
/// walk goes on and the user sees every problem of the file at once.
final class ConfigReader {
    let file: String
    let environment: [String: String]
    /// The source split into lines of Unicode scalars, to map offsets inside scalars to columns.
    private let sourceLines: [[Unicode.Scalar]]
    private(set) var errors: [ConfigError] = []
    /// Things `sluice check` says without refusing the file, in the order found.
    private(set) var warnings: [ConfigError] = []
    /// Where a `jwt:` key part or `match.jwt` is written: errors if the file has no `jwt:` section.
    var jwtUses: [SourcePosition] = []

    init(file: String, yaml: String, environment: [String: String]) {
        self.file = file
        self.environment = environment
        self.sourceLines = yaml.split(separator: "\n", omittingEmptySubsequences: false).map { line in
            var scalars = Array(line.unicodeScalars)
            if scalars.last == "\r" { scalars.removeLast() }
            return scalars
        }
    }

    // MARK: Errors

    func error(_ message: String, at position: SourcePosition) {
        let error = ConfigError(file: self.file, line: position.line, column: position.column, message: message)
        // The same node can be reached twice (aliases); one report is enough.
        if !self.errors.contains(error) { self.errors.append(error) }
    }

    func error(_ message: String, at node: Node) {
        self.error(message, at: self.position(of: node))
    }

    /// Records a warning: printed by `sluice check` as `FILE:LINE:COLUMN: warning: message`; the file stays valid.
    func warning(_ message: String, at node: Node) {
        let position = self.position(of: node)
        self.warnings.append(
            ConfigError(file: self.file, line: position.line, column: position.column, message: "warning: " + message)
        )
    }

    /// Errors in file order; `sort` is not stable, so ties keep the order they were found in through the index.
    var sortedErrors: [ConfigError] {
        self.errors.enumerated().sorted { a, b in
            (a.element.line, a.element.column, a.offset) < (b.element.line, b.element.column, b.offset)
        }.map(\.element)
    }

    // MARK: Positions

    func position(of node: Node) -> SourcePosition {
        guard let mark = node.mark else { return .start }
        return SourcePosition(line: mark.line, column: mark.column)
    }

    /// Where the text of a one-line scalar starts, if the file holds `raw` verbatim there.
    func contentStart(of scalar: Node.Scalar, raw: String) -> SourcePosition? {
        guard let mark = scalar.mark, !raw.contains("\n"), mark.line - 1 < self.sourceLines.count else { return nil }
        let skip: Int
        switch scalar.style {
        case .plain: skip = 0
        case .singleQuoted, .doubleQuoted: skip = 1
        default: return nil
        }
        let line = self.sourceLines[mark.line - 1]
        let scalars = Array(raw.unicodeScalars)
        let start = mark.column - 1 + skip
        guard start >= 0, start + scalars.count <= line.count, Array(line[start..<(start + scalars.count)]) == scalars
        else { return nil }
        return SourcePosition(line: mark.line, column: mark.column + skip)
    }

    // MARK: Mappings

    /// Reads a mapping whose keys must come from `allowed`; unknown keys are reported at the key.
    func fields(_ node: Node, _ name: String, allowed: [String]) -> MappingFields? {
        guard case .mapping(let mapping) = node else {
            self.error("\(name): expected a mapping, got \(Self.describe(node))", at: node)
            return nil
        }
        var entries: [MappingEntry] = []
        for (keyNode, value) in mapping {
            guard case .scalar(let keyScalar) = keyNode else {
                self.error("\(name): keys must be plain strings, got \(Self.describe(keyNode))", at: keyNode)
                continue
            }
            let key = keyScalar.string
            guard allowed.contains(key) else {
                var message = "unknown key '\(key)'"
                if let suggestion = Self.closestMatch(to: key, in: allowed) {
                    message += " (did you mean '\(suggestion)'?)"
                }
                self.error(message, at: keyNode)
                continue
            }
            if Self.isNull(value) { continue }
            entries.append(MappingEntry(key: key, keyNode: keyNode, value: value))
        }
        return MappingFields(node: node, entries: entries)
    }

    /// The pairs of a free-form mapping (headers, tier values) with scalar keys.
    func pairs(_ node: Node, _ name: String) -> [(key: LocatedText, value: Node)]? {
        guard case .mapping(let mapping) = node else {
            self.error("\(name): expected a mapping, got \(Self.describe(node))", at: node)
            return nil
        }
        var result: [(key: LocatedText, value: Node)] = []
        for (keyNode, value) in mapping {
            guard case .scalar(let keyScalar) = keyNode else {
                self.error("\(name): keys must be plain strings, got \(Self.describe(keyNode))", at: keyNode)
                continue
            }
            let key = LocatedText(
                value: keyScalar.string,
                position: self.position(of: keyNode),
                contentStart: self.contentStart(of: keyScalar, raw: keyScalar.string)
            )
            result.append((key, value))
        }
        return result
    }

    // MARK: Describing nodes

    static func isNull(_ node: Node) -> Bool {
        guard case .scalar(let scalar) = node, scalar.style == .plain else { return false }
        return ["", "~", "null", "Null", "NULL"].contains(scalar.string)
    }

    /// How an unexpected node is named in an error: `'abc'`, `null`, `a list` or `a mapping`.
    static func describe(_ node: Node) -> String {
        switch node {
        case .scalar(let scalar): Self.isNull(node) ? "null" : "'\(scalar.string)'"
        case .mapping: "a mapping"
        case .sequence: "a list"
        case .alias: "an alias"
        }
    }

    /// The allowed word within a small edit distance of a misspelt one, for "did you mean" hints.
    static func closestMatch(to word: String, in candidates: [String]) -> String? {
        let limit = word.count <= 4 ? 1 : 2
        var best: (String, Int)?
        for candidate in candidates {
            let distance = Self.editDistance(word.lowercased(), candidate)
            if distance <= limit, distance < (best?.1 ?? .max) { best = (candidate, distance) }
        }
        return best?.0
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a.unicodeScalars)
        let b = Array(b.unicodeScalars)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                let substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)
                current[j] = min(previous[j] + 1, current[j - 1] + 1, substitution)
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }
}
