import NIOHTTP1
import SluiceConfig
import SluiceLimiter
import Testing

@testable import SluiceAdmin

/// `GET /limits` and `/metrics` for a rule with `concurrency` (issue 22), as plain function calls.
@Suite struct ConcurrencyAdminTests {
    struct Backend: AdminBackend {
        var configuration: SluiceConfiguration
        var limiter: RateLimiter?
        var concurrencyLimiter: ConcurrencyLimiter?
        var isReady: Bool { true }
    }

    struct Key: RequestAttributes {
        var method = "GET"
        var uri = "/"
        var host: String? = "test"
        var clientIP = IPAddress(ipv4: 0x7f00_0001)
        func header(_ name: String) -> String? { name.lowercased() == "x-key" ? "k" : nil }
        func forEachHeaderValue(_ name: String, _ body: (String) -> Bool) {
            if let value = self.header(name) { _ = body(value) }
        }
    }

    @Test func limitsShowTheInFlightCountAndMetricsTheFamilies() async throws {
        var rule = RuleConfiguration(name: "gen", key: [.header("x-key")], limits: [])
        rule.concurrency = ConcurrencyConfiguration(max: 2)
        var configuration = testConfiguration()
        configuration.rules = [rule]
        let concurrency = try #require(ConcurrencyLimiter(configuration: configuration, table: ConcurrencySlotTable()))
        let backend = Backend(
            configuration: configuration,
            limiter: RateLimiter(configuration: configuration, previous: nil),
            concurrencyLimiter: concurrency
        )
        let metrics = SluiceMetrics()
        metrics.setConcurrencySource { concurrency.ruleSlots }
        let router = AdminRouter(backend: backend, metrics: metrics, clock: { testNow })

        let admission = try #require(concurrency.admission(for: Key()))
        _ = admission.start(wake: { _ in })
        defer { admission.release() }

        let response = await router.respond(method: .GET, uri: "/limits/gen?key=k", authorization: nil)
        #expect(response.status == .ok)
        #expect(response.body.contains("\"concurrency\": {\n    \"max\": 2,\n    \"in_flight\": 1,\n    \"queued\": 0\n  }"))
        let other = await router.respond(method: .GET, uri: "/limits/gen?key=other", authorization: nil)
        #expect(other.body.contains("\"in_flight\": 0,"))

        let config = await router.respond(method: .GET, uri: "/config", authorization: nil).body
        #expect(config.contains("\"concurrency\": {"))
        #expect(config.contains("\"retry_after\": \"1s\""))

        let text = await router.respond(method: .GET, uri: "/metrics", authorization: nil).body
        #expect(text.contains("sluice_concurrency_in_flight{rule=\"gen\"} 1\n"))
        #expect(text.contains("sluice_concurrency_refusals_total{rule=\"gen\",reason=\"queue_full\"} 0\n"))
    }
}
