import Foundation
import JWTKit
import SluiceConfig
import SluiceTestSupport
import Testing

@testable import SluiceProxy

/// Issue 15 end to end: a real proxy in front of a real upstream, limiting by the claims of tokens signed in the test
/// with jwt-kit; bad tokens leave the claims missing, and `on_missing_key` decides.
@Suite("JWT-keyed rules through the proxy", .serialized, .timeLimit(.minutes(2)))
struct JWTProxyTests {
    static let twoPerHour = [RateLimit(count: 2, periodSeconds: 3600, text: "2/hour")]

    static func perUser(_ onMissingKey: RuleConfiguration.OnMissingKey) -> RuleConfiguration {
        RuleConfiguration(name: "per-user", key: [.jwt("sub")], limits: Self.twoPerHour, onMissingKey: onMissingKey)
    }

    static func bearer(_ token: String) -> [String] { ["Authorization: Bearer \(token)"] }

    @Test func limitsPerSubjectAndForwardsTheRequestUnchanged() async throws {
        let fixtures = try JWTFixtures()
        defer { fixtures.remove() }
        let alice = try await fixtures.token(.rs256, JWTFixtures.claims(sub: "alice"))
        let bob = try await fixtures.token(.eddsa, JWTFixtures.claims(sub: "bob"))
        try await withProxy({ config in
            config.jwt = fixtures.configuration()
            config.rules = [Self.perUser(.skip)]
        }) { (proxy: ProxyHarness) async throws in
            #expect(try await proxy.get("/hello", headers: Self.bearer(alice)).status == 200)
            #expect(try await proxy.get("/hello", headers: Self.bearer(alice)).status == 200)
            let third = try await proxy.get("/hello", headers: Self.bearer(alice))
            #expect(third.status == 429)
            #expect(third.header("retry-after") != nil)
            // Another subject has its own budget, whatever the client IP (all are 127.0.0.1 here).
            #expect(try await proxy.get("/hello", headers: Self.bearer(bob)).status == 200)
            // Sluice does not authenticate: the token reaches the upstream as sent.
            let heads = proxy.upstream.requestHeads
            #expect(heads.count == 3)
            #expect(heads.allSatisfy { $0.headers["authorization"].first?.hasPrefix("Bearer ") == true })
            #expect(heads.last?.headers["authorization"] == ["Bearer \(bob)"])
        }
    }

    @Test func tiersByPlanAndNestedClaims() async throws {
        let fixtures = try JWTFixtures()
        defer { fixtures.remove() }
        var tiers = Tiers(
            by: .jwt("plan"),
            values: ["pro": [RateLimit(count: 3, periodSeconds: 3600, text: "3/hour")]],
            defaultLimits: [RateLimit(count: 1, periodSeconds: 3600, text: "1/hour")]
        )
        tiers.concurrencyMax = [:]
        let pro = try await fixtures.token(.es256, JWTFixtures.claims(sub: "p", ["plan": .string("pro"), "org": .object(["id": .string("acme")])]))
        let free = try await fixtures.token(.hs256, JWTFixtures.claims(sub: "f", ["plan": .string("free"), "org": .object(["id": .string("acme")])]))
        let otherOrg = try await fixtures.token(.hs256, JWTFixtures.claims(sub: "o", ["plan": .string("free"), "org": .object(["id": .string("initech")])]))
        try await withProxy({ config in
            config.jwt = fixtures.configuration()
            config.rules = [
                RuleConfiguration(name: "plans", key: [.jwt("org.id"), .jwt("sub")], limits: Self.twoPerHour, tiers: tiers)
            ]
        }) { (proxy: ProxyHarness) async throws in
            var proStatuses: [Int] = []
            for _ in 0..<4 { proStatuses.append(try await proxy.get("/hello", headers: Self.bearer(pro)).status) }
            #expect(proStatuses == [200, 200, 200, 429])
            #expect(try await proxy.get("/hello", headers: Self.bearer(free)).status == 200)
            #expect(try await proxy.get("/hello", headers: Self.bearer(free)).status == 429)
            #expect(try await proxy.get("/hello", headers: Self.bearer(otherOrg)).status == 200)
        }
    }

    @Test func matchOnAClaim() async throws {
        let fixtures = try JWTFixtures()
        defer { fixtures.remove() }
        var match = RuleMatch()
        match.claims = [RuleMatch.ClaimCondition(path: "scope", value: "admin")]
        let admin = try await fixtures.token(.es256, JWTFixtures.claims(sub: "a", ["scope": .string("admin")]))
        let adminInList = try await fixtures.token(.es256, JWTFixtures.claims(sub: "b", ["scope": .array([.string("read"), .string("admin")])]))
        let reader = try await fixtures.token(.es256, JWTFixtures.claims(sub: "r", ["scope": .string("read")]))
        try await withProxy({ config in
            config.jwt = fixtures.configuration()
            config.rules = [
                RuleConfiguration(
                    name: "admins", match: match, key: [.const("all")],
                    limits: [RateLimit(count: 1, periodSeconds: 3600, text: "1/hour")]
                )
            ]
        }) { (proxy: ProxyHarness) async throws in
            #expect(try await proxy.get("/hello", headers: Self.bearer(admin)).status == 200)
            #expect(try await proxy.get("/hello", headers: Self.bearer(adminInList)).status == 429)
            // The rule does not apply to other scopes, nor to requests without a (valid) token.
            for _ in 0..<3 { #expect(try await proxy.get("/hello", headers: Self.bearer(reader)).status == 200) }
            #expect(try await proxy.get("/hello").status == 200)
        }
    }

    /// Each way a token fails makes `jwt:sub` missing: with `on_missing_key: deny` each is refused at once (no
    /// Retry-After), with `skip` each passes, with `fallback: [ip]` they share the client IP's budget.
    @Test func badTokensAreMissingKeys() async throws {
        let fixtures = try JWTFixtures()
        defer { fixtures.remove() }
        let now = Int(Date().timeIntervalSince1970)
        let pem = try String(contentsOfFile: fixtures.rsaPath, encoding: .utf8)
        var bad: [(String, [String])] = [("absent", [])]
        bad.append(("malformed", Self.bearer("abc.def")))
        bad.append(("expired", Self.bearer(try await fixtures.token(.es256, JWTFixtures.claims(sub: "u", ["exp": .int(now - 600)])))))
        bad.append(("nbf", Self.bearer(try await fixtures.token(.es256, JWTFixtures.claims(sub: "u", ["nbf": .int(now + 600)])))))
        bad.append(("aud", Self.bearer(try await fixtures.token(.rs256, JWTFixtures.claims(sub: "u", ["aud": .string("x")])))))
        bad.append(("iss", Self.bearer(try await fixtures.token(.eddsa, JWTFixtures.claims(sub: "u", ["iss": .string("x")])))))
        bad.append(("signature", Self.bearer(try await fixtures.token(.jwks(kid: "k1", key: fixtures.otherESPrivate), JWTFixtures.claims(sub: "u")))))
        bad.append(("alg none", Self.bearer(try JWTFixtures.unsignedToken(JWTFixtures.claims(sub: "u")))))
        bad.append(("hs with rsa key", Self.bearer(try await fixtures.token(.hmac(secret: pem), JWTFixtures.claims(sub: "u")))))

        try await withProxy({ config in
            config.jwt = fixtures.configuration()
            config.rules = [Self.perUser(.deny)]
        }) { (proxy: ProxyHarness) async throws in
            for (name, headers) in bad {
                let response = try await proxy.get("/hello", headers: headers)
                #expect(response.status == 429, "\(name)")
                #expect(response.header("retry-after") == nil, "\(name)")
            }
            #expect(proxy.upstream.requestHeads.isEmpty)
        }
        try await withProxy({ config in
            config.jwt = fixtures.configuration()
            config.rules = [Self.perUser(.skip)]
        }) { (proxy: ProxyHarness) async throws in
            for (name, headers) in bad + bad {
                #expect(try await proxy.get("/hello", headers: headers).status == 200, "\(name)")
            }
        }
        try await withProxy({ config in
            config.jwt = fixtures.configuration()
            config.rules = [Self.perUser(.fallback([.ip]))]
        }) { (proxy: ProxyHarness) async throws in
            var statuses: [Int] = []
            for (_, headers) in bad.prefix(4) { statuses.append(try await proxy.get("/hello", headers: headers).status) }
            #expect(statuses == [200, 200, 429, 429])
        }
    }

    @Test func tokenFromACookie() async throws {
        let fixtures = try JWTFixtures()
        defer { fixtures.remove() }
        let token = try await fixtures.token(.hs256, JWTFixtures.claims(sub: "c"))
        try await withProxy({ config in
            config.jwt = fixtures.configuration(token: .cookie("session"))
            config.rules = [Self.perUser(.deny)]
        }) { (proxy: ProxyHarness) async throws in
            #expect(try await proxy.get("/hello", headers: ["Cookie: theme=dark; session=\(token)"]).status == 200)
            // The default place is not looked at when another is configured.
            #expect(try await proxy.get("/hello", headers: Self.bearer(token)).status == 429)
        }
    }

    @Test func accessLogSaysWhyWithoutTheToken() async throws {
        let fixtures = try JWTFixtures()
        defer { fixtures.remove() }
        let log = fixtures.directory + "/access.log"
        let now = Int(Date().timeIntervalSince1970)
        let expired = try await fixtures.token(.es256, JWTFixtures.claims(sub: "u", ["exp": .int(now - 600)]))
        let good = try await fixtures.token(.es256, JWTFixtures.claims(sub: "u"))
        try await withProxy({ config in
            config.jwt = fixtures.configuration()
            config.server.accessLog = .file(log)
            config.rules = [Self.perUser(.skip)]
        }) { (proxy: ProxyHarness) async throws in
            #expect(try await proxy.get("/hello?case=expired", headers: Self.bearer(expired)).status == 200)
            #expect(try await proxy.get("/hello?case=good", headers: Self.bearer(good)).status == 200)
            #expect(try await proxy.get("/hello?case=none").status == 200)
            var lines: [String] = []
            for _ in 0..<50 where lines.count < 3 {
                try await Task.sleep(for: .milliseconds(50))
                lines = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
            }
            #expect(lines.count == 3)
            #expect(lines.first { $0.contains("case=expired") }?.contains("\"jwt\":\"expired\"") == true)
            #expect(lines.first { $0.contains("case=good") }?.contains("\"jwt\"") == false)
            #expect(lines.first { $0.contains("case=none") }?.contains("\"jwt\":\"absent\"") == true)
            let text = lines.joined()
            #expect(!text.contains(expired) && !text.contains(good))
            #expect(!text.contains(String(expired.split(separator: ".")[1])))
        }
    }

    /// The JWKS file is read again on reload (SIGHUP): tokens of the rotated-out key lose their claims, tokens of the
    /// new key gain them.
    @Test func jwksRotationOnReload() async throws {
        let fixtures = try JWTFixtures()
        defer { fixtures.remove() }
        let old = try await fixtures.token(.jwks(kid: "k1", key: fixtures.esPrivate), JWTFixtures.claims(sub: "u1"))
        let new = try await fixtures.token(.jwks(kid: "k2", key: fixtures.otherESPrivate), JWTFixtures.claims(sub: "u2"))
        var configuration = SluiceConfiguration()
        try await withProxy({ config in
            config.jwt = JWTConfiguration(jwksFile: fixtures.jwksPath)
            config.rules = [Self.perUser(.deny)]
            configuration = config
        }) { (proxy: ProxyHarness) async throws in
            #expect(try await proxy.get("/hello", headers: Self.bearer(old)).status == 200)
            #expect(try await proxy.get("/hello", headers: Self.bearer(new)).status == 429)
            try fixtures.writeJWKS(kid: "k2", key: fixtures.otherESPrivate)
            try await proxy.server.reload(configuration)
            #expect(try await proxy.get("/hello", headers: Self.bearer(old)).status == 429)
            #expect(try await proxy.get("/hello", headers: Self.bearer(new)).status == 200)
            // A JWKS file that became unreadable fails the reload; the running keys stay.
            try "not json".write(toFile: fixtures.jwksPath, atomically: true, encoding: .utf8)
            await #expect(throws: TLSSetupError.self) { try await proxy.server.reload(configuration) }
            #expect(try await proxy.get("/hello", headers: Self.bearer(new)).status == 200)
        }
    }
}
