import SluiceAdmin
import SluiceConfig
import SluiceLimiter
import SluiceTestSupport
import Testing

@testable import SluiceProxy

/// The request path counts rule decisions by the rule's position in the file (issue 19 part 5): over real sockets,
/// every decision must land under its rule's name, also after a reload that moves, adds and removes rules.
@Suite("Metrics by rule index", .timeLimit(.minutes(3)))
struct ProxyMetricsTests {
    /// A rule for the requests that carry `X-Rule: NAME`: the first request of a client is admitted, the next ones
    /// within an hour are refused (gcra, so the turn of a minute does not reset it).
    static func rule(_ name: String, mode: RuleConfiguration.Mode = .enforce) -> RuleConfiguration {
        RuleConfiguration(
            name: name,
            match: RuleMatch(headers: [RuleMatch.HeaderCondition(name: "x-rule", value: name)]),
            key: [.ip],
            limits: [RateLimit(count: 1, periodSeconds: 3600, text: "1/hour")],
            algorithm: .gcra,
            mode: mode
        )
    }

    /// One request for rule `rule`, answered by the upstream with `code` when forwarded.
    static func send(_ proxy: ProxyHarness, rule: String, code: Int) async throws -> Int {
        try await proxy.get("/status?code=\(code)", headers: ["X-Rule: \(rule)"]).status
    }

    @Test func decisionsLandUnderTheirRuleAcrossAReloadThatReordersRules() async throws {
        try await withProxy({ $0.rules = [Self.rule("a"), Self.rule("b"), Self.rule("s", mode: .shadow)] }) { proxy in
            #expect(try await Self.send(proxy, rule: "a", code: 201) == 201)
            #expect(try await Self.send(proxy, rule: "a", code: 201) == 429)
            #expect(try await Self.send(proxy, rule: "b", code: 299) == 299)
            #expect(try await Self.send(proxy, rule: "s", code: 599) == 599)
            #expect(try await Self.send(proxy, rule: "s", code: 599) == 599, "a shadow rule only counts")
            #expect(try await Self.send(proxy, rule: "none", code: 200) == 200, "no rule applies")

            let metrics = proxy.server.metrics
            var totals = metrics.totals()
            #expect(totals.requests["a"] == DecisionCounts(admitted: 1, limited: 1))
            #expect(totals.requests["b"] == DecisionCounts(admitted: 1))
            #expect(totals.requests["s"] == DecisionCounts(admitted: 1, shadowLimited: 1))
            #expect(totals.requests.count == 3)

            // `b` removed, `a` moves from 0 to 2, `s` from 2 to 1, `c` is new at 0: an index resolved against the
            // wrong table would count `a` as `s`'s or `b`'s.
            var configuration = proxy.server.configuration
            configuration.rules = [Self.rule("c"), Self.rule("s", mode: .shadow), Self.rule("a")]
            try await proxy.server.reload(configuration)
            #expect(try await Self.send(proxy, rule: "a", code: 201) == 429, "a's counter carried over")
            #expect(try await Self.send(proxy, rule: "c", code: 201) == 201)
            #expect(try await Self.send(proxy, rule: "s", code: 599) == 599)
            #expect(try await Self.send(proxy, rule: "b", code: 299) == 299, "b no longer applies")

            totals = metrics.totals()
            #expect(totals.requests["a"] == DecisionCounts(admitted: 1, limited: 2))
            #expect(totals.requests["b"] == DecisionCounts(admitted: 1), "a removed rule's series stay")
            #expect(totals.requests["c"] == DecisionCounts(admitted: 1))
            #expect(totals.requests["s"] == DecisionCounts(admitted: 1, shadowLimited: 2))
            #expect(totals.upstreamResponses[201] == 2)
            #expect(totals.upstreamResponses[299] == 2)
            #expect(totals.upstreamResponses[599] == 3)

            let text = metrics.exposition()
            for (rule, decision, count) in [
                ("a", "admitted", 1), ("a", "limited", 2), ("a", "shadow_limited", 0), ("a", "exempt", 0),
                ("b", "admitted", 1), ("b", "limited", 0), ("c", "admitted", 1), ("s", "shadow_limited", 2),
            ] {
                #expect(text.contains("sluice_requests_total{rule=\"\(rule)\",decision=\"\(decision)\"} \(count)\n"))
            }
            #expect(text.split(separator: "\n").filter { $0.hasPrefix("sluice_requests_total{") }.count == 16)
            #expect(text.components(separatedBy: "# TYPE sluice_requests_total counter\n").count == 2)
            #expect(text.contains("sluice_upstream_responses_total{status=\"599\"} 3\n"))

            // The status page's table of refused keys, merged over the event loops.
            let top = try #require(proxy.server.limitedKeys).top(10, nowSeconds: LimiterInstant.now().unixSeconds)
            #expect(top.map { "\($0.rule):\($0.shadow):\($0.count)" }.sorted() == ["a:false:2", "s:true:2"])
        }
    }

    /// The stderr notice of shadow rules, throttled per rule index without a lock.
    @Test func shadowLogLetsOneLinePerRuleAndSecondThrough() {
        let throttle = ShadowLogThrottle(rules: 2)
        #expect(throttle.shouldLog(ruleIndex: 0, second: 100) == 0)
        #expect(throttle.shouldLog(ruleIndex: 0, second: 100) == nil)
        #expect(throttle.shouldLog(ruleIndex: 0, second: 100) == nil)
        #expect(throttle.shouldLog(ruleIndex: 1, second: 100) == 0, "each rule has its own line")
        #expect(throttle.shouldLog(ruleIndex: 0, second: 101) == 2, "the next line says how many were suppressed")
        #expect(throttle.shouldLog(ruleIndex: 0, second: 101) == nil)
        #expect(throttle.shouldLog(ruleIndex: 0, second: 102) == 1)
        #expect(throttle.shouldLog(ruleIndex: 2, second: 102) == nil, "an index outside the table logs nothing")
    }
}
