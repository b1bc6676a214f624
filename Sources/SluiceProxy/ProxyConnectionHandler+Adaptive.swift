import NIOCore
import SluiceConfig
import SluiceLimiter

/// Adaptive concurrency for the upstream (issue 22 item 7): the last check before a request goes to the upstream.
///
/// The ticket belongs to ``ProxyConnectionStateMachine`` (``ProxyConnectionStateMachine/upstreamAdmitted(_:)``), which
/// gives it back when the exchange is over, however it ends, and marks it completed (a latency sample) only when the
/// response ended; this extension only asks the limiter and answers a refusal.
extension ProxyConnectionHandler {
    /// Sends an admitted request to the upstream: past the upstream's adaptive limit first, when there is one (issue
    /// 22 item 7). Asked after the per-key slots and the rate limits (and any `delay`), so only requests that really
    /// go to the upstream count; one over the limit gets a 503 with `Retry-After` (the slots go back with it).
    func sendUpstream(config: ProxySnapshot) {
        if let adaptive = config.adaptive {
            guard case .exchange(let exchange) = self.machine.state, exchange.upstream == .none else { return }
            guard let ticket = adaptive.admit() else {
                self.exchange.gateContext.decision = "adaptive_concurrency"
                self.exchange.gateContext.rule = nil
                self.exchange.gateContext.keyDigest = nil
                if let refusal = config.adaptiveRefusal { self.answer(GateAnswer(blocked: refusal)) }
                return
            }
            guard self.machine.upstreamAdmitted(ticket) else { return }
        }
        self.connectUpstream(config: config, allowPooled: true)
    }
}

extension BlockedAnswer {
    /// The answer to a request over the upstream's adaptive limit (issue 22 item 7): 503, `Retry-After`, a JSON body,
    /// no rate-limit fields (no quota was exhausted).
    init(adaptiveRetryAfter retryAfter: Int) {
        self.init(
            response: ResponseConfiguration(status: 503, body: BlockedAnswer.adaptiveBody, rateLimitHeaders: .none),
            fields: RateLimitFieldValues(statuses: [], mode: .none, nowSeconds: 0),
            retryAfter: retryAfter,
            rule: "",
            limit: ""
        )
    }

    static let adaptiveBody = BodyTemplate(
        parts: [.literal(#"{"error":"upstream_overloaded","retry_after":"#), .retryAfter, .literal("}")],
        source: #"{"error":"upstream_overloaded","retry_after":{retry_after}}"#
    )
}
