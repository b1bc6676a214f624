import Foundation

extension PathPattern {
    /// Parses a `match.path` value (SPEC §2 "Paths").
    ///
    /// - `/login` is ``exact(_:)``.
    /// - A trailing `/*` is ``prefix(_:)`` without the `/*`: `/api/*` → `.prefix("/api")`, `/*` → `.prefix("")`.
    /// - `*` as a whole segment elsewhere is ``glob(_:)``: the segments after the leading `/`, `nil` for `*`, so
    ///   `/users/*/orders` → `.glob(["users", nil, "orders"])` and `/a/*/` → `.glob(["a", nil, ""])`.
    /// - `~regex` is ``regex(_:)`` without the `~`, checked to compile with `NSRegularExpression`, and at most
    ///   ``maximumRegexLength`` UTF-16 units long.
    ///
    /// Refused: `*` inside a segment (`/a*b`), `*` segments together with a trailing `/*`, a query string, and
    /// `//`, `.` or `..` segments, which can never match because request paths are normalised first.
    /// The longest `~regex` (UTF-16 units). Foundation on Linux leaks a copy of every longer pattern it compiles
    /// (`_CFRegularExpressionCreate` keeps a heap buffer for patterns over 256 units and never frees it), so each
    /// reload of a config with a longer one would leak; found by the `syntax` fuzz target (docs/fuzzing.md).
    public static let maximumRegexLength = 256

    static func parse(_ text: String) -> Result<PathPattern, ValueSyntaxError> {
        if text.hasPrefix("~") {
            let pattern = String(text.dropFirst())
            guard !pattern.isEmpty else { return .failure(ValueSyntaxError("empty regular expression after '~'")) }
            guard pattern.utf16.count <= Self.maximumRegexLength else {
                // At the first character past the limit (offsets count Unicode scalars).
                var units = 0
                let within = pattern.unicodeScalars.prefix { scalar in
                    units += scalar.utf16.count
                    return units <= Self.maximumRegexLength
                }
                return .failure(
                    ValueSyntaxError("regular expression longer than \(Self.maximumRegexLength) characters", at: 1 + within.count)
                )
            }
            do {
                _ = try NSRegularExpression(pattern: pattern)
            } catch {
                return .failure(ValueSyntaxError("invalid regular expression '\(pattern)'", at: 1))
            }
            return .success(.regex(pattern))
        }
        guard text.hasPrefix("/") else {
            return .failure(ValueSyntaxError("path must start with '/' (or '~' for a regular expression)"))
        }
        if let index = text.unicodeScalars.firstIndex(where: { $0 == "?" || $0 == "#" }) {
            let offset = text.unicodeScalars.distance(from: text.unicodeScalars.startIndex, to: index)
            return .failure(ValueSyntaxError("path must not contain a query string or fragment", at: offset))
        }
        if text == "/*" { return .success(.prefix("")) }
        var body = text
        var isPrefix = false
        if text.hasSuffix("/*") {
            body = String(text.dropLast(2))
            isPrefix = true
        }
        // Segments after the leading "/", each with its offset in `text`.
        var segments: [(text: String, offset: Int)] = []
        var offset = 1
        for piece in body.unicodeScalars.split(separator: "/", omittingEmptySubsequences: false).dropFirst() {
            segments.append((String(String.UnicodeScalarView(piece)), offset))
            offset += piece.count + 1
        }
        for (index, segment) in segments.enumerated() {
            let isLast = index == segments.count - 1
            if (segment.text.isEmpty && !isLast) || segment.text == "." || segment.text == ".." {
                return .failure(
                    ValueSyntaxError(
                        "path '\(text)' can never match: request paths are normalised ('//', '.' and '..' resolved)",
                        at: segment.offset
                    )
                )
            }
            if segment.text.contains("*") && segment.text != "*" {
                let star = segment.text.unicodeScalars.firstIndex(of: "*")!
                let inner = segment.text.unicodeScalars.distance(from: segment.text.unicodeScalars.startIndex, to: star)
                return .failure(
                    ValueSyntaxError(
                        "'*' must be a whole path segment (as in /users/*/orders); use '~' and a regular expression",
                        at: segment.offset + inner
                    )
                )
            }
        }
        let hasWildcard = segments.contains { $0.text == "*" }
        if hasWildcard && isPrefix {
            let star = segments.first { $0.text == "*" }!
            return .failure(
                ValueSyntaxError("'*' segments cannot be combined with a trailing '/*'; use '~' and a regular expression", at: star.offset)
            )
        }
        if isPrefix { return .success(.prefix(body)) }
        if hasWildcard { return .success(.glob(segments.map { $0.text == "*" ? nil : $0.text })) }
        return .success(.exact(text))
    }
}
