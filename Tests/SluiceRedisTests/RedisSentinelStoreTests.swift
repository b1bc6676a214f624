import Foundation
import Logging
import NIOCore
import SluiceConfig
import SluiceTestSupport
import Testing

@testable import SluiceLimiter
@testable import SluiceRedis

/// The Redis store through Sentinel (issue 12) against real processes: a primary, a replica and three sentinels
/// started by each test.
extension RedisIntegrationTests {
    @Suite("Redis store through Sentinel") struct RedisSentinelStoreTests {
        typealias Store = RedisStoreTests

        static func configuration(_ set: RedisSentinelSet, timeout: Duration) -> RedisStorageConfiguration {
            var configuration = RedisStorageConfiguration(url: set.url)
            let sentinels = set.sentinels.map { RedisSeed(host: "127.0.0.1", port: $0.port) }
            configuration.deployment = .sentinel(sentinels: sentinels, masterName: set.masterName)
            configuration.host = sentinels[0].host
            configuration.port = sentinels[0].port
            configuration.onError = .deny
            configuration.timeout = timeout
            configuration.keyPrefix = "test:"
            return configuration
        }

        static func hourly(_ name: String, count: Int64) -> StoreItem {
            let limit = LimitParameters(count: count, periodNanoseconds: 3600 * 1_000_000_000)
            return StoreItem(key: Store.key(name), algorithm: .fixedWindow, limit: limit, cost: 1)
        }

        /// `count` decisions for `item` from 8 tasks at once: how many were admitted, and whether every one came
        /// from Redis (none from `on_error`).
        static func burst(_ store: RedisStore, _ item: StoreItem, count: Int) async -> (admitted: Int, allFromRedis: Bool) {
            await withTaskGroup(of: (Int, Bool).self) { tasks in
                for task in 0..<8 {
                    tasks.addTask {
                        var admitted = 0
                        var fromRedis = true
                        for _ in stride(from: task, to: count, by: 8) {
                            let batch = await Store.decide(store, [item], now: .now())
                            if batch.isAdmitted { admitted += 1 }
                            if batch.storageUnavailable { fromRedis = false }
                        }
                        return (admitted, fromRedis)
                    }
                }
                var total = (admitted: 0, allFromRedis: true)
                for await (admitted, fromRedis) in tasks {
                    total.admitted += admitted
                    total.allFromRedis = total.allFromRedis && fromRedis
                }
                return total
            }
        }

        /// The primary is SIGKILLed: every decision meanwhile is answered within `timeout` + 1 s (`on_error: deny`
        /// while no primary answers), the store moves to the promoted replica within the sentinels' failover time
        /// without a restart, and the limits there are exact. Then the sentinel it listens to dies: it subscribes
        /// on another.
        @Test func followsTheReplicaWhenThePrimaryIsKilled() async throws {
            try await withRedisSentinelSet { set in
                let timeout = Duration.milliseconds(200)
                let store = Store.store(Self.configuration(set, timeout: timeout))
                do {
                    let monitor = try #require(store.sentinel)
                    try await eventually("the store finds the primary") { monitor.primary?.port == set.primary.port }
                    #expect(await Self.burst(store, Self.hourly("before", count: 5), count: 12) == (5, true))
                    #expect(store.isAvailable)

                    try set.killPrimary()
                    let killed = ContinuousClock.now
                    var slowest = Duration.zero
                    var followed: Duration?
                    var unavailableSeen = false
                    var sentinelsSwitched: Duration?
                    let replica = "127.0.0.1:\(set.replica.port)"
                    while followed == nil, ContinuousClock.now - killed < .seconds(25) {
                        if sentinelsSwitched == nil, set.someSentinelNames(replica) {
                            sentinelsSwitched = ContinuousClock.now - killed
                        }
                        let start = ContinuousClock.now
                        let batch = await Store.decide(store, [Self.hourly("during", count: 1_000_000)], now: .now())
                        slowest = max(slowest, ContinuousClock.now - start)
                        if batch.storageUnavailable {
                            unavailableSeen = true
                            #expect(!batch.isAdmitted, "on_error: deny")
                        } else if monitor.switches == 1 {
                            followed = ContinuousClock.now - killed
                        }
                        try await Task.sleep(for: .milliseconds(20))
                    }
                    let after = try #require(followed, "the store did not follow the new primary within 25 s")
                    // Followed within the iteration in which the sentinels switched: the lag is below one iteration.
                    if sentinelsSwitched == nil, set.someSentinelNames("127.0.0.1:\(set.replica.port)") {
                        sentinelsSwitched = after
                    }
                    let switched = try #require(sentinelsSwitched, "the sentinels do not name the replica")
                    // down-after 1 s + election + promotion is about 2-4 s here (more when a vote splits); the store
                    // adds at most a check interval (1 s) after the sentinels name the new primary.
                    #expect(after - switched < .seconds(2), "sentinels switched after \(switched), store followed after \(after)")
                    #expect(slowest < timeout + .seconds(1), "a decision took \(slowest)")
                    #expect(unavailableSeen, "decisions went to on_error while no primary answered")
                    #expect(monitor.switches == 1)
                    #expect(monitor.primary?.port == set.replica.port)

                    // Exact on the new primary: 10 of 40, all decided there.
                    #expect(await Self.burst(store, Self.hourly("after", count: 10), count: 40) == (10, true))
                    #expect(set.replica.cli("EXISTS", store.redisKey(Store.key("after"))) == "1")
                    #expect(store.isAvailable)

                    // The subscribed sentinel dies: the next one is subscribed to.
                    let subscribed = try #require(monitor.sentinelHealth.firstIndex { $0.subscribed })
                    set.sentinels[subscribed].kill()
                    try await eventually("another sentinel is subscribed to") {
                        let health = monitor.sentinelHealth
                        return health[subscribed].healthy == false && health.contains { $0.subscribed }
                    }
                    #expect(!monitor.sentinelHealth[subscribed].subscribed)
                } catch {
                    await store.close()
                    throw error
                }
                await store.close()
            }
        }

        /// A failover the operator asks for (`SENTINEL FAILOVER`): the old primary lives on as a replica and the
        /// store's connections to it stay open, so only `+switch-master` (or the periodic check, or a `READONLY`
        /// reply) can move the store. It moves, and the budget stays exact there.
        @Test func followsAManualFailoverWhileTheOldPrimaryLives() async throws {
            try await withRedisSentinelSet { set in
                let store = Store.store(Self.configuration(set, timeout: .seconds(2)))
                do {
                    let monitor = try #require(store.sentinel)
                    try await eventually("the store finds the primary") { monitor.primary?.port == set.primary.port }
                    #expect(await Self.burst(store, Self.hourly("before", count: 3), count: 6) == (3, true))

                    let asked = ContinuousClock.now
                    #expect(set.sentinels[1].cli("SENTINEL", "FAILOVER", set.masterName) == "OK")
                    try await eventually(within: .seconds(15), "the store follows the promoted replica") {
                        monitor.switches == 1
                    }
                    #expect(monitor.primary?.port == set.replica.port)
                    #expect(ContinuousClock.now - asked < .seconds(10))
                    #expect(await Self.burst(store, Self.hourly("after", count: 7), count: 20) == (7, true))
                    // Written on the new primary, not on the old one (which is not yet told it is a replica).
                    #expect(set.replica.cli("EXISTS", store.redisKey(Store.key("after"))) == "1")
                } catch {
                    await store.close()
                    throw error
                }
                await store.close()
            }
        }
    }
}

extension RedisIntegrationTests.RedisSentinelStoreTests {
    /// The URL's password is the primary's; the sentinels get `sentinel_password` (docs/behaviour.md). Without
    /// it, sentinels that require one refuse to name the primary, and `on_error` decides.
    @Test func primaryAndSentinelsHaveTheirOwnPasswords() async throws {
        try await withRedisSentinelSet(password: "data-pw", sentinelPassword: "watch-pw") { set in
            var configuration = Self.configuration(set, timeout: .seconds(2))
            configuration.password = "data-pw"
            configuration.sentinelPassword = "watch-pw"
            let store = Store.store(configuration)
            do {
                let monitor = try #require(store.sentinel)
                try await eventually("the store finds the primary") { monitor.primary?.port == set.primary.port }
                #expect(await Self.burst(store, Self.hourly("auth", count: 4), count: 9) == (4, true))
                try await eventually("every sentinel answers the password") {
                    monitor.sentinelHealth.allSatisfy { $0.healthy == true }
                }
            } catch {
                await store.close()
                throw error
            }
            await store.close()

            configuration.sentinelPassword = nil
            let refused = Store.store(configuration)
            let batch = await Store.decide(refused, [Self.hourly("no-auth", count: 4)], now: .now())
            #expect(batch.storageUnavailable && !batch.isAdmitted, "on_error: deny")
            #expect(refused.sentinel?.primary == nil)
            #expect(refused.sentinel?.sentinelHealth.allSatisfy { $0.healthy != true } == true)
            await refused.close()
        }
    }
}
