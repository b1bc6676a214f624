import Foundation
import SluiceConfig
import SluiceLimiter
import SluiceRedis
import SluiceTestSupport
import Testing

@testable import SluiceProxy

/// Concurrency slots shared through Redis as leases (issue 22 item 5): two proxies in this process on one real
/// `redis-server`, in front of one ``PeakRecordingUpstream``.
@Suite("Proxy concurrency leases in Redis (issue 22 item 5)", .serialized)
struct ProxyConcurrencyLeaseTests {
    static let key = "X-Key: k"

    /// `storage.kind: redis` on `redis`, with lease TTL `ttl` and `on_error` `onError`.
    static func redisStorage(
        _ redis: RedisServer,
        prefix: String,
        ttl: Duration = .seconds(30),
        onError: RedisStorageConfiguration.OnError = .local,
        instances: Int = 1,
        timeout: Duration = .seconds(2)
    ) -> (inout SluiceConfiguration) -> Void {
        { configuration in
            var storage = RedisStorageConfiguration(url: "redis://127.0.0.1:\(redis.port)/0")
            storage.host = "127.0.0.1"
            storage.port = redis.port
            storage.keyPrefix = prefix
            storage.timeout = timeout
            storage.leaseTTL = ttl
            storage.onError = onError
            storage.instances = instances
            configuration.storage.kind = .redis
            configuration.storage.redis = storage
        }
    }

    /// Every lease in Redis under `prefix` (the sum of the sets' `ZCARD`).
    static func leases(_ redis: RedisServer, prefix: String) -> Int {
        let keys = redis.cli("--scan", "--pattern", "\(prefix)cc:*").split(separator: "\n").map(String.init)
        return keys.reduce(0) { $0 + (Int(redis.cli("ZCARD", $1)) ?? 0) }
    }

    @Test("two instances on one Redis admit at most max together; every lease is gone afterwards")
    func twoInstancesShareMax() async throws {
        let redis = try await RedisServer.start()
        defer { Task { await redis.stop() } }
        let configure = Self.redisStorage(redis, prefix: "two:")
        try await withConcurrencyProxy([concurrencyRule("gen", max: 3)], configure: configure) { first in
            let second = try await ConcurrencyProxy(upstreamPort: first.upstream.port, rules: [concurrencyRule("gen", max: 3)], configure: configure)
            defer { Task { await second.stop() } }
            let statuses = try await withTimeout(.seconds(60), "80 requests") {
                try await withThrowingTaskGroup(of: Int.self) { group in
                    for index in 0..<80 {
                        let proxy = index % 2 == 0 ? first : second
                        group.addTask { try await proxy.get("/slow?ms=150", headers: [Self.key]).status }
                    }
                    var all: [Int] = []
                    for try await status in group { all.append(status) }
                    return all
                }
            }
            #expect(statuses.count == 80)
            #expect(first.upstream.peak <= 3, "the upstream saw \(first.upstream.peak) at once")
            #expect(first.upstream.peak >= 1)
            #expect(statuses.filter { $0 == 200 }.count >= 3)
            #expect(statuses.allSatisfy { $0 == 200 || $0 == 429 }, "\(statuses)")
            #expect(statuses.contains(429), "80 requests of 150 ms against max 3: some are refused")
            try await eventually("every lease released") { Self.leases(redis, prefix: "two:") == 0 }
            try await eventually("in flight back to 0") { first.slots("gen").inFlight == 0 && second.slots("gen").inFlight == 0 }
        }
    }

    @Test("two instances with queues: 30 requests all pass through Redis leases, never more than max at once")
    func twoInstancesWithQueues() async throws {
        let redis = try await RedisServer.start()
        defer { Task { await redis.stop() } }
        let configure = Self.redisStorage(redis, prefix: "twoq:")
        let rule = concurrencyRule("gen", max: 3, queue: ConcurrencyConfiguration.Queue(size: 20, timeout: .seconds(20)))
        try await withConcurrencyProxy([rule], configure: configure) { first in
            let second = try await ConcurrencyProxy(upstreamPort: first.upstream.port, rules: [rule], configure: configure)
            defer { Task { await second.stop() } }
            let statuses = try await withTimeout(.seconds(60), "30 queued requests") {
                try await withThrowingTaskGroup(of: Int.self) { group in
                    for index in 0..<30 {
                        let proxy = index % 2 == 0 ? first : second
                        group.addTask { try await proxy.get("/slow?ms=100", headers: [Self.key]).status }
                    }
                    var all: [Int] = []
                    for try await status in group { all.append(status) }
                    return all
                }
            }
            #expect(statuses == Array(repeating: 200, count: 30), "\(statuses)")
            #expect(first.upstream.peak <= 3, "the upstream saw \(first.upstream.peak) at once")
            #expect(first.upstream.peak >= 2, "both instances' requests overlapped")
            try await eventually("every lease released") { Self.leases(redis, prefix: "twoq:") == 0 }
            #expect(first.slots("gen").queued == 0 && second.slots("gen").queued == 0)
        }
    }

    @Test("a slot held on one instance refuses the other's request; released, the other is admitted")
    func slotSeenAcrossInstances() async throws {
        let redis = try await RedisServer.start()
        defer { Task { await redis.stop() } }
        let configure = Self.redisStorage(redis, prefix: "across:")
        try await withConcurrencyProxy([concurrencyRule("gen", max: 1)], configure: configure) { first in
            let second = try await ConcurrencyProxy(upstreamPort: first.upstream.port, rules: [concurrencyRule("gen", max: 1)], configure: configure)
            defer { Task { await second.stop() } }
            let held = try await first.send("/hold", headers: [Self.key])
            try await eventually("held") { first.upstream.heldCount == 1 }
            #expect(Self.leases(redis, prefix: "across:") == 1)
            #expect(try await second.get("/", headers: [Self.key]).status == 429)
            #expect(try await second.get("/", headers: ["X-Key: other"]).status == 200, "another key has its own slots")
            first.upstream.releaseHeld()
            #expect(try await held.readResponse().status == 200)
            await held.close()
            try await eventually("released") { Self.leases(redis, prefix: "across:") == 0 }
            #expect(try await second.get("/", headers: [Self.key]).status == 200)
        }
    }

    @Test("a request longer than the lease TTL keeps its slot (renewal)")
    func renewalKeepsTheSlot() async throws {
        let redis = try await RedisServer.start()
        defer { Task { await redis.stop() } }
        let configure = Self.redisStorage(redis, prefix: "renew:", ttl: .seconds(2))
        try await withConcurrencyProxy([concurrencyRule("gen", max: 1)], configure: configure) { first in
            let second = try await ConcurrencyProxy(upstreamPort: first.upstream.port, rules: [concurrencyRule("gen", max: 1)], configure: configure)
            defer { Task { await second.stop() } }
            let held = try await first.send("/hold", headers: [Self.key])
            try await eventually("held") { first.upstream.heldCount == 1 }
            // Two TTLs later the lease is still there: renewed every third of the TTL.
            try await Task.sleep(for: .seconds(4.5))
            #expect(Self.leases(redis, prefix: "renew:") == 1)
            #expect(try await second.get("/", headers: [Self.key]).status == 429, "the slot is still held")
            first.upstream.releaseHeld()
            #expect(try await held.readResponse().status == 200)
            await held.close()
            try await eventually("released") { Self.leases(redis, prefix: "renew:") == 0 }
            #expect(try await second.get("/", headers: [Self.key]).status == 200)
        }
    }

    @Test("a queued request gets the slot another instance frees (poll), first come first served here")
    func queueAcrossInstances() async throws {
        let redis = try await RedisServer.start()
        defer { Task { await redis.stop() } }
        let configure = Self.redisStorage(redis, prefix: "queue:")
        let queued = concurrencyRule("gen", max: 1, queue: ConcurrencyConfiguration.Queue(size: 2, timeout: .seconds(5)))
        try await withConcurrencyProxy([queued], configure: configure) { first in
            let second = try await ConcurrencyProxy(upstreamPort: first.upstream.port, rules: [queued], configure: configure)
            defer { Task { await second.stop() } }
            let held = try await first.send("/hold", headers: [Self.key])
            try await eventually("held") { first.upstream.heldCount == 1 }
            let a = try await second.send("/hold", headers: [Self.key, "X-Seq: a"])
            try await eventually("a queued") { second.slots("gen").queued == 1 }
            let b = try await second.send("/hold", headers: [Self.key, "X-Seq: b"])
            try await eventually("b queued") { second.slots("gen").queued == 2 }
            #expect(try await second.get("/", headers: [Self.key]).status == 429, "a full queue refuses at once")
            first.upstream.releaseHeld()
            #expect(try await held.readResponse().status == 200)
            try await eventually("a got the slot freed on the other instance") { first.upstream.heldCount == 1 }
            first.upstream.releaseHeld()
            #expect(try await a.readResponse().status == 200)
            try await eventually("then b") { first.upstream.heldCount == 1 }
            first.upstream.releaseHeld()
            #expect(try await b.readResponse().status == 200)
            #expect(first.upstream.arrivals.suffix(2) == ["a", "b"])
            for client in [held, a, b] { await client.close() }
            try await eventually("released") { Self.leases(redis, prefix: "queue:") == 0 }
        }
    }

    @Test("Redis stopped and restarted: on_error followed (deny 503, allow 200, local max/instances), nothing leaks")
    func redisAwayAndBack() async throws {
        let redis = try await RedisServer.start()
        defer { Task { await redis.stop() } }
        for (onError, prefix) in [(RedisStorageConfiguration.OnError.deny, "deny:"), (.allow, "allow:"), (.local, "local:")] {
            let configure = Self.redisStorage(redis, prefix: prefix, ttl: .seconds(2), onError: onError, instances: 2, timeout: .milliseconds(200))
            try await withConcurrencyProxy([concurrencyRule("gen", max: 4)], configure: configure) { proxy in
                // A request holding a lease while Redis goes away.
                let held = try await proxy.send("/hold", headers: [Self.key])
                try await eventually("held") { proxy.upstream.heldCount == 1 }
                #expect(Self.leases(redis, prefix: prefix) == 1)
                await redis.stop()
                var clients: [RawHTTPClient] = []
                switch onError {
                case .deny:
                    let refused = try await proxy.get("/", headers: [Self.key])
                    #expect(refused.status == 503, "on_error deny")
                    #expect(proxy.slots("gen").refusals(.storageUnavailable) >= 1)
                case .allow:
                    for _ in 0..<6 { clients.append(try await proxy.send("/hold", headers: [Self.key])) }
                    try await eventually("all admitted: on_error allow") { proxy.upstream.heldCount == 7 }
                case .local:
                    // max 4 over 2 instances: 2 here while Redis is away.
                    for _ in 0..<2 { clients.append(try await proxy.send("/hold", headers: [Self.key])) }
                    try await eventually("two admitted locally") { proxy.upstream.heldCount == 3 }
                    #expect(try await proxy.get("/", headers: [Self.key]).status == 429, "the third is over max/instances")
                }
                try await redis.restart()
                proxy.upstream.releaseHeld()
                #expect(try await held.readResponse().status == 200)
                for client in clients { #expect(try await client.readResponse().status == 200) }
                for client in clients + [held] { await client.close() }
                try await eventually("in flight back to 0") {
                    proxy.slots("gen").inFlight == 0 && proxy.table.fallbackRule(named: "gen").inFlight == 0
                }
                // Back with Redis: a slot is taken and given back there, and nothing is left behind.
                let store = try #require(proxy.server.limiter?.store as? RedisStore)
                try await eventually(within: .seconds(10), "Redis answers again") {
                    // Requests meanwhile follow on_error until the circuit breaker lets one through to Redis.
                    _ = try? await proxy.get("/", headers: [Self.key])
                    return store.isAvailable
                }
                #expect(Self.leases(redis, prefix: prefix) == 0)
                let again = try await proxy.send("/hold", headers: [Self.key])
                try await eventually("held again") { proxy.upstream.heldCount == 1 }
                #expect(Self.leases(redis, prefix: prefix) == 1, "the lease is in Redis again")
                proxy.upstream.releaseHeld()
                #expect(try await again.readResponse().status == 200)
                await again.close()
                try await eventually("no lease left") { Self.leases(redis, prefix: prefix) == 0 }
            }
        }
    }
}
