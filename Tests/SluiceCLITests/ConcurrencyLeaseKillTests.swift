import Foundation
import SluiceTestSupport
import Testing

/// Concurrency leases in Redis with the real binary (issue 22 item 5): an instance killed with `kill -9` while it
/// holds slots gives them back within one `lease_ttl`, because nobody renews them any more.
@Suite("concurrency leases end to end") struct ConcurrencyLeaseKillTests {
    static func config(upstreamPort: Int, redisPort: Int, leaseTTL: String) -> String {
        E2E.config(
            upstreamPort: upstreamPort,
            rest: """
                storage:
                  kind: redis
                  url: redis://127.0.0.1:\(redisPort)/0
                  timeout: 2s
                  key_prefix: "kill:"
                  lease_ttl: \(leaseTTL)
                rules:
                  - name: gen
                    key: [header:X-Key]
                    concurrency: { max: 2 }
                """
        )
    }

    static func leases(_ redis: RedisServer) -> Int {
        let keys = redis.cli("--scan", "--pattern", "kill:cc:*").split(separator: "\n").map(String.init)
        return keys.reduce(0) { $0 + (Int(redis.cli("ZCARD", $1)) ?? 0) }
    }

    @Test func killedInstanceSlotsComeBackWithinTheLeaseTTL() async throws {
        try await withRedisServer { redis in
            try await E2E.withSluice({ Self.config(upstreamPort: $0, redisPort: redis.port, leaseTTL: "2s") }) { survivor in
                // The victim: its own upstream, which holds its two requests for a minute.
                let upstream = try await TestUpstream(group: E2E.group)
                let path = try E2E.writeConfig(Self.config(upstreamPort: upstream.port, redisPort: redis.port, leaseTTL: "2s"))
                let victim = try SluiceProcess(["serve", "--config", path])
                defer {
                    victim.signal(SIGKILL)
                    try? FileManager.default.removeItem(atPath: path)
                }
                let victimPort = try await victim.listeningPort()
                var held: [RawHTTPClient] = []
                for _ in 0..<2 {
                    let client = try await RawHTTPClient.connect(port: victimPort, group: E2E.group)
                    try await client.send(E2E.requestText("/slow?ms=60000", headers: [("X-Key", "k")]))
                    held.append(client)
                }
                try await E2E.eventually("the victim holds both slots") { Self.leases(redis) == 2 }
                // Renewed: still held after more than one TTL.
                try await Task.sleep(for: .seconds(3))
                #expect(Self.leases(redis) == 2, "the leases are renewed while their requests run")
                let refused = try await E2E.request(port: survivor.port, "/hello", headers: [("X-Key", "k")])
                #expect(refused.status == 429, "both slots are held by the other instance")

                victim.signal(SIGKILL)
                let killedAt = ContinuousClock.now
                _ = try await victim.waitForExit()
                // Exactly, on Redis's clock: no lease of the dead instance lasts more than lease_ttl from now.
                let serverNow = Int(redis.cli("EVAL", "local t = redis.call('TIME'); return t[1] * 1000 + math.floor(t[2] / 1000)", "0")) ?? 0
                let key = redis.cli("--scan", "--pattern", "kill:cc:*")
                let expiries = redis.cli("ZRANGE", key, "0", "-1", "WITHSCORES").split(separator: "\n").enumerated()
                    .filter { $0.offset % 2 == 1 }.compactMap { Int($0.element) }
                #expect(expiries.count == 2)
                #expect(expiries.allSatisfy { $0 - serverNow <= 2_000 }, "expiries \(expiries), now \(serverNow)")
                // Back within one TTL (2 s): the survivor is admitted again.
                var admittedAfter: Duration?
                while ContinuousClock.now - killedAt < .seconds(6) {
                    if try await E2E.request(port: survivor.port, "/hello", headers: [("X-Key", "k")]).status == 200 {
                        admittedAfter = ContinuousClock.now - killedAt
                        break
                    }
                    try await Task.sleep(for: .milliseconds(50))
                }
                let after = try #require(admittedAfter, "the killed instance's slots never came back")
                // Seen from outside: the TTL plus the test's own polling and a loaded machine's delays.
                #expect(after <= .milliseconds(3_500), "slots back after \(after), lease_ttl is 2s")
                try await E2E.eventually("no lease left") { Self.leases(redis) == 0 }
                for client in held { await client.close() }
                await upstream.close()
            }
        }
    }
}
