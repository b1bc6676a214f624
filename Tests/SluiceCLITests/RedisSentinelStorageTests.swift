import Foundation
import SluiceTestSupport
import Testing

/// `storage.url: redis+sentinel://` with the real binary (issue 12): the primary found through three sentinels, a
/// SIGKILLed primary followed to the promoted replica without a restart, no request hung meanwhile, the limits exact
/// afterwards, and `/readyz`, `/metrics` and `/status` saying which primary is in use. The time limit leaves room to
/// wait for ``TestLoadGate`` behind loading tests (the scenario itself takes about 10 s).
@Suite("redis sentinel storage end to end", .timeLimit(.minutes(3)))
struct RedisSentinelStorageTests {
    static func config(upstreamPort: Int, url: String) -> String {
        E2E.config(
            upstreamPort: upstreamPort,
            server: """
                  admin: "127.0.0.1:0"
                """,
            rest: """
                storage:
                  kind: redis
                  url: \(url)
                  timeout: 200ms
                  pool_size: 2
                  on_error: deny
                rules:
                  - name: per-user
                    key: ["header:X-User"]
                    limits: ["5/hour"]
                    algorithm: fixed_window
                """
        )
    }

    static func status(admin: Int) async throws -> [String: Any] {
        let response = try await E2E.adminRequest(port: admin, "/status")
        let json = try JSONSerialization.jsonObject(with: Data(response.bodyString.utf8)) as? [String: Any]
        return try #require(json?["storage"] as? [String: Any], "\(response.bodyString)")
    }

    /// `count` requests for `user` at once, each on its own connection: their statuses.
    static func burst(port: Int, user: String, count: Int) async throws -> [Int] {
        try await withThrowingTaskGroup(of: Int.self) { tasks in
            for _ in 0..<count {
                tasks.addTask { try await E2E.request(port: port, "/hello", headers: [("X-User", user)]).status }
            }
            var statuses: [Int] = []
            for try await status in tasks { statuses.append(status) }
            return statuses
        }
    }

    @Test func followsTheNewPrimaryAfterTheOldOneIsKilled() async throws {
        try await withRedisSentinelSet { set in
            try await E2E.withSluice({ Self.config(upstreamPort: $0, url: set.url) }) { sluice async throws in
                let admin = try await AdminEndToEndTests.adminPort(sluice)
                let primary = "127.0.0.1:\(set.primary.port)"
                let replica = "127.0.0.1:\(set.replica.port)"
                // The pool connects on first use (as with one Redis): a request first, then ready.
                #expect(try await E2E.request(port: sluice.port, "/hello", headers: [("X-User", "first")]).status == 200)
                try await E2E.eventually("ready on the primary") {
                    try await E2E.adminRequest(port: admin, "/readyz").status == 200
                }
                var storage = try await Self.status(admin: admin)
                #expect(storage["deployment"] as? String == "sentinel")
                #expect(storage["primary"] as? String == primary)
                #expect(storage["master_name"] as? String == set.masterName)
                #expect((storage["sentinels"] as? [[String: Any]])?.count == 3)
                // Every sentinel is asked or pinged soon after the start.
                try await E2E.eventually("/metrics shows the primary and three healthy sentinels") {
                    let metrics = try await E2E.adminRequest(port: admin, "/metrics").bodyString
                    return metrics.contains("sluice_storage_server_up{server=\"\(primary)\",role=\"primary\"} 1")
                        && set.sentinels.allSatisfy {
                            metrics.contains("sluice_storage_server_up{server=\"127.0.0.1:\($0.port)\",role=\"sentinel\"} 1")
                        }
                }
                #expect(try await Self.status(admin: admin)["status"] as? String == "ok")
                #expect(try await Self.burst(port: sluice.port, user: "before", count: 8).sorted() == [200, 200, 200, 200, 200, 429, 429, 429])

                try set.killPrimary()
                let killed = ContinuousClock.now
                var slowest = Duration.zero
                var seen: Set<Int> = []
                var followed: Duration?
                var attempt = 0
                var sentinelsSwitched: Duration?
                while followed == nil, ContinuousClock.now - killed < .seconds(25) {
                    if sentinelsSwitched == nil, set.someSentinelNames(replica) {
                        sentinelsSwitched = ContinuousClock.now - killed
                    }
                    attempt += 1
                    let start = ContinuousClock.now
                    // A fresh user each time: 200 from a primary, 503 from `on_error: deny` while none answers.
                    let status = try await E2E.request(port: sluice.port, "/hello", headers: [("X-User", "during-\(attempt)")]).status
                    slowest = max(slowest, ContinuousClock.now - start)
                    seen.insert(status)
                    if status == 200, try await Self.status(admin: admin)["primary"] as? String == replica {
                        followed = ContinuousClock.now - killed
                    }
                    try await Task.sleep(for: .milliseconds(20))
                }
                let after = try #require(followed, "sluice did not follow the new primary within 25 s")
                // Followed within the iteration in which the sentinels switched: the lag is below one iteration.
                if sentinelsSwitched == nil, set.someSentinelNames("127.0.0.1:\(set.replica.port)") {
                    sentinelsSwitched = after
                }
                let switched = try #require(sentinelsSwitched, "the sentinels do not name the replica")
                if ProcessInfo.processInfo.environment["SLUICE_PRINT_SENTINEL"] == "1" {
                    print(
                        "sentinel failover: sentinels switched after \(switched), sluice followed after \(after), "
                            + "slowest request \(slowest), \(attempt) requests"
                    )
                }
                // Within the sentinels' failover time: at most a check interval (1 s) after they name the new
                // primary (+switch-master usually makes it milliseconds), with room for a loaded machine.
                #expect(after - switched < .seconds(2), "sentinels switched after \(switched), sluice followed after \(after)")
                // timeout (200 ms) + 1 s.
                #expect(slowest < .milliseconds(1200), "a request took \(slowest)")
                #expect(seen.isSubset(of: [200, 503]), "\(seen)")
                #expect(seen.contains(503), "on_error: deny decided while no primary answered")

                // Exact on the new primary.
                let statuses = try await Self.burst(port: sluice.port, user: "after", count: 12)
                #expect(statuses.filter { $0 == 200 }.count == 5, "\(statuses)")
                #expect(statuses.filter { $0 == 429 }.count == 7, "\(statuses)")
                let ready = try await E2E.adminRequest(port: admin, "/readyz")
                #expect(ready.status == 200)
                #expect(ready.bodyString.hasPrefix("ready\nprimary \(replica) ok\nsentinel 127.0.0.1:"), "\(ready.bodyString)")
                storage = try await Self.status(admin: admin)
                #expect(storage["status"] as? String == "ok")
                let moved = try await E2E.adminRequest(port: admin, "/metrics").bodyString
                #expect(moved.contains("sluice_storage_server_up{server=\"\(replica)\",role=\"primary\"} 1"), "\(moved)")
                #expect(moved.contains("sluice_storage_server_up{server=\"\(primary)\",role=\"primary\"} 0"), "\(moved)")
                #expect(sluice.process.outputSoFar.contains("redis primary moved"))
            }
        }
    }

    /// `sluice check` points at the mistake in a Sentinel URL.
    @Test func checkPointsAtABadSentinelURL() async throws {
        let path = try E2E.writeConfig(
            """
            version: 1
            upstream:
              url: http://127.0.0.1:3000
            storage:
              kind: redis
              url: redis+sentinel://127.0.0.1:26379,127.0.0.1:0/mymaster

            """
        )
        defer { try? FileManager.default.removeItem(atPath: path) }
        let (status, output) = try await SluiceProcess.run(["check", "--config", path])
        #expect(status == 1)
        #expect(output == "\(path):6:51: url: invalid Redis Sentinel URL: invalid port '0' (expected 1...65535)\n", "\(output)")
    }
}
