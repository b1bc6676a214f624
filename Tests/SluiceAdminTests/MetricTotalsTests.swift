import SluiceLimiter
import Testing

@testable import SluiceAdmin

@Suite struct MetricTotalsTests {
    @Test func readsBackWhatTheMetricsCounted() {
        let metrics = SluiceMetrics()
        metrics.prepare(rules: ["idle"])
        for _ in 0..<3 { metrics.requestDecided(rule: "login", decision: .admitted) }
        metrics.requestDecided(rule: "login", decision: .limited)
        metrics.requestDecided(rule: "login", decision: .shadowLimited)
        metrics.requestDecided(rule: "login", decision: .exempt)
        metrics.requestDecided(rule: "login", decision: .noRule)
        metrics.upstreamResponded(status: 200, seconds: 0.01)
        metrics.upstreamResponded(status: 200, seconds: 0.01)
        metrics.upstreamResponded(status: 503, seconds: 0.01)
        metrics.upstreamFailed(status: 502)
        metrics.upstreamFailed(status: 504)
        metrics.upstreamFailed(status: 504)
        metrics.storageError()
        metrics.storageObserved(seconds: 0.001)
        metrics.storageObserved(seconds: 0.003)

        let totals = metrics.totals()
        #expect(totals.requests["login"] == DecisionCounts(admitted: 3, limited: 1, shadowLimited: 1, exempt: 1))
        #expect(totals.requests["idle"] == DecisionCounts())
        #expect(totals.upstreamResponses == [200: 2, 503: 1])
        #expect(totals.upstreamUnreachable == 1 && totals.upstreamTimeouts == 2)
        #expect(totals.storageErrors == 1)
        #expect(totals.storageDecisions == 2)
        #expect(abs(totals.storageNanoseconds - 4_000_000) < 1_000)
        // The Prometheus side still counts as before.
        #expect(metrics.exposition().contains(#"sluice_requests_total{rule="login",decision="admitted"} 3"#))
    }

    @Test func subtractsAndAdds() {
        var earlier = MetricTotals()
        earlier.requests["a"] = DecisionCounts(admitted: 1)
        earlier.upstreamResponses[200] = 4
        var later = earlier
        later.requests["a"]!.admitted = 5
        later.requests["b"] = DecisionCounts(limited: 2)
        later.upstreamResponses[200] = 6
        later.upstreamTimeouts = 1
        let delta = later.subtracting(earlier)
        #expect(delta.requests == ["a": DecisionCounts(admitted: 4), "b": DecisionCounts(limited: 2)])
        #expect(delta.upstreamResponses == [200: 2] && delta.upstreamTimeouts == 1)
        #expect(delta.adding(delta).requests["a"]?.admitted == 8)
        #expect(earlier.adding(delta) == later)
    }
}
