import SluiceConfig
import Synchronization
import Testing

@testable import SluiceLimiter

/// ``ConcurrencyAdmission`` driving a lease store (issue 22 item 5), with a scripted store and no sockets: the round
/// trip, a release racing the answer, `on_error`, and the local queue.
@Suite("Concurrency admission with a lease store")
struct ConcurrencyLeaseAdmissionTests {
    /// A lease store whose answers the test gives by hand.
    final class ScriptedLeases: ConcurrencyLeaseStore {
        let keySeed = StorageKey(high: 1, low: 2)
        let leaseOnError: RedisStorageConfiguration.OnError
        let leaseInstances: Int
        let asked = Mutex<[(items: [ConcurrencyLeaseItem], completion: @Sendable (ConcurrencyLeaseReply) -> Void)]>([])
        let released = Mutex<[String]>([])

        init(onError: RedisStorageConfiguration.OnError = .local, instances: Int = 1) {
            self.leaseOnError = onError
            self.leaseInstances = instances
        }

        func acquireLeases(_ items: [ConcurrencyLeaseItem], completion: @escaping @Sendable (ConcurrencyLeaseReply) -> Void) {
            self.asked.withLock { $0.append((items, completion)) }
        }

        func releaseLeases(_ handle: ConcurrencyLeaseHandle) {
            self.released.withLock { $0.append(handle.member) }
        }

        /// Answers the oldest acquire still waiting.
        func answer(_ reply: ConcurrencyLeaseReply) {
            let next = self.asked.withLock { $0.isEmpty ? nil : $0.removeFirst() }
            next?.completion(reply)
        }

        var pending: Int { self.asked.withLock { $0.count } }
    }

    final class Wakes: Sendable {
        let woken = Mutex<[ConcurrencyWaiter]>([])
        var wake: @Sendable (ConcurrencyWaiter) -> Void { { waiter in self.woken.withLock { $0.append(waiter) } } }
        func take() -> [ConcurrencyWaiter] { self.woken.withLock { list in defer { list.removeAll() }; return list } }
    }

    private func rule(_ name: String, max: Int, queue: ConcurrencyConfiguration.Queue? = nil) -> RuleConfiguration {
        var rule = RuleConfiguration(name: name, key: [.header("x-key")], limits: [])
        rule.concurrency = ConcurrencyConfiguration(max: max, queue: queue)
        return rule
    }

    private let request = TestRequest(headers: [("X-Key", "k")])

    private func handle(_ member: String) -> ConcurrencyLeaseHandle {
        ConcurrencyLeaseHandle(member: member, keys: ["k"])
    }

    @Test("one acquire for every rule; admitted when the store says so; released once to the store")
    func roundTrip() throws {
        let store = ScriptedLeases()
        let limiter = try #require(
            ConcurrencyLimiter(configuration: SluiceConfiguration(rules: [self.rule("a", max: 2), self.rule("b", max: 3)]), table: ConcurrencySlotTable(), leases: store)
        )
        let wakes = Wakes()
        let admission = try #require(limiter.admission(for: self.request))
        guard case .asking = admission.start(wake: wakes.wake) else { Issue.record("asks the store"); return }
        let items = store.asked.withLock { $0.first?.items } ?? []
        #expect(items.map(\.rule) == ["a", "b"])
        #expect(items.map(\.max) == [2, 3])
        store.answer(.acquired(self.handle("m1"), overMax: nil))
        let woken = try #require(wakes.take().first)
        guard case .admitted = admission.granted(woken) else { Issue.record("admitted"); return }
        #expect(limiter.table.rule(named: "a").inFlight == 1, "this instance's count")
        admission.release()
        admission.release()
        #expect(store.released.withLock { $0 } == ["m1"])
        #expect(limiter.table.rule(named: "a").inFlight == 0)
    }

    @Test("released while asking: the leases the answer brings go straight back")
    func releasedWhileAsking() throws {
        let store = ScriptedLeases()
        let limiter = try #require(ConcurrencyLimiter(configuration: SluiceConfiguration(rules: [self.rule("a", max: 1)]), table: ConcurrencySlotTable(), leases: store))
        let wakes = Wakes()
        let admission = try #require(limiter.admission(for: self.request))
        _ = admission.start(wake: wakes.wake)
        admission.release()
        store.answer(.acquired(self.handle("late"), overMax: nil))
        #expect(store.released.withLock { $0 } == ["late"])
        #expect(wakes.take().isEmpty, "nobody is woken for a request that is gone")
        #expect(limiter.table.rule(named: "a").inFlight == 0)
    }

    @Test("refused by the store: 429 without a queue; with one, waits locally and asks again when first")
    func refusedAndQueued() throws {
        let store = ScriptedLeases()
        let queue = ConcurrencyConfiguration.Queue(size: 1, timeout: .seconds(2))
        let limiter = try #require(
            ConcurrencyLimiter(configuration: SluiceConfiguration(rules: [self.rule("q", max: 1, queue: queue)]), table: ConcurrencySlotTable(), leases: store)
        )
        let wakes = Wakes()
        let first = try #require(limiter.admission(for: self.request))
        _ = first.start(wake: wakes.wake)
        store.answer(.refused(index: 0))
        guard case .waiting(let timeout) = first.granted(try #require(wakes.take().first)) else { Issue.record("queued"); return }
        #expect(timeout == .seconds(2))
        #expect(first.isWaiting)
        #expect(limiter.table.rule(named: "q").queued == 1)

        let second = try #require(limiter.admission(for: self.request))
        _ = second.start(wake: wakes.wake)
        store.answer(.refused(index: 0))
        guard case .refused(let full) = second.granted(try #require(wakes.take().first)) else { Issue.record("queue full"); return }
        #expect(full.reason == .queueFull)

        first.pollLeases()
        #expect(store.pending == 1, "the head of the queue asks again")
        first.pollLeases()
        #expect(store.pending == 1, "one acquire at a time")
        store.answer(.acquired(self.handle("q1"), overMax: nil))
        guard case .admitted = first.granted(try #require(wakes.take().first)) else { Issue.record("admitted"); return }
        #expect(limiter.table.rule(named: "q").queued == 0)
        first.release()
        #expect(store.released.withLock { $0 } == ["q1"])
    }

    @Test("store away: allow admits, deny refuses with 503, local allows max/instances in memory")
    func onError() throws {
        for onError in [RedisStorageConfiguration.OnError.allow, .deny, .local] {
            let store = ScriptedLeases(onError: onError, instances: 2)
            let table = ConcurrencySlotTable()
            let limiter = try #require(ConcurrencyLimiter(configuration: SluiceConfiguration(rules: [self.rule("a", max: 5)]), table: table, leases: store))
            let wakes = Wakes()
            var admitted: [ConcurrencyAdmission] = []
            var refused: [ConcurrencyRefusal] = []
            for _ in 0..<4 {
                let admission = try #require(limiter.admission(for: self.request))
                _ = admission.start(wake: wakes.wake)
                store.answer(.unavailable)
                switch admission.granted(try #require(wakes.take().first)) {
                case .admitted: admitted.append(admission)
                case .refused(let refusal): refused.append(refusal)
                default: Issue.record("unexpected step")
                }
            }
            switch onError {
            case .allow:
                #expect(admitted.count == 4)
            case .deny:
                #expect(refused.count == 4)
                #expect(refused.allSatisfy { $0.response.status == 503 && $0.reason == .storageUnavailable })
            case .local:
                #expect(admitted.count == 2, "max 5 over 2 instances: 2 each")
                #expect(refused.allSatisfy { $0.reason == .concurrency })
                #expect(table.fallbackRule(named: "a").inFlight == 2)
            }
            for admission in admitted { admission.release() }
            #expect(table.fallbackRule(named: "a").inFlight == 0)
            #expect(table.rule(named: "a").inFlight == 0)
            #expect(store.released.withLock { $0 }.isEmpty, "nothing was leased in the store")
        }
    }
}
