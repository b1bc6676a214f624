extension KeyPart {
    /// Parses a key part (SPEC §2 "Keys"): `ip`, `ip/N` (1 ≤ N ≤ 128), `header:NAME`, `query:NAME`,
    /// `cookie:NAME`, `path`, `method`, `host`, `const:TEXT`, `jwt:CLAIM` or `descriptor:KEY` (issue 14).
    ///
    /// The kind is case-insensitive; header names are lower-cased (HTTP header names are), query and cookie
    /// names and constants are kept as written.
    static func parse(_ text: String) -> Result<KeyPart, ValueSyntaxError> {
        let lowered = text.lowercased()
        switch lowered {
        case "ip": return .success(.ip)
        case "path": return .success(.path)
        case "method": return .success(.method)
        case "host": return .success(.host)
        default: break
        }
        if lowered.hasPrefix("ip/") {
            let bits = lowered.dropFirst(3)
            guard bits.allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int(bits), (1...128).contains(n) else {
                return .failure(ValueSyntaxError("key part 'ip/N' needs 1 ≤ N ≤ 128, got '\(text)'", at: 3))
            }
            return .success(.ipPrefix(n))
        }
        guard let colon = text.firstIndex(of: ":") else {
            return .failure(Self.unknown(text))
        }
        let kind = text[..<colon].lowercased()
        let argument = String(text[text.index(after: colon)...])
        let argumentOffset = text.unicodeScalars.distance(from: text.unicodeScalars.startIndex, to: colon) + 1
        switch kind {
        case "jwt":
            guard let path = JWTClaimPath.parse(argument) else {
                return .failure(
                    ValueSyntaxError("key part 'jwt:' needs a claim name, dotted for nested claims (jwt:org.id)", at: argumentOffset)
                )
            }
            return .success(.jwt(path))
        case "descriptor":
            guard !argument.isEmpty else {
                return .failure(ValueSyntaxError("key part 'descriptor:' needs a descriptor entry key after the colon", at: argumentOffset))
            }
            return .success(.descriptor(argument))
        case "header", "query", "cookie", "const":
            guard !argument.isEmpty else {
                return .failure(ValueSyntaxError("key part '\(kind):' needs a name after the colon", at: argumentOffset))
            }
            if kind == "header", !HTTPToken.isValid(argument) {
                return .failure(ValueSyntaxError("invalid header name '\(argument)'", at: argumentOffset))
            }
            switch kind {
            case "header": return .success(.header(argument.lowercased()))
            case "query": return .success(.query(argument))
            case "cookie": return .success(.cookie(argument))
            default: return .success(.const(argument))
            }
        default:
            return .failure(Self.unknown(text))
        }
    }

    private static func unknown(_ text: String) -> ValueSyntaxError {
        ValueSyntaxError(
            "unknown key part '\(text)' (expected ip, ip/N, header:NAME, query:NAME, cookie:NAME, path, method, host, const:TEXT, jwt:CLAIM or descriptor:KEY)"
        )
    }
}

/// RFC 9110 tokens: header names and methods.
enum HTTPToken {
    static func isValid(_ text: String) -> Bool {
        !text.isEmpty
            && text.unicodeScalars.allSatisfy { c in
                c.isASCII && (c.properties.isAlphabetic || c.asciiDigit != nil || "!#$%&'*+-.^_`|~".unicodeScalars.contains(c))
            }
    }
}

/// A claim path of `jwt:CLAIM` and `match.jwt`: names separated by `.`, none empty (`org.id`).
enum JWTClaimPath {
    static func parse(_ text: String) -> String? {
        let trimmed = text.trimmingSpaces
        guard !trimmed.isEmpty, !trimmed.split(separator: ".", omittingEmptySubsequences: false).contains(where: \.isEmpty)
        else { return nil }
        return trimmed
    }
}
