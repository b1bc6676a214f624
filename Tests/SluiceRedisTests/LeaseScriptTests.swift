import Foundation
import Logging
import NIOCore
import NIOPosix
import SluiceConfig
import SluiceTestSupport
import Synchronization
import Testing
@testable import SluiceLimiter
@testable import SluiceRedis

/// The lease script's calling convention, without a server (issue 22 item 5).
@Suite("Lease script codec") struct LeaseScriptCodecTests {
    /// The command's arguments, decoded from its RESP bytes.
    static func arguments(_ command: RedisCommand) throws -> [String] {
        var buffer = command.encoded
        var decoder = RESPDecoder()
        let value = try #require(try decoder.decode(buffer: &buffer))
        #expect(buffer.readableBytes == 0, "one command, nothing after it")
        return try #require(value.array).map { $0.string ?? "?" }
    }

    @Test("one call carries every request: keys first, then TTL, count, and each request's operation, member, items")
    func encodesRequests() throws {
        let acquire = LeaseRequest(operation: .acquire, member: "i:1", keys: ["p:cc:a:1", "p:cc:b:2"], maxes: [4, 2], enforced: [true, false])
        let release = LeaseRequest(operation: .release, member: "i:0", keys: ["p:cc:a:1"])
        let renew = LeaseRequest(operation: .renew, member: "i:9", keys: ["p:cc:c:3"])
        let command = LeaseRequest.call("EVALSHA", "sha", requests: [acquire, release, renew], ttlMilliseconds: 2000)
        #expect(try Self.arguments(command) == [
            "EVALSHA", "sha", "4", "p:cc:a:1", "p:cc:b:2", "p:cc:a:1", "p:cc:c:3",
            "2000", "3",
            "a", "i:1", "2", "4", "1", "2", "0",
            "r", "i:0", "1",
            "n", "i:9", "1",
        ])
    }

    @Test("the reply is split two integers per request; a reply of another shape fails every request")
    func splitsReplies() {
        let answers = Mutex<[Int: Result<LeaseRequest.Answer, any Error>]>([:])
        func request(_ index: Int) -> LeaseRequest {
            LeaseRequest(operation: .acquire, member: "m", keys: ["k"], maxes: [1], enforced: [true]) { result in
                answers.withLock { $0[index] = result }
            }
        }
        LeaseRequest.complete([request(0), request(1)], with: .success(.array([.integer(0), .integer(1), .integer(2), .integer(0)])))
        #expect((try? answers.withLock { $0[0] }?.get()) == LeaseRequest.Answer(refused: 0, overMax: 1))
        #expect((try? answers.withLock { $0[1] }?.get()) == LeaseRequest.Answer(refused: 2, overMax: 0))

        answers.withLock { $0 = [:] }
        LeaseRequest.complete([request(0), request(1)], with: .success(.array([.integer(0), .integer(0)])))
        #expect(answers.withLock { $0.count } == 2)
        #expect(answers.withLock { $0.values.allSatisfy { if case .failure = $0 { true } else { false } } })

        answers.withLock { $0 = [:] }
        LeaseRequest.complete([request(0)], with: .failure(RedisError.unavailable("down")))
        #expect(answers.withLock { if case .failure = $0[0] { true } else { false } })
    }
}

/// The lease script against a real `redis-server` through ``RedisStore`` (acquire, release, expiry, renewal).
extension RedisIntegrationTests {
    @Suite("Redis concurrency leases") struct RedisLeaseTests {
        static func store(port: Int, ttl: Duration) -> RedisStore {
            var configuration = RedisStoreTests.configuration(port: port)
            configuration.keyPrefix = "lease:"
            configuration.leaseTTL = ttl
            return RedisStore(configuration: configuration, group: RedisStoreTests.group, localMaxKeys: 100, logger: quietLogger)
        }

        static func acquire(_ store: RedisStore, _ items: [ConcurrencyLeaseItem]) async -> ConcurrencyLeaseReply {
            await withCheckedContinuation { continuation in
                store.acquireLeases(items) { continuation.resume(returning: $0) }
            }
        }

        static func item(_ rule: String, _ key: String, max: Int, enforced: Bool = true) -> ConcurrencyLeaseItem {
            ConcurrencyLeaseItem(rule: rule, key: RedisStoreTests.key(key), max: max, enforced: enforced)
        }

        static func handle(_ reply: ConcurrencyLeaseReply) -> ConcurrencyLeaseHandle? {
            if case .acquired(let handle, _) = reply { return handle }
            return nil
        }

        @Test("max leases per key, all or nothing over items, shadow taken over max, release gives back")
        func acquireAndRelease() async throws {
            try await withRedisServer { redis in
                let store = Self.store(port: redis.port, ttl: .seconds(30))
                let a = Self.item("r", "k", max: 2)
                let first = try #require(Self.handle(await Self.acquire(store, [a])))
                let second = try #require(Self.handle(await Self.acquire(store, [a])))
                guard case .refused(let index) = await Self.acquire(store, [a]) else {
                    Issue.record("the third is refused")
                    return
                }
                #expect(index == 0)
                let key = store.leaseKey(rule: "r", key: RedisStoreTests.key("k"))
                #expect(redis.cli("ZCARD", key) == "2")
                #expect(first.member != second.member)

                // All or nothing: the second item is full, so the first (free) one is not taken either.
                let other = Self.item("r2", "x", max: 5)
                guard case .refused(let full) = await Self.acquire(store, [other, a]) else {
                    Issue.record("refused by the second item")
                    return
                }
                #expect(full == 1)
                #expect(redis.cli("ZCARD", store.leaseKey(rule: "r2", key: RedisStoreTests.key("x"))) == "0")

                // A shadow item is taken over its max and said so.
                guard case .acquired(let shadow, let over) = await Self.acquire(store, [other, Self.item("r", "k", max: 2, enforced: false)]) else {
                    Issue.record("shadow admitted")
                    return
                }
                #expect(over == 1)
                #expect(redis.cli("ZCARD", key) == "3")

                for handle in [first, second, shadow] { store.releaseLeases(handle) }
                try await eventually("every lease released") {
                    redis.cli("EXISTS", key) == "0" && redis.cli("EXISTS", store.leaseKey(rule: "r2", key: RedisStoreTests.key("x"))) == "0"
                }
                #expect(store.heldLeaseCount == 0)
                await store.close()
            }
        }

        @Test("a lease nobody renews expires after its TTL; a held one is renewed and stays")
        func expiryAndRenewal() async throws {
            try await withRedisServer { redis in
                let store = Self.store(port: redis.port, ttl: .seconds(1))
                let item = Self.item("r", "k", max: 1)
                let key = store.leaseKey(rule: "r", key: RedisStoreTests.key("k"))
                // A lease of a "dead" instance: written by hand with an expiry in the past of the server's clock.
                let nowMs = Int(redis.cli("EVAL", "local t = redis.call('TIME'); return t[1] * 1000", "0")) ?? 0
                redis.cli("ZADD", key, String(nowMs - 10), "dead:1")
                let taken = try #require(Self.handle(await Self.acquire(store, [item])), "the expired lease is dropped")
                #expect(redis.cli("ZSCORE", key, "dead:1").isEmpty)
                // Held (and renewed every third of the TTL) for three TTLs.
                try await Task.sleep(for: .seconds(3))
                guard case .refused = await Self.acquire(store, [item]) else {
                    Issue.record("the renewed lease still holds the only slot")
                    return
                }
                store.releaseLeases(taken)
                try await eventually("released") { redis.cli("EXISTS", key) == "0" }

                // Not renewed (another store, stopped): gone within a TTL.
                let other = Self.store(port: redis.port, ttl: .seconds(1))
                _ = try #require(Self.handle(await Self.acquire(other, [item])))
                await other.close()
                let stopped = ContinuousClock.now
                // On Redis's clock the orphaned lease ends at most one TTL from now.
                let serverNow = Int(redis.cli("EVAL", "local t = redis.call('TIME'); return t[1] * 1000 + math.floor(t[2] / 1000)", "0")) ?? 0
                let expiry = Int(redis.cli("ZRANGE", key, "0", "0", "WITHSCORES").split(separator: "\n").last ?? "") ?? .max
                #expect(expiry - serverNow <= 1_000, "expiry \(expiry), now \(serverNow)")
                try await eventually(within: .seconds(3), "the orphaned lease expires") {
                    if case .acquired(let handle, _) = await Self.acquire(store, [item]) {
                        store.releaseLeases(handle)
                        return true
                    }
                    return false
                }
                #expect(ContinuousClock.now - stopped <= .milliseconds(2_500), "polling and a loaded machine add to the TTL")
                await store.close()
            }
        }

        @Test("Redis away: the acquire says unavailable at once")
        func unavailable() async throws {
            let store = Self.store(port: try closedPort(), ttl: .seconds(1))
            guard case .unavailable = await Self.acquire(store, [Self.item("r", "k", max: 1)]) else {
                Issue.record("unavailable")
                await store.close()
                return
            }
            await store.close()
        }
    }
}
