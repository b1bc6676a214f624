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

/// The Redis store against a real 3-primary Redis Cluster (issue 12), one test at a time with the other real-server
/// suites.
extension RedisIntegrationTests { @Suite("Redis Cluster store") struct RedisClusterStoreTests {
    static let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)

    static func configuration(
        _ cluster: RedisTestCluster,
        onError: RedisStorageConfiguration.OnError = .deny,
        timeout: Duration = .seconds(2)
    ) -> RedisStorageConfiguration {
        var configuration = RedisStorageConfiguration(url: cluster.url)
        let seeds = cluster.nodes.prefix(2).map { RedisSeed(host: "127.0.0.1", port: $0.port) }
        configuration.host = seeds[0].host
        configuration.port = seeds[0].port
        configuration.deployment = .cluster(seeds: Array(seeds))
        configuration.onError = onError
        configuration.timeout = timeout
        configuration.keyPrefix = "test:"
        return configuration
    }

    static func store(_ configuration: RedisStorageConfiguration, cacheRefusals: Bool = true) -> RedisStore {
        RedisStore(
            configuration: configuration,
            group: Self.group,
            localMaxKeys: 10_000,
            logger: quietLogger,
            cacheRefusals: cacheRefusals
        )
    }

    static func decide(_ store: some RateLimitStore, _ items: [StoreItem], now: LimiterInstant = .now()) async -> DecisionBatch {
        var batch = DecisionBatch()
        for item in items { batch.append(item) }
        return await withCheckedContinuation { continuation in
            store.decide(batch, now: now) { continuation.resume(returning: $0) }
        }
    }

    static func key(_ text: String) -> StorageKey {
        var hasher = KeyHasher(seed: StorageKey(high: 7, low: 7))
        hasher.combine(lengthPrefixed: text)
        return hasher.finalize()
    }

    /// An item of its own rule key `tag`.
    static func item(_ name: String, tag: UInt32, algorithm: Algorithm = .fixedWindow, limit: LimitParameters) -> StoreItem {
        var item = StoreItem(key: Self.key(name), algorithm: algorithm, limit: limit, cost: 1)
        item.clusterTag = tag
        return item
    }

    /// Tags whose slots are served by each of the cluster's nodes, `perNode` each.
    static func tags(spreadOver cluster: RedisTestCluster, perNode: Int) -> [UInt32] {
        var byNode: [Int: [UInt32]] = [:]
        var tag: UInt32 = 1
        while byNode.values.map(\.count).reduce(0, +) < perNode * cluster.nodes.count {
            if let owner = cluster.owner(ofSlot: RedisKeySlot.slot(tag: tag)), byNode[owner, default: []].count < perNode {
                byNode[owner, default: []].append(tag)
            }
            tag += 7919
        }
        return byNode.keys.sorted().flatMap { byNode[$0]! }
    }

    /// What one store admits of `attempts` requests at one instant (the expected total of a shared budget).
    static func expectedAdmissions(_ item: StoreItem, attempts: Int) -> Int {
        let memory = MemoryStore(maxKeys: 100)
        let now = LimiterInstant.now()
        var admitted = 0
        for _ in 0..<attempts {
            var batch = DecisionBatch()
            batch.append(item)
            memory.decide(&batch, now: now)
            if batch.isAdmitted { admitted += 1 }
        }
        return admitted
    }

    // MARK: Sharing

    /// Two stores (two instances) deciding concurrently for keys on every primary admit, per key, exactly what one
    /// store admits alone, for every algorithm.
    @Test(arguments: [Algorithm.fixedWindow, .slidingWindow, .movingWindow, .tokenBucket, .gcra])
    func twoInstancesShareOneBudgetAcrossTheCluster(_ algorithm: Algorithm) async throws {
        try await withRedisCluster { cluster in
            let first = Self.store(Self.configuration(cluster))
            let second = Self.store(Self.configuration(cluster))
            // A day: no window ends, no bucket refills while the test runs.
            let limit = LimitParameters(count: 60, periodNanoseconds: 86_400 * 1_000_000_000, burst: 10)
            let tags = Self.tags(spreadOver: cluster, perNode: 1)
            let items = tags.map { Self.item("share-\(algorithm)-\($0)", tag: $0, algorithm: algorithm, limit: limit) }
            let attempts = 2 * 4 * 25
            let expected = Self.expectedAdmissions(items[0], attempts: attempts)
            #expect(expected > 0 && expected < attempts)
            let admitted = await withTaskGroup(of: [Int].self) { tasks in
                for store in [first, second] {
                    for _ in 0..<4 {
                        tasks.addTask {
                            var admitted = Array(repeating: 0, count: items.count)
                            for _ in 0..<25 {
                                for (index, item) in items.enumerated() where await Self.decide(store, [item]).isAdmitted {
                                    admitted[index] += 1
                                }
                            }
                            return admitted
                        }
                    }
                }
                var total = Array(repeating: 0, count: items.count)
                for await part in tasks { for index in part.indices { total[index] += part[index] } }
                return total
            }
            #expect(admitted == Array(repeating: expected, count: items.count), "every key on every node: exactly the budget")
            #expect(first.clusterNodes.count == 3 && first.clusterNodes.allSatisfy(\.available))
            await first.close()
            await second.close()
        }
    }

    /// A request with limits in two slots (two rule keys on different primaries) is all or nothing: once its own key
    /// refuses, the other limit is not charged.
    @Test func aRequestOverTwoSlotsIsAllOrNothing() async throws {
        try await withRedisCluster { cluster in
            let store = Self.store(Self.configuration(cluster), cacheRefusals: false)
            let tags = Self.tags(spreadOver: cluster, perNode: 1)
            let perClient = Self.item("client", tag: tags[0], limit: LimitParameters(count: 5, periodNanoseconds: 3_600_000_000_000))
            let global = Self.item("global", tag: tags[1], limit: LimitParameters(count: 1000, periodNanoseconds: 3_600_000_000_000))
            #expect(RedisStore.slot(of: perClient) != RedisStore.slot(of: global))
            var admitted = 0
            var last = DecisionBatch()
            for _ in 0..<20 {
                last = await Self.decide(store, [perClient, global])
                if last.isAdmitted { admitted += 1 }
                #expect(!last.storageUnavailable)
            }
            #expect(admitted == 5)
            #expect(!last.isAdmitted)
            // 5 admitted requests took 5; the 15 refused took nothing (this look reports 1 more as taken).
            let alone = await Self.decide(store, [global])
            #expect(alone.results[0].remaining == 994, "refused requests took nothing from the global limit")
            await store.close()
        }
    }

    // MARK: Batching

    static func decideOnLoop(_ store: RedisStore, _ item: StoreItem, loop: any EventLoop) -> EventLoopFuture<DecisionBatch> {
        Self.decideOnLoop(store, [item], loop: loop)
    }

    static func decideOnLoop(_ store: RedisStore, _ items: [StoreItem], loop: any EventLoop) -> EventLoopFuture<DecisionBatch> {
        var batch = DecisionBatch()
        for item in items { batch.append(item) }
        let promise = loop.makePromise(of: DecisionBatch.self)
        store.decide(batch, now: .now()) { promise.succeed($0) }
        return promise.futureResult
    }

    static func scriptCalls(_ server: RedisServer) -> Int {
        var total = 0
        for line in server.cli("INFO", "commandstats").split(whereSeparator: \.isNewline) where line.hasPrefix("cmdstat_eval") {
            if let calls = line.split(separator: "=").dropFirst().first?.split(separator: ",").first { total += Int(calls) ?? 0 }
        }
        return total
    }

    /// Decisions of one tick for keys in four slots of one primary go out as one script call; after one of those
    /// slots moved to another primary (the store's map not yet told), the call finds a key not served there, does
    /// nothing, and the decisions are sent slot by slot: none is lost, none counted twice.
    @Test func oneCallPerPrimaryPerTickAndAMovedSlotFallsBack() async throws {
        try await withRedisCluster { cluster in
            let store = Self.store(Self.configuration(cluster), cacheRefusals: false)
            var tags: [UInt32] = []
            var tag: UInt32 = 1
            while tags.count < 4 {
                if cluster.owner(ofSlot: RedisKeySlot.slot(tag: tag)) == 0 { tags.append(tag) }
                tag += 7919
            }
            let limit = LimitParameters(count: 1000, periodNanoseconds: 3_600_000_000_000)
            let items = tags.map { Self.item("tick-\($0)", tag: $0, limit: limit) }
            let loop = Self.group.next()
            func round() async throws -> [DecisionBatch] {
                try await loop.flatSubmit {
                    EventLoopFuture.whenAllSucceed(items.map { Self.decideOnLoop(store, $0, loop: loop) }, on: loop)
                }.get()
            }
            _ = try await round()  // loads the scripts
            let before = Self.scriptCalls(cluster.nodes[0])
            let first = try await round()
            #expect(Self.scriptCalls(cluster.nodes[0]) == before + 1, "four slots of one primary, one call")
            #expect(first.map { $0.results[0].remaining } == [998, 998, 998, 998])

            try await cluster.migrate(slot: RedisKeySlot.slot(tag: tags[2]), from: 0, to: 1) {}
            let second = try await round()
            #expect(second.allSatisfy { $0.isAdmitted && !$0.storageUnavailable })
            #expect(second.map { $0.results[0].remaining } == [997, 997, 997, 997], "each counted once")
            await store.close()
        }
    }

    /// Servers before Redis 7 cannot run the cross-slot script (its shebang does not compile), and the store then
    /// stops trying it (``RedisStore/crossSlotCalls``). Without it, the same tick's decisions go out as one call per
    /// slot, with the same results, and still count exactly once.
    @Test func withoutCrossSlotScriptsOneCallPerSlotSameDecisions() async throws {
        try await withRedisCluster { cluster in
            let store = Self.store(Self.configuration(cluster), cacheRefusals: false)
            store.crossSlotCalls.store(false, ordering: .relaxed)
            var tags: [UInt32] = []
            var tag: UInt32 = 3
            while tags.count < 4 {
                if cluster.owner(ofSlot: RedisKeySlot.slot(tag: tag)) == 0 { tags.append(tag) }
                tag += 7919
            }
            let limit = LimitParameters(count: 3, periodNanoseconds: 3_600_000_000_000)
            let items = tags.map { Self.item("old-\($0)", tag: $0, limit: limit) }
            let loop = Self.group.next()
            func round() async throws -> [DecisionBatch] {
                try await loop.flatSubmit {
                    EventLoopFuture.whenAllSucceed(items.map { Self.decideOnLoop(store, $0, loop: loop) }, on: loop)
                }.get()
            }
            _ = try await round()  // loads the script
            let before = Self.scriptCalls(cluster.nodes[0])
            let second = try await round()
            #expect(Self.scriptCalls(cluster.nodes[0]) == before + 4, "four slots of one primary, one call each")
            #expect(second.map { $0.results[0].remaining } == [1, 1, 1, 1])
            let third = try await round()
            #expect(third.allSatisfy { $0.isAdmitted && !$0.storageUnavailable })
            #expect(third.map { $0.results[0].remaining } == [0, 0, 0, 0])
            let fourth = try await round()
            #expect(fourth.allSatisfy { !$0.isAdmitted && !$0.storageUnavailable }, "the limit of 3 holds per key")
            #expect(store.crossSlotCalls.load(ordering: .relaxed) == false)
            await store.close()
        }
    }

    // MARK: Migration

    /// A slot moved to another primary while two stores decide for two keys in it (`MIGRATING`/`IMPORTING`,
    /// `MIGRATE`, `SETSLOT NODE`): no decision fails (ASK, TRYAGAIN and MOVED are followed) and exactly the limit is
    /// admitted.
    @Test func aSlotMigratedDuringTrafficLosesNoDecision() async throws {
        try await withRedisCluster { cluster in
            let stores = [
                Self.store(Self.configuration(cluster), cacheRefusals: false),
                Self.store(Self.configuration(cluster), cacheRefusals: false),
            ]
            let tag = Self.tags(spreadOver: cluster, perNode: 1)[0]
            let slot = RedisKeySlot.slot(tag: tag)
            let source = try #require(cluster.owner(ofSlot: slot))
            let target = (source + 1) % cluster.nodes.count
            let limited = Self.item("migrating", tag: tag, limit: LimitParameters(count: 300, periodNanoseconds: 3_600_000_000_000))
            let wide = Self.item("migrating-wide", tag: tag, limit: LimitParameters(count: 1_000_000, periodNanoseconds: 3_600_000_000_000))
            // A key in another slot of the same primary, decided in the same ticks: the primary's calls carry both
            // slots (the cross-slot script) until the move, then fall back slot by slot.
            var otherTag: UInt32 = tag &+ 7919
            while cluster.owner(ofSlot: RedisKeySlot.slot(tag: otherTag)) != source || RedisKeySlot.slot(tag: otherTag) == slot {
                otherTag &+= 7919
            }
            let other = Self.item("other", tag: otherTag, limit: LimitParameters(count: 1_000_000, periodNanoseconds: 3_600_000_000_000))
            // Both keys exist before the move.
            #expect(await Self.decide(stores[0], [limited, wide]).isAdmitted)

            let migrated = Flag()
            let counts = Counts()
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                for store in stores {
                    for _ in 0..<3 {
                        tasks.addTask {
                            var after = 0
                            let loop = Self.group.next()
                            while after < 40 {
                                // Two requests in one tick of one loop: one script call to the source (while it
                                // serves both slots).
                                let (decided, beside) = try await loop.flatSubmit {
                                    Self.decideOnLoop(store, [limited, wide], loop: loop)
                                        .and(Self.decideOnLoop(store, [other], loop: loop))
                                }.get()
                                counts.record(decided)
                                #expect(beside.isAdmitted && !beside.storageUnavailable)
                                if migrated.isSet { after += 1 }
                            }
                        }
                    }
                }
                tasks.addTask {
                    try await cluster.migrate(slot: slot, from: source, to: target) { try await Task.sleep(for: .milliseconds(30)) }
                    migrated.set()
                }
                try await tasks.waitForAll()
            }
            let (attempts, admitted, failed) = counts.totals
            #expect(attempts > 300)
            #expect(failed == 0, "no decision fell to on_error")
            #expect(admitted == 300, "exactly the limit")
            #expect(cluster.owner(ofSlot: slot) == target)
            #expect(cluster.nodes[target].cli("EXISTS", RedisKeySlot.key(prefix: "test:", tag: tag, key: limited.key)) == "1")
            for store in stores { await store.close() }
        }
    }

    final class Flag: Sendable {
        private let value = Atomic<Bool>(false)
        var isSet: Bool { self.value.load(ordering: .relaxed) }
        func set() { self.value.store(true, ordering: .relaxed) }
    }

    /// Decisions seen: all, admitted (one before the traffic), fallen to on_error.
    final class Counts: Sendable {
        private let counts = Mutex<(attempts: Int, admitted: Int, failed: Int)>((0, 1, 0))
        var totals: (Int, Int, Int) { self.counts.withLock { ($0.attempts, $0.admitted, $0.failed) } }
        func record(_ decided: DecisionBatch) {
            self.counts.withLock { counts in
                counts.attempts += 1
                if decided.isAdmitted { counts.admitted += 1 }
                if decided.storageUnavailable { counts.failed += 1 }
            }
        }
    }

    // MARK: A node down

    /// One primary stopped: requests for its keys follow `on_error` (deny: 503), at once once its breaker opens;
    /// keys on the other primaries keep being shared exactly; the status shows the node unavailable.
    @Test func onePrimaryDownOnlyItsKeysFollowOnError() async throws {
        try await withRedisCluster { cluster in
            let configuration = Self.configuration(cluster, onError: .deny, timeout: .milliseconds(300))
            let first = Self.store(configuration, cacheRefusals: false)
            let second = Self.store(configuration, cacheRefusals: false)
            let tags = Self.tags(spreadOver: cluster, perNode: 1)
            let limit = LimitParameters(count: 40, periodNanoseconds: 3_600_000_000_000)
            let items = tags.map { Self.item("down-\($0)", tag: $0, limit: limit) }
            for item in items { #expect(await Self.decide(first, [item]).isAdmitted) }
            let owners = items.map { cluster.owner(ofSlot: RedisStore.slot(of: $0)) }
            // Stop the node that is not a seed, so the map keeps being read from the others.
            let down = 2
            let downIndex = try #require(owners.firstIndex(of: down))
            await cluster.nodes[down].stop()

            var unavailable = 0
            let started = ContinuousClock.now
            for _ in 0..<10 {
                let decided = await Self.decide(first, [items[downIndex]])
                if decided.storageUnavailable { unavailable += 1 }
            }
            #expect(unavailable == 10, "the stopped node's keys follow on_error: deny")
            #expect(ContinuousClock.now - started < .seconds(5))

            // The others: still one budget for both stores (39 left each: one was taken above).
            for (index, item) in items.enumerated() where index != downIndex {
                var admitted = 0
                for round in 0..<50 {
                    let decided = await Self.decide(round % 2 == 0 ? first : second, [item])
                    #expect(!decided.storageUnavailable)
                    if decided.isAdmitted { admitted += 1 }
                }
                #expect(admitted == 39)
            }
            let health = first.clusterNodes
            #expect(health.count == 3)
            #expect(health.filter { !$0.available }.map(\.address) == ["127.0.0.1:\(cluster.nodes[down].port)"])
            #expect(first.isAvailable)
            await first.close()
            await second.close()
        }
    }

    // MARK: Leases

    /// Concurrency leases in a cluster: two stores share `max` for a key; a multi-slot acquire that refuses gives
    /// back what it took.
    @Test func leasesAreSharedAcrossTheCluster() async throws {
        try await withRedisCluster { cluster in
            let first = Self.store(Self.configuration(cluster))
            let second = Self.store(Self.configuration(cluster))
            let a = ConcurrencyLeaseItem(rule: "uploads", key: Self.key("lease-a"), max: 2, enforced: true)
            let b = ConcurrencyLeaseItem(rule: "global", key: Self.key("lease-b"), max: 1, enforced: true)
            func acquire(_ store: RedisStore, _ items: [ConcurrencyLeaseItem]) async -> ConcurrencyLeaseReply {
                await withCheckedContinuation { continuation in store.acquireLeases(items) { continuation.resume(returning: $0) } }
            }
            guard case .acquired(let one, _) = await acquire(first, [a]) else { Issue.record("first lease"); return }
            guard case .acquired(let two, _) = await acquire(second, [a]) else { Issue.record("second lease"); return }
            guard case .refused(index: 0) = await acquire(first, [a]) else { Issue.record("third lease must be refused"); return }
            first.releaseLeases(one)
            try await eventually("a released slot is free") {
                if case .acquired(let three, _) = await acquire(second, [a]) {
                    second.releaseLeases(three)
                    return true
                }
                return false
            }
            // b is taken; an acquire of [a, b] is refused at b and leaves a as it was (one lease: `two`).
            guard case .acquired(let held, _) = await acquire(first, [b]) else { Issue.record("b"); return }
            guard case .refused(index: 1) = await acquire(second, [a, b]) else { Issue.record("[a, b] must be refused at b"); return }
            try await eventually("a keeps one free slot") {
                if case .acquired(let again, _) = await acquire(first, [a]) {
                    first.releaseLeases(again)
                    return true
                }
                return false
            }
            second.releaseLeases(two)
            first.releaseLeases(held)
            await first.close()
            await second.close()
        }
    }
} }
