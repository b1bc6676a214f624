import Foundation
import SluiceConfig
import SluiceLimiter
import Testing

@testable import SluiceAdmin

/// `GET /status`: the JSON the status page polls.
@Suite struct StatusReportTests {
    static let nowMilliseconds: Int64 = testNow.nanosecondsSinceEpoch / 1_000_000

    func report(
        _ backend: TestBackend,
        history: RateHistory = RateHistory()
    ) throws -> (text: String, json: [String: Any]) {
        let text = StatusReport(backend: backend, history: history, now: testNow).json.rendered()
        let json = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        return (text, json)
    }

    /// Two samples of `login` traffic ending at `testNow`, and upstream answers in the second.
    func history(upstream: [Int: Int] = [200: 7], unreachable: Int = 0) -> RateHistory {
        let history = RateHistory()
        let metrics = SluiceMetrics()
        history.record(metrics.totals(), atMilliseconds: Self.nowMilliseconds - 4_000)
        for _ in 0..<6 { metrics.requestDecided(rule: "login", decision: .admitted) }
        history.record(metrics.totals(), atMilliseconds: Self.nowMilliseconds - 2_000)
        for _ in 0..<4 { metrics.requestDecided(rule: "login", decision: .limited) }
        metrics.requestDecided(rule: "login", decision: .admitted)
        for (status, count) in upstream {
            for _ in 0..<count { metrics.upstreamResponded(status: status, seconds: 0.001) }
        }
        for _ in 0..<unreachable { metrics.upstreamFailed(status: 502) }
        history.record(metrics.totals(), atMilliseconds: Self.nowMilliseconds)
        return history
    }

    @Test func ratesPerRuleByDecision() throws {
        let (_, json) = try self.report(TestBackend(), history: self.history())
        #expect(json["now_ms"] as? Int == Int(Self.nowMilliseconds))
        #expect(json["interval_ms"] as? Int == 2_000)
        let samples = try #require(json["samples"] as? [String: [Int]])
        #expect(samples["duration_ms"] == [2_000, 2_000])
        let rules = try #require(json["rules"] as? [[String: Any]])
        #expect(rules.map { $0["name"] as? String } == ["login", "api"], "every configured rule, in file order")
        let login = rules[0]
        #expect(login["limits"] as? String == "5/minute")
        #expect(login["key"] as? String == "ip")
        let lastMinute = try #require(login["last_minute"] as? [String: Int])
        #expect(lastMinute == ["admitted": 7, "limited": 4, "shadow_limited": 0, "exempt": 0])
        let series = try #require(login["series"] as? [String: [Int]])
        #expect(series["admitted"] == [6, 1])
        #expect(series["limited"] == [0, 4])
        #expect((rules[1]["series"] as? [String: [Int]])?["admitted"] == [0, 0])
    }

    @Test func limitedKeysAreHashesNeverValues() throws {
        var configuration = testConfiguration()
        configuration.rules[0].key = [.header("x-api-key")]
        let backend = TestBackend(configuration: configuration)
        let limiter = try #require(backend.limiter)
        let secret = "sk_live_51HsecretApiKeyValue"
        let request = TestRequest(method: "POST", uri: "/login", headers: [("X-Api-Key", secret)])
        var digest: StorageKey?
        for _ in 0..<8 {
            let outcome = limiter.evaluate(request, now: testNow)
            if outcome.decision == .limited, let key = outcome.keyDigest {
                digest = key
                backend.limitedKeys?.record(rule: "login", key: key, shadow: false, nowSeconds: testNow.unixSeconds)
            }
        }
        let key = try #require(digest)
        let (text, json) = try self.report(backend)
        let limited = try #require(json["limited_keys"] as? [String: Any])
        #expect(limited["window_minutes"] as? Int == 5)
        let rows = try #require(limited["keys"] as? [[String: Any]])
        #expect(rows.count == 1)
        #expect(rows[0]["rule"] as? String == "login")
        #expect(rows[0]["key_hash"] as? String == key.displayHash)
        #expect(rows[0]["count"] as? Int == 3)
        #expect(rows[0]["decision"] as? String == "limited")
        #expect(rows[0]["last_seen_ms"] as? Int == Int(Self.nowMilliseconds))
        #expect(!text.contains(secret) && !text.contains("sk_live"))
        #expect(!text.contains(key.description), "only the 12-digit prefix of the digest")
    }

    @Test func memoryStorage() throws {
        let backend = TestBackend()
        _ = backend.limiter?.evaluate(TestRequest(method: "POST", uri: "/login"), now: testNow)
        let storage = try #require(try self.report(backend).json["storage"] as? [String: Any])
        #expect(storage["kind"] as? String == "memory")
        #expect(storage["status"] as? String == "ok")
        #expect(storage["tracked_keys"] as? Int == 1)
        #expect(storage["max_keys"] as? Int == 1_000_000)
        #expect(storage["evictions"] as? Int == 0)
    }

    @Test func redisStorageWithoutItsPassword() throws {
        var configuration = testConfiguration(redisPassword: "hunter2")
        configuration.storage.kind = .redis
        let backend = TestBackend(configuration: configuration)
        backend.storageAvailable = false
        let metrics = SluiceMetrics()
        let history = RateHistory()
        history.record(metrics.totals(), atMilliseconds: Self.nowMilliseconds - 2_000)
        metrics.storageObserved(seconds: 0.0004)
        metrics.storageObserved(seconds: 0.0008)
        metrics.storageError()
        history.record(metrics.totals(), atMilliseconds: Self.nowMilliseconds)
        let (text, json) = try self.report(backend, history: history)
        let storage = try #require(json["storage"] as? [String: Any])
        #expect(storage["kind"] as? String == "redis")
        #expect(storage["status"] as? String == "unavailable")
        #expect(storage["address"] as? String == "10.0.0.5:6379/2")
        #expect(storage["errors_last_minute"] as? Int == 1)
        #expect(storage["decisions_last_minute"] as? Int == 2)
        #expect(storage["latency_us_last_minute"] as? Int == 600)
        #expect(!text.contains("hunter2"))
    }

    @Test func upstreamHealthFromTheLastMinute() throws {
        func upstream(_ history: RateHistory) throws -> [String: Any] {
            try #require(try self.report(TestBackend(), history: history).json["upstream"] as? [String: Any])
        }
        let healthy = try upstream(self.history(upstream: [200: 5, 404: 2]))
        #expect(healthy["status"] as? String == "ok")
        #expect(healthy["targets"] as? [String] == ["http://127.0.0.1:3000"])
        let counts = try #require(healthy["last_minute"] as? [String: Int])
        #expect(counts["responses"] == 7 && counts["2xx"] == 5 && counts["4xx"] == 2 && counts["unreachable_502"] == 0)
        #expect(try upstream(self.history(upstream: [200: 5, 503: 1]))["status"] as? String == "degraded")
        #expect(try upstream(self.history(upstream: [200: 5], unreachable: 1))["status"] as? String == "degraded")
        #expect(try upstream(self.history(upstream: [:], unreachable: 3))["status"] as? String == "failing")
        #expect(try upstream(self.history(upstream: [:]))["status"] as? String == "idle")
        // Older than a minute: not counted.
        let old = RateHistory()
        old.record(MetricTotals(), atMilliseconds: Self.nowMilliseconds - 70_000)
        var totals = MetricTotals()
        totals.upstreamUnreachable = 9
        old.record(totals, atMilliseconds: Self.nowMilliseconds - 61_000)
        #expect(try upstream(old)["status"] as? String == "idle")
    }

    @Test func reloadResult() throws {
        let backend = TestBackend()
        #expect(try self.report(backend).json["reload"] is NSNull)
        backend.reloadStatus = ReloadStatus(
            startedMilliseconds: 1_000,
            successes: 2,
            failures: 1,
            last: ReloadStatus.Attempt(
                milliseconds: 5_000,
                succeeded: false,
                error: "/etc/sluice/sluice.yaml:7:12: unknown key \"limts\""
            )
        )
        let reload = try #require(try self.report(backend).json["reload"] as? [String: Any])
        #expect(reload["started_ms"] as? Int == 1_000)
        #expect(reload["successes"] as? Int == 2 && reload["failures"] as? Int == 1)
        let last = try #require(reload["last"] as? [String: Any])
        #expect(last["result"] as? String == "failure")
        #expect(last["time_ms"] as? Int == 5_000)
        #expect(last["error"] as? String == "/etc/sluice/sluice.yaml:7:12: unknown key \"limts\"")
    }
}
