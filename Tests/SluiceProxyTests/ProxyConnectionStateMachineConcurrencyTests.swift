import SluiceConfig
import SluiceLimiter
import Testing

@testable import SluiceProxy

/// The concurrency slots owned by ``ProxyConnectionStateMachine`` (issue 22): every event that ends an exchange
/// gives them back once; a tunnel keeps them until it closes.
@Suite("ProxyConnectionStateMachine concurrency slots")
struct ProxyConnectionStateMachineConcurrencyTests {
    typealias Machine = ProxyConnectionStateMachine

    /// A request with key `k`.
    struct Request: RequestAttributes {
        var method = "GET"
        var uri = "/"
        var host: String? = "test"
        var clientIP = IPAddress(ipv4: 0x7f00_0001)
        func header(_ name: String) -> String? { name.lowercased() == "x-key" ? "k" : nil }
        func forEachHeaderValue(_ name: String, _ body: (String) -> Bool) {
            if let value = self.header(name) { _ = body(value) }
        }
    }

    let limiter: ConcurrencyLimiter

    init() {
        var rule = RuleConfiguration(name: "gen", key: [.header("x-key")], limits: [])
        rule.concurrency = ConcurrencyConfiguration(max: 10, queue: .init(size: 5, timeout: .seconds(1)))
        self.limiter = ConcurrencyLimiter(configuration: SluiceConfiguration(rules: [rule]), table: ConcurrencySlotTable())!
    }

    var inFlight: Int { self.limiter.table.rule(named: "gen").inFlight }

    /// A machine in an exchange that holds one slot.
    func holding(_ request: Machine.Request = ProxyConnectionStateMachineTests.request()) -> (Machine, ConcurrencyAdmission) {
        var machine = Machine()
        #expect(ProxyConnectionStateMachineTests.run(&machine) { $0.requestHeadReceived(request) })
        let admission = self.limiter.admission(for: Request())!
        #expect(ProxyConnectionStateMachineTests.run(&machine) { $0.slotsTaken(admission) })
        guard case .admitted = admission.start(wake: { _ in }) else {
            Issue.record("expected a slot")
            return (machine, admission)
        }
        return (machine, admission)
    }

    func forwarded(_ request: Machine.Request = ProxyConnectionStateMachineTests.request()) -> (Machine, ConcurrencyAdmission) {
        var (machine, admission) = self.holding(request)
        _ = machine.upstreamWanted()
        _ = machine.upstreamAttached(reused: false)
        return (machine, admission)
    }

    @Test func theResponseEndReturnsTheSlotAndTheNextExchangeStartsEmpty() {
        var (machine, admission) = self.forwarded()
        #expect(self.inFlight == 1)
        _ = machine.responseHeadReceived(switchingProtocols: false, isDraining: false)
        #expect(self.inFlight == 1, "held while the response streams")
        let result = machine.responseEnded(upstreamReusable: true)
        #expect(result == .finish(releaseUpstream: true, then: .readNextRequest))
        #expect(admission.isReleased)
        #expect(machine.slots == nil)
        #expect(self.inFlight == 0)
    }

    @Test func aLocalAnswerReturnsTheSlot() {
        var (machine, admission) = self.holding()
        let result = machine.answerLocally(closeRequested: false, isDraining: false)
        #expect(result == .answer(close: false, abortUpstream: false, then: .readNextRequest))
        #expect(admission.isReleased)
        #expect(self.inFlight == 0)
    }

    @Test func aLocalAnswerWithABodyLeftToDiscardReturnsTheSlotAtOnce() {
        var (machine, admission) = self.holding(ProxyConnectionStateMachineTests.request(body: true))
        let result = machine.answerLocally(closeRequested: false, isDraining: false)
        #expect(result == .answer(close: false, abortUpstream: false, then: .discardBody))
        #expect(admission.isReleased, "released although the body is still being read off")
        #expect(self.inFlight == 0)
    }

    @Test func anUpstreamFailureBeforeTheResponseReturnsTheSlot() {
        var (machine, admission) = self.forwarded()
        guard case .answer = machine.upstreamClosed(isDraining: false) else {
            Issue.record("expected an answer")
            return
        }
        #expect(admission.isReleased)
        #expect(self.inFlight == 0)
    }

    @Test func aRetryKeepsTheSlot() {
        var (machine, admission) = self.holding()
        _ = machine.upstreamWanted()
        _ = machine.upstreamAttached(reused: true)
        let result = machine.upstreamClosed(isDraining: false)
        #expect(result == .retry)
        #expect(!admission.isReleased)
        #expect(self.inFlight == 1)
        machine.close()
        #expect(self.inFlight == 0)
    }

    @Test func anUpstreamCloseMidResponseReturnsTheSlot() {
        var (machine, admission) = self.forwarded()
        _ = machine.responseHeadReceived(switchingProtocols: false, isDraining: false)
        let result = machine.upstreamClosed(isDraining: false)
        #expect(result == .answer(.closeConnection(abortUpstream: false)))
        #expect(admission.isReleased)
    }

    @Test func aResponseTimeoutReturnsTheSlot() {
        var (machine, admission) = self.forwarded()
        guard case .answer = machine.responseTimedOut(isDraining: false) else {
            Issue.record("expected a 504")
            return
        }
        #expect(admission.isReleased)
    }

    @Test func aBodyTimeoutOrARefusedBodyReturnsTheSlot() {
        var (machine, admission) = self.forwarded(ProxyConnectionStateMachineTests.request(body: true))
        guard case .answer = machine.bodyTimedOut() else {
            Issue.record("expected a 408")
            return
        }
        #expect(admission.isReleased)
        var (other, second) = self.forwarded(ProxyConnectionStateMachineTests.request(body: true))
        guard case .answer = other.requestBodyRefused() else {
            Issue.record("expected a 400")
            return
        }
        #expect(second.isReleased)
        #expect(self.inFlight == 0)
    }

    @Test func theClientGoingAwayReturnsTheSlot() {
        var (machine, admission) = self.forwarded()
        machine.close()
        #expect(admission.isReleased)
        machine.close()
        #expect(self.inFlight == 0)
    }

    @Test func aTunnelKeepsTheSlotUntilItCloses() {
        var (machine, admission) = self.forwarded(ProxyConnectionStateMachineTests.request(upgrade: true))
        let result = machine.responseHeadReceived(switchingProtocols: true, isDraining: false)
        #expect(result == .switchProtocols)
        #expect(machine.state == .tunnel)
        #expect(!admission.isReleased)
        #expect(self.inFlight == 1)
        machine.close()
        #expect(admission.isReleased)
        #expect(self.inFlight == 0)
    }

    @Test func anUnexpected101ReturnsTheSlot() {
        var (machine, admission) = self.forwarded()
        let result = machine.responseHeadReceived(switchingProtocols: true, isDraining: false)
        #expect(result == .closeConnection)
        #expect(admission.isReleased)
    }

    @Test func slotsOutsideAnExchangeAreReturnedAtOnce() {
        var machine = Machine()
        let admission = self.limiter.admission(for: Request())!
        _ = admission.start(wake: { _ in })
        #expect(self.inFlight == 1)
        let taken = machine.slotsTaken(admission)
        #expect(!taken)
        #expect(admission.isReleased)
        #expect(self.inFlight == 0)
    }

    @Test func aQueuedRequestLeavesTheQueueWhenTheClientGoes() {
        var rule = RuleConfiguration(name: "one", key: [.header("x-key")], limits: [])
        rule.concurrency = ConcurrencyConfiguration(max: 1, queue: .init(size: 5, timeout: .seconds(1)))
        let limiter = ConcurrencyLimiter(configuration: SluiceConfiguration(rules: [rule]), table: ConcurrencySlotTable())!
        let holder = limiter.admission(for: Request())!
        _ = holder.start(wake: { _ in })
        var machine = Machine()
        _ = machine.requestHeadReceived(ProxyConnectionStateMachineTests.request())
        let queued = limiter.admission(for: Request())!
        _ = machine.slotsTaken(queued)
        guard case .waiting = queued.start(wake: { _ in }) else {
            Issue.record("expected to wait")
            return
        }
        #expect(limiter.table.rule(named: "one").queued == 1)
        machine.close()
        #expect(limiter.table.rule(named: "one").queued == 0)
        holder.release()
        #expect(limiter.table.rule(named: "one").inFlight == 0)
    }
}
