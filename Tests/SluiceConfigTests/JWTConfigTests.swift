import Foundation
import Testing

@testable import SluiceConfig

/// Issue 15: the `jwt:` section, `jwt:CLAIM` key parts and `match.jwt`, and their errors at `file:line:column`.
@Suite("Config: jwt")
struct JWTConfigTests {
    static let secret = "0123456789abcdef0123456789abcdef"

    static func withKeyFile(_ body: (String) throws -> Void) throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-jwt-key-\(UUID()).pem").path
        try "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n".write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        try body(path)
    }

    @Test func fullSection() throws {
        try Self.withKeyFile { path in
            let configuration = try loadValid(
                minimalYAML + """
                    jwt:
                      token: cookie:session
                      hs256_secret: ${JWT_SECRET}
                      keys:
                        - { alg: RS256, file: \(path), kid: rsa-1 }
                        - { alg: eddsa, file: \(path) }
                      jwks_file: \(path)
                      issuer: [https://auth.example.com, https://auth2.example.com]
                      audience: api
                      clock_skew: 5s
                      cache_size: 500
                    rules:
                      - name: per-user
                        match: { jwt: { scope: admin, org.id: "*" } }
                        key: [jwt:sub, "jwt:org.id"]
                        limits: 10/minute
                        on_missing_key: { fallback: [ip, jwt:tenant] }
                        tiers: { by: jwt:plan, values: { pro: 100/minute } }
                    """,
                environment: ["JWT_SECRET": Self.secret]
            )
            let jwt = try #require(configuration.jwt)
            #expect(jwt.token == .cookie("session"))
            #expect(jwt.hs256Secret == Self.secret)
            #expect(jwt.keys.map(\.algorithm) == [.rs256, .eddsa])
            #expect(jwt.keys.map(\.kid) == ["rsa-1", nil])
            #expect(jwt.keys[0].position == .init(line: 7, column: 27))
            #expect(jwt.jwksFile == path)
            #expect(jwt.issuers == ["https://auth.example.com", "https://auth2.example.com"])
            #expect(jwt.audiences == ["api"])
            #expect(jwt.clockSkew == .seconds(5))
            #expect(jwt.cacheSize == 500)
            let rule = configuration.rules[0]
            #expect(rule.key == [.jwt("sub"), .jwt("org.id")])
            #expect(rule.match.claims == [.init(path: "scope", value: "admin"), .init(path: "org.id", value: nil)])
            #expect(rule.onMissingKey == .fallback([.ip, .jwt("tenant")]))
            #expect(rule.tiers?.by == .jwt("plan"))
            #expect(configuration.jwtClaimPaths == ["sub", "org.id", "tenant", "plan", "scope"])
        }
    }

    @Test func defaults() throws {
        let configuration = try loadValid(minimalYAML + "jwt:\n  hs256_secret: \(Self.secret)\n")
        let jwt = try #require(configuration.jwt)
        #expect(jwt.token == .bearer)
        #expect(jwt.clockSkew == .seconds(30))
        #expect(jwt.cacheSize == 10_000)
        #expect(jwt.issuers.isEmpty && jwt.audiences.isEmpty && jwt.keys.isEmpty)
    }

    @Test func jwtKeyPartWithoutSection() {
        #expect(
            errorLines(
                yaml: minimalYAML + """
                    rules:
                      - name: a
                        key: [ip, jwt:sub]
                        limits: 1/second
                      - name: b
                        match: { jwt: { plan: pro } }
                        limits: 1/second
                    """
            ) == [
                "test.yaml:5:15: jwt: key parts and match.jwt need a top-level jwt: section (where the token is, which keys sign it)",
                "test.yaml:8:14: jwt: key parts and match.jwt need a top-level jwt: section (where the token is, which keys sign it)",
            ]
        )
    }

    @Test func badValues() throws {
        try Self.withKeyFile { path in
            #expect(
                errorLines(
                    yaml: minimalYAML + """
                        jwt:
                          token: body:jwt
                          hs256_secret: short
                          keys:
                            - { alg: HS256, file: \(path) }
                            - { alg: PS999, file: \(path) }
                            - { alg: ES256, file: /nonexistent/key.pem }
                            - { file: \(path) }
                          jwks_file: /nonexistent/jwks.json
                          cache_size: -1
                        rules:
                          - name: a
                            key: ["jwt:", "jwt:a..b"]
                            limits: 1/second
                        """
                ) == [
                    "test.yaml:4:10: token: expected bearer, header:NAME, cookie:NAME or query:NAME, got 'body:jwt'",
                    "test.yaml:5:17: hs256_secret: must be at least 32 bytes (RFC 7518 §3.2), got 5",
                    "test.yaml:7:14: alg: unknown algorithm 'HS256' (expected RS256, RS384, RS512, ES256, ES384, EdDSA) (an HMAC secret is given as hs256_secret)",
                    "test.yaml:8:14: alg: unknown algorithm 'PS999' (expected RS256, RS384, RS512, ES256, ES384, EdDSA)",
                    "test.yaml:9:27: file: cannot read '/nonexistent/key.pem': no such file",
                    "test.yaml:10:7: keys: 'alg' is required",
                    "test.yaml:11:14: jwks_file: cannot read '/nonexistent/jwks.json': no such file",
                    "test.yaml:12:15: cache_size: must be between 0 and 10000000, got -1",
                    "test.yaml:15:16: key: key part 'jwt:' needs a claim name, dotted for nested claims (jwt:org.id)",
                    "test.yaml:15:24: key: key part 'jwt:' needs a claim name, dotted for nested claims (jwt:org.id)",
                ]
            )
        }
    }

    @Test func sectionNeedsAKey() {
        #expect(
            errorLines(yaml: minimalYAML + "jwt:\n  audience: api\n")
                == ["test.yaml:4:3: jwt: at least one of hs256_secret, keys or jwks_file is required"]
        )
    }
}
