import Foundation
import SluiceConfig
import SluiceLimiter
import Testing

@testable import SluiceAdmin

/// The status page's concurrency chart (issue 22 item 8): what `GET /status` says of a rule with `concurrency`, read
/// from the slot table through ``SluiceMetrics/totals()`` and ``RateHistory`` like every other chart.
@Suite struct ConcurrencyStatusTests {
    struct Key: RequestAttributes {
        var key: String
        var method = "GET"
        var uri = "/"
        var host: String? = "test"
        var clientIP = IPAddress(ipv4: 0x7f00_0001)
        func header(_ name: String) -> String? { name.lowercased() == "x-key" ? self.key : nil }
        func forEachHeaderValue(_ name: String, _ body: (String) -> Bool) {
            if let value = self.header(name) { _ = body(value) }
        }
    }

    @Test func inFlightQueuedAndRefusalsPerSample() throws {
        var rule = RuleConfiguration(name: "gen", key: [.header("x-key")], limits: [])
        rule.concurrency = ConcurrencyConfiguration(max: 1, queue: .init(size: 1, timeout: .seconds(5)))
        var configuration = testConfiguration()
        configuration.rules.append(rule)
        let concurrency = try #require(ConcurrencyLimiter(configuration: configuration, table: ConcurrencySlotTable()))
        let metrics = SluiceMetrics()
        metrics.setConcurrencySource { concurrency.ruleSlots }
        let history = RateHistory()
        let now = StatusReportTests.nowMilliseconds
        history.record(metrics.totals(), atMilliseconds: now - 4_000)

        // Sample 1: two keys in flight, one request of key a queued, a third of key a refused (queue full).
        let first = try #require(concurrency.admission(for: Key(key: "a")))
        _ = first.start(wake: { _ in })
        let second = try #require(concurrency.admission(for: Key(key: "b")))
        _ = second.start(wake: { _ in })
        let queued = try #require(concurrency.admission(for: Key(key: "a")))
        _ = queued.start(wake: { _ in })
        let refused = try #require(concurrency.admission(for: Key(key: "a")))
        _ = refused.start(wake: { _ in })
        refused.release()
        history.record(metrics.totals(), atMilliseconds: now - 2_000)

        // Sample 2: everything ended.
        queued.release()
        first.release()
        second.release()
        history.record(metrics.totals(), atMilliseconds: now)

        let backend = TestBackend(configuration: configuration)
        let text = StatusReport(backend: backend, history: history, now: testNow).json.rendered()
        let json = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        let rules = try #require(json["rules"] as? [[String: Any]])
        #expect(rules.first { $0["name"] as? String == "login" }?["concurrency"] == nil, "a rate-only rule has no chart")
        let gen = try #require(rules.first { $0["name"] as? String == "gen" })
        let chart = try #require(gen["concurrency"] as? [String: Any])
        #expect(chart["max"] as? Int == 1)
        #expect(chart["queue_size"] as? Int == 1)
        #expect(chart["in_flight"] as? [Int] == [2, 0])
        #expect(chart["queued"] as? [Int] == [1, 0])
        #expect(chart["refusals"] as? [Int] == [1, 0])
        #expect(chart["last_minute_refusals"] as? Int == 1)
    }

    @Test func totalsKeepGaugesAndCountRefusalsBetweenReadings() {
        var earlier = MetricTotals()
        earlier.concurrency["gen"] = .init(inFlight: 5, queued: 2, refusals: 10)
        var later = MetricTotals()
        later.concurrency["gen"] = .init(inFlight: 3, queued: 0, refusals: 14)
        later.concurrency["new"] = .init(inFlight: 1, queued: 0, refusals: 2)
        let delta = later.subtracting(earlier)
        #expect(delta.concurrency["gen"] == .init(inFlight: 3, queued: 0, refusals: 4))
        #expect(delta.concurrency["new"] == .init(inFlight: 1, queued: 0, refusals: 2))
        let sum = delta.adding(earlier)
        #expect(sum.concurrency["gen"] == .init(inFlight: 5, queued: 2, refusals: 14), "highest gauges, summed refusals")
    }
}
