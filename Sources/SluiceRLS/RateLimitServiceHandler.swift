import GRPCCore
import Logging
import SluiceAdmin
import SluiceConfig
import SluiceLimiter
import SluiceRLSProto

/// `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit` (issue 14), answered by the running limiter.
///
/// Each call reads the running limiter once (``running``), so a SIGHUP reload applies to the next call and a call in
/// flight finishes with the rules it started with (SPEC §6). Descriptors are decided by ``DescriptorDecider`` and
/// answered by ``RateLimitResponseBuilder``; every applicable rule's verdict is counted in
/// `sluice_requests_total{rule,decision}` through the proxy's own per-configuration counters (a shadow rule's
/// `shadow_limited` included), by rule index: no lock and no lookup by name per decision.
///
/// Errors: a call without a domain, or without descriptors, is `INVALID_ARGUMENT` (envoyproxy/ratelimit refuses
/// both too); a store that cannot decide under `on_error: deny` is `UNAVAILABLE`, so Envoy's `failure_mode_deny`
/// decides what the client gets; no running limiter (not started yet) is `UNAVAILABLE`.
public struct RateLimitServiceHandler: Envoy_Service_Ratelimit_V3_RateLimitService.SimpleServiceProtocol {
    public typealias Request = Envoy_Service_Ratelimit_V3_RateLimitRequest
    public typealias Response = Envoy_Service_Ratelimit_V3_RateLimitResponse

    /// The running configuration's limiter (the proxy's: one budget for both front ends) and its
    /// `sluice_requests_total` counters, read together so the rule indexes fit.
    public typealias Running = (limiter: RateLimiter, ruleCounters: RuleDecisionCounters)

    let running: @Sendable () -> Running?
    let logger: Logger

    public init(running: @escaping @Sendable () -> Running?, logger: Logger) {
        self.running = running
        self.logger = logger
    }

    public func shouldRateLimit(request: Request, context: ServerContext) async throws -> Response {
        guard !request.domain.isEmpty else {
            throw RPCError(code: .invalidArgument, message: "rate limit domain must not be empty")
        }
        guard !request.descriptors.isEmpty else {
            throw RPCError(code: .invalidArgument, message: "rate limit descriptor list must not be empty")
        }
        guard let running = self.running() else {
            throw RPCError(code: .unavailable, message: "sluice is not serving yet")
        }
        let now = LimiterInstant.now()
        let descriptors = Self.descriptorRequests(request)
        let outcomes = await DescriptorDecider(limiter: running.limiter).decide(descriptors, now: now)
        for outcome in outcomes {
            for decision in outcome.ruleDecisions { running.ruleCounters.record(decision) }
        }
        if outcomes.contains(where: \.storageUnavailable) {
            throw RPCError(code: .unavailable, message: "rate-limit storage unavailable")
        }
        for outcome in outcomes where outcome.decision == .shadowLimited {
            self.logger.debug(
                "shadow: rule would have limited this descriptor",
                metadata: ["rule": "\(outcome.rule ?? "")", "domain": "\(request.domain)"]
            )
        }
        return RateLimitResponseBuilder.response(for: outcomes, now: now)
    }

    /// The engine's requests of a call: one per descriptor, with its cost (`hits_addend` of the descriptor when
    /// set, else of the request; 0 is 1).
    static func descriptorRequests(_ request: Request) -> [DescriptorRequest] {
        request.descriptors.map { descriptor in
            let cost = descriptor.hasHitsAddend ? Int64(clamping: descriptor.hitsAddend.value) : Int64(request.hitsAddend)
            return DescriptorRequest(
                domain: request.domain,
                entries: descriptor.entries.map { DescriptorRequest.Entry(key: $0.key, value: $0.value) },
                cost: cost
            )
        }
    }
}
