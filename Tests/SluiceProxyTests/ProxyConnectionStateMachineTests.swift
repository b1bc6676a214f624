import Testing

@testable import SluiceProxy

/// ``ProxyConnectionStateMachine`` event by event, without a socket (postgres-nio and async-http-client style):
/// every test feeds events and checks the action each one returns and the state it leaves.
@Suite("ProxyConnectionStateMachine")
struct ProxyConnectionStateMachineTests {
    typealias Machine = ProxyConnectionStateMachine

    static func request(
        minor: Int = 1,
        keepAlive: Bool = true,
        upgrade: Bool = false,
        expectsContinue: Bool = false,
        idempotent: Bool = true,
        body: Bool = false,
        worthDiscarding: Bool = true
    ) -> Machine.Request {
        Machine.Request(
            minorVersion: minor,
            keepAlive: keepAlive,
            isUpgrade: upgrade,
            expectsContinue: expectsContinue,
            isIdempotent: idempotent,
            hasBody: body,
            bodyWorthDiscarding: worthDiscarding
        )
    }

    /// Runs one event (``#expect`` takes no mutating call).
    static func run<T>(_ machine: inout Machine, _ event: (inout Machine) -> T) -> T {
        event(&machine)
    }

    /// A machine with a request forwarded on an attached upstream connection.
    static func forwarding(_ request: Machine.Request = request(), reused: Bool = false) -> Machine {
        var machine = Machine()
        #expect(Self.run(&machine) { $0.requestHeadReceived(request) })
        #expect(Self.run(&machine) { $0.upstreamWanted() })
        _ = machine.upstreamAttached(reused: reused)
        return machine
    }

    @Test func keepAliveExchangeReturnsToIdle() {
        var machine = Machine()
        #expect(Self.run(&machine) { $0.requestHeadReceived(Self.request()) })
        #expect(Self.run(&machine) { $0.upstreamWanted() })
        #expect(Self.run(&machine) { $0.upstreamAttached(reused: false) } == .writeRequest(sendContinue: false, requestEnded: true))
        #expect(Self.run(&machine) { $0.responseHeadReceived(switchingProtocols: false, isDraining: false) } == .writeHead(keepAlive: true))
        #expect(Self.run(&machine) { $0.responseEnded(upstreamReusable: true) } == .finish(releaseUpstream: true, then: .readNextRequest))
        #expect(machine.state == .idle)
    }

    @Test func aSecondHeadWhileAnExchangeIsInFlightIsRefused() {
        var machine = Self.forwarding()
        #expect(!Self.run(&machine) { $0.requestHeadReceived(Self.request()) })
    }

    @Test func connectionCloseFromTheClientClosesAfterTheResponse() {
        var machine = Self.forwarding(Self.request(keepAlive: false))
        #expect(Self.run(&machine) { $0.responseHeadReceived(switchingProtocols: false, isDraining: false) } == .writeHead(keepAlive: false))
        #expect(Self.run(&machine) { $0.responseEnded(upstreamReusable: true) } == .finish(releaseUpstream: true, then: .closeWhenFlushed(linger: false)))
        #expect(machine.state == .closed)
    }

    @Test func drainingClosesAfterTheResponse() {
        var machine = Self.forwarding()
        #expect(Self.run(&machine) { $0.responseHeadReceived(switchingProtocols: false, isDraining: true) } == .writeHead(keepAlive: false))
    }

    @Test func anHTTP10ResponseWithoutLengthClosesTheConnection() {
        var machine = Self.forwarding(Self.request(minor: 0))
        #expect(Self.run(&machine) { $0.responseHeadReceived(switchingProtocols: false, isDraining: false) } == .writeHead(keepAlive: true))
        machine.responseMustClose()
        #expect(Self.run(&machine) { $0.responseEnded(upstreamReusable: true) } == .finish(releaseUpstream: true, then: .closeWhenFlushed(linger: false)))
    }

    @Test func aResponseBeforeTheRequestBodyEndedClosesBothConnectionsAndLingers() {
        var machine = Self.forwarding(Self.request(body: true))
        #expect(Self.run(&machine) { $0.requestBodyReceived() } == .forward)
        #expect(Self.run(&machine) { $0.responseHeadReceived(switchingProtocols: false, isDraining: false) } == .writeHead(keepAlive: true))
        // The upstream would be reusable, but the rest of the body cannot be skipped on it.
        #expect(Self.run(&machine) { $0.responseEnded(upstreamReusable: true) } == .finish(releaseUpstream: false, then: .closeWhenFlushed(linger: true)))
    }

    @Test func bodyIsBufferedUntilTheUpstreamIsAttachedAndThenForwarded() {
        var machine = Machine()
        #expect(Self.run(&machine) { $0.requestHeadReceived(Self.request(expectsContinue: true, body: true)) })
        #expect(Self.run(&machine) { $0.requestBodyReceived() } == .buffer)
        #expect(Self.run(&machine) { $0.upstreamWanted() })
        #expect(Self.run(&machine) { $0.upstreamAttached(reused: false) } == .writeRequest(sendContinue: true, requestEnded: false))
        #expect(Self.run(&machine) { $0.requestBodyReceived() } == .forward)
        #expect(Self.run(&machine) { $0.requestEnded() } == .flushUpstream)
    }

    @Test func requestEndBeforeTheUpstreamIsBuffered() {
        var machine = Machine()
        #expect(Self.run(&machine) { $0.requestHeadReceived(Self.request(body: true)) })
        #expect(Self.run(&machine) { $0.requestEnded() } == .buffer)
        #expect(Self.run(&machine) { $0.upstreamWanted() })
        #expect(Self.run(&machine) { $0.upstreamAttached(reused: false) } == .writeRequest(sendContinue: false, requestEnded: true))
    }

    @Test func aStaleReusedConnectionIsRetriedOnceForAnIdempotentRequest() {
        var machine = Self.forwarding(reused: true)
        #expect(Self.run(&machine) { $0.upstreamClosed(isDraining: false) } == .retry)
        #expect(Self.run(&machine) { $0.upstreamAttached(reused: false) } == .writeRequest(sendContinue: false, requestEnded: true))
        // The fresh connection fails too: 502, keep-alive (the request had ended).
        #expect(
            Self.run(&machine) { $0.upstreamClosed(isDraining: false) }
                == .answer(.answer(close: false, abortUpstream: false, then: .readNextRequest))
        )
        #expect(machine.state == .idle)
    }

    @Test func noRetryForAFreshConnectionANonIdempotentRequestOrAForwardedBody() {
        var fresh = Self.forwarding(reused: false)
        #expect(Self.run(&fresh) { $0.upstreamClosed(isDraining: false) } != .retry)
        var post = Self.forwarding(Self.request(idempotent: false), reused: true)
        #expect(Self.run(&post) { $0.upstreamClosed(isDraining: false) } != .retry)
        var put = Self.forwarding(Self.request(body: true), reused: true)
        #expect(Self.run(&put) { $0.requestBodyReceived() } == .forward)
        #expect(Self.run(&put) { $0.upstreamClosed(isDraining: false) } != .retry)
    }

    @Test func anUpstreamClosingMidResponseLeavesOnlyAClose() {
        var machine = Self.forwarding()
        _ = machine.responseHeadReceived(switchingProtocols: false, isDraining: false)
        #expect(Self.run(&machine) { $0.upstreamClosed(isDraining: false) } == .answer(.closeConnection(abortUpstream: false)))
        #expect(machine.state == .closed)
    }

    @Test func anUpstreamFailureMidBodyAnswersAndCloses() {
        var machine = Self.forwarding(Self.request(body: true))
        #expect(Self.run(&machine) { $0.requestBodyReceived() } == .forward)
        #expect(
            Self.run(&machine) { $0.upstreamClosed(isDraining: false) }
                == .answer(.answer(close: true, abortUpstream: false, then: .closeWhenFlushed(linger: true)))
        )
    }

    @Test func aGateAnswerKeepsTheConnectionAndDiscardsASmallBody() {
        var machine = Machine()
        #expect(Self.run(&machine) { $0.requestHeadReceived(Self.request(body: true)) })
        #expect(Self.run(&machine) { $0.answerLocally(closeRequested: false, isDraining: false) } == .answer(close: false, abortUpstream: false, then: .discardBody))
        #expect(Self.run(&machine) { $0.requestBodyReceived() } == .discard)
        #expect(Self.run(&machine) { $0.requestEnded() } == .readNextRequest)
        #expect(machine.state == .idle)
    }

    @Test func aGateAnswerClosesForABodyNotWorthReading() {
        var machine = Machine()
        #expect(Self.run(&machine) { $0.requestHeadReceived(Self.request(body: true, worthDiscarding: false)) })
        #expect(
            Self.run(&machine) { $0.answerLocally(closeRequested: false, isDraining: false) }
                == .answer(close: true, abortUpstream: false, then: .closeWhenFlushed(linger: true))
        )
    }

    @Test func aRefusedUpgradeClosesTheConnection() {
        var machine = Machine()
        #expect(Self.run(&machine) { $0.requestHeadReceived(Self.request(upgrade: true)) })
        #expect(
            Self.run(&machine) { $0.answerLocally(closeRequested: false, isDraining: false) }
                == .answer(close: true, abortUpstream: false, then: .closeWhenFlushed(linger: false))
        )
    }

    @Test func anAcceptedUpgradeBecomesATunnel() {
        var machine = Self.forwarding(Self.request(upgrade: true))
        #expect(Self.run(&machine) { $0.responseHeadReceived(switchingProtocols: true, isDraining: false) } == .switchProtocols)
        #expect(machine.state == .tunnel)
    }

    @Test func aSwitchNobodyAskedForClosesEverything() {
        var machine = Self.forwarding()
        #expect(Self.run(&machine) { $0.responseHeadReceived(switchingProtocols: true, isDraining: false) } == .closeConnection)
        #expect(machine.state == .closed)
    }

    @Test func responseTimeoutAnswers504OnlyBeforeAResponse() {
        var waiting = Self.forwarding()
        #expect(Self.run(&waiting) { $0.responseTimedOut(isDraining: false) } == .answer(close: false, abortUpstream: true, then: .readNextRequest))
        var streaming = Self.forwarding()
        _ = streaming.responseHeadReceived(switchingProtocols: false, isDraining: false)
        #expect(Self.run(&streaming) { $0.responseTimedOut(isDraining: false) } == .none)
    }

    @Test func bodyTimeoutAnswers408AndClosesOrOnlyClosesOnceAResponseStarted() {
        var waiting = Self.forwarding(Self.request(body: true))
        #expect(Self.run(&waiting) { $0.bodyTimedOut() } == .answer(close: true, abortUpstream: true, then: .closeWhenFlushed(linger: true)))
        var streaming = Self.forwarding(Self.request(body: true))
        _ = streaming.responseHeadReceived(switchingProtocols: false, isDraining: false)
        #expect(Self.run(&streaming) { $0.bodyTimedOut() } == .closeConnection(abortUpstream: true))
    }

    @Test func halfCloseBetweenRequestsClosesButPipelinedRequestsAreServedFirst() {
        var idle = Machine()
        #expect(Self.run(&idle) { $0.inputClosed(requestBytesPending: false) } == .closeWhenFlushed)
        var pending = Machine()
        #expect(Self.run(&pending) { $0.inputClosed(requestBytesPending: true) } == .none)
        #expect(Self.run(&pending) { $0.requestHeadReceived(Self.request()) })
        #expect(Self.run(&pending) { $0.upstreamWanted() })
        _ = pending.upstreamAttached(reused: false)
        #expect(Self.run(&pending) { $0.responseHeadReceived(switchingProtocols: false, isDraining: false) } == .writeHead(keepAlive: true))
        #expect(Self.run(&pending) { $0.responseEnded(upstreamReusable: true) } == .finish(releaseUpstream: true, then: .closeWhenFlushed(linger: false)))
    }

    @Test func halfCloseDuringAnExchangeClosesAfterItsResponse() {
        var machine = Self.forwarding()
        #expect(Self.run(&machine) { $0.inputClosed(requestBytesPending: false) } == .none)
        _ = machine.responseHeadReceived(switchingProtocols: false, isDraining: false)
        #expect(Self.run(&machine) { $0.responseEnded(upstreamReusable: true) } == .finish(releaseUpstream: true, then: .closeWhenFlushed(linger: false)))
    }

    @Test func aLingeringCloseEndsWhenTheClientIsDone() {
        var machine = Machine()
        #expect(Self.run(&machine) { $0.requestHeadReceived(Self.request(body: true, worthDiscarding: false)) })
        _ = machine.answerLocally(closeRequested: true, isDraining: false)
        #expect(Self.run(&machine) { $0.inputClosed(requestBytesPending: false) } == .close)
    }

    @Test func aLateDecisionFindsTheExchangeGone() {
        var machine = Machine()
        #expect(Self.run(&machine) { $0.requestHeadReceived(Self.request()) })
        machine.close()
        #expect(!Self.run(&machine) { $0.upstreamWanted() })
        #expect(Self.run(&machine) { $0.upstreamAttached(reused: false) } == .closeUpstream)
        #expect(Self.run(&machine) { $0.answerLocally(closeRequested: false, isDraining: false) } == .none)
    }

    @Test func aBodyRefusalAnswersBeforeAResponseAndClosesAfterOne() {
        var machine = Machine()
        #expect(Self.run(&machine) { $0.requestHeadReceived(Self.request(body: true)) })
        #expect(Self.run(&machine) { $0.requestBodyRefused() } == .answer(close: true, abortUpstream: false, then: .closeWhenFlushed(linger: true)))
        var answered = Machine()
        #expect(Self.run(&answered) { $0.requestHeadReceived(Self.request(body: true)) })
        _ = answered.answerLocally(closeRequested: false, isDraining: false)
        #expect(Self.run(&answered) { $0.requestBodyRefused() } == .closeConnection(abortUpstream: false))
    }
}
