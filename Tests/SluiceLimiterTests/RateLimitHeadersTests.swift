import SluiceConfig
import Testing
@testable import SluiceLimiter

@Suite struct RateLimitHeadersTests {
    let login60 = LimitStatus(rule: "login", policyName: "login", limit: limit(5, per: 60, "5/minute"), remaining: 2, resetSeconds: 37)

    func names(_ fields: [(name: String, value: String)]) -> [String] { fields.map { "\($0.name): \($0.value)" } }

    @Test func draft() {
        let outcome = LimitOutcome(decision: .admitted, statuses: [self.login60], headerMode: .draft)
        #expect(self.names(RateLimitHeaders.fields(for: outcome, now: at(1000))) == [
            #"RateLimit-Policy: "login";q=5;w=60"#,
            #"RateLimit: "login";r=2;t=37"#,
        ])
    }

    /// The hand-written fast path produces exactly what swift-http-structured-headers serialises.
    @Test(arguments: ["login", "login-60", "api_v2-3600", "a", "x-9-86400"])
    func fastPathMatchesSerializer(name: String) {
        for (remaining, reset) in [(0, 0), (2, 37), (99_999, 86_400)] {
            let statuses = [
                LimitStatus(rule: "r", policyName: name, limit: limit(5, per: 60), remaining: remaining, resetSeconds: reset),
                LimitStatus(rule: "r", policyName: name + "-b", limit: limit(100, per: 3600), remaining: 3, resetSeconds: 9),
            ]
            #expect(RateLimitHeaders.policyField(statuses) == RateLimitHeaders.serializedPolicyField(statuses))
            #expect(RateLimitHeaders.rateLimitField(statuses[0]) == RateLimitHeaders.serializedRateLimitField(statuses[0]))
        }
    }

    @Test func severalLimits() {
        let minute = LimitStatus(rule: "login", policyName: "login-60", limit: limit(5, per: 60), remaining: 0, resetSeconds: 12)
        let hour = LimitStatus(rule: "login", policyName: "login-3600", limit: limit(20, per: 3600), remaining: 14, resetSeconds: 1800)
        let outcome = LimitOutcome(decision: .limited, retryAfter: 12, statuses: [minute, hour], headerMode: .both)
        #expect(self.names(RateLimitHeaders.fields(for: outcome, now: at(1000))) == [
            #"RateLimit-Policy: "login-60";q=5;w=60, "login-3600";q=20;w=3600"#,
            #"RateLimit: "login-60";r=0;t=12"#,
            "X-RateLimit-Limit: 5",
            "X-RateLimit-Remaining: 0",
            "X-RateLimit-Reset: 1012",
            "Retry-After: 12",
        ])
    }

    @Test func legacyAndNone() {
        let outcome = LimitOutcome(decision: .admitted, statuses: [self.login60], headerMode: .legacy)
        #expect(self.names(RateLimitHeaders.fields(for: outcome, now: at(1000, ms: 900))) == [
            "X-RateLimit-Limit: 5", "X-RateLimit-Remaining: 2", "X-RateLimit-Reset: 1037",
        ])
        #expect(RateLimitHeaders.fields(for: outcome, mode: ResponseConfiguration.RateLimitHeaders.none, now: at(0)).isEmpty)
        let blocked = LimitOutcome(decision: .limited, retryAfter: 3, statuses: [self.login60], headerMode: .none)
        #expect(self.names(RateLimitHeaders.fields(for: blocked, now: at(0))) == ["Retry-After: 3"])
        #expect(RateLimitHeaders.fields(for: LimitOutcome(decision: .exempt, headerMode: .draft), now: at(0)).isEmpty)
    }

    @Test func refusedForGoodHasNoRetryAfter() {
        let outcome = LimitOutcome(decision: .limited, retryAfter: nil, statuses: [self.login60], headerMode: .legacy)
        #expect(!self.names(RateLimitHeaders.fields(for: outcome, now: at(0))).contains { $0.hasPrefix("Retry-After") })
    }

    @Test func blockedResponse() {
        var response = ResponseConfiguration()
        response.headers = [HeaderField(name: "X-Reason", value: "limits")]
        let outcome = LimitOutcome(
            decision: .limited, rule: "login", response: response, retryAfter: 7, deniedLimit: "5/minute",
            statuses: [self.login60], headerMode: .draft
        )
        let blocked = RateLimitHeaders.blockedResponse(for: outcome, now: at(0))!
        #expect(blocked.status == 429)
        #expect(blocked.body == #"{"error":"rate_limited","rule":"login","retry_after":7}"#)
        #expect(self.names(blocked.headers) == [
            "Content-Type: application/json", "X-Reason: limits",
            #"RateLimit-Policy: "login";q=5;w=60"#, #"RateLimit: "login";r=2;t=37"#, "Retry-After: 7",
        ])
        var custom = outcome
        custom.response?.body = BodyTemplate(parts: [.literal("limit "), .limit, .literal(" hit")], source: "limit {limit} hit")
        #expect(RateLimitHeaders.blockedBody(for: custom) == "limit 5/minute hit")
        #expect(RateLimitHeaders.blockedResponse(for: LimitOutcome(decision: .admitted), now: at(0)) == nil)
    }
}
