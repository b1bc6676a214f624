import Dispatch
import SluiceConfig
import Synchronization
import SluiceTestSupport
import Testing
@testable import SluiceLimiter

@Suite struct MemoryStoreTests {
    func item(_ key: StorageKey, count: Int64, cost: Int64 = 1, group: Int = 0, enforced: Bool = true) -> StoreItem {
        StoreItem(
            key: key,
            algorithm: .fixedWindow,
            limit: LimitParameters(count: count, periodNanoseconds: 60 * oneSecond),
            cost: cost,
            group: group,
            isEnforced: enforced
        )
    }

    func decide(_ store: MemoryStore, _ items: [StoreItem], now: LimiterInstant = at(0)) -> DecisionBatch {
        var batch = DecisionBatch()
        for item in items { batch.append(item) }
        store.decide(&batch, now: now)
        return batch
    }

    @Test func deniedRequestConsumesNothing() {
        let store = MemoryStore(maxKeys: 100)
        let a = self.item("a", count: 1)
        let b = self.item("b", count: 5, group: 1)
        #expect(self.decide(store, [a, b]).isAdmitted)
        let secondStep = self.decide(store, [a, b])
        #expect(!secondStep.isAdmitted)
        #expect(secondStep.results[1].verdict.isAdmitted)
        #expect(store.status(of: b, now: at(0))?.remaining == 4)
        #expect(store.status(of: a, now: at(0))?.remaining == 0)
    }

    @Test func shadowItemsNeverBlockAndCountOnlyWhenTheyFit() {
        let store = MemoryStore(maxKeys: 100)
        let enforced = self.item("e", count: 10)
        let shadow = self.item("s", count: 1, group: 1, enforced: false)
        #expect(self.decide(store, [enforced, shadow]).isAdmitted)
        let secondStep = self.decide(store, [enforced, shadow])
        #expect(secondStep.isAdmitted)
        #expect(!secondStep.results[1].verdict.isAdmitted)
        #expect(store.status(of: enforced, now: at(0))?.remaining == 8)
    }

    @Test func checkItemsAreNotCounted() {
        let store = MemoryStore(maxKeys: 100)
        var item = self.item("c", count: 1)
        item.mode = .check
        #expect(self.decide(store, [item]).isAdmitted)
        #expect(self.decide(store, [item]).isAdmitted)
        #expect(store.trackedKeys == 0)
        store.commit([item], now: at(0))
        #expect(!self.decide(store, [item]).isAdmitted)
    }

    @Test func penaltyBoxBlocksAndIsNotExtendedByRefusals() {
        let store = MemoryStore(maxKeys: 100)
        var item = self.item("p", count: 1)
        item.penaltyKey = "p-block"
        item.penaltyNanoseconds = 300 * oneSecond
        #expect(self.decide(store, [item], now: at(0)).isAdmitted)
        // The breach itself already waits for the block's end (its window alone would reset at 60).
        let breach = self.decide(store, [item], now: at(10))
        #expect(breach.results[0].verdict == .denied(retryAfterNanoseconds: 300 * oneSecond))
        #expect(breach.results[0].resetNanoseconds == 300 * oneSecond)
        #expect(breach.results[0].isPenaltyBlocked)
        // The window has reset at 60, but the key is blocked until 310.
        let blocked = self.decide(store, [item], now: at(100))
        #expect(blocked.results[0].isPenaltyBlocked)
        #expect(blocked.results[0].verdict == .denied(retryAfterNanoseconds: 210 * oneSecond))
        #expect(store.blockedUntil("p-block", now: at(100)) == at(310))
        #expect(self.decide(store, [item], now: at(310)).isAdmitted)
    }

    @Test func leastRecentlyUsedKeyIsEvicted() {
        let store = MemoryStore(maxKeys: 3)
        for key: StorageKey in ["a", "b", "c"] { _ = self.decide(store, [self.item(key, count: 5)]) }
        _ = self.decide(store, [self.item("a", count: 5)])
        _ = self.decide(store, [self.item("d", count: 5)])
        #expect(store.trackedKeys == 3)
        #expect(store.evictions == 1)
        #expect(store.status(of: self.item("b", count: 5), now: at(0)) == nil)
        #expect(store.status(of: self.item("a", count: 5), now: at(0))?.remaining == 3)
        #expect(store.reset("a"))
        #expect(!store.reset("a"))
        #expect(store.trackedKeys == 2)
        _ = self.decide(store, [self.item("e", count: 5)])
        #expect(store.trackedKeys == 3)
        #expect(store.evictions == 1)
    }

    @Test func concurrentRequestsNeverOverAdmit() {
        let store = MemoryStore(maxKeys: 10_000, shardCount: 16)
        let admitted = Atomic<Int>(0)
        let keys: [StorageKey] = (0..<8).map { StorageKey(stringLiteral: "k\($0)") }
        DispatchQueue.concurrentPerform(iterations: 8) { thread in
            for i in 0..<500 {
                // Every request hits the shared key and one of several others, in varying order, across shards.
                var batch = DecisionBatch()
                let other = self.item(keys[(thread + i) % keys.count], count: 1_000_000, group: 1)
                let shared = self.item("shared", count: 1000)
                if i % 2 == 0 {
                    batch.append(shared)
                    batch.append(other)
                } else {
                    batch.append(other)
                    batch.append(shared)
                }
                store.decide(&batch, now: at(0))
                if batch.isAdmitted { admitted.add(1, ordering: .relaxed) }
            }
        }
        #expect(admitted.load(ordering: .relaxed) == 1000)
        #expect(store.status(of: self.item("shared", count: 1000), now: at(0))?.remaining == 0)
    }

    @Test func idleKeysAreRemovedOnceTheirStateMeansNothing() {
        let store = MemoryStore(maxKeys: 100)
        let fixed = self.item("fixed", count: 5)  // window [0, 60)
        var gcra = self.item("gcra", count: 10)  // one every 6 s
        gcra.algorithm = .gcra
        var moving = self.item("moving", count: 3)
        moving.algorithm = .movingWindow
        var sliding = self.item("sliding", count: 3)
        sliding.algorithm = .slidingWindow
        var penalty = self.item("penalized", count: 1)
        penalty.penaltyKey = "penalized-block"
        penalty.penaltyNanoseconds = 90 * oneSecond
        _ = self.decide(store, [fixed, gcra, moving, sliding, penalty], now: at(0))
        _ = self.decide(store, [gcra], now: at(6))  // TAT 12
        _ = self.decide(store, [moving], now: at(30))  // newest 30, idle at 90
        _ = self.decide(store, [penalty], now: at(2))  // breach: blocked until 92
        #expect(store.trackedKeys == 6)
        #expect(store.removeIdleKeys(now: at(11)) == 0)
        #expect(store.removeIdleKeys(now: at(12)) == 1)  // gcra
        #expect(store.removeIdleKeys(now: at(60)) == 2)  // fixed and the penalized rule's own window
        #expect(store.removeIdleKeys(now: at(90)) == 1)  // moving
        #expect(store.blockedUntil("penalized-block", now: at(91)) == at(92))
        #expect(store.removeIdleKeys(now: at(92)) == 1)  // the block
        #expect(store.removeIdleKeys(now: at(119)) == 0)
        #expect(store.removeIdleKeys(now: at(120)) == 1)  // sliding: idle once the next window has passed too
        #expect(store.trackedKeys == 0)
        // A removed key starts afresh and is tracked again.
        #expect(self.decide(store, [fixed], now: at(200)).results[0].remaining == 4)
        #expect(store.trackedKeys == 1)
    }

    /// Random inserts, touches, resets, idle sweeps and evictions against a plain model of an LRU map: the table's
    /// index (open addressing with backward-shift deletion) must never lose or invent a key.
    @Test func tableAgreesWithAModelUnderRandomOperations() {
        var random = SplitMix64(seed: 7)
        for capacity in [1, 3, 17, 100] {
            var table = KeyTable(capacity: capacity)
            var model: [StorageKey] = []  // most recent first
            var expires: [StorageKey: Int64] = [:]
            var evictions = 0
            let universe = (0..<(capacity * 3)).map { _ in StorageKey(high: random.next(), low: random.next() & 0xFF) }
            for step in 0..<4000 {
                let key = universe[Int(random.next() % UInt64(universe.count))]
                switch random.next() % 10 {
                case 0..<6:
                    let idle = Int64(step) + Int64(random.next() % 50)
                    table.setState(PackedState(idleAt: idle), forKey: key)
                    if let position = model.firstIndex(of: key) {
                        model.remove(at: position)
                    } else if model.count == capacity {
                        expires[model.removeLast()] = nil
                        evictions += 1
                    }
                    model.insert(key, at: 0)
                    expires[key] = idle
                case 6..<8:
                    #expect(table.remove(key) == model.contains(key))
                    model.removeAll { $0 == key }
                    expires[key] = nil
                case 8:
                    let now = LimiterInstant(nanosecondsSinceEpoch: Int64(step))
                    let idle = model.filter { expires[$0]! <= Int64(step) }
                    #expect(table.removeIdle(now: now) == idle.count)
                    model.removeAll { idle.contains($0) }
                    for key in idle { expires[key] = nil }
                default:
                    #expect(table.contains(key) == model.contains(key))
                }
                #expect(table.count == model.count)
            }
            #expect(table.keysByRecency == model)
            #expect(table.evictions == evictions)
            for key in universe { #expect(table.contains(key) == model.contains(key)) }
        }
    }

    @Test func movingWindowLogLivesInTheStore() {
        let store = MemoryStore(maxKeys: 10)
        var item = self.item("m", count: 3)
        item.algorithm = .movingWindow
        #expect(self.decide(store, [item], now: at(0)).isAdmitted)
        #expect(self.decide(store, [item], now: at(20)).isAdmitted)
        #expect(self.decide(store, [item], now: at(40)).isAdmitted)
        let refused = self.decide(store, [item], now: at(50))
        #expect(refused.results[0].verdict == .denied(retryAfterNanoseconds: 10 * oneSecond))
        #expect(self.decide(store, [item], now: at(60)).isAdmitted)  // the unit of 0 has left (0, 60]
        #expect(store.status(of: item, now: at(61))?.remaining == 0)
        #expect(store.reset("m"))
        #expect(store.status(of: item, now: at(61)) == nil)
        #expect(self.decide(store, [item], now: at(61)).results[0].remaining == 2)
    }

    @Test func aFullTableHoldsAboutFiftySixBytesPerKey() {
        let keys = 100_000
        let store = MemoryStore(maxKeys: keys)
        var batch = DecisionBatch()
        for index in 0..<keys {
            batch.removeAll()
            batch.append(StoreItem(key: StorageKey(high: UInt64(index) &* 0x9E37_79B9_7F4A_7C15, low: UInt64(index) &* 0xC2B2_AE3D_27D4_EB4F), algorithm: .gcra, limit: LimitParameters(count: 10, periodNanoseconds: oneSecond), cost: 1))
            store.decide(&batch, now: at(0))
        }
        #expect(store.trackedKeys == keys)
        let perKey = Double(store.tableBytes) / Double(keys)
        #expect(perKey <= 64, "\(perKey) bytes per key")
    }
}
