import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import SluiceConfig
import SluiceLimiter
import Testing

@testable import SluiceAdmin

/// The admin listener over real sockets (SPEC §7).
@Suite struct AdminServerTests {
    // MARK: Probes

    @Test func healthzAnswersOK() async throws {
        try await withAdminServer { port in
            let response = try await send(.GET, "/healthz", port: port)
            #expect(response.status == .ok)
            #expect(response.body == "ok\n")
        }
    }

    @Test func readyzFollowsTheBackend() async throws {
        let backend = TestBackend(isReady: true)
        try await withAdminServer(backend: backend) { port in
            try await expectStatus(.ok, .GET, "/readyz", port: port)
            backend.isReady = false
            try await expectStatus(.serviceUnavailable, .GET, "/readyz", port: port)
            backend.isReady = true
            try await expectStatus(.ok, .GET, "/readyz", port: port)
        }
    }

    @Test func keepAliveServesSeveralRequestsOnOneConnection() async throws {
        try await withAdminServer { port in
            let client = try await TestHTTPClient.connect(port: port)
            for path in ["/healthz", "/metrics", "/config", "/readyz"] {
                #expect(try await client.request(.GET, path).status == .ok)
            }
            #expect(client.isActive)
            await client.close()
        }
    }

    @Test func connectionCloseIsHonoured() async throws {
        try await withAdminServer { port in
            let client = try await TestHTTPClient.connect(port: port)
            let response = try await client.request(.GET, "/healthz", headers: [("Connection", "close")])
            #expect(response.status == .ok)
            #expect(response.headers.first(name: "connection") == "close")
            try await client.waitForClose()
        }
    }

    // MARK: Token

    @Test func tokenIsRequiredExceptForProbes() async throws {
        let backend = TestBackend(configuration: testConfiguration(adminToken: "s3cret"))
        try await withAdminServer(backend: backend) { port in
            for path in ["/metrics", "/config", "/limits/login?key=1.2.3.4", "/nope"] {
                let response = try await send(.GET, path, port: port)
                #expect(response.status == .unauthorized, "\(path)")
                #expect(response.headers.first(name: "www-authenticate") == "Bearer", "\(path)")
                #expect(!response.body.contains("s3cret"))
            }
            let wrong = try await send(.GET, "/metrics", port: port, headers: [("Authorization", "Bearer s3creT")])
            #expect(wrong.status == .unauthorized)
            let basic = try await send(.GET, "/metrics", port: port, headers: [("Authorization", "Basic s3cret")])
            #expect(basic.status == .unauthorized)

            let good = try await send(.GET, "/metrics", port: port, headers: [("Authorization", "Bearer s3cret")])
            #expect(good.status == .ok)
            let lowerScheme = try await send(.GET, "/config", port: port, headers: [("Authorization", "bearer s3cret")])
            #expect(lowerScheme.status == .ok)
            let unknown = try await send(.GET, "/nope", port: port, headers: [("Authorization", "Bearer s3cret")])
            #expect(unknown.status == .notFound)

            try await expectStatus(.ok, .GET, "/healthz", port: port)
            try await expectStatus(.ok, .GET, "/readyz", port: port)
        }
    }

    @Test func reloadedTokenAppliesAtOnce() async throws {
        let backend = TestBackend(configuration: testConfiguration(adminToken: "old"))
        try await withAdminServer(backend: backend) { port in
            try await expectStatus(.ok, .GET, "/config", port: port, headers: [("Authorization", "Bearer old")])
            backend.reload(testConfiguration(adminToken: "new"))
            let rejected = try await send(.GET, "/config", port: port, headers: [("Authorization", "Bearer old")])
            #expect(rejected.status == .unauthorized)
            try await expectStatus(.ok, .GET, "/config", port: port, headers: [("Authorization", "Bearer new")])
            backend.reload(testConfiguration(adminToken: ""))
            try await expectStatus(.ok, .GET, "/config", port: port)
        }
    }

    // MARK: Metrics

    @Test func metricsHaveEveryFamilyAndCountDecisions() async throws {
        let metrics = SluiceMetrics()
        let backend = TestBackend()
        try await withAdminServer(backend: backend, metrics: metrics) { port in
            let empty = try await send(.GET, "/metrics", port: port)
            #expect(empty.status == .ok)
            #expect(empty.headers.first(name: "content-type") == "text/plain; version=0.0.4; charset=utf-8")
            for family in [
                "sluice_requests_total", "sluice_upstream_responses_total", "sluice_upstream_latency_seconds",
                "sluice_storage_errors_total", "sluice_storage_latency_seconds", "sluice_tracked_keys",
                "sluice_evictions_total", "sluice_config_reloads_total", "sluice_open_connections",
            ] {
                #expect(empty.body.contains("# TYPE \(family) "), "\(family)")
            }
            #expect(empty.body.contains(#"sluice_config_reloads_total{result="success"} 0"#))
            #expect(empty.body.contains(#"sluice_config_reloads_total{result="failure"} 0"#))

            metrics.requestDecided(rule: "login", decision: .admitted)
            metrics.requestDecided(rule: "login", decision: .admitted)
            metrics.requestDecided(rule: "login", decision: .limited)
            metrics.requestDecided(rule: "login", decision: .noRule)
            metrics.upstreamResponded(status: 200, seconds: 0.003)
            metrics.reloaded(success: false)
            _ = backend.limiter!.evaluate(TestRequest(method: "POST", uri: "/login"), now: testNow)

            let body = try await send(.GET, "/metrics", port: port).body
            #expect(body.contains(#"sluice_requests_total{rule="login",decision="admitted"} 2"#))
            #expect(body.contains(#"sluice_requests_total{rule="login",decision="limited"} 1"#))
            #expect(body.contains(#"sluice_requests_total{rule="login",decision="exempt"} 0"#))
            #expect(!body.contains(#"decision="none""#))
            #expect(body.contains(#"sluice_upstream_responses_total{status="200"} 1"#))
            #expect(body.contains(#"sluice_upstream_latency_seconds_bucket{le="0.005"} 1"#))
            #expect(body.contains(#"sluice_config_reloads_total{result="failure"} 1"#))
            #expect(body.contains("sluice_tracked_keys 1.0\n"))
            #expect(body.components(separatedBy: "# TYPE sluice_requests_total ").count == 2)
        }
    }

    // MARK: Config

    @Test func configIsJSONWithoutSecrets() async throws {
        let configuration = testConfiguration(adminToken: "tok-123456", redisPassword: "hunter2pass")
        let backend = TestBackend(configuration: configuration)
        try await withAdminServer(backend: backend) { port in
            let response = try await send(
                .GET,
                "/config",
                port: port,
                headers: [("Authorization", "Bearer tok-123456")]
            )
            #expect(response.status == .ok)
            #expect(response.headers.first(name: "content-type") == "application/json")
            #expect(!response.body.contains("tok-123456"))
            #expect(!response.body.contains("hunter2pass"))

            let json = try #require(
                try JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: Any]
            )
            let server = try #require(json["server"] as? [String: Any])
            #expect(server["admin_token"] as? String == "***")
            #expect(server["listen"] as? [String] == ["127.0.0.1:8080"])
            let timeouts = try #require(server["timeouts"] as? [String: Any])
            #expect(timeouts["header_read"] as? String == "10s")
            #expect(timeouts["idle"] as? String == "1m")
            #expect(timeouts["body_read"] as? String == "1m")
            #expect(timeouts["send"] as? String == "1m")
            #expect(timeouts["tunnel_idle"] as? String == "1h")
            let upstream = try #require(json["upstream"] as? [String: Any])
            #expect(upstream["targets"] as? [String] == ["http://127.0.0.1:3000"])
            let redis = try #require((json["storage"] as? [String: Any])?["redis"] as? [String: Any])
            #expect(redis["url"] as? String == "redis://:***@10.0.0.5:6379/2")
            #expect(redis["password"] as? String == "***")
            #expect(redis["timeout"] as? String == "50ms")
            #expect((json["response"] as? [String: Any])?["status"] as? Int == 429)
            let rules = try #require(json["rules"] as? [[String: Any]])
            #expect(rules.map { $0["name"] as? String } == ["login", "api"])
            #expect(rules[0]["limits"] as? [String] == ["5/minute"])
            #expect(rules[0]["algorithm"] as? String == "fixed_window")
            #expect(rules[0]["mode"] as? String == "enforce")
            #expect(rules[1]["key"] as? [String] == ["ip", "path"])
            let match = try #require(rules[0]["match"] as? [String: Any])
            #expect(match["methods"] as? [String] == ["POST"])
            #expect(match["path"] as? String == "/login")
            #expect((rules[1]["match"] as? [String: Any])?["path"] as? String == "/api/*")
        }
    }

    // MARK: Limits

    @Test func limitsShowRemainingQuotaAndForgive() async throws {
        let backend = TestBackend()
        try await withAdminServer(backend: backend) { port in
            let fresh = try await send(.GET, "/limits/login?key=203.0.113.7", port: port)
            #expect(fresh.status == .ok)
            #expect(fresh.headers.first(name: "content-type") == "application/json")
            #expect(try Self.limits(fresh) == [LimitLine(limit: "5/minute", remaining: 5, reset: 0)])

            let limiter = try #require(backend.limiter)
            for _ in 0..<2 {
                let outcome = limiter.evaluate(TestRequest(method: "POST", uri: "/login"), now: testNow)
                #expect(outcome.decision == .admitted)
            }
            let used = try await send(.GET, "/limits/login?key=203.0.113.7", port: port)
            let json = try #require(try JSONSerialization.jsonObject(with: Data(used.body.utf8)) as? [String: Any])
            #expect(json["rule"] as? String == "login")
            #expect(json["key"] as? String == "203.0.113.7")
            #expect(json["blocked_for"] is NSNull)
            #expect(try Self.limits(used) == [LimitLine(limit: "5/minute", remaining: 3, reset: 30)])

            let deleted = try await send(.DELETE, "/limits/login?key=203.0.113.7", port: port)
            #expect(deleted.status == .noContent)
            #expect(deleted.body.isEmpty)
            let forgiven = try await send(.GET, "/limits/login?key=203.0.113.7", port: port)
            #expect(try Self.limits(forgiven) == [LimitLine(limit: "5/minute", remaining: 5, reset: 0)])
            try await expectStatus(.noContent, .DELETE, "/limits/login?key=203.0.113.7", port: port)
        }
    }

    @Test func limitsKeyOfSeveralPartsIsPercentDecoded() async throws {
        let backend = TestBackend()
        try await withAdminServer(backend: backend) { port in
            let limiter = try #require(backend.limiter)
            _ = limiter.evaluate(TestRequest(uri: "/api/users"), now: testNow)
            let response = try await send(.GET, "/limits/api?key=203.0.113.7%7C%2Fapi%2Fusers", port: port)
            #expect(response.status == .ok)
            #expect(
                try Self.limits(response) == [
                    LimitLine(limit: "100/minute", remaining: 99, reset: 30),
                    LimitLine(limit: "1000/hour", remaining: 999, reset: 2790),
                ]
            )
        }
    }

    @Test func limitsErrors() async throws {
        try await withAdminServer { port in
            try await expectStatus(.notFound, .GET, "/limits/nope?key=1.2.3.4", port: port)
            try await expectStatus(.notFound, .DELETE, "/limits/nope?key=1.2.3.4", port: port)
            try await expectStatus(.badRequest, .GET, "/limits/login", port: port)
            try await expectStatus(.badRequest, .DELETE, "/limits/login?other=1", port: port)
            try await expectStatus(.badRequest, .GET, "/limits/login?key=%zz", port: port)
            try await expectStatus(.notFound, .GET, "/limits/", port: port)
        }
    }

    // MARK: Routing

    @Test func wrongMethodIs405AndUnknownPathIs404() async throws {
        try await withAdminServer { port in
            let post = try await send(.POST, "/limits/login?key=1.2.3.4", port: port)
            #expect(post.status == .methodNotAllowed)
            #expect(post.headers.first(name: "allow") == "GET, HEAD, DELETE")
            let delete = try await send(.DELETE, "/metrics", port: port)
            #expect(delete.status == .methodNotAllowed)
            #expect(delete.headers.first(name: "allow") == "GET, HEAD")
            // `/` is the status page; anything unknown is 404.
            try await expectStatus(.ok, .GET, "/", port: port)
            try await expectStatus(.notFound, .GET, "/nope", port: port)
            try await expectStatus(.notFound, .GET, "/healthz/x", port: port)
        }
    }

    @Test func headHasNoBody() async throws {
        try await withAdminServer { port in
            let response = try await send(.HEAD, "/healthz", port: port)
            #expect(response.status == .ok)
            #expect(response.body.isEmpty)
            #expect(response.headers.first(name: "content-length") == "3")
        }
    }

    @Test func secondStartIsRefusedAndStopIsIdempotent() async throws {
        let server = AdminServer(
            backend: TestBackend(),
            metrics: SluiceMetrics(),
            group: MultiThreadedEventLoopGroup.singleton
        )
        try await server.start(host: "127.0.0.1", port: 0)
        await #expect(throws: AdminServerError.alreadyStarted) {
            try await server.start(host: "127.0.0.1", port: 0)
        }
        await server.stop()
        #expect(server.localAddress == nil)
        await server.stop()
    }

    // MARK: Helpers

    struct LimitLine: Equatable {
        var limit: String
        var remaining: Int
        var reset: Int
    }

    static func limits(_ response: TestResponse) throws -> [LimitLine] {
        let json = try #require(try JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: Any])
        let limits = try #require(json["limits"] as? [[String: Any]])
        return try limits.map {
            LimitLine(
                limit: try #require($0["limit"] as? String),
                remaining: try #require($0["remaining"] as? Int),
                reset: try #require($0["reset"] as? Int)
            )
        }
    }
}
