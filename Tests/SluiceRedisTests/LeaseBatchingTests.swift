import NIOCore
import SluiceTestSupport
import Testing

@testable import SluiceLimiter
@testable import SluiceRedis

/// Issue 22 item 5, "acquire ... release ..., both batched per event-loop tick like today's decisions": the acquires
/// made on one loop in one tick go to Redis as one script call, and so do the releases (audit of issue 22; the codec
/// test only shows that one call *can* carry several requests).
extension RedisIntegrationTests {
    @Suite("Redis concurrency leases: one script call per tick") struct LeaseBatchingTests {
        typealias Leases = RedisIntegrationTests.RedisLeaseTests

        @Test("ten acquires in one tick are one call; their ten releases in one tick are one more")
        func oneCallPerTick() async throws {
            try await withRedisServer { redis in
                // A long TTL: the renewal timer (every third of it) stays out of the count.
                let store = Leases.store(port: redis.port, ttl: .seconds(90))
                // Loads the script first (its first run is an EVAL plus SCRIPT LOAD).
                let warm = try #require(Leases.handle(await Leases.acquire(store, [Leases.item("warm", "w", max: 1)])))
                store.releaseLeases(warm)
                try await eventually("warm-up released") { store.heldLeaseCount == 0 && Self.leases(redis) == 0 }
                let before = RedisIntegrationTests.RedisClusterStoreTests.scriptCalls(redis)

                let loop = RedisStoreTests.group.next()
                let replies = try await loop.flatSubmit {
                    let futures = (0..<10).map { index -> EventLoopFuture<ConcurrencyLeaseReply> in
                        let promise = loop.makePromise(of: ConcurrencyLeaseReply.self)
                        store.acquireLeases([Leases.item("r", "k\(index)", max: 1)]) { promise.succeed($0) }
                        return promise.futureResult
                    }
                    return EventLoopFuture.whenAllSucceed(futures, on: loop)
                }.get()
                let handles = replies.compactMap(Leases.handle)
                #expect(handles.count == 10, "every key has a free slot")
                #expect(Self.leases(redis) == 10)
                // One sorted set per key; each member names this instance and its request, scored by its expiry.
                let members = (0..<10).map { index in
                    redis.cli("ZRANGE", store.leaseKey(rule: "r", key: RedisStoreTests.key("k\(index)")), "0", "-1")
                }
                #expect(members.allSatisfy { $0.split(separator: "\n").count == 1 })
                let instances = Set(members.map { $0.split(separator: ":").first.map(String.init) ?? "" })
                #expect(instances.count == 1 && instances.first?.isEmpty == false, "one instance id: \(members)")
                #expect(Set(members).count == 10, "a member per request: \(members)")
                let afterAcquires = RedisIntegrationTests.RedisClusterStoreTests.scriptCalls(redis)
                #expect(afterAcquires - before == 1, "10 acquires of one tick took \(afterAcquires - before) script calls")

                try await loop.submit { for handle in handles { store.releaseLeases(handle) } }.get()
                try await eventually("released") { Self.leases(redis) == 0 }
                let afterReleases = RedisIntegrationTests.RedisClusterStoreTests.scriptCalls(redis)
                #expect(afterReleases - afterAcquires == 1, "10 releases of one tick took \(afterReleases - afterAcquires) script calls")
                #expect(store.heldLeaseCount == 0)
                await store.close()
            }
        }

        @Test("the renewal of ten held leases is one call per round, and keeps them past their TTL")
        func renewalIsBatched() async throws {
            try await withRedisServer { redis in
                // TTL 3 s: a renewal round every second.
                let store = Leases.store(port: redis.port, ttl: .seconds(3))
                var handles: [ConcurrencyLeaseHandle] = []
                for index in 0..<10 {
                    handles.append(try #require(Leases.handle(await Leases.acquire(store, [Leases.item("r", "k\(index)", max: 1)]))))
                }
                let before = RedisIntegrationTests.RedisClusterStoreTests.scriptCalls(redis)
                try await Task.sleep(for: .milliseconds(4_500))
                let calls = RedisIntegrationTests.RedisClusterStoreTests.scriptCalls(redis) - before
                // 4 or 5 rounds in 4.5 s (one call each); a lease at a time would be 40 or more.
                #expect((3...6).contains(calls), "\(calls) script calls for 10 leases over about 4 renewal rounds")
                #expect(Self.leases(redis) == 10, "renewed: still held after 1.5 TTLs")
                for handle in handles { store.releaseLeases(handle) }
                try await eventually("released") { Self.leases(redis) == 0 }
                await store.close()
            }
        }

        /// Every lease under the test store's prefix.
        static func leases(_ redis: RedisServer) -> Int {
            let keys = redis.cli("--scan", "--pattern", "lease:cc:*").split(separator: "\n").map(String.init)
            return keys.reduce(0) { $0 + (Int(redis.cli("ZCARD", $1)) ?? 0) }
        }
    }
}
