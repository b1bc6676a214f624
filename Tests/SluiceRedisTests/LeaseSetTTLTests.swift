import SluiceTestSupport
import Testing

@testable import SluiceLimiter
@testable import SluiceRedis

/// The expiry of a key's lease set (``LeaseScript``): set on a key's first lease, lengthened to the TTL when shorter,
/// never shortened, so the set outlives its last lease and nothing of it outlives one TTL more.
extension RedisIntegrationTests {
    @Suite("Redis concurrency leases: the set's expiry") struct LeaseSetTTLTests {
        typealias Leases = RedisIntegrationTests.RedisLeaseTests

        @Test("a new set gets the TTL; a shorter one is lengthened; a longer one is kept")
        func setExpiry() async throws {
            try await withRedisServer { redis in
                let store = Leases.store(port: redis.port, ttl: .seconds(10))
                let item = Leases.item("r", "k", max: 5)
                let key = store.leaseKey(rule: "r", key: RedisStoreTests.key("k"))
                let first = try #require(Leases.handle(await Leases.acquire(store, [item])))
                let fresh = Int(redis.cli("PTTL", key)) ?? -3
                #expect(fresh > 5_000 && fresh <= 10_000, "a new set expires with its TTL: \(fresh)")

                redis.cli("PEXPIRE", key, "200")
                let second = try #require(Leases.handle(await Leases.acquire(store, [item])))
                let lengthened = Int(redis.cli("PTTL", key)) ?? -3
                #expect(lengthened > 5_000 && lengthened <= 10_000, "a shorter expiry is moved to the TTL: \(lengthened)")

                redis.cli("PEXPIRE", key, "100000")
                let third = try #require(Leases.handle(await Leases.acquire(store, [item])))
                let kept = Int(redis.cli("PTTL", key)) ?? -3
                #expect(kept > 50_000, "a longer expiry is not shortened: \(kept)")
                #expect(redis.cli("ZCARD", key) == "3")

                for handle in [first, second, third] { store.releaseLeases(handle) }
                try await eventually("released") { redis.cli("EXISTS", key) == "0" }
                await store.close()
            }
        }
    }
}
