import SluiceConfig
import Testing
@testable import SluiceLimiter

@Suite struct RuleMatcherTests {
    func matches(_ match: RuleMatch, _ request: TestRequest) -> Bool {
        RuleMatcher(match).matches(request, path: PathNormalizer.normalize(request.uri))
    }

    @Test(arguments: [
        (PathPattern.exact("/login"), "/login", true),
        (.exact("/login"), "//login", true),
        (.exact("/login"), "/./login", true),
        (.exact("/login"), "/%6Cogin", true),
        (.exact("/login"), "/login?x=1", true),
        (.exact("/login"), "/login/", true),
        (.exact("/login"), "/logins", false),
        (.exact("/login"), "/a/login", false),
        (.exact("/"), "/", true),
        (.exact("/"), "/x", false),
        (.prefix("/api"), "/api", true),
        (.prefix("/api"), "/api/", true),
        (.prefix("/api"), "/api/x/y", true),
        (.prefix("/api"), "/apix", false),
        (.prefix("/api"), "/ap", false),
        (.prefix(""), "/anything", true),
        (.glob(["users", nil, "orders"]), "/users/42/orders", true),
        (.glob(["users", nil, "orders"]), "/users/42/orders/", true),
        (.glob(["users", nil, "orders"]), "/users//orders", false),
        (.glob(["users", nil, "orders"]), "/users/42/43/orders", false),
        (.glob(["users", nil, "orders"]), "/users/42/orders/x", false),
        (.glob(["users", nil, "orders"]), "/users/42", false),
        (.glob(["a", nil, ""]), "/a/b/", true),
        (.regex("^/v[0-9]+/"), "/v2/items", true),
        (.regex("^/v[0-9]+/"), "/x/v2/items", false),
        (.regex("^/v[0-9]+/"), "//v2/items", true),
        (.regex("(unclosed"), "/anything", false),
    ])
    func paths(pattern: PathPattern, uri: String, expected: Bool) {
        #expect(self.matches(RuleMatch(path: pattern), TestRequest(uri: uri)) == expected)
    }

    @Test func methods() {
        let match = RuleMatch(methods: ["POST", "PUT"])
        #expect(self.matches(match, TestRequest(method: "POST")))
        #expect(self.matches(match, TestRequest(method: "PUT")))
        #expect(!self.matches(match, TestRequest(method: "GET")))
        #expect(self.matches(RuleMatch(), TestRequest(method: "DELETE")))
    }

    /// `methods: [GET]` also matches HEAD (like nginx's `limit_except GET`), not the other way round.
    @Test func getAlsoMatchesHead() {
        #expect(self.matches(RuleMatch(methods: ["GET"]), TestRequest(method: "HEAD")))
        #expect(self.matches(RuleMatch(methods: ["POST", "GET"]), TestRequest(method: "HEAD")))
        #expect(!self.matches(RuleMatch(methods: ["HEAD"]), TestRequest(method: "GET")))
        #expect(!self.matches(RuleMatch(methods: ["POST"]), TestRequest(method: "HEAD")))
    }

    @Test(arguments: [
        ("api.example.com", true),
        ("API.Example.COM", true),
        ("api.example.com:8080", true),
        ("example.com", false),
        ("api.example.com.evil", false),
        // Surrounding whitespace is not part of the value; one trailing dot is the same name.
        ("api.example.com\t", true),
        (" api.example.com ", true),
        ("api.example.com.", true),
        ("API.example.com.:8080", true),
        ("api.example.com..", false),
        (".", false),
    ])
    func host(header: String, expected: Bool) {
        #expect(self.matches(RuleMatch(host: "api.example.com"), TestRequest(host: header)) == expected)
    }

    @Test func hostAbsent() {
        #expect(!self.matches(RuleMatch(host: "api.example.com"), TestRequest(host: nil)))
        #expect(RuleMatcher.hostEquals("[::1]:8080", "[::1]"))
    }

    @Test func headers() {
        let match = RuleMatch(headers: [.init(name: "x-env", value: "prod"), .init(name: "x-key", value: nil)])
        #expect(self.matches(match, TestRequest(headers: [("X-Env", "prod"), ("X-Key", "k")])))
        #expect(!self.matches(match, TestRequest(headers: [("X-Env", "dev"), ("X-Key", "k")])))
        #expect(!self.matches(match, TestRequest(headers: [("X-Env", "prod")])))
        // Values are compared without surrounding whitespace, the configured one too.
        #expect(self.matches(match, TestRequest(headers: [("X-Env", "prod \t"), ("X-Key", "k")])))
        #expect(self.matches(match, TestRequest(headers: [("X-Env", "\tprod"), ("X-Key", "")])))
        #expect(!self.matches(match, TestRequest(headers: [("X-Env", "pr od"), ("X-Key", "k")])))
        let padded = RuleMatch(headers: [.init(name: "x-env", value: " prod ")])
        #expect(self.matches(padded, TestRequest(headers: [("X-Env", "prod")])))
    }

    @Test func configuredHostWithTrailingDot() {
        #expect(self.matches(RuleMatch(host: "api.example.com."), TestRequest(host: "api.example.com")))
    }

    @Test func everyConditionMustHold() {
        let match = RuleMatch(methods: ["POST"], path: .exact("/login"), host: "example.com")
        #expect(self.matches(match, TestRequest(method: "POST", uri: "/login")))
        #expect(!self.matches(match, TestRequest(method: "GET", uri: "/login")))
        #expect(!self.matches(match, TestRequest(method: "POST", uri: "/logout")))
        #expect(!self.matches(match, TestRequest(method: "POST", uri: "/login", host: "other.com")))
    }
}
