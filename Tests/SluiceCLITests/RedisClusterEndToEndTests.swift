import Foundation
import SluiceTestSupport
import Testing

/// `storage.url: redis+cluster://` with the real binary (issue 12): two instances share one budget across a
/// 3-primary cluster, the admin API reads and forgets tagged counters, `/status` shows each primary, and `check`
/// places URL errors.
@Suite("redis cluster storage end to end", .serialized) struct RedisClusterEndToEndTests {
    static func config(upstreamPort: Int, url: String, limit: String = "20/minute") -> String {
        E2E.config(
            upstreamPort: upstreamPort,
            server: """
                  admin: "127.0.0.1:0"
                """,
            rest: """
                storage:
                  kind: redis
                  url: \(url)
                  timeout: 2s
                  pool_size: 2
                  on_error: deny
                rules:
                  - name: shared-budget
                    key: [ip]
                    limits: ["\(limit)", "1000/hour"]
                    algorithm: fixed_window
                  - name: paths
                    key: [path]
                    limits: ["1000/hour"]
                """
        )
    }

    /// Two instances, requests to both at once: together they admit exactly the limit; each request has rules
    /// with keys in two slots (the client's and the path's).
    @Test func twoInstancesShareOneBudgetInACluster() async throws {
        try await withRedisCluster { cluster in
            try await E2E.withSluice({ Self.config(upstreamPort: $0, url: cluster.url) }) { first async throws in
                try await E2E.withSluice({ Self.config(upstreamPort: $0, url: cluster.url) }) { second async throws in
                    let statuses = try await withThrowingTaskGroup(of: [Int].self) { tasks in
                        for port in [first.port, second.port, first.port, second.port] {
                            tasks.addTask { try await E2E.statuses(port: port, "/hello", count: 15) }
                        }
                        var all: [Int] = []
                        for try await part in tasks { all += part }
                        return all
                    }
                    #expect(statuses.filter { $0 == 200 }.count == 20, "\(statuses)")
                    #expect(statuses.filter { $0 == 429 }.count == 40)

                    let admin = try await AdminEndToEndTests.adminPort(first)
                    let path = "/limits/shared-budget?key=127.0.0.1"
                    let spent = try await E2E.adminRequest(port: admin, path)
                    #expect(spent.bodyString.contains("\"remaining\": 0"), "\(spent.bodyString)")
                    #expect(try await E2E.adminRequest(port: admin, path, method: "DELETE").status == 204)
                    let forgiven = try await E2E.adminRequest(port: admin, path)
                    #expect(forgiven.bodyString.contains("\"remaining\": 20"), "\(forgiven.bodyString)")

                    let status = try await AdminEndToEndTests.status(admin: admin)
                    let storage = try #require(status["storage"] as? [String: Any])
                    #expect(storage["deployment"] as? String == "cluster")
                    #expect(storage["status"] as? String == "ok")
                    let servers = try #require(storage["servers"] as? [[String: Any]])
                    #expect(Set(servers.compactMap { $0["address"] as? String }) == Set(cluster.nodes.map { "127.0.0.1:\($0.port)" }))
                    let metrics = try await E2E.adminRequest(port: admin, "/metrics").bodyString
                    #expect(metrics.contains("sluice_storage_server_latency_seconds_count{server=\"127.0.0.1:\(cluster.nodes[0].port)\"}"))
                    #expect(try await E2E.adminRequest(port: admin, "/readyz").status == 200)
                }
            }
        }
    }

    @Test func checkPlacesClusterURLErrors() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-cluster-\(UUID()).yaml").path
        try "upstream:\n  url: http://127.0.0.1:1\nstorage:\n  kind: redis\n  url: redis+cluster://a:6379,,b:6379/3\n"
            .write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let (status, output) = try await SluiceProcess.run(["check", "--config", path])
        #expect(status == 1)
        #expect(output.contains("\(path):5:31: url: invalid Redis URL: empty cluster seed"), "\(output)")
    }

    @Test func exampleAndComposeVariant() async throws {
        let (status, output) = try await SluiceProcess.run(["check", "--config", "config/examples/redis-cluster.yaml"])
        #expect(status == 0)
        #expect(output == "ok\n")
        let compose = try String(contentsOfFile: "deploy/docker-compose.redis-cluster.yml", encoding: .utf8)
        for path in ["../config/examples/redis-cluster.yaml", "./haproxy-lb.cfg"] {
            #expect(compose.contains(path))
            #expect(FileManager.default.fileExists(atPath: "deploy/" + path), "\(path)")
        }
        #expect(compose.components(separatedBy: "<<: *sluice").count - 1 == 2, "three Sluice instances")
        #expect(compose.components(separatedBy: "<<: *redis").count - 1 == 2, "three primaries")
        #expect(compose.contains("--cluster-replicas 0 --cluster-yes"))
    }
}
