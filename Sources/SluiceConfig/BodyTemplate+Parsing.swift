extension BodyTemplate {
    /// Parses a blocked-response body (SPEC §2 `response.body`, §5).
    ///
    /// `{identifier}` is a placeholder and must be `{rule}`, `{retry_after}` or `{limit}`; any other one is an
    /// error, `{key}` above all because keys may hold secrets such as API keys. A `{` that does not open
    /// `{identifier}` is literal text, so JSON bodies like `{"error":"{rule}"}` need no escaping.
    static func parse(_ text: String) -> Result<BodyTemplate, ValueSyntaxError> {
        let scalars = Array(text.unicodeScalars)
        var parts: [Part] = []
        var literal = String.UnicodeScalarView()
        var i = 0
        func isIdentifierStart(_ c: Unicode.Scalar) -> Bool { c == "_" || (c.isASCII && c.properties.isAlphabetic) }
        func isIdentifier(_ c: Unicode.Scalar) -> Bool { isIdentifierStart(c) || c.asciiDigit != nil }
        while i < scalars.count {
            let c = scalars[i]
            guard c == "{", i + 1 < scalars.count, isIdentifierStart(scalars[i + 1]) else {
                literal.append(c)
                i += 1
                continue
            }
            var j = i + 1
            while j < scalars.count, isIdentifier(scalars[j]) { j += 1 }
            guard j < scalars.count, scalars[j] == "}" else {
                literal.append(c)
                i += 1
                continue
            }
            let name = String(String.UnicodeScalarView(scalars[(i + 1)..<j]))
            let part: Part
            switch name {
            case "rule": part = .rule
            case "retry_after": part = .retryAfter
            case "limit": part = .limit
            case "key":
                return .failure(ValueSyntaxError("unknown placeholder {key} (keys may hold secrets)", at: i))
            default:
                return .failure(
                    ValueSyntaxError("unknown placeholder {\(name)} (expected {rule}, {retry_after} or {limit})", at: i)
                )
            }
            if !literal.isEmpty {
                parts.append(.literal(String(literal)))
                literal = String.UnicodeScalarView()
            }
            parts.append(part)
            i = j + 1
        }
        if !literal.isEmpty { parts.append(.literal(String(literal))) }
        return .success(BodyTemplate(parts: parts, source: text))
    }
}
