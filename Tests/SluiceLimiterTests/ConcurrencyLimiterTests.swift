import Dispatch
import SluiceConfig
import Synchronization
import Testing

@testable import SluiceLimiter

/// The slot table and admissions of issue 22, without sockets: counts, FIFO hand-over, all or nothing, shadow,
/// lowered max, a release racing a hand-over, and many threads on one key.
@Suite("Concurrency limiter")
struct ConcurrencyLimiterTests {
    /// Records the order waiters were woken in.
    final class Wakes: Sendable {
        let woken = Mutex<[ConcurrencyWaiter]>([])
        var wake: @Sendable (ConcurrencyWaiter) -> Void {
            { waiter in self.woken.withLock { $0.append(waiter) } }
        }
        var count: Int { self.woken.withLock { $0.count } }
        func take() -> [ConcurrencyWaiter] { self.woken.withLock { list in defer { list.removeAll() }; return list } }
    }

    private func rule(
        _ name: String,
        key: [KeyPart] = [.header("x-key")],
        max: Int,
        queue: ConcurrencyConfiguration.Queue? = nil,
        mode: RuleConfiguration.Mode = .enforce
    ) -> RuleConfiguration {
        var rule = RuleConfiguration(name: name, key: key, limits: [], mode: mode)
        rule.concurrency = ConcurrencyConfiguration(max: max, queue: queue)
        return rule
    }

    private func limiter(_ rules: RuleConfiguration..., table: ConcurrencySlotTable = ConcurrencySlotTable()) -> ConcurrencyLimiter {
        ConcurrencyLimiter(configuration: SluiceConfiguration(rules: rules), table: table)!
    }

    private let request = TestRequest(headers: [("X-Key", "k")])

    @Test("no concurrency rule: no limiter; a rule that does not apply: no admission")
    func nothingToDo() {
        let configuration = SluiceConfiguration(rules: [RuleConfiguration(name: "rate", limits: [limit(5, per: 60)])])
        #expect(ConcurrencyLimiter(configuration: configuration, table: ConcurrencySlotTable()) == nil)
        let limiter = self.limiter(self.rule("gen", max: 1))
        #expect(limiter.admission(for: TestRequest()) == nil, "on_missing_key skip")
    }

    @Test("up to max, then refused with the rule's Retry-After; a release lets the next in; the key is forgotten at 0")
    func countsUpToMax() throws {
        let limiter = self.limiter(self.rule("gen", max: 2))
        let wakes = Wakes()
        var admissions: [ConcurrencyAdmission] = []
        for _ in 0..<2 {
            let admission = try #require(limiter.admission(for: self.request))
            guard case .admitted = admission.start(wake: wakes.wake) else { Issue.record("expected admitted"); return }
            admissions.append(admission)
        }
        let slots = limiter.table.rule(named: "gen")
        #expect(slots.inFlight == 2)
        let third = try #require(limiter.admission(for: self.request))
        guard case .refused(let refusal) = third.start(wake: wakes.wake) else { Issue.record("expected refused"); return }
        #expect(refusal.reason == .concurrency)
        #expect(refusal.retryAfter == 1)
        #expect(refusal.rule == "gen")
        #expect(refusal.limit == "2 concurrent")
        #expect(slots.refusals(.concurrency) == 1)
        admissions[0].release()
        admissions[0].release()  // a second release does nothing
        #expect(slots.inFlight == 1)
        admissions[1].release()
        #expect(slots.inFlight == 0)
        #expect(limiter.keyState(rule: "gen", displayKey: "k")! == (2, 0, 0))
        // Other keys never meet.
        let other = try #require(limiter.admission(for: TestRequest(headers: [("X-Key", "other")])))
        guard case .admitted = other.start(wake: wakes.wake) else { Issue.record("expected admitted"); return }
        other.release()
    }

    @Test("all or nothing: a full second rule gives the first rule's slot back")
    func allOrNothing() throws {
        let limiter = self.limiter(self.rule("global", key: [.const("x")], max: 10), self.rule("per-key", max: 1))
        let wakes = Wakes()
        let first = try #require(limiter.admission(for: self.request))
        guard case .admitted = first.start(wake: wakes.wake) else { Issue.record("expected admitted"); return }
        #expect(first.heldSlots == 2)
        let second = try #require(limiter.admission(for: self.request))
        guard case .refused(let refusal) = second.start(wake: wakes.wake) else { Issue.record("expected refused"); return }
        #expect(refusal.rule == "per-key")
        #expect(second.heldSlots == 0)
        #expect(limiter.table.rule(named: "global").inFlight == 1)
        first.release()
        #expect(limiter.table.rule(named: "global").inFlight == 0)
        #expect(limiter.table.rule(named: "per-key").inFlight == 0)
    }

    @Test("queue: first come first served, hand-over keeps the count, full queue, timeout, cancel")
    func queue() throws {
        let limiter = self.limiter(self.rule("gen", max: 1, queue: .init(size: 2, timeout: .seconds(3))))
        let slots = limiter.table.rule(named: "gen")
        let wakes = Wakes()
        let holder = try #require(limiter.admission(for: self.request))
        guard case .admitted = holder.start(wake: wakes.wake) else { Issue.record("expected admitted"); return }
        let a = try #require(limiter.admission(for: self.request))
        let b = try #require(limiter.admission(for: self.request))
        let c = try #require(limiter.admission(for: self.request))
        guard case .waiting(let timeout) = a.start(wake: wakes.wake) else { Issue.record("a waits"); return }
        #expect(timeout == .seconds(3))
        guard case .waiting = b.start(wake: wakes.wake) else { Issue.record("b waits"); return }
        guard case .refused(let full) = c.start(wake: wakes.wake) else { Issue.record("c refused"); return }
        #expect(full.reason == .queueFull)
        #expect(slots.queued == 2)

        holder.release()
        #expect(slots.inFlight == 1, "handed over, not returned")
        let woken = wakes.take()
        #expect(woken.count == 1)
        #expect(b.granted(woken[0]) == nil, "not b's waiter")
        guard case .admitted = a.granted(woken[0]) else { Issue.record("a admitted first"); return }
        #expect(a.granted(woken[0]) == nil, "granted once")
        // b times out.
        let refusal = try #require(b.timedOut())
        #expect(refusal.reason == .queueTimeout)
        #expect(slots.queued == 0)
        #expect(slots.refusals(.queueTimeout) == 1)
        a.release()
        #expect(slots.inFlight == 0)
        #expect(wakes.count == 0, "nobody left to wake")
    }

    @Test("a release while the hand-over is on its way returns the handed slot; the late grant does nothing")
    func releaseRacingHandOver() throws {
        let limiter = self.limiter(self.rule("gen", max: 1, queue: .init(size: 5, timeout: .seconds(1))))
        let slots = limiter.table.rule(named: "gen")
        let wakes = Wakes()
        let holder = try #require(limiter.admission(for: self.request))
        _ = holder.start(wake: wakes.wake)
        let waiting = try #require(limiter.admission(for: self.request))
        guard case .waiting = waiting.start(wake: wakes.wake) else { Issue.record("waits"); return }
        holder.release()  // hands the slot to `waiting`; its wake is "in transit"
        #expect(slots.inFlight == 1)
        #expect(waiting.timedOut() == nil, "the slot is on its way: no timeout")
        waiting.release()  // the client left before the wake arrived
        #expect(slots.inFlight == 0)
        #expect(waiting.granted(wakes.take()[0]) == nil)
        #expect(slots.inFlight == 0)
        // A client leaving while still queued.
        let again = try #require(limiter.admission(for: self.request))
        _ = again.start(wake: wakes.wake)
        let queued = try #require(limiter.admission(for: self.request))
        _ = queued.start(wake: wakes.wake)
        #expect(slots.queued == 1)
        queued.release()
        #expect(slots.queued == 0)
        again.release()
        #expect(slots.inFlight == 0)
        #expect(wakes.count == 0)
    }

    @Test("a lowered max (a reload) applies to hand-overs and new admissions; counts are kept by rule name")
    func loweredMax() throws {
        let table = ConcurrencySlotTable()
        let before = self.limiter(self.rule("gen", max: 2, queue: .init(size: 5, timeout: .seconds(1))), table: table)
        let wakes = Wakes()
        let one = try #require(before.admission(for: self.request))
        let two = try #require(before.admission(for: self.request))
        _ = one.start(wake: wakes.wake)
        _ = two.start(wake: wakes.wake)
        let after = self.limiter(self.rule("gen", max: 1, queue: .init(size: 5, timeout: .seconds(1))), table: table)
        #expect(after.table.rule(named: "gen").inFlight == 2, "kept across the reload")
        let waiter = try #require(after.admission(for: self.request))
        guard case .waiting = waiter.start(wake: wakes.wake) else { Issue.record("waits"); return }
        one.release()
        #expect(wakes.count == 0, "2 - 1 is not below the new max of 1")
        two.release()
        let woken = wakes.take()
        #expect(woken.count == 1)
        guard case .admitted = waiter.granted(woken[0]) else { Issue.record("admitted"); return }
        waiter.release()
        #expect(table.rule(named: "gen").inFlight == 0)
    }

    @Test("shadow: always admitted, counted over max")
    func shadow() throws {
        let limiter = self.limiter(self.rule("gen", max: 1, mode: .shadow))
        let wakes = Wakes()
        let admissions = try (0..<3).map { _ in try #require(limiter.admission(for: self.request)) }
        for admission in admissions {
            guard case .admitted = admission.start(wake: wakes.wake) else { Issue.record("admitted"); return }
        }
        #expect(admissions[0].shadowRule == nil)
        #expect(admissions[1].shadowRule == "gen")
        let slots = limiter.table.rule(named: "gen")
        #expect(slots.inFlight == 3)
        #expect(slots.shadowAdmissions == 2)
        for admission in admissions { admission.release() }
        #expect(slots.inFlight == 0)
    }

    @Test("tiers choose max; on_missing_key deny refuses for good; exempt skips")
    func tiersDenyExempt() throws {
        var plans = self.rule("plans", max: 1)
        var tiers = Tiers(by: .header("x-plan"), values: [:], defaultLimits: nil)
        tiers.concurrencyMax = ["pro": 3]
        plans.tiers = tiers
        var deny = self.rule("deny", key: [.header("x-user")], max: 5)
        deny.onMissingKey = .deny
        deny.exempt = [CIDR("10.0.0.0/8")!]
        let limiter = self.limiter(plans, deny)
        let wakes = Wakes()
        let pro = TestRequest(headers: [("X-Key", "k"), ("X-Plan", "pro"), ("X-User", "u")])
        let admissions = try (0..<3).map { _ in try #require(limiter.admission(for: pro)) }
        for admission in admissions {
            guard case .admitted = admission.start(wake: wakes.wake) else { Issue.record("pro admits 3"); return }
        }
        let fourth = try #require(limiter.admission(for: pro))
        guard case .refused = fourth.start(wake: wakes.wake) else { Issue.record("the fourth is refused"); return }
        for admission in admissions { admission.release() }

        let anonymous = try #require(limiter.admission(for: TestRequest(headers: [("X-Key", "k2")])))
        guard case .refused(let refusal) = anonymous.start(wake: wakes.wake) else { Issue.record("denied"); return }
        #expect(refusal.reason == .missingKey)
        #expect(refusal.retryAfter == nil)
        #expect(refusal.reason.logDecision == "limited")
        #expect(limiter.table.rule(named: "plans").inFlight == 0, "the first rule's slot came back")
        let exempt = TestRequest(clientIP: IPAddress("10.1.2.3")!, headers: [("X-Key", "k3")])
        let admission = try #require(limiter.admission(for: exempt))
        guard case .admitted = admission.start(wake: wakes.wake) else { Issue.record("exempt from deny"); return }
        #expect(admission.heldSlots == 1)
        admission.release()
    }

    @Test("many threads on one key: never more than max hold a slot at once, and all come back")
    func threads() throws {
        let limiter = self.limiter(self.rule("gen", max: 3))
        let request = self.request
        let holding = Atomic<Int>(0)
        let peak = Atomic<Int>(0)
        let admitted = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            for _ in 0..<5_000 {
                let admission = limiter.admission(for: request)!
                if case .admitted = admission.start(wake: { _ in }) {
                    let now = holding.wrappingAdd(1, ordering: .relaxed).newValue
                    peak.max(now, ordering: .relaxed)
                    admitted.wrappingAdd(1, ordering: .relaxed)
                    holding.wrappingAdd(-1, ordering: .relaxed)
                }
                admission.release()
            }
        }
        #expect(peak.load(ordering: .relaxed) <= 3)
        #expect(admitted.load(ordering: .relaxed) > 0)
        #expect(limiter.table.rule(named: "gen").inFlight == 0)
        #expect(limiter.keyState(rule: "gen", displayKey: "k")! == (3, 0, 0))
        #expect(ConcurrencyAdmission.releasedOnDeinit == 0)
    }
}
