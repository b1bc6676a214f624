import SluiceConfig
import Testing

@testable import SluiceAdmin

/// The parts of the admin listener that need no socket.
@Suite struct AdminRequestTargetTests {
    @Test func splitsAndDecodes() throws {
        let target = try #require(AdminRequestTarget("/limits/login?key=203.0.113.7%7C%2Flogin&x&y=%20"))
        #expect(target.path == "/limits/login")
        #expect(target.queryValue("key") == "203.0.113.7|/login")
        #expect(target.queryValue("x") == "")
        #expect(target.queryValue("y") == " ")
        #expect(target.queryValue("z") == nil)
    }

    @Test func plusStaysAPlus() throws {
        #expect(AdminRequestTarget("/limits/api?key=ab+c%2B")?.queryValue("key") == "ab+c+")
    }

    @Test func malformedEscapesAreRejected() {
        #expect(AdminRequestTarget("/a?key=%4") == nil)
        #expect(AdminRequestTarget("/a?key=%g1") == nil)
        #expect(AdminRequestTarget("/a%ff") == nil)
    }
}

@Suite struct AdminAuthorizationTests {
    @Test func acceptsOnlyTheBearerToken() {
        #expect(AdminAuthorization.isAuthorized(header: "Bearer abc", token: "abc"))
        #expect(AdminAuthorization.isAuthorized(header: "BEARER  abc ", token: "abc"))
        #expect(!AdminAuthorization.isAuthorized(header: nil, token: "abc"))
        #expect(!AdminAuthorization.isAuthorized(header: "Bearer ab", token: "abc"))
        #expect(!AdminAuthorization.isAuthorized(header: "Bearer abcd", token: "abc"))
        #expect(!AdminAuthorization.isAuthorized(header: "Bearer", token: "abc"))
        #expect(!AdminAuthorization.isAuthorized(header: "Basic abc", token: "abc"))
        #expect(!AdminAuthorization.isAuthorized(header: "abc", token: "abc"))
    }

    @Test func constantTimeEquals() {
        #expect(AdminAuthorization.constantTimeEquals([1, 2, 3], [1, 2, 3]))
        #expect(!AdminAuthorization.constantTimeEquals([1, 2, 3], [1, 2, 4]))
        #expect(!AdminAuthorization.constantTimeEquals([1, 2], [1, 2, 0]))
        #expect(AdminAuthorization.constantTimeEquals([], []))
    }
}

@Suite struct DurationTextTests {
    @Test(arguments: [
        (Duration.zero, "0s"), (.milliseconds(250), "250ms"), (.seconds(2), "2s"), (.seconds(90), "90s"),
        (.seconds(300), "5m"), (.seconds(3600), "1h"), (.milliseconds(1500), "1500ms"),
    ])
    func formats(duration: Duration, text: String) {
        #expect(DurationText.format(duration) == text)
    }
}

@Suite struct AdminJSONTests {
    @Test func escapesAndKeepsOrder() {
        let value = AdminJSON.object([("b", .string("q\"\\\n\u{1}")), ("a", .array([.int(1), .null, .bool(true)]))])
        #expect(
            value.rendered() == """
                {
                  "b": "q\\"\\\\\\n\\u0001",
                  "a": [
                    1,
                    null,
                    true
                  ]
                }
                """
        )
    }

    @Test func pathPatternsRoundTrip() {
        #expect(PathPattern.prefix("").yamlText == "/*")
        #expect(PathPattern.prefix("/api").yamlText == "/api/*")
        #expect(PathPattern.glob(["users", nil, "orders"]).yamlText == "/users/*/orders")
        #expect(PathPattern.regex("^/v[0-9]+/").yamlText == "~^/v[0-9]+/")
    }
}

@Suite struct SluiceMetricsTests {
    @Test func evictionsAdvanceByTheGrowthOfTheStoreTotal() {
        let metrics = SluiceMetrics()
        metrics.updateStoreGauges(trackedKeys: 10, evictions: 3)
        metrics.updateStoreGauges(trackedKeys: 12, evictions: 5)
        #expect(metrics.exposition().contains("sluice_evictions_total 5\n"))
        #expect(metrics.exposition().contains("sluice_tracked_keys 12.0\n"))
        // A replaced store starts from 0 again: its whole total is new.
        metrics.updateStoreGauges(trackedKeys: 1, evictions: 2)
        #expect(metrics.exposition().contains("sluice_evictions_total 7\n"))
    }

    @Test func connectionsGoUpAndDown() {
        let metrics = SluiceMetrics()
        metrics.connectionOpened()
        metrics.connectionOpened()
        metrics.connectionClosed()
        #expect(metrics.exposition().contains("sluice_open_connections 1.0\n"))
    }

    @Test func preparedRulesHaveZeroSeries() {
        let metrics = SluiceMetrics()
        metrics.prepare(rules: ["login"])
        let text = metrics.exposition()
        for decision in ["admitted", "limited", "shadow_limited", "exempt"] {
            #expect(text.contains(#"sluice_requests_total{rule="login",decision="\#(decision)"} 0"#))
        }
    }

    @Test func manyLoopsCountExactly() async {
        let metrics = SluiceMetrics()
        await withTaskGroup(of: Void.self) { group in
            for task in 0..<8 {
                group.addTask {
                    for _ in 0..<1000 {
                        metrics.requestDecided(rule: "r\(task % 2)", decision: .admitted)
                        metrics.upstreamResponded(status: 200 + task % 2, seconds: 0.01)
                    }
                }
            }
        }
        let text = metrics.exposition()
        #expect(text.contains(#"sluice_requests_total{rule="r0",decision="admitted"} 4000"#))
        #expect(text.contains(#"sluice_requests_total{rule="r1",decision="admitted"} 4000"#))
        #expect(text.contains(#"sluice_upstream_responses_total{status="201"} 4000"#))
        #expect(text.contains("sluice_storage_errors_total 0"))
    }

    @Test func storageObservations() {
        let metrics = SluiceMetrics()
        metrics.storageObserved(seconds: 0.0002)
        metrics.storageError()
        let text = metrics.exposition()
        #expect(text.contains(#"sluice_storage_latency_seconds_bucket{le="0.00025"} 1"#))
        #expect(text.contains("sluice_storage_latency_seconds_count 1"))
        #expect(text.contains("sluice_storage_errors_total 1"))
    }
}
