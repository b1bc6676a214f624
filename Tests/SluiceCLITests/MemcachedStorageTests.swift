import Foundation
import SluiceTestSupport
import Testing

/// `storage.kind: memcached` with the real binary (issue 21): instances sharing one budget, the admin API on
/// memcached counters, and `on_error` at the HTTP level while a server is away.
@Suite("memcached storage end to end") struct MemcachedStorageTests {
    static func config(
        upstreamPort: Int,
        servers: [MemcachedServer],
        onError: String = "local",
        limit: String = "20/minute",
        timeout: String = "2s",
        algorithm: String = "fixed_window"
    ) -> String {
        E2E.config(
            upstreamPort: upstreamPort,
            server: """
                  admin: "127.0.0.1:0"
                """,
            rest: """
                storage:
                  kind: memcached
                  url: memcached://\(servers.map(\.address).joined(separator: ","))
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

    /// Two instances, requests to both at once: together they admit exactly the limit, for a counter algorithm
    /// and a compare-and-swap one.
    @Test(arguments: [("fixed_window", "20/minute"), ("token_bucket", "20/hour")])
    func twoInstancesAdmitTogetherExactlyTheLimit(_ algorithm: String, _ limit: String) async throws {
        try await withMemcachedServer { memcached in
            let config = { (upstream: Int) in
                Self.config(upstreamPort: upstream, servers: [memcached], onError: "deny", limit: limit, algorithm: algorithm)
            }
            try await E2E.withSluice(config) { first async throws in
                try await E2E.withSluice(config) { second async throws in
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
                    // A compare-and-swap that keeps losing answers 503 (on_error deny), never an extra 200.
                    #expect(statuses.filter { $0 == 429 || $0 == 503 }.count == 40)
                    #expect(first.upstream.requestURIs.count + second.upstream.requestURIs.count == 20)
                }
            }
        }
    }

    /// SPEC §7 with memcached storage: `GET /limits` reads the shared counters, `DELETE` forgets them, and without
    /// memcached the admin API says so instead of guessing.
    @Test func adminReadsAndForgetsMemcachedCounters() async throws {
        try await withMemcachedServer { memcached in
            let config = { (upstream: Int) in
                Self.config(upstreamPort: upstream, servers: [memcached], onError: "deny", limit: "3/hour", algorithm: "sliding_window")
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

                #expect(try await E2E.adminRequest(port: admin, path, method: "DELETE").status == 204)
                let forgiven = try await E2E.adminRequest(port: admin, path)
                #expect(forgiven.bodyString.contains("\"remaining\": 3"), "\(forgiven.bodyString)")
                #expect(try await E2E.statuses(port: sluice.port, "/hello", count: 1) == [200])

                await memcached.stop()
                #expect(try await E2E.adminRequest(port: admin, path).status == 503)
                #expect(try await E2E.adminRequest(port: admin, path, method: "DELETE").status == 503)
            }
        }
    }

    /// `on_error: deny`: 503 while memcached is away, at once; `/readyz` and `/metrics` say so per server; limiting
    /// resumes by itself when it is back.
    @Test func memcachedAwayFailsClosedThenRecovers() async throws {
        try await withMemcachedServer { memcached in
            let config = { (upstream: Int) in
                Self.config(upstreamPort: upstream, servers: [memcached], onError: "deny", limit: "1000/minute", timeout: "100ms")
            }
            try await E2E.withSluice(config) { sluice async throws in
                #expect(try await E2E.statuses(port: sluice.port, "/hello", count: 3) == [200, 200, 200])
                let admin = try await AdminEndToEndTests.adminPort(sluice)
                let before = try await E2E.adminRequest(port: admin, "/metrics").bodyString
                #expect(before.contains(#"sluice_storage_server_latency_seconds_count{server="\#(memcached.address)"}"#))
                await memcached.stop()
                let start = ContinuousClock.now
                let during = try await E2E.statuses(port: sluice.port, "/hello", count: 5)
                #expect(during == [503, 503, 503, 503, 503])
                #expect(ContinuousClock.now - start < .seconds(3))
                #expect(try await E2E.adminRequest(port: admin, "/readyz").status == 503)
                let metrics = try await E2E.adminRequest(port: admin, "/metrics").bodyString
                let errors = metrics.split(separator: "\n").first { $0.hasPrefix(#"sluice_storage_server_errors_total{server="\#(memcached.address)"}"#) }
                #expect(errors.map { !$0.hasSuffix(" 0") } == true, "\(errors ?? "no per-server errors")")
                let status = try await E2E.adminRequest(port: admin, "/status").bodyString
                #expect(status.contains("\"unavailable\""), "\(status.prefix(400))")
                try await memcached.restart()
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
