import Logging
import Synchronization
import NIOCore
import SluiceAdmin
import SluiceConfig
import SluiceLimiter

/// The request gate backed by the limiter engine: match rules, derive keys, decide all or
/// nothing, and turn the outcome into a forward plan or a blocked answer (SPEC §2, §5).
final class LimiterGate: RequestGate {
    let limiter: RateLimiter
    let logger: Logger
    /// `sluice_requests_total` of this configuration's rules, by rule index (made once per load).
    let ruleCounters: RuleDecisionCounters
    /// Told the key of every limited and shadow-limited request (status page).
    let limitedKeys: LimitedKeyTracker
    /// Every shadow-limited request is in the access log; the stderr notice is kept to one line
    /// per rule per second, since the log handler writes synchronously on the event loop.
    let shadowLog: ShadowLogThrottle
    /// The concurrency rules of this configuration (issue 22); `nil` without any, so a request asks nothing.
    let concurrency: ConcurrencyLimiter?
    /// The in-flight slots, by rule name: handed from gate to gate on reload, so counts survive it.
    let concurrencySlots: ConcurrencySlotTable

    /// The gate of `limiter`'s configuration; resolves its metric counters now, once.
    init(
        limiter: RateLimiter,
        logger: Logger,
        metrics: SluiceMetrics,
        limitedKeys: LimitedKeyTracker,
        concurrencySlots: ConcurrencySlotTable = ConcurrencySlotTable()
    ) {
        self.limiter = limiter
        self.concurrencySlots = concurrencySlots
        self.concurrency = ConcurrencyLimiter(
            configuration: limiter.configuration,
            table: concurrencySlots,
            leases: limiter.store.concurrencyLeases
        )
        metrics.setConcurrencySource { [concurrencySlots] in concurrencySlots.allRules }
        self.logger = logger
        let rules = limiter.configuration.rules.map(\.name)
        self.ruleCounters = metrics.ruleCounters(for: rules)
        self.limitedKeys = limitedKeys
        self.shadowLog = ShadowLogThrottle(rules: rules.count)
    }

    func decide<R: RequestAttributes & Sendable>(_ request: R, context: inout GateContext, eventLoop: any EventLoop) -> GateVerdict {
        let promise = eventLoop.makePromise(of: DecidedGate.self)
        guard let verdict = self.decide(request, context: &context, delivery: PromiseDelivery(promise: promise)) else {
            return .later(promise.futureResult)
        }
        promise.succeed(DecidedGate(verdict: verdict, context: context))
        return verdict
    }

    /// The verdict now, or `nil` when the store takes a round trip: then `delivery` is handed the decision once it
    /// comes (on whichever loop the store answers on; the delivery hops to its own). The proxy's connections pass
    /// themselves (``ConnectionDelivery``), which costs no promise, future or callback per request.
    func decide<R: RequestAttributes & Sendable, D: GateDecisionDelivery>(
        _ request: R,
        context: inout GateContext,
        delivery: D
    ) -> GateVerdict? {
        let now = LimiterInstant.now()
        let store = self.limiter.store
        guard !store.decidesSynchronously else {
            let outcome = self.limiter.evaluate(request, now: now)
            return self.verdict(for: outcome, uri: request.uri, context: &context, now: now)
        }
        let prepared = self.limiter.prepare(request, now: now)
        guard !prepared.batch.isEmpty else {
            return self.verdict(for: self.limiter.finish(prepared, now: now), uri: request.uri, context: &context, now: now)
        }
        // One round trip to the store; the request waits, unread, on its connection.
        let initialContext = context
        let waiting = prepared
        store.decide(prepared.batch, now: now) { [self] batch in
            var prepared = waiting
            prepared.batch = batch
            var context = initialContext
            let outcome = self.limiter.finish(prepared, now: now)
            let verdict = self.verdict(for: outcome, uri: request.uri, context: &context, now: now)
            delivery.deliver(DecidedGate(verdict: verdict, context: context))
        }
        return nil
    }

    /// The forward plan or the answer for a decided request.
    private func verdict(
        for outcome: LimitOutcome,
        uri: String,
        context: inout GateContext,
        now: LimiterInstant
    ) -> GateVerdict {
        for index in 0..<outcome.ruleDecisions.count { self.ruleCounters.record(outcome.ruleDecisions[index]) }
        context.decision = outcome.decision.rawValue
        context.rule = outcome.rule ?? outcome.statuses.first?.rule
        context.keyDigest = outcome.keyDigest
        if outcome.decision == .limited || outcome.decision == .shadowLimited, !outcome.storageUnavailable,
            let rule = outcome.rule, let key = outcome.keyDigest
        {
            self.limitedKeys.record(
                rule: rule,
                key: key,
                shadow: outcome.decision == .shadowLimited,
                nowSeconds: now.unixSeconds
            )
        }
        switch outcome.decision {
        case .noRule, .exempt:
            return .forward(.plain)
        case .limited where outcome.storageUnavailable:
            // `on_error: deny`: the limits cannot be checked, so nothing passes (fail closed).
            return .answer(
                GateAnswer(
                    status: .serviceUnavailable,
                    headers: [("Content-Type", "text/plain; charset=utf-8"), ("Retry-After", "1")],
                    body: "rate-limit storage unavailable\n"
                )
            )
        case .limited:
            guard outcome.isBlocked else { return .forward(.plain) }
            return .answer(GateAnswer(blocked: BlockedAnswer(outcome: outcome, now: now)))
        case .admitted, .shadowLimited:
            if outcome.decision == .shadowLimited, let rule = outcome.rule, let ruleIndex = outcome.ruleIndex,
                let suppressed = self.shadowLog.shouldLog(ruleIndex: ruleIndex, second: now.unixSeconds)
            {
                self.logger.notice(
                    "shadow: rule would have limited this request",
                    metadata: [
                        "rule": "\(rule)", "client_ip": "\(context.clientIP)", "path": "\(uri)",
                        "suppressed_since_last": "\(suppressed)",
                    ]
                )
            }
            var plan = ForwardPlan()
            if !outcome.statuses.isEmpty {
                plan.rateLimitFields = RateLimitFieldValues(
                    statuses: outcome.statuses,
                    mode: outcome.headerMode,
                    nowSeconds: now.unixSeconds
                )
            }
            if let delay = outcome.delay, delay > .zero {
                plan.delay = TimeAmount(delay)
            }
            if let charge = outcome.deferredCharge {
                plan.responseObserver = DeferredChargeObserver(charge: charge)
            }
            return .forward(plan)
        }
    }
}

/// Where a decision that took a round trip goes.
protocol GateDecisionDelivery: Sendable {
    /// Called once, on the loop the store answered on.
    func deliver(_ decided: DecidedGate)
}

/// To a promise (callers of ``RequestGate/decide(_:context:eventLoop:)``).
struct PromiseDelivery: GateDecisionDelivery {
    let promise: EventLoopPromise<DecidedGate>

    func deliver(_ decided: DecidedGate) {
        self.promise.succeed(decided)
    }
}

/// Takes `count_when` quota once the upstream's status is known.
private struct DeferredChargeObserver: ResponseStatusObserver {
    let charge: DeferredCharge

    func upstreamResponded(status: Int) {
        self.charge.responseReceived(status: status, now: .now())
    }
}

/// Lets one log line per rule per second through and counts the rest: per rule index of one configuration, without
/// a lock (a shadow rule in a flood is asked on every request, from every event loop).
final class ShadowLogThrottle: Sendable {
    private final class Rule: Sendable {
        /// The Unix second of the last line let through; `Int64.min` before the first.
        let second = Atomic<Int64>(.min)
        /// Lines suppressed since then.
        let suppressed = Atomic<Int>(0)
    }

    private let rules: [Rule]

    init(rules: Int) {
        self.rules = (0..<rules).map { _ in Rule() }
    }

    /// The number of lines suppressed since the last one, or `nil` when this one is suppressed too.
    ///
    /// When two loops race at the turn of a second, one of them wins the line and the other counts as suppressed;
    /// a suppression counted in that instant may be reported with the new line rather than the previous one.
    func shouldLog(ruleIndex: Int, second: Int64) -> Int? {
        guard ruleIndex >= 0, ruleIndex < self.rules.count else { return nil }
        let rule = self.rules[ruleIndex]
        let last = rule.second.load(ordering: .relaxed)
        if last != second, rule.second.compareExchange(expected: last, desired: second, ordering: .relaxed).exchanged {
            return rule.suppressed.exchange(0, ordering: .relaxed)
        }
        rule.suppressed.wrappingAdd(1, ordering: .relaxed)
        return nil
    }
}
