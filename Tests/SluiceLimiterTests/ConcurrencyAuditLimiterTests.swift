import SluiceConfig
import Synchronization
import Testing

@testable import SluiceLimiter

/// Clauses of issue 22 that no earlier limiter test asserted (audit of issue 22): `on_missing_key: fallback` for a
/// concurrency rule, `on_error: local` keeping at least one slot per instance when `max / instances` is below 1, and
/// the adaptive controller's gradient clamped at both ends.
@Suite("Concurrency limiter: audit of issue 22")
struct ConcurrencyAuditLimiterTests {
    typealias Wakes = ConcurrencyLimiterTests.Wakes

    private func rule(_ name: String, max: Int, onMissingKey: RuleConfiguration.OnMissingKey = .skip) -> RuleConfiguration {
        var rule = RuleConfiguration(name: name, key: [.header("x-key")], limits: [])
        rule.concurrency = ConcurrencyConfiguration(max: max)
        rule.onMissingKey = onMissingKey
        return rule
    }

    @Test("on_missing_key fallback: a request without the key holds a slot of its fallback key (the client IP)")
    func fallbackKeyHoldsASlot() throws {
        let limiter = try #require(
            ConcurrencyLimiter(
                configuration: SluiceConfiguration(rules: [self.rule("gen", max: 1, onMissingKey: .fallback([.ip]))]),
                table: ConcurrencySlotTable()
            )
        )
        let wakes = Wakes()
        let sameIP = TestRequest(clientIP: IPAddress("198.51.100.1")!)
        let first = try #require(limiter.admission(for: sameIP), "the fallback key applies the rule")
        guard case .admitted = first.start(wake: wakes.wake) else { Issue.record("the first is admitted"); return }
        #expect(limiter.table.rule(named: "gen").inFlight == 1)
        // The same fallback key: over max 1.
        let second = try #require(limiter.admission(for: sameIP))
        guard case .refused(let refusal) = second.start(wake: wakes.wake) else { Issue.record("the second is refused"); return }
        #expect(refusal.reason == .concurrency)
        // Another IP is another key; a request with the header uses the header key, not the IP.
        let otherIP = try #require(limiter.admission(for: TestRequest(clientIP: IPAddress("198.51.100.2")!)))
        guard case .admitted = otherIP.start(wake: wakes.wake) else { Issue.record("another IP is admitted"); return }
        let keyed = try #require(limiter.admission(for: TestRequest(clientIP: IPAddress("198.51.100.1")!, headers: [("X-Key", "k")])))
        guard case .admitted = keyed.start(wake: wakes.wake) else { Issue.record("a keyed request is admitted"); return }
        for admission in [first, otherIP, keyed] { admission.release() }
        #expect(limiter.table.rule(named: "gen").inFlight == 0)
    }

    @Test("on_error local: max / instances rounds down but never below 1 slot per instance")
    func localFallbackKeepsAtLeastOneSlot() throws {
        // max 1 over 3 instances (1/3 = 0) and max 5 over 3 (5/3 = 1): one slot each while the store is away.
        for max in [1, 5] {
            let store = ConcurrencyLeaseAdmissionTests.ScriptedLeases(onError: .local, instances: 3)
            let table = ConcurrencySlotTable()
            let limiter = try #require(
                ConcurrencyLimiter(configuration: SluiceConfiguration(rules: [self.rule("a", max: max)]), table: table, leases: store)
            )
            let wakes = Wakes()
            var admitted: [ConcurrencyAdmission] = []
            var refused: [ConcurrencyRefusal] = []
            for _ in 0..<3 {
                let admission = try #require(limiter.admission(for: TestRequest(headers: [("X-Key", "k")])))
                _ = admission.start(wake: wakes.wake)
                store.answer(.unavailable)
                switch admission.granted(try #require(wakes.take().first)) {
                case .admitted: admitted.append(admission)
                case .refused(let refusal): refused.append(refusal)
                default: Issue.record("unexpected step")
                }
            }
            #expect(admitted.count == 1, "max \(max) over 3 instances: 1 slot here, got \(admitted.count)")
            #expect(refused.count == 2)
            #expect(refused.allSatisfy { $0.reason == .concurrency })
            #expect(table.fallbackRule(named: "a").inFlight == 1)
            for admission in admitted { admission.release() }
            #expect(table.fallbackRule(named: "a").inFlight == 0)
            #expect(table.rule(named: "a").inFlight == 0)
        }
    }

    @Test("the gradient is clamped to 0.5 ... 2: one interval moves the limit to exactly g L + sqrt(g L) with g at its bound")
    func gradientIsClamped() {
        typealias Controller = AdaptiveConcurrencyControllerTests
        func next(_ limit: Int, gradient: Double) -> Int {
            let scaled = gradient * Double(limit)
            return Int((scaled + scaled.squareRoot()).rounded(.down))
        }
        // Much slower than the minimum (40 ms against 10 ms: 1.25 x 10 / 40 = 0.31): clamped to 0.5.
        var falling = AdaptiveConcurrencyController(parameters: Controller.parameters(min: 4, max: 1000), now: 0, seed: 1)
        var now = Controller.measured(&falling, latency: 10 * Controller.ms)
        for _ in 0..<8 { Controller.interval(&falling, now: &now) { _ in 10 * Controller.ms } }
        let high = falling.limit
        #expect(high > 40)
        let lowered = Controller.interval(&falling, now: &now) { _ in 40 * Controller.ms }
        #expect(lowered == next(high, gradient: 0.5), "\(high) -> \(lowered)")
        // Much faster than the minimum (1 ms against 10 ms: 12.5): clamped to 2.
        var rising = AdaptiveConcurrencyController(parameters: Controller.parameters(min: 4, max: 1000), now: 0, seed: 1)
        now = Controller.measured(&rising, latency: 10 * Controller.ms)
        let start = rising.limit
        let raised = Controller.interval(&rising, now: &now) { _ in 1 * Controller.ms }
        #expect(raised == next(start, gradient: 2), "\(start) -> \(raised)")
    }
}
