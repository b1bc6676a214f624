import Foundation
import SluiceTestSupport
import Testing

/// `storage.kind: redis` with the real binary (SPEC §8): instances sharing one budget, and `on_error` at the HTTP
/// level while Redis is away.
@Suite("redis storage end to end") struct RedisStorageTests {
    static func config(
        upstreamPort: Int,
        redisPort: Int,
        onError: String = "local",
        limit: String = "20/minute",
        timeout: String = "100ms",
        algorithm: String = "fixed_window"
    ) -> String {
        E2E.config(
            upstreamPort: upstreamPort,
            server: """
                  admin: "127.0.0.1:0"
                """,
            rest: """
                storage:
                  kind: redis
                  url: redis://127.0.0.1:\(redisPort)/0
                  timeout: \(timeout)
                  pool_size: 2
                  on_error: \(onError)
                  instances: 2
                rules:
                  - name: shared-budget
                    key: [ip]
                    limits: ["\(limit)"]
                    algorithm: \(algorithm)
                """
        )
    }

    /// Two instances, requests to both at once: together they admit exactly the limit.
    @Test func twoInstancesAdmitTogetherExactlyTheLimit() async throws {
        try await withRedisServer { redis in
            // A generous timeout: a slow reply on a loaded machine must not send a decision to `on_error: local`
            // (which counts COUNT/instances on each instance and would blur what this test measures).
            try await E2E.withSluice({ Self.config(upstreamPort: $0, redisPort: redis.port, timeout: "2s") }) { first async throws in
                try await E2E.withSluice({ Self.config(upstreamPort: $0, redisPort: redis.port, timeout: "2s") }) { second async throws in
                    let statuses = try await withThrowingTaskGroup(of: [Int].self) { tasks in
                        for port in [first.port, second.port, first.port, second.port] {
                            tasks.addTask { try await E2E.statuses(port: port, "/hello", count: 15) }
                        }
                        var all: [Int] = []
                        for try await part in tasks { all += part }
                        return all
                    }
                    #expect(statuses.count == 60)
                    #expect(statuses.filter { $0 == 200 }.count == 20, "\(statuses)")
                    #expect(statuses.filter { $0 == 429 }.count == 40)
                    #expect(first.upstream.requestURIs.count + second.upstream.requestURIs.count == 20)
                }
            }
        }
    }

    /// SPEC §7 with Redis storage: `GET /limits` reads the shared counters, `DELETE` waits until they are gone (and
    /// this instance's cached refusal with them), and without Redis the admin API says so instead of guessing.
    @Test func adminReadsAndForgetsRedisCounters() async throws {
        try await withRedisServer { redis in
            // A token bucket: no window can turn during the test and refill the budget.
            let config = { (upstream: Int) in
                Self.config(upstreamPort: upstream, redisPort: redis.port, onError: "deny", limit: "3/hour", timeout: "2s", algorithm: "token_bucket")
            }
            try await E2E.withSluice(config) { sluice async throws in
                let admin = try await AdminEndToEndTests.adminPort(sluice)
                #expect(try await E2E.statuses(port: sluice.port, "/hello", count: 4) == [200, 200, 200, 429])
                let path = "/limits/shared-budget?key=127.0.0.1"
                let spent = try await E2E.adminRequest(port: admin, path)
                let limits = try #require(
                    (try JSONSerialization.jsonObject(with: Data(spent.bodyString.utf8)) as? [String: Any])?["limits"] as? [[String: Any]]
                )
                #expect(limits.first?["remaining"] as? Int == 0, "\(spent.bodyString)")
                #expect((limits.first?["reset"] as? Int ?? 0) > 0, "\(spent.bodyString)")
                #expect(redis.cli("--scan", "--pattern", "sluice:*").isEmpty == false)

                #expect(try await E2E.adminRequest(port: admin, path, method: "DELETE").status == 204)
                #expect(redis.cli("--scan", "--pattern", "sluice:*").isEmpty, "DELETE answered before the keys were gone")
                let forgiven = try await E2E.adminRequest(port: admin, path)
                #expect(forgiven.bodyString.contains("\"remaining\": 3"), "\(forgiven.bodyString)")
                #expect(try await E2E.statuses(port: sluice.port, "/hello", count: 1) == [200])

                await redis.stop()
                #expect(try await E2E.adminRequest(port: admin, path).status == 503)
                #expect(try await E2E.adminRequest(port: admin, path, method: "DELETE").status == 503)
            }
        }
    }

    /// A request held for its Redis round trip keeps its body (it arrives while the decision is pending) and its
    /// place: uploads and pipelined requests come out whole and in order.
    @Test func heldRequestsKeepBodiesAndOrder() async throws {
        try await withRedisServer { redis in
            try await E2E.withSluice({ Self.config(upstreamPort: $0, redisPort: redis.port, limit: "1000/minute") }) {
                sluice async throws in
                let body = String(repeating: "0123456789", count: 5_000)
                let upload = try await E2E.request(port: sluice.port, "/upload", method: "POST", body: body)
                #expect(upload.status == 200)
                #expect(upload.bodyString.contains("\(body.utf8.count)"), "\(upload.bodyString.prefix(200))")
                let client = try await RawHTTPClient.connect(port: sluice.port, group: E2E.group)
                let timed = try await E2E.pipeline(client, ["/echo-headers?n=1", "/echo-headers?n=2", "/echo-headers?n=3"], headers: [])
                #expect(timed.map(\.response.status) == [200, 200, 200])
                #expect(timed.map { $0.response.bodyString.split(separator: "\n").first.map(String.init) } == [
                    "GET /echo-headers?n=1", "GET /echo-headers?n=2", "GET /echo-headers?n=3",
                ])
                await client.close()
            }
        }
    }

    /// `on_error: deny`: 503 while Redis is away, at once; limiting resumes by itself when it is back.
    @Test func redisAwayFailsClosedThenRecovers() async throws {
        try await withRedisServer { redis in
            try await E2E.withSluice({ Self.config(upstreamPort: $0, redisPort: redis.port, onError: "deny", limit: "1000/minute") }) {
                sluice async throws in
                #expect(try await E2E.statuses(port: sluice.port, "/hello", count: 3) == [200, 200, 200])
                await redis.stop()
                let start = ContinuousClock.now
                let during = try await E2E.statuses(port: sluice.port, "/hello", count: 5)
                #expect(during == [503, 503, 503, 503, 503])
                #expect(ContinuousClock.now - start < .seconds(3))
                // SPEC §7: not ready while the storage does not answer.
                let admin = try await AdminEndToEndTests.adminPort(sluice)
                #expect(try await E2E.adminRequest(port: admin, "/readyz").status == 503)
                let metrics = try await E2E.adminRequest(port: admin, "/metrics").bodyString
                let errors = metrics.split(separator: "\n").first { $0.hasPrefix("sluice_storage_errors_total") }
                #expect(errors.map { !$0.hasSuffix(" 0") } == true, "\(errors ?? "no sluice_storage_errors_total")")
                #expect(metrics.contains("sluice_storage_latency_seconds_count"))
                try await redis.restart()
                var recovered = false
                for _ in 0..<50 where !recovered {
                    try await Task.sleep(for: .milliseconds(200))
                    recovered = try await E2E.statuses(port: sluice.port, "/hello", count: 1) == [200]
                }
                #expect(recovered)
                #expect(try await E2E.adminRequest(port: admin, "/readyz").status == 200)
            }
        }
    }
}
