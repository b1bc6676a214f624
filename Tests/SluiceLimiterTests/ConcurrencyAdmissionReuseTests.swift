import SluiceConfig
import Testing

@testable import SluiceLimiter

/// A connection's admission is reused by its next request (no allocation per request), but only when nobody else can
/// still act on the old one: a stale timer or wake holding it keeps identities distinct.
@Suite("Concurrency admission reuse")
struct ConcurrencyAdmissionReuseTests {
    private func limiter(max: Int, queue: ConcurrencyConfiguration.Queue? = nil) -> ConcurrencyLimiter {
        var rule = RuleConfiguration(name: "gen", key: [.header("x-key")], limits: [])
        rule.concurrency = ConcurrencyConfiguration(max: max, queue: queue)
        return ConcurrencyLimiter(configuration: SluiceConfiguration(rules: [rule]), table: ConcurrencySlotTable())!
    }

    private let request = TestRequest(headers: [("X-Key", "k")])
    private let noWake: @Sendable (ConcurrencyWaiter) -> Void = { _ in }

    @Test("a released admission held only by its connection is reused, reset, and counts again from zero")
    func reusedWhenReleasedAndUnique() throws {
        let limiter = self.limiter(max: 1)
        var spare: ConcurrencyAdmission?
        let firstID: ObjectIdentifier
        do {
            let first = try #require(limiter.admission(for: self.request, reusing: &spare))
            #expect(spare === first)
            guard case .admitted = first.start(wake: self.noWake) else { Issue.record("expected admitted"); return }
            firstID = ObjectIdentifier(first)
            first.release()
        }
        #expect(limiter.table.rule(named: "gen").inFlight == 0)

        let second = try #require(limiter.admission(for: self.request, reusing: &spare))
        #expect(ObjectIdentifier(second) == firstID, "the released admission is reused")
        #expect(!second.isReleased && second.heldSlots == 0 && second.shadowRule == nil)
        guard case .admitted = second.start(wake: self.noWake) else { Issue.record("expected admitted"); return }
        #expect(limiter.table.rule(named: "gen").inFlight == 1)
        second.release()
        #expect(limiter.table.rule(named: "gen").inFlight == 0)
    }

    @Test("an admission not yet released, or held elsewhere, is never reused")
    func freshWhenInUseOrShared() throws {
        let limiter = self.limiter(max: 2, queue: ConcurrencyConfiguration.Queue(size: 4, timeout: .seconds(1)))
        var spare: ConcurrencyAdmission?
        let inUse = try #require(limiter.admission(for: self.request, reusing: &spare))
        guard case .admitted = inUse.start(wake: self.noWake) else { Issue.record("expected admitted"); return }
        let next = try #require(limiter.admission(for: self.request, reusing: &spare))
        #expect(next !== inUse, "an admission still holding its slot is not reused")
        guard case .admitted = next.start(wake: self.noWake) else { Issue.record("expected admitted"); return }
        #expect(limiter.table.rule(named: "gen").inFlight == 2)
        next.release()
        // `next` is released, but this test (like a stale queue timer) still holds it: not unique.
        let third = try #require(limiter.admission(for: self.request, reusing: &spare))
        #expect(third !== next)
        #expect(next.isReleased, "the old admission stays released; the new one is separate")
        inUse.release()
        #expect(limiter.table.rule(named: "gen").inFlight == 0)
    }
}
