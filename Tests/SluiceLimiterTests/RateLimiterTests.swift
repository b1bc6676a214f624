import SluiceConfig
import Testing
@testable import SluiceLimiter

@Suite struct RateLimiterTests {
    func limiter(_ rules: [RuleConfiguration], previous: RateLimiter? = nil) -> RateLimiter {
        RateLimiter(configuration: SluiceConfiguration(rules: rules), previous: previous)
    }

    let login = RuleConfiguration(
        name: "login",
        match: RuleMatch(methods: ["POST"], path: .exact("/login")),
        key: [.ip],
        limits: [limit(2, per: 60, "2/minute")]
    )

    let post = TestRequest(method: "POST", uri: "/login")

    @Test func admitsThenLimitsWithRetryAfter() {
        let limiter = self.limiter([self.login])
        let first = limiter.evaluate(self.post, now: at(60))
        #expect(first.decision == .admitted)
        #expect(first.statuses.map(\.remaining) == [1])
        #expect(first.ruleDecisions == [RuleDecision(rule: "login", ruleIndex: 0, decision: .admitted)])
        #expect(limiter.evaluate(TestRequest(method: "POST", uri: "//login?x=1"), now: at(61)).decision == .admitted)
        let third = limiter.evaluate(self.post, now: at(62))
        #expect(third.decision == .limited)
        #expect(third.rule == "login")
        #expect(third.deniedLimit == "2/minute")
        // Sliding window: both units weigh fully until the window ends at 120, then decay: 2 × (1 − e/60) + 1 ≤ 2 at 150.
        #expect(third.retryAfter == 88)
        #expect(limiter.evaluate(TestRequest(method: "GET", uri: "/login"), now: at(62)).decision == .noRule)
        #expect(limiter.evaluate(TestRequest(method: "POST", uri: "/login", clientIP: IPAddress("198.51.100.1")!), now: at(62)).decision == .admitted)
    }

    @Test func exemptClients() {
        var rule = self.login
        rule.exempt = [CIDR("10.0.0.0/8")!]
        let limiter = self.limiter([rule])
        let request = TestRequest(method: "POST", uri: "/login", clientIP: IPAddress("10.1.2.3")!)
        for _ in 0..<5 {
            let outcome = limiter.evaluate(request, now: at(0))
            #expect(outcome.decision == .exempt)
            #expect(outcome.statuses.isEmpty)
        }
        #expect(limiter.store.trackedKeys == 0)
    }

    @Test func shadowRulesCountButNeverBlock() {
        var rule = self.login
        rule.mode = .shadow
        let limiter = self.limiter([rule])
        #expect(limiter.evaluate(self.post, now: at(0)).decision == .admitted)
        #expect(limiter.evaluate(self.post, now: at(0)).decision == .admitted)
        let third = limiter.evaluate(self.post, now: at(0))
        #expect(third.decision == .shadowLimited)
        #expect(third.rule == "login")
        #expect(third.retryAfter == nil && !third.isBlocked)
    }

    @Test func costFromAHeader() {
        var rule = self.login
        rule.limits = [limit(10, per: 60)]
        rule.algorithm = .fixedWindow
        rule.cost = .header(name: "x-cost", default: 2, max: 5)
        let limiter = self.limiter([rule])
        var nextHost = 0
        func remaining(_ cost: String?) -> Int? {
            // A fresh client per call, so each call starts from a full budget.
            nextHost += 1
            var request = self.post
            request.clientIP = IPAddress("192.0.2.\(nextHost)")!
            if let cost { request.headers = [("X-Cost", cost)] }
            return limiter.evaluate(request, now: at(0)).statuses.first?.remaining
        }
        #expect(remaining("3") == 7)
        #expect(remaining(nil) == 8)
        #expect(remaining("abc") == 8)
        #expect(remaining("0") == 8)
        #expect(remaining("-4") == 8)
        #expect(remaining("500") == 5)
        // Whitespace around the number is not part of it (RFC 9110 §5.5); a leading `+` is allowed.
        #expect(remaining(" 3\t") == 7)
        #expect(remaining("+3") == 7)
        #expect(remaining("3 4") == 8)
        #expect(remaining("1.5") == 8)
        #expect(remaining("") == 8)
        // An integer too large for Int64 is above max (SPEC §2), never default.
        #expect(remaining("9223372036854775807") == 5)
        #expect(remaining("9223372036854775808") == 5)
        #expect(remaining("99999999999999999999999999999") == 5)
        #expect(remaining("+99999999999999999999") == 5)
        #expect(remaining("-99999999999999999999") == 8)
        #expect(remaining("99999999999999999999x") == 8)
    }

    @Test func costHeaderParsing() {
        #expect(CostHeader.parse("0") == .integer(0))
        #expect(CostHeader.parse("007") == .integer(7))
        #expect(CostHeader.parse("+5") == .integer(5))
        #expect(CostHeader.parse("-5") == .integer(-5))
        #expect(CostHeader.parse("9223372036854775807") == .integer(.max))
        #expect(CostHeader.parse("-9223372036854775808") == .integer(.min))
        #expect(CostHeader.parse("9223372036854775808") == .aboveInt64)
        #expect(CostHeader.parse("-9223372036854775809") == .belowInt64)
        for text in ["", "+", "-", "1e3", "0x10", " 1", "1 ", "١"] {
            #expect(CostHeader.parse(text[...]) == .notAnInteger, "\(text)")
        }
    }

    @Test func costAboveCountIsRefusedForGood() {
        var rule = self.login
        rule.cost = .fixed(3)
        let limiter = self.limiter([rule])
        let outcome = limiter.evaluate(self.post, now: at(0))
        #expect(outcome.decision == .limited)
        #expect(outcome.retryAfter == nil)
        #expect(outcome.deniedLimit == "2/minute")
        #expect(limiter.store.trackedKeys == 0)
    }

    @Test func tiers() {
        var rule = RuleConfiguration(name: "api", key: [.header("x-api-key")], limits: [limit(1, per: 60)])
        rule.tiers = Tiers(by: .header("x-plan"), values: ["pro": [limit(3, per: 60)]], defaultLimits: [limit(2, per: 60)])
        let limiter = self.limiter([rule])
        func admitted(plan: String?) -> Int {
            var request = TestRequest(headers: [("X-Api-Key", "key-\(plan ?? "none")")])
            if let plan { request.headers.append(("X-Plan", plan)) }
            return (0..<10).filter { _ in limiter.evaluate(request, now: at(0)).decision == .admitted }.count
        }
        #expect(admitted(plan: "pro") == 3)
        #expect(admitted(plan: "free") == 2)
        #expect(admitted(plan: nil) == 2)
        rule.tiers?.defaultLimits = nil
        let withoutDefault = self.limiter([rule])
        let request = TestRequest(headers: [("X-Api-Key", "k"), ("X-Plan", "other")])
        #expect(withoutDefault.evaluate(request, now: at(0)).decision == .admitted)
        #expect(withoutDefault.evaluate(request, now: at(0)).decision == .limited)
    }

    @Test func onMissingKey() {
        var rule = RuleConfiguration(name: "keyed", key: [.header("x-api-key")], limits: [limit(1, per: 60)])
        let anonymous = TestRequest()
        #expect(self.limiter([rule]).evaluate(anonymous, now: at(0)).decision == .noRule)

        rule.onMissingKey = .deny
        let denied = self.limiter([rule]).evaluate(anonymous, now: at(0))
        #expect(denied.decision == .limited && denied.retryAfter == nil && denied.rule == "keyed")

        rule.onMissingKey = .fallback([.ip])
        let fallback = self.limiter([rule])
        #expect(fallback.evaluate(anonymous, now: at(0)).decision == .admitted)
        #expect(fallback.evaluate(anonymous, now: at(0)).decision == .limited)
        // A client whose API key equals the IP text does not share the fallback budget.
        let forged = TestRequest(headers: [("X-Api-Key", "203.0.113.7")])
        #expect(fallback.evaluate(forged, now: at(0)).decision == .admitted)
    }

    @Test func allOrNothingAcrossRules() async throws {
        let perIP = RuleConfiguration(name: "per-ip", key: [.ip], limits: [limit(100, per: 60)], algorithm: .fixedWindow)
        let global = RuleConfiguration(name: "global", key: [.const("all")], limits: [limit(1, per: 60)], algorithm: .fixedWindow)
        let limiter = self.limiter([perIP, global])
        #expect(limiter.evaluate(TestRequest(), now: at(0)).decision == .admitted)
        let blocked = limiter.evaluate(TestRequest(), now: at(0))
        #expect(blocked.decision == .limited && blocked.rule == "global")
        #expect(blocked.retryAfter == 60)
        #expect(blocked.ruleDecisions.map(\.decision) == [.admitted, .limited])
        // per-ip was not charged for the refused request.
        let perIPStatus = try await limiter.keyState(rule: "per-ip", displayKey: "203.0.113.7", now: at(0))!
        #expect(perIPStatus.limits.map(\.remaining) == [99])
        #expect(blocked.statuses.first?.rule == "global")
    }

    /// Metrics are counted by the rule's position in the file, not among the rules that applied.
    @Test func decisionsCarryTheRulesPositionInTheFile() {
        let posts = RuleConfiguration(
            name: "posts", match: RuleMatch(methods: ["POST"]), limits: [limit(100, per: 60)], algorithm: .gcra
        )
        let shadow = RuleConfiguration(name: "shadow", limits: [limit(1, per: 60)], algorithm: .fixedWindow, mode: .shadow)
        let global = RuleConfiguration(
            name: "global", key: [.const("all")], limits: [limit(2, per: 60)], algorithm: .fixedWindow
        )
        let limiter = self.limiter([posts, shadow, global])
        let admitted = limiter.evaluate(TestRequest(), now: at(0))
        #expect(admitted.ruleDecisions.map(\.ruleIndex) == [1, 2], "posts does not apply to a GET")
        #expect(admitted.decision == .admitted && admitted.ruleIndex == nil)
        let shadowed = limiter.evaluate(TestRequest(), now: at(0))
        #expect(shadowed.decision == .shadowLimited)
        #expect(shadowed.rule == "shadow" && shadowed.ruleIndex == 1)
        let limited = limiter.evaluate(TestRequest(), now: at(0))
        #expect(limited.decision == .limited)
        #expect(limited.rule == "global" && limited.ruleIndex == 2)
        #expect(
            limited.ruleDecisions == [
                RuleDecision(rule: "shadow", ruleIndex: 1, decision: .shadowLimited),
                RuleDecision(rule: "global", ruleIndex: 2, decision: .limited),
            ]
        )
    }

    @Test func blockFor() async throws {
        var rule = self.login
        rule.algorithm = .fixedWindow
        rule.blockFor = .seconds(600)
        let limiter = self.limiter([rule])
        _ = limiter.evaluate(self.post, now: at(0))
        _ = limiter.evaluate(self.post, now: at(0))
        // The breach blocks the key for 600 s from now: its own Retry-After says so (not the window's 59).
        #expect(limiter.evaluate(self.post, now: at(1)).retryAfter == 600)
        // Blocked well after the window reset; refused requests do not extend the block.
        #expect(limiter.evaluate(self.post, now: at(100)).retryAfter == 501)
        #expect(limiter.evaluate(self.post, now: at(500)).retryAfter == 101)
        #expect(try await limiter.keyState(rule: "login", displayKey: "203.0.113.7", now: at(500))?.blockedForSeconds == 101)
        #expect(limiter.evaluate(self.post, now: at(601)).decision == .admitted)
    }

    @Test func countWhenChargesAfterTheResponse() {
        var rule = self.login
        rule.algorithm = .fixedWindow
        rule.countWhen = StatusSet(codes: [401], classes: [5])
        let limiter = self.limiter([rule])
        for status in [200, 302, 401, 503] {
            let outcome = limiter.evaluate(self.post, now: at(0))
            #expect(outcome.decision == .admitted)
            outcome.deferredCharge?.responseReceived(status: status, now: at(0))
        }
        let outcome = limiter.evaluate(self.post, now: at(0))
        #expect(outcome.decision == .limited)
        #expect(outcome.deferredCharge == nil)
    }

    @Test func gcraDelay() {
        var rule = self.login
        rule.algorithm = .gcra
        rule.limits = [limit(10, per: 1)]
        rule.delay = .milliseconds(250)
        let limiter = self.limiter([rule])
        #expect(limiter.evaluate(self.post, now: at(0)).delay == nil)
        let held = limiter.evaluate(self.post, now: at(0))
        #expect(held.decision == .admitted)
        #expect(held.delay == .milliseconds(100))
    }

    @Test func reloadKeepsUnchangedCountersOnly() {
        let other = RuleConfiguration(name: "other", key: [.ip], limits: [limit(1, per: 60)])
        let first = self.limiter([self.login, other])
        _ = first.evaluate(self.post, now: at(0))
        _ = first.evaluate(self.post, now: at(0))
        #expect(first.evaluate(self.post, now: at(0)).decision == .limited)

        // Unchanged rule: still limited after the reload.
        let same = self.limiter([self.login, other], previous: first)
        #expect(same.store === first.store)
        #expect(same.evaluate(self.post, now: at(1)).decision == .limited)

        // Changed limits: the rule starts afresh.
        var changed = self.login
        changed.limits = [limit(3, per: 60, "3/minute")]
        let reloaded = self.limiter([changed], previous: same)
        #expect(reloaded.evaluate(self.post, now: at(1)).decision == .admitted)

        // Changed key: afresh too.
        var rekeyed = self.login
        rekeyed.key = [.ip, .path]
        #expect(self.limiter([rekeyed], previous: same).evaluate(self.post, now: at(1)).decision == .admitted)
    }

    @Test func sharedRulesMeetInOneBudget() {
        let a = RuleConfiguration(name: "a", match: RuleMatch(path: .exact("/a")), key: [.ip], limits: [limit(2, per: 60)], shared: "pool")
        let b = RuleConfiguration(name: "b", match: RuleMatch(path: .exact("/b")), key: [.ip], limits: [limit(2, per: 60)], shared: "pool")
        let limiter = self.limiter([a, b])
        #expect(limiter.evaluate(TestRequest(uri: "/a"), now: at(0)).decision == .admitted)
        #expect(limiter.evaluate(TestRequest(uri: "/b"), now: at(0)).decision == .admitted)
        #expect(limiter.evaluate(TestRequest(uri: "/a"), now: at(0)).decision == .limited)
    }

    @Test func severalLimitsNameTheirPolicies() {
        var rule = self.login
        rule.algorithm = .fixedWindow
        rule.limits = [limit(5, per: 60), limit(3, per: 3600)]
        let outcome = self.limiter([rule]).evaluate(self.post, now: at(0))
        #expect(outcome.statuses.map(\.policyName) == ["login-3600", "login-60"])
        #expect(outcome.statuses.map(\.remaining) == [2, 4])
        #expect(outcome.headerMode == .draft)
    }

    @Test func adminStateAndReset() async throws {
        let limiter = self.limiter([self.login])
        _ = limiter.evaluate(self.post, now: at(0))
        #expect(try await limiter.keyState(rule: "nope", displayKey: "x", now: at(0)) == nil)
        let state = try await limiter.keyState(rule: "login", displayKey: "203.0.113.7", now: at(0))!
        #expect(state.limits.map(\.remaining) == [1])
        #expect(state.limits.map(\.limit.text) == ["2/minute"])
        #expect(try await limiter.keyState(rule: "login", displayKey: "198.51.100.9", now: at(0))?.limits.map(\.remaining) == [2])
        #expect(try await limiter.resetKey(rule: "login", displayKey: "203.0.113.7") == true)
        #expect(try await limiter.resetKey(rule: "nope", displayKey: "x") == nil)
        #expect(try await limiter.keyState(rule: "login", displayKey: "203.0.113.7", now: at(0))?.limits.map(\.remaining) == [2])
    }
}
