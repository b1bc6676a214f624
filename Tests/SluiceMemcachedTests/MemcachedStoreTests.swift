import Foundation
import NIOCore
import SluiceConfig
import SluiceTestSupport
import Testing

@testable import SluiceLimiter
@testable import SluiceMemcached

/// The memcached store against real `memcached` servers started by each test.
extension MemcachedIntegrationTests { @Suite("memcached store") struct MemcachedStoreTests {
    static let algorithms: [Algorithm] = [.fixedWindow, .slidingWindow, .movingWindow, .tokenBucket, .gcra]

    // MARK: Same decisions as the memory store

    /// Random sequences through both stores at the same instants (memcached storage uses Sluice's clock, so the
    /// instants are the test's): every verdict, wait, remaining count and block is the same, with `count_when`
    /// commits, check-only and shadow items and `block_for` among them.
    @Test(arguments: MemcachedStoreTests.algorithms)
    func sameDecisionsAsTheMemoryStore(_ algorithm: Algorithm) async throws {
        try await withMemcachedServer { server in
            let store = makeStore(memcachedConfiguration([server]))
            defer { Task { await store.close() } }
            var random = SystemRandomNumberGenerator()
            let seed = UInt64.random(in: 0...UInt64.max, using: &random)
            var rng = SplitMix64(seed: seed)
            var compared = 0
            for sequence in 0..<16 {
                let memory = MemoryStore(maxKeys: 1000)
                let count = Int64(rng.next() % 8 + 1)
                let period = Int64(rng.next() % 5 + 1) * 1_000_000_000
                let burst = algorithm == .gcra || algorithm == .tokenBucket ? Int64(rng.next() % 3) : 0
                let delay = algorithm == .gcra && rng.next() % 2 == 0 ? period / count * Int64(rng.next() % 3) : 0
                let limit = LimitParameters(count: count, periodNanoseconds: period, burst: burst, delayNanoseconds: delay)
                let second = LimitParameters(count: count * 3, periodNanoseconds: period * 4, burst: burst, delayNanoseconds: delay)
                let penalty = rng.next() % 3 == 0 ? Int64(rng.next() % 3 + 1) * 1_000_000_000 : 0
                let name = "seq-\(seed)-\(sequence)"
                var now = Int64(1_800_000_000_000_000_000) + Int64(rng.next() % 1_000_000_000)
                for step in 0..<25 {
                    now += Int64(rng.next() % UInt64(period / 2 + 1)) * Int64(rng.next() % 3)
                    let cost = Int64(rng.next() % UInt64(count) + 1)
                    var items = [
                        StoreItem(
                            key: testKey(name + "-a"),
                            algorithm: algorithm,
                            limit: limit,
                            cost: cost,
                            group: 0,
                            penaltyKey: penalty > 0 ? testKey(name + "-block") : nil,
                            penaltyNanoseconds: penalty
                        )
                    ]
                    if sequence % 2 == 1 {
                        let mode: StoreItem.Mode = rng.next() % 4 == 0 ? .check : .consume
                        let enforced = rng.next() % 4 != 0
                        items.append(
                            StoreItem(
                                key: testKey(name + "-b"), algorithm: algorithm, limit: second, cost: cost, mode: mode,
                                group: enforced ? 0 : 1, isEnforced: enforced
                            )
                        )
                    }
                    let instant = LimiterInstant(nanosecondsSinceEpoch: now)
                    if rng.next() % 6 == 0 {
                        memory.commit(items, now: instant)
                        try await store.committed(items, now: instant).get()
                    }
                    var expected = DecisionBatch()
                    for item in items { expected.append(item) }
                    memory.decide(&expected, now: instant)
                    let actual = await decide(store, items, now: instant)
                    let context = "seed \(seed) sequence \(sequence) step \(step) \(algorithm.rawValue) \(limit) penalty \(penalty)"
                    #expect(!actual.storageUnavailable, "\(context)")
                    #expect(actual.isAdmitted == expected.isAdmitted, "\(context)")
                    for index in items.indices {
                        let e = expected.results[index]
                        let a = actual.results[index]
                        #expect(a.verdict == e.verdict, "\(context) item \(index)")
                        #expect(a.remaining == e.remaining, "\(context) item \(index): remaining \(a.remaining) vs \(e.remaining)")
                        #expect(a.resetNanoseconds == e.resetNanoseconds, "\(context) item \(index)")
                        #expect(a.isPenaltyBlocked == e.isPenaltyBlocked, "\(context) item \(index)")
                    }
                    compared += 1
                    if actual.isAdmitted != expected.isAdmitted { return }
                }
            }
            #expect(compared == 16 * 25)
        }
    }

    // MARK: Sharing

    /// Two stores (two instances) deciding concurrently for one key admit together exactly COUNT, for every
    /// algorithm: the compare-and-swap ones under contention of 16 writers on one key.
    @Test(arguments: MemcachedStoreTests.algorithms)
    func twoInstancesAdmitExactlyTheLimit(_ algorithm: Algorithm) async throws {
        try await withMemcachedServer { server in
            let first = makeStore(memcachedConfiguration([server]))
            let second = makeStore(memcachedConfiguration([server]))
            let count: Int64 = 150
            // A day, so nothing refills during the test; gcra lets COUNT through at once with burst COUNT - 1.
            let limit = LimitParameters(
                count: count,
                periodNanoseconds: 86_400 * 1_000_000_000,
                burst: algorithm == .gcra ? count - 1 : 0
            )
            let item = StoreItem(key: testKey("shared-\(algorithm)-\(UUID())"), algorithm: algorithm, limit: limit, cost: 1)
            let (admitted, contended) = await withTaskGroup(of: (Int, Int).self) { tasks in
                for store in [first, second] {
                    for _ in 0..<8 {
                        tasks.addTask {
                            var admitted = 0
                            var contended = 0
                            // Until the budget itself refuses (a CAS that lost too often answers 503 with on_error
                            // deny, and counts nothing: ask again).
                            for _ in 0..<400 {
                                let batch = await decide(store, [item], now: .now())
                                if batch.isAdmitted {
                                    admitted += 1
                                } else if batch.storageUnavailable {
                                    contended += 1
                                } else {
                                    break
                                }
                            }
                            return (admitted, contended)
                        }
                    }
                }
                return await tasks.reduce((0, 0)) { ($0.0 + $1.0, $0.1 + $1.1) }
            }
            #expect(admitted == Int(count), "\(algorithm): \(admitted) admitted, \(contended) gave up under contention")
            await first.close()
            await second.close()
        }
    }

    /// One instance's own decisions on one compare-and-swap key wait for each other instead of racing: 16 at once
    /// lose no swap, admit exactly COUNT, and leave no key held in the gate.
    @Test(arguments: [Algorithm.tokenBucket, .gcra, .movingWindow])
    func oneInstanceQueuesItsDecisionsOnOneKey(_ algorithm: Algorithm) async throws {
        try await withMemcachedServer { server in
            let store = makeStore(memcachedConfiguration([server]))
            let count: Int64 = 40
            let limit = LimitParameters(count: count, periodNanoseconds: 86_400 * 1_000_000_000, burst: algorithm == .gcra ? count - 1 : 0)
            let item = StoreItem(key: testKey("queued-\(algorithm)-\(UUID())"), algorithm: algorithm, limit: limit, cost: 1)
            let outcomes = await withTaskGroup(of: [DecisionBatch].self) { tasks in
                for _ in 0..<16 {
                    tasks.addTask {
                        var outcomes: [DecisionBatch] = []
                        for _ in 0..<4 { outcomes.append(await decide(store, [item], now: .now())) }
                        return outcomes
                    }
                }
                return await tasks.reduce([]) { $0 + $1 }
            }
            #expect(outcomes.count == 64)
            #expect(outcomes.filter(\.storageUnavailable).isEmpty, "no swap lost within one instance")
            #expect(outcomes.filter(\.isAdmitted).count == Int(count))
            #expect(store.gate.heldKeys == 0)
            await store.close()
        }
    }

    // MARK: count_when, inspection, reset

    /// A `count_when` commit, two decisions (the second breaching, which blocks the key) and an admin reset, through
    /// memcached and through the memory store: the admin views agree at every step.
    @Test(arguments: MemcachedStoreTests.algorithms)
    func commitInspectAndRemove(_ algorithm: Algorithm) async throws {
        try await withMemcachedServer { server in
            let store = makeStore(memcachedConfiguration([server]))
            let memory = MemoryStore(maxKeys: 100)
            let limit = LimitParameters(count: 5, periodNanoseconds: 3600 * 1_000_000_000, burst: algorithm == .gcra ? 2 : 0)
            var item = StoreItem(key: testKey("inspect-\(algorithm)-\(UUID())"), algorithm: algorithm, limit: limit, cost: 2)
            item.penaltyKey = testKey("inspect-block-\(algorithm)-\(UUID())")
            item.penaltyNanoseconds = 60 * 1_000_000_000
            let now = LimiterInstant.now()
            var look = item
            look.cost = 0
            look.mode = .check

            func agree(_ what: String) async throws {
                let expected = await memory.inspect([look], penaltyKey: item.penaltyKey, now: now)
                let actual = try await store.inspect([look], penaltyKey: item.penaltyKey, now: now)
                #expect((actual.results[0] == nil) == (expected.results[0] == nil), "\(algorithm) \(what)")
                #expect(actual.results[0]?.remaining == expected.results[0]?.remaining, "\(algorithm) \(what)")
                #expect(actual.results[0]?.resetNanoseconds == expected.results[0]?.resetNanoseconds, "\(algorithm) \(what)")
                #expect(actual.blockedUntil == expected.blockedUntil, "\(algorithm) \(what)")
            }
            try await agree("untracked")
            memory.commit([item], now: now)
            try await store.committed([item], now: now).get()
            try await agree("after a commit")
            var outcomes: [Bool] = []
            for _ in 0..<2 {
                var expected = DecisionBatch()
                expected.append(item)
                memory.decide(&expected, now: now)
                let actual = await decide(store, [item], now: now)
                #expect(actual.isAdmitted == expected.isAdmitted, "\(algorithm)")
                outcomes.append(actual.isAdmitted)
                try await agree("after a decision")
            }
            #expect(outcomes.contains(false), "\(algorithm): the second decision breaches")
            #expect(try await store.inspect([look], penaltyKey: item.penaltyKey, now: now).blockedUntil == now.advanced(by: .seconds(60)))

            #expect(try await store.remove([item], penaltyKey: item.penaltyKey, now: now))
            let after = try await store.inspect([look], penaltyKey: item.penaltyKey, now: now)
            #expect(after.results.count == 1 && after.results[0] == nil)
            #expect(after.blockedUntil == nil)
            #expect((await decide(store, [item], now: now)).isAdmitted)
            #expect(try await !store.remove([testKey("never-seen")]))
            await store.close()
        }
    }

    // MARK: Failures

    @Test(arguments: [MemcachedStorageConfiguration.OnError.allow, .deny, .local])
    func serverDownFollowsOnErrorAndComesBack(_ policy: MemcachedStorageConfiguration.OnError) async throws {
        try await withMemcachedServer { server in
            let store = makeStore(memcachedConfiguration([server], onError: policy, instances: 2, timeout: .milliseconds(200)))
            let limit = LimitParameters(count: 4, periodNanoseconds: 3600 * 1_000_000_000)
            let item = StoreItem(key: testKey("outage-\(policy)"), algorithm: .fixedWindow, limit: limit, cost: 1)
            #expect(await decide(store, [item], now: .now()).isAdmitted)
            #expect(store.isAvailable)

            await server.stop()
            var outcomes: [DecisionBatch] = []
            for _ in 0..<6 {
                let start = ContinuousClock.now
                outcomes.append(await decide(store, [item], now: .now()))
                // Never longer than the timeout (200 ms) + 1 s.
                #expect(ContinuousClock.now - start < .milliseconds(1200))
            }
            #expect(!store.isAvailable)
            switch policy {
            case .allow:
                #expect(outcomes.allSatisfy { $0.isAdmitted })
            case .deny:
                #expect(outcomes.allSatisfy { !$0.isAdmitted && $0.storageUnavailable })
            case .local:
                // COUNT / instances = 2 per instance while memcached is away.
                #expect(outcomes.map(\.isAdmitted) == [true, true, false, false, false, false])
            }

            try await server.restart()
            try await eventually(within: .seconds(15), "decisions go to memcached again") {
                try await Task.sleep(for: .milliseconds(100))
                let batch = await decide(store, [item], now: .now())
                return store.isAvailable && !batch.storageUnavailable && batch.results[0].remaining == 3
            }
            await store.close()
        }
    }
} }
