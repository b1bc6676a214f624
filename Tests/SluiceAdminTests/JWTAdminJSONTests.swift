import Foundation
import SluiceConfig
import Testing

@testable import SluiceAdmin

/// `GET /config` with a `jwt:` section (issue 15): shown, with the HS256 secret redacted; `match.jwt` shown per rule.
@Suite("Admin /config with a jwt section")
struct JWTAdminJSONTests {
    @Test func jwtSectionIsShownWithTheSecretRedacted() async throws {
        var configuration = testConfiguration()
        configuration.jwt = JWTConfiguration(
            token: .cookie("session"),
            hs256Secret: "super-secret-value-0123456789abcdef",
            keys: [.init(algorithm: .es256, path: "/etc/sluice/es.pem", kid: "k1")],
            jwksFile: "/etc/sluice/jwks.json",
            issuers: ["https://auth.test"],
            audiences: ["api"],
            clockSkew: .seconds(10),
            cacheSize: 42
        )
        var match = RuleMatch()
        match.claims = [.init(path: "scope", value: "admin"), .init(path: "org.id", value: nil)]
        configuration.rules = [RuleConfiguration(name: "users", match: match, key: [.jwt("sub")], limits: [RateLimit(count: 1, periodSeconds: 1, text: "1/second")])]
        let backend = TestBackend(configuration: configuration)
        try await withAdminServer(backend: backend) { port in
            let response = try await send(.GET, "/config", port: port)
            #expect(response.status == .ok)
            #expect(!response.body.contains("super-secret-value"))
            let json = try #require(try JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: Any])
            let jwt = try #require(json["jwt"] as? [String: Any])
            #expect(jwt["token"] as? String == "cookie:session")
            #expect(jwt["hs256_secret"] as? String == "***")
            #expect(jwt["jwks_file"] as? String == "/etc/sluice/jwks.json")
            #expect(jwt["issuer"] as? [String] == ["https://auth.test"])
            #expect(jwt["audience"] as? [String] == ["api"])
            #expect(jwt["clock_skew"] as? String == "10s")
            #expect(jwt["cache_size"] as? Int == 42)
            let keys = try #require(jwt["keys"] as? [[String: Any]])
            #expect(keys.first?["alg"] as? String == "ES256")
            #expect(keys.first?["kid"] as? String == "k1")
            let rules = try #require(json["rules"] as? [[String: Any]])
            #expect(rules.first?["key"] as? [String] == ["jwt:sub"])
            let ruleMatch = try #require(rules.first?["match"] as? [String: Any])
            #expect(ruleMatch["jwt"] as? [String: String] == ["scope": "admin", "org.id": "*"])
        }
    }
}
