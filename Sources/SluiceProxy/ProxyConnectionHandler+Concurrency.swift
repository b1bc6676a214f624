import NIOCore
import SluiceLimiter

/// Concurrency limits (issue 22): taking a request's slots, waiting in a queue, and the refusals.
///
/// The slots belong to ``ProxyConnectionStateMachine`` (``ProxyConnectionStateMachine/slotsTaken(_:)``), which gives
/// them back when the exchange is over, however it ends; this extension only takes them and reacts to the queue.
/// While a request waits, nothing more of it is read (it has no upstream connection, so ``mayReadClient`` is false
/// for a body; a request without body is read only up to the next request's first bytes, so a client that leaves is
/// noticed), and a slot handed over by another event loop arrives on this one (`execute`).
///
/// With `storage.kind: redis` the slots are leases in Redis (issue 22 item 5): taking them is a round trip
/// (``ConcurrencyStep/asking``; the request waits unread, as for a Redis rate decision), and the answer arrives through
/// the same `wake` as a hand-over. A request Redis refuses waits in this instance's queue, whose first request asks
/// again every ``ConcurrencyAdmission/leasePollInterval`` (``queuePoll``) and when a request of its key ends here.
extension ProxyConnectionHandler {
    /// Hands `admission` to the state machine and takes its slots: then the rate limits, a queue, or a refusal.
    func admit(_ admission: ConcurrencyAdmission, _ attributes: RawRequestAttributes, config: ProxySnapshot) {
        guard self.machine.slotsTaken(admission) else { return }
        let step = admission.start(wake: self.slotWake)
        self.concurrencyStep(step, attributes, config: config)
    }

    /// What a waiter of this connection is woken with: made once per connection (not per request), dropped in
    /// `handlerRemoved` (it holds the handler).
    private var slotWake: @Sendable (ConcurrencyWaiter) -> Void {
        if let wake = self.concurrencyWake { return wake }
        let eventLoop = self.context.eventLoop
        let loopBoundSelf = NIOLoopBound(self, eventLoop: eventLoop)
        let wake: @Sendable (ConcurrencyWaiter) -> Void = { waiter in
            // From the thread that released the slot: hop to this connection's loop, never block there.
            eventLoop.execute { loopBoundSelf.value.slotGranted(waiter) }
        }
        self.concurrencyWake = wake
        return wake
    }

    private func concurrencyStep(_ step: ConcurrencyStep, _ attributes: RawRequestAttributes, config: ProxySnapshot) {
        switch step {
        case .admitted:
            self.cancelQueueTimeout()
            self.exchange.waiting = nil
            self.decide(attributes, config: config)
        case .refused(let refusal):
            self.cancelQueueTimeout()
            self.exchange.waiting = nil
            self.refuse(refusal)
        case .asking:
            // One round trip to the shared store (Redis leases): the request waits, unread, for `slotGranted`. A queue
            // timeout already running (a queued request asking again) keeps running.
            self.exchange.waiting = (attributes, config)
        case .waiting(let timeout):
            self.exchange.waiting = (attributes, config)
            self.cancelQueueTimeout()
            let loopBoundSelf = NIOLoopBound(self, eventLoop: self.context.eventLoop)
            let admission = self.machine.slots
            if let admission, admission.usesLeases {
                // The queue is this instance's; the slots are in Redis: the first of a key's queue asks again on a
                // short poll (and at once when a request of its key ends here, through `slotGranted`).
                let poll = TimeAmount(ConcurrencyAdmission.leasePollInterval)
                let boundAdmission = NIOLoopBound(admission, eventLoop: self.context.eventLoop)
                self.queuePoll = self.context.eventLoop.scheduleRepeatedTask(initialDelay: poll, delay: poll) { task in
                    let this = loopBoundSelf.value
                    guard let current = this.machine.slots, current === boundAdmission.value, current.isWaiting else {
                        task.cancel()
                        return
                    }
                    current.pollLeases()
                }
            }
            self.queueTimeout = self.context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(timeout)) {
                let this = loopBoundSelf.value
                guard let current = this.machine.slots, current === admission else { return }
                this.queueTimeout = nil
                // `nil`: the slot was handed over meanwhile; its `slotGranted` is on the way.
                if let refusal = current.timedOut() {
                    this.exchange.waiting = nil
                    this.refuse(refusal)
                }
            }
        }
    }

    /// A slot was handed to `waiter` (on this loop now). Nothing happens when the exchange it waited for is over: its
    /// admission returned the slot already.
    func slotGranted(_ waiter: ConcurrencyWaiter) {
        guard let admission = self.machine.slots, let step = admission.granted(waiter), let waiting = self.exchange.waiting
        else { return }
        self.concurrencyStep(step, waiting.attributes, config: waiting.config)
    }

    func cancelQueueTimeout() {
        self.queueTimeout?.cancel()
        self.queueTimeout = nil
        self.queuePoll?.cancel()
        self.queuePoll = nil
    }

    /// Answers a refusal with the rule's `response` and `Retry-After`, without rate-limit fields; the access log's
    /// `decision` is the reason.
    private func refuse(_ refusal: ConcurrencyRefusal) {
        self.exchange.gateContext.decision = refusal.reason.logDecision
        self.exchange.gateContext.rule = refusal.rule
        self.answer(GateAnswer(blocked: BlockedAnswer(refusal: refusal)))
    }

    /// The access log's rule and decision for a request the rate limits let through: a shadow rule it went over
    /// (`shadow_concurrency`), or, when no rate limit applied, the concurrency rule that admitted it.
    static func describeConcurrency(_ admission: ConcurrencyAdmission, in context: inout GateContext) {
        switch context.decision {
        case "none", "admitted", "exempt":
            if let shadow = admission.shadowRule {
                context.decision = "shadow_concurrency"
                context.rule = shadow
            } else if context.decision == "none" {
                context.decision = "admitted"
                context.rule = admission.firstRule
            }
        default:
            break
        }
    }
}

extension BlockedAnswer {
    /// A concurrency refusal's answer: no rate-limit fields (they describe quotas over a window).
    init(refusal: ConcurrencyRefusal) {
        self.init(
            response: refusal.response,
            fields: RateLimitFieldValues(statuses: [], mode: .none, nowSeconds: 0),
            retryAfter: refusal.retryAfter,
            rule: refusal.rule,
            limit: refusal.limit
        )
    }
}
