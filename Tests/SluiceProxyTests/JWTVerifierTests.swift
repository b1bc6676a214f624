import Foundation
import JWTKit
import SluiceConfig
import SluiceJWT
import SluiceLimiter
import Testing

/// Issue 15: tokens made with jwt-kit for every algorithm, and every way a token fails, checked by ``JWTVerifier``
/// without sockets; and its per-loop cache.
@Suite("JWT verifier")
struct JWTVerifierTests {
    static func verifier(_ fixtures: JWTFixtures, _ jwt: JWTConfiguration? = nil, paths: [KeyPart] = [.jwt("sub")])
        async throws -> JWTVerifier
    {
        var configuration = SluiceConfiguration()
        configuration.jwt = jwt ?? fixtures.configuration()
        configuration.rules = [RuleConfiguration(name: "r", key: paths, limits: [RateLimit(count: 1, periodSeconds: 1, text: "1/second")])]
        let verifier = try JWTVerifier(configuration: configuration)
        try await verifier.prepare()
        return verifier
    }

    static func check(_ verifier: JWTVerifier, _ token: String, now: Int64 = JWTVerifier.now()) -> JWTCheck {
        verifier.check(token: token[...], now: now, cache: JWTVerificationCache(capacity: 0))
    }

    @Test func everyAlgorithmVerifies() async throws {
        let fixtures = try JWTFixtures()
        defer { fixtures.remove() }
        let verifier = try await Self.verifier(fixtures)
        let signers: [(JWTFixtures.Signer, String)] = [
            (.hs256, "hs"), (.rs256, "rs"), (.es256, "es"), (.eddsa, "ed"), (.jwks(kid: "k1", key: fixtures.esPrivate), "jwks"),
        ]
        for (signer, sub) in signers {
            let token = try await fixtures.token(signer, JWTFixtures.claims(sub: sub))
            #expect(Self.check(verifier, token) == .verified(VerifiedClaims(values: ["sub": .text(sub)])), "\(signer)")
        }
    }

    @Test func nestedNumberAndListClaims() async throws {
        let fixtures = try JWTFixtures()
        defer { fixtures.remove() }
        let verifier = try await Self.verifier(fixtures, paths: [.jwt("org.id"), .jwt("plan"), .jwt("level"), .jwt("roles"), .jwt("org.missing")])
        let token = try await fixtures.token(
            .es256,
            JWTFixtures.claims(sub: "u", [
                "org": .object(["id": .string("acme"), "size": .int(3)]), "plan": .string("pro"), "level": .int(7),
                "roles": .array([.string("admin"), .string("dev")]),
            ])
        )
        guard case .verified(let claims) = Self.check(verifier, token) else {
            Issue.record("not verified")
            return
        }
        #expect(claims.keyValue("org.id") == "acme")
        #expect(claims.keyValue("plan") == "pro")
        #expect(claims.keyValue("level") == "7")
        #expect(claims.keyValue("roles") == nil)  // a list is no key
        #expect(claims.matches("roles", "admin"))
        #expect(!claims.matches("roles", "root"))
        #expect(claims.keyValue("org.missing") == nil)
    }

    @Test func everyFailure() async throws {
        let fixtures = try JWTFixtures()
        defer { fixtures.remove() }
        let verifier = try await Self.verifier(fixtures)
        let now = Int(Date().timeIntervalSince1970)
        let cases: [(String, JWTFixtures.Signer?, [String: JWTHeaderField], JWTFailure)] = [
            ("expired", .es256, JWTFixtures.claims(sub: "u", ["exp": .int(now - 120)]), .expired),
            ("nbf", .rs256, JWTFixtures.claims(sub: "u", ["nbf": .int(now + 600)]), .notYetValid),
            ("aud", .eddsa, JWTFixtures.claims(sub: "u", ["aud": .string("other")]), .wrongAudience),
            ("aud list", .hs256, JWTFixtures.claims(sub: "u", ["aud": .array([.string("x"), .string("y")])]), .wrongAudience),
            ("iss", .es256, JWTFixtures.claims(sub: "u", ["iss": .string("https://evil.test")]), .wrongIssuer),
            ("no iss", .es256, JWTFixtures.claims(sub: "u", ["iss": .null]), .wrongIssuer),
            ("exp text", .es256, JWTFixtures.claims(sub: "u", ["exp": .string("tomorrow")]), .malformed),
            ("other key", .jwks(kid: "k1", key: fixtures.otherESPrivate), JWTFixtures.claims(sub: "u"), .badSignature),
            // An unknown kid falls back to the keys given without a kid (the ES256 PEM), which did not sign it.
            ("unknown kid", .jwks(kid: "nope", key: fixtures.otherESPrivate), JWTFixtures.claims(sub: "u"), .badSignature),
            ("alg none", nil, JWTFixtures.claims(sub: "u"), .algorithmNone),
        ]
        for (name, signer, claims, expected) in cases {
            let token: String
            if let signer { token = try await fixtures.token(signer, claims) } else { token = try JWTFixtures.unsignedToken(claims) }
            #expect(Self.check(verifier, token) == .failed(expected), "\(name)")
        }
        // With only the JWKS file, an unknown kid finds no key at all.
        let jwksOnly = try await Self.verifier(fixtures, JWTConfiguration(jwksFile: fixtures.jwksPath))
        let unknown = try await fixtures.token(.jwks(kid: "nope", key: fixtures.esPrivate), JWTFixtures.claims(sub: "u"))
        #expect(Self.check(jwksOnly, unknown) == .failed(.unknownKey))
        #expect(Self.check(verifier, "not.a.token") == .failed(.malformed))
        #expect(Self.check(verifier, "abc") == .failed(.malformed))
        // A good token with its signature flipped.
        var token = try await fixtures.token(.rs256, JWTFixtures.claims(sub: "u"))
        token.removeLast(2)
        token += token.hasSuffix("A") ? "BB" : "AA"
        #expect(Self.check(verifier, token) == .failed(.badSignature))
    }

    /// Algorithm confusion: an HS256 token whose HMAC secret is the RSA public key's PEM (what a verifier that picks the
    /// algorithm from the token would accept). Refused with and without an HS256 secret configured.
    @Test func hmacWithTheRSAPublicKeyIsRefused() async throws {
        let fixtures = try JWTFixtures()
        defer { fixtures.remove() }
        let pem = try String(contentsOfFile: fixtures.rsaPath, encoding: .utf8)
        let forged = try await fixtures.token(.hmac(secret: pem), JWTFixtures.claims(sub: "mallory"))
        let rsaOnly = try await Self.verifier(fixtures, JWTConfiguration(keys: [.init(algorithm: .rs256, path: fixtures.rsaPath)]))
        #expect(Self.check(rsaOnly, forged) == .failed(.algorithmNotAllowed))
        let both = try await Self.verifier(fixtures)
        #expect(Self.check(both, forged) == .failed(.badSignature))
        // `alg: none` is refused whatever keys there are.
        #expect(Self.check(rsaOnly, try JWTFixtures.unsignedToken(JWTFixtures.claims(sub: "u"))) == .failed(.algorithmNone))
    }

    @Test func clockSkewAllowsSlightlyExpiredTokens() async throws {
        let fixtures = try JWTFixtures()
        defer { fixtures.remove() }
        var jwt = fixtures.configuration()
        jwt.clockSkew = .seconds(30)
        let verifier = try await Self.verifier(fixtures, jwt)
        let now = Int64(Date().timeIntervalSince1970)
        let token = try await fixtures.token(.es256, JWTFixtures.claims(sub: "u", ["exp": .int(Int(now) - 10), "nbf": .int(Int(now) + 10)]))
        #expect(Self.check(verifier, token, now: now) == .verified(VerifiedClaims(values: ["sub": .text("u")])))
        #expect(Self.check(verifier, token, now: now + 25) == .failed(.expired))
        #expect(Self.check(verifier, token, now: now - 25) == .failed(.notYetValid))
    }

    @Test func noIssuerOrAudienceConfiguredAcceptsAny() async throws {
        let fixtures = try JWTFixtures()
        defer { fixtures.remove() }
        let verifier = try await Self.verifier(fixtures, fixtures.configuration(issuers: [], audiences: []))
        let token = try await fixtures.token(.es256, JWTFixtures.claims(sub: "u", ["iss": .string("anyone"), "aud": .null]))
        #expect(Self.check(verifier, token) == .verified(VerifiedClaims(values: ["sub": .text("u")])))
    }

    @Test func keysNotPreparedFail() async throws {
        let fixtures = try JWTFixtures()
        defer { fixtures.remove() }
        var configuration = SluiceConfiguration()
        configuration.jwt = fixtures.configuration()
        let verifier = try JWTVerifier(configuration: configuration)
        let token = try await fixtures.token(.es256, JWTFixtures.claims(sub: "u"))
        #expect(Self.check(verifier, token) == .failed(.keysNotLoaded))
    }

    // MARK: Cache

    @Test func cacheAnswersARepeatedTokenUntilItExpires() async throws {
        let fixtures = try JWTFixtures()
        defer { fixtures.remove() }
        let verifier = try await Self.verifier(fixtures)
        let cache = JWTVerificationCache()
        let now = Int64(Date().timeIntervalSince1970)
        let token = try await fixtures.token(.rs256, JWTFixtures.claims(sub: "u", ["exp": .int(Int(now) + 60)]))
        let verified = JWTCheck.verified(VerifiedClaims(values: ["sub": .text("u")]))
        #expect(verifier.check(token: token[...], now: now, cache: cache) == verified)
        #expect((cache.hits, cache.misses) == (0, 1))
        for _ in 0..<5 { #expect(verifier.check(token: token[...], now: now, cache: cache) == verified) }
        #expect((cache.hits, cache.misses) == (5, 1))
        // Past exp + skew (30 s) the cached entry reads as expired, without a new check.
        #expect(verifier.check(token: token[...], now: now + 91, cache: cache) == .failed(.expired))
        #expect((cache.hits, cache.misses) == (6, 1))
        // A bad token's failure is cached too.
        let bad = try JWTFixtures.unsignedToken(JWTFixtures.claims(sub: "u"))
        #expect(verifier.check(token: bad[...], now: now, cache: cache) == .failed(.algorithmNone))
        #expect(verifier.check(token: bad[...], now: now, cache: cache) == .failed(.algorithmNone))
        #expect((cache.hits, cache.misses) == (7, 2))
    }

    @Test func cacheIsBoundedAndEvictsTheLeastRecentlyUsed() async throws {
        let fixtures = try JWTFixtures()
        defer { fixtures.remove() }
        var jwt = fixtures.configuration()
        jwt.cacheSize = 2
        let verifier = try await Self.verifier(fixtures, jwt)
        let cache = JWTVerificationCache()
        let now = JWTVerifier.now()
        var tokens: [String] = []
        for sub in ["a", "b", "c"] { tokens.append(try await fixtures.token(.hs256, JWTFixtures.claims(sub: sub))) }
        _ = verifier.check(token: tokens[0][...], now: now, cache: cache)  // a
        _ = verifier.check(token: tokens[1][...], now: now, cache: cache)  // b a
        _ = verifier.check(token: tokens[0][...], now: now, cache: cache)  // a b (hit)
        _ = verifier.check(token: tokens[2][...], now: now, cache: cache)  // c a: b evicted
        #expect(cache.count == 2)
        #expect((cache.hits, cache.misses) == (1, 3))
        _ = verifier.check(token: tokens[0][...], now: now, cache: cache)  // hit
        _ = verifier.check(token: tokens[1][...], now: now, cache: cache)  // miss: was evicted
        #expect((cache.hits, cache.misses) == (2, 4))
        #expect(cache.count == 2)
    }

    @Test func anotherVerifierEmptiesTheCache() async throws {
        let fixtures = try JWTFixtures()
        defer { fixtures.remove() }
        let first = try await Self.verifier(fixtures, JWTConfiguration(jwksFile: fixtures.jwksPath))
        let cache = JWTVerificationCache()
        let token = try await fixtures.token(.jwks(kid: "k1", key: fixtures.esPrivate), JWTFixtures.claims(sub: "u"))
        #expect(first.check(token: token[...], now: JWTVerifier.now(), cache: cache) == .verified(VerifiedClaims(values: ["sub": .text("u")])))
        // The JWKS file rotates to another key; the next load's verifier must not answer from the old cache.
        try fixtures.writeJWKS(kid: "k2", key: fixtures.otherESPrivate)
        let second = try await Self.verifier(fixtures, JWTConfiguration(jwksFile: fixtures.jwksPath))
        #expect(second.check(token: token[...], now: JWTVerifier.now(), cache: cache) == .failed(.unknownKey))
    }

    // MARK: Key files

    @Test func badKeyFilesAreReportedAtTheirPosition() async throws {
        let fixtures = try JWTFixtures()
        defer { fixtures.remove() }
        var configuration = SluiceConfiguration(sourcePath: "sluice.yaml")
        configuration.jwt = JWTConfiguration(keys: [
            .init(algorithm: .rs256, path: fixtures.esPath, position: .init(line: 7, column: 13)),
            .init(algorithm: .es256, path: fixtures.esPath, position: .init(line: 8, column: 13)),
        ])
        configuration.jwt?.jwksFile = fixtures.rsaPath  // a PEM file is no JWKS
        configuration.jwt?.jwksFilePosition = .init(line: 9, column: 14)
        #expect(throws: ConfigErrorList.self) { try JWTVerifier(configuration: configuration) }
        do {
            _ = try JWTVerifier(configuration: configuration)
        } catch {
            #expect(error.errors.map { "\($0.file):\($0.line):\($0.column)" } == ["sluice.yaml:7:13", "sluice.yaml:9:14"])
            #expect(error.errors[0].message.hasPrefix("file: '\(fixtures.esPath)' is not a PEM RS256 public key"))
            #expect(error.errors[1].message.hasPrefix("jwks_file: '\(fixtures.rsaPath)': not a JWKS document"))
        }
    }

    @Test func tokenLocations() async throws {
        let bearer = JWTVerifierTokenProbe(headers: [("Authorization", "  bearer   abc.def.ghi ")])
        let fixtures = try JWTFixtures()
        defer { fixtures.remove() }
        func token(_ source: JWTConfiguration.TokenSource, _ request: JWTVerifierTokenProbe) throws -> String? {
            var configuration = SluiceConfiguration()
            configuration.jwt = fixtures.configuration(token: source)
            return try JWTVerifier(configuration: configuration).token(in: request).map(String.init)
        }
        #expect(try token(.bearer, bearer) == "abc.def.ghi")
        #expect(try token(.bearer, JWTVerifierTokenProbe(headers: [("Authorization", "Basic dXNlcjpwdw==")])) == nil)
        #expect(try token(.header("x-token"), JWTVerifierTokenProbe(headers: [("X-Token", " t.o.k ")])) == "t.o.k")
        #expect(try token(.cookie("jwt"), JWTVerifierTokenProbe(headers: [("Cookie", "a=1; jwt=c.o.k")])) == "c.o.k")
        #expect(try token(.query("access_token"), JWTVerifierTokenProbe(uri: "/x?access_token=q.u.e&y=1")) == "q.u.e")
        #expect(try token(.query("access_token"), JWTVerifierTokenProbe(uri: "/x")) == nil)
    }
}

/// A request for the token-location tests.
struct JWTVerifierTokenProbe: RequestAttributes {
    var headers: [(String, String)] = []
    var uri: String = "/"
    var method: String { "GET" }
    var host: String? { "test" }
    var clientIP: IPAddress { IPAddress(ipv4: 0x7F00_0001) }

    func header(_ name: String) -> String? {
        self.headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    func forEachHeaderValue(_ name: String, _ body: (String) -> Bool) {
        for (key, value) in self.headers where key.lowercased() == name.lowercased() {
            guard body(value) else { return }
        }
    }
}
