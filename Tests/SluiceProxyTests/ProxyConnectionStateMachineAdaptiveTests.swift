import SluiceConfig
import SluiceLimiter
import Synchronization
import Testing

@testable import SluiceProxy

/// The upstream's adaptive-limit ticket owned by ``ProxyConnectionStateMachine`` (issue 22 item 7): released once on
/// every end of the exchange, a sample only when the response ended, and given back when a tunnel starts.
@Suite("ProxyConnectionStateMachine adaptive ticket")
struct ProxyConnectionStateMachineAdaptiveTests {
    typealias Machine = ProxyConnectionStateMachine

    final class Clock: Sendable {
        let nanoseconds = Atomic<Int64>(0)
        var read: @Sendable () -> Int64 { { self.nanoseconds.load(ordering: .relaxed) } }
    }

    let clock = Clock()
    let limiter: AdaptiveConcurrencyLimiter

    init() {
        self.limiter = AdaptiveConcurrencyLimiter(
            configuration: AdaptiveConcurrencyConfiguration(min: 4, max: 4, minRTTSamples: 1000),
            targets: [],
            seed: 1,
            clock: self.clock.read
        )
    }

    /// A machine whose request was admitted under the limit and forwarded on an attached connection.
    func forwarding(_ request: Machine.Request = ProxyConnectionStateMachineTests.request()) throws -> Machine {
        var machine = Machine()
        let r1 = machine.requestHeadReceived(request)
        #expect(r1)
        let ticket = try #require(self.limiter.admit())
        let r2 = machine.upstreamAdmitted(ticket)
        #expect(r2)
        let r3 = machine.upstreamWanted()
        #expect(r3)
        _ = machine.upstreamAttached(reused: false)
        #expect(self.limiter.inFlight == 1)
        return machine
    }

    @Test func aCompletedResponseIsOneSampleWithItsHeadLatency() throws {
        var machine = try self.forwarding()
        self.clock.nanoseconds.add(7_000_000, ordering: .relaxed)
        let r4 = machine.responseHeadReceived(switchingProtocols: false, isDraining: false)
        #expect(r4 == .writeHead(keepAlive: true))
        self.clock.nanoseconds.add(900_000_000, ordering: .relaxed)  // the body takes long: not counted
        #expect(self.limiter.inFlight == 1)
        let r5 = machine.responseEnded(upstreamReusable: true)
        #expect(r5 == .finish(releaseUpstream: true, then: .readNextRequest))
        #expect(self.limiter.inFlight == 0 && self.limiter.samples == 1)
        #expect(machine.upstreamTicket == nil)
        // Nothing more is released by later events.
        machine.close()
        #expect(self.limiter.inFlight == 0 && self.limiter.samples == 1)
    }

    @Test func everyOtherEndReleasesWithoutASample() throws {
        // A local answer before the response (a 502 after the upstream closed, a 504).
        var answered = try self.forwarding()
        _ = answered.responseTimedOut(isDraining: false)
        #expect(self.limiter.inFlight == 0)
        // The upstream closed mid-response: only a close is left.
        var cut = try self.forwarding()
        _ = cut.responseHeadReceived(switchingProtocols: false, isDraining: false)
        let r6 = cut.upstreamClosed(isDraining: false)
        #expect(r6 == .answer(.closeConnection(abortUpstream: false)))
        #expect(self.limiter.inFlight == 0)
        // The client went away.
        var gone = try self.forwarding()
        gone.close()
        #expect(self.limiter.inFlight == 0)
        // A stale pooled connection retried on a fresh one keeps its place.
        var retried = Machine()
        let r7 = retried.requestHeadReceived(ProxyConnectionStateMachineTests.request())
        #expect(r7)
        let r8 = retried.upstreamAdmitted(try #require(self.limiter.admit()))
        #expect(r8)
        let r9 = retried.upstreamWanted()
        #expect(r9)
        _ = retried.upstreamAttached(reused: true)
        let r10 = retried.upstreamClosed(isDraining: false)
        #expect(r10 == .retry)
        #expect(self.limiter.inFlight == 1)
        retried.close()
        #expect(self.limiter.inFlight == 0)
        #expect(self.limiter.samples == 0)
    }

    @Test func aTunnelGivesItsPlaceBackWhenItStarts() throws {
        var machine = try self.forwarding(ProxyConnectionStateMachineTests.request(upgrade: true))
        let r11 = machine.responseHeadReceived(switchingProtocols: true, isDraining: false)
        #expect(r11 == .switchProtocols)
        #expect(self.limiter.inFlight == 0 && self.limiter.samples == 0)
        machine.close()
        #expect(self.limiter.inFlight == 0)
    }

    @Test func aTicketForAnExchangeThatIsGoneIsReleasedAtOnce() throws {
        var machine = Machine()
        let ticket = try #require(self.limiter.admit())
        let admitted = machine.upstreamAdmitted(ticket)
        #expect(!admitted)
        #expect(self.limiter.inFlight == 0)
    }
}
