/// `${VAR}` and `${VAR:-default}` substitution in string values (SPEC §2), done before a value is interpreted.
///
/// - `${VAR}` is replaced by the variable's value; an unset `VAR` is an error at the `${`.
/// - `${VAR:-default}` uses `default` when `VAR` is unset or empty, as in POSIX shells and docker-compose.
/// - `$$` and a `$` not followed by `{` are left as they are (`$$` is not turned into `$`), and the text after
///   `$$` is not expanded, so `$${VAR}` stays literal.
/// - `${` without a closing `}` or with a name that is not `[A-Za-z_][A-Za-z0-9_]*` is an error rather than
///   literal text: it is far more likely a mistake than a wanted `${`.
enum EnvironmentExpansion {
    enum Outcome {
        case expanded(String)
        /// Every problem found, with its offset (in Unicode scalars) into the text.
        case failed([ValueSyntaxError])
    }

    static func expand(_ text: String, environment: [String: String]) -> Outcome {
        let scalars = Array(text.unicodeScalars)
        guard scalars.contains("$") else { return .expanded(text) }
        var output = String.UnicodeScalarView()
        var problems: [ValueSyntaxError] = []
        var i = 0
        while i < scalars.count {
            let c = scalars[i]
            guard c == "$", i + 1 < scalars.count, scalars[i + 1] == "{" || scalars[i + 1] == "$" else {
                output.append(c)
                i += 1
                continue
            }
            if scalars[i + 1] == "$" {
                output.append(contentsOf: ["$", "$"])
                i += 2
                continue
            }
            guard let close = scalars[(i + 2)...].firstIndex(of: "}") else {
                problems.append(ValueSyntaxError("unterminated '${' (expected ${VAR} or ${VAR:-default})", at: i))
                break
            }
            let inner = String(String.UnicodeScalarView(scalars[(i + 2)..<close]))
            let name: String
            let fallback: String?
            if let range = inner.range(of: ":-") {
                name = String(inner[..<range.lowerBound])
                fallback = String(inner[range.upperBound...])
            } else {
                name = inner
                fallback = nil
            }
            if !Self.isValidName(name) {
                problems.append(ValueSyntaxError("invalid environment variable name '\(name)' in '${\(inner)}'", at: i))
            } else if let value = environment[name], !(value.isEmpty && fallback != nil) {
                output.append(contentsOf: value.unicodeScalars)
            } else if let fallback {
                output.append(contentsOf: fallback.unicodeScalars)
            } else {
                problems.append(ValueSyntaxError("environment variable '\(name)' is not set", at: i))
            }
            i = close + 1
        }
        return problems.isEmpty ? .expanded(String(output)) : .failed(problems)
    }

    static func isValidName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, first == "_" || (first.isASCII && first.properties.isAlphabetic)
        else { return false }
        return name.unicodeScalars.allSatisfy { $0 == "_" || ($0.isASCII && $0.properties.isAlphabetic) || ("0"..."9").contains($0) }
    }
}
