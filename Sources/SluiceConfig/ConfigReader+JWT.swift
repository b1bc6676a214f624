import Yams

/// The `jwt:` section (issue 15). The key files are only found here; the verifier (`SluiceJWT`) parses them, at start,
/// on reload and in `sluice check`, and reports a bad one at the position kept in the model.
extension ConfigReader {
    func readJWT(_ node: Node) -> JWTConfiguration? {
        let allowed = ["token", "hs256_secret", "keys", "jwks_file", "issuer", "audience", "clock_skew", "cache_size"]
        guard let fields = self.fields(node, "jwt", allowed: allowed) else { return nil }
        var jwt = JWTConfiguration()
        if let entry = fields["token"], let text = self.text(entry.value, "token") {
            if let source = Self.tokenSource(text.value.trimmingSpaces) {
                jwt.token = source
            } else {
                self.error(
                    "token: expected bearer, header:NAME, cookie:NAME or query:NAME, got '\(text.value)'",
                    at: text.position
                )
            }
        }
        if let entry = fields["hs256_secret"], let text = self.text(entry.value, "hs256_secret") {
            // jwt-kit (and RFC 7518 §3.2) want an HS256 key at least as long as the hash: 32 bytes.
            if text.value.utf8.count < 32 {
                self.error("hs256_secret: must be at least 32 bytes (RFC 7518 §3.2), got \(text.value.utf8.count)", at: text.position)
            } else {
                jwt.hs256Secret = text.value
                jwt.hs256SecretPosition = Self.jwtPosition(text.position)
            }
        }
        if let entry = fields["keys"] {
            if case .sequence(let sequence) = entry.value {
                for item in sequence {
                    if let key = self.readJWTKey(item) { jwt.keys.append(key) }
                }
            } else {
                self.error("keys: expected a list of { alg, file, kid }, got \(Self.describe(entry.value))", at: entry.value)
            }
        }
        if let entry = fields["jwks_file"], let path = self.readableFile(entry.value, "jwks_file") {
            jwt.jwksFile = path
            jwt.jwksFilePosition = Self.jwtPosition(self.position(of: entry.value))
        }
        if let entry = fields["issuer"], let items = self.textList(entry.value, "issuer") {
            jwt.issuers = items.map(\.value)
        }
        if let entry = fields["audience"], let items = self.textList(entry.value, "audience") {
            jwt.audiences = items.map(\.value)
        }
        if let entry = fields["clock_skew"], let skew = self.duration(entry.value, "clock_skew", allowZero: true) {
            jwt.clockSkew = skew
        }
        if let entry = fields["cache_size"], let size = self.integer(entry.value, "cache_size", in: 0...10_000_000) {
            jwt.cacheSize = size
        }
        if jwt.hs256Secret == nil, jwt.keys.isEmpty, jwt.jwksFile == nil, fields["hs256_secret"] == nil, fields["keys"] == nil {
            self.error("jwt: at least one of hs256_secret, keys or jwks_file is required", at: node)
        }
        return jwt
    }

    private func readJWTKey(_ node: Node) -> JWTConfiguration.KeyFile? {
        guard let fields = self.fields(node, "keys", allowed: ["alg", "file", "kid"]) else { return nil }
        var algorithm: JWTConfiguration.KeyAlgorithm?
        if let entry = fields["alg"], let text = self.text(entry.value, "alg") {
            let wanted = text.value.trimmingSpaces
            if let found = JWTConfiguration.KeyAlgorithm.allCases.first(where: { $0.rawValue.lowercased() == wanted.lowercased() }) {
                algorithm = found
            } else {
                let known = JWTConfiguration.KeyAlgorithm.allCases.map(\.rawValue).joined(separator: ", ")
                let hint = wanted.uppercased().hasPrefix("HS") ? " (an HMAC secret is given as hs256_secret)" : ""
                self.error("alg: unknown algorithm '\(text.value)' (expected \(known))\(hint)", at: text.position)
            }
        } else if fields["alg"] == nil {
            self.error("keys: 'alg' is required", at: node)
        }
        var path: String?
        var position = JWTConfiguration.Position(line: 1, column: 1)
        if let entry = fields["file"] {
            path = self.readableFile(entry.value, "file")
            position = Self.jwtPosition(self.position(of: entry.value))
        } else {
            self.error("keys: 'file' is required (a PEM public key)", at: node)
        }
        var kid: String?
        if let entry = fields["kid"] { kid = self.nonEmptyString(entry.value, "kid") }
        guard let algorithm, let path else { return nil }
        return JWTConfiguration.KeyFile(algorithm: algorithm, path: path, kid: kid, position: position)
    }

    private static func jwtPosition(_ position: SourcePosition) -> JWTConfiguration.Position {
        JWTConfiguration.Position(line: position.line, column: position.column)
    }

    /// `bearer`, `header:NAME`, `cookie:NAME`, `query:NAME`.
    static func tokenSource(_ text: String) -> JWTConfiguration.TokenSource? {
        if text.lowercased() == "bearer" { return .bearer }
        guard let colon = text.firstIndex(of: ":") else { return nil }
        let name = String(text[text.index(after: colon)...]).trimmingSpaces
        guard !name.isEmpty else { return nil }
        switch text[..<colon].lowercased() {
        case "header": return HTTPToken.isValid(name) ? .header(name.lowercased()) : nil
        case "cookie": return .cookie(name)
        case "query": return .query(name)
        default: return nil
        }
    }
}
