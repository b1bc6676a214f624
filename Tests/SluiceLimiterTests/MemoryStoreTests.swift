import Dispatch
import SluiceConfig
import Synchronization
import Testing
@testable import SluiceLimiter

@Suite struct MemoryStoreTests {
    func item(_ key: String, count: Int64, cost: Int64 = 1, group: Int = 0, enforced: Bool = true) -> StoreItem {
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
        for key in ["a", "b", "c"] { _ = self.decide(store, [self.item(key, count: 5)]) }
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
        let keys = (0..<8).map { "k\($0)" }
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
}
