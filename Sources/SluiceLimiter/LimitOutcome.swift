import SluiceConfig

/// What the limiter decided for a request or a rule (SPEC §7 metric label `decision`).
///
/// A closed set that feeds headers, logs and metrics, like nginx's `PASSED`/`REJECTED` and their dry-run variants.
public enum Decision: String, Sendable, Hashable, CaseIterable {
    /// Every applicable limit admitted the request.
    case admitted
    /// An enforced rule refused the request: answer with its blocked response.
    case limited
    /// A `mode: shadow` rule would have refused it; it is forwarded anyway (the log names the rule).
    case shadowLimited = "shadow_limited"
    /// Every rule that matched exempts the client IP.
    case exempt
    /// No rule applied (none matched, or `on_missing_key: skip` dropped them).
    case noRule = "none"
}

/// One limit's numbers for the rate-limit headers (SPEC §5) and the admin API (SPEC §7).
public struct LimitStatus: Sendable, Hashable {
    /// The rule's name.
    public var rule: String
    /// The policy name in `RateLimit-Policy`: the rule's name, or `RULE-WINDOW` when its limit list has several.
    public var policyName: String
    public var limit: RateLimit
    /// Quota left after this request (never negative).
    public var remaining: Int
    /// Whole seconds until the quota is restored, rounded up.
    public var resetSeconds: Int
    /// ``policyName`` serialises as a plain sf-string (``RateLimitHeaders/isPlainString(_:)``): known once per
    /// configuration, so writing the fields checks no character per request.
    public var policyNameIsPlain: Bool

    public init(rule: String, policyName: String, limit: RateLimit, remaining: Int, resetSeconds: Int) {
        self.init(
            rule: rule,
            policyName: policyName,
            policyNameIsPlain: RateLimitHeaders.isPlainString(policyName),
            limit: limit,
            remaining: remaining,
            resetSeconds: resetSeconds
        )
    }

    init(rule: String, policyName: String, policyNameIsPlain: Bool, limit: RateLimit, remaining: Int, resetSeconds: Int) {
        self.rule = rule
        self.policyName = policyName
        self.policyNameIsPlain = policyNameIsPlain
        self.limit = limit
        self.remaining = remaining
        self.resetSeconds = resetSeconds
    }

    /// The limit's COUNT (`q=`).
    public var quota: Int { self.limit.count }
    /// The limit's period in seconds (`w=`).
    public var windowSeconds: Int { self.limit.periodSeconds }
}

/// One applicable rule's own verdict, for `sluice_requests_total{rule,decision}`.
public struct RuleDecision: Sendable, Hashable {
    public var rule: String
    /// The rule's position in the configuration's `rules` (from 0), which the metrics of that configuration
    /// snapshot are indexed by: the request path counts by index, never by name.
    public var ruleIndex: Int
    public var decision: Decision

    public init(rule: String, ruleIndex: Int, decision: Decision) {
        self.rule = rule
        self.ruleIndex = ruleIndex
        self.decision = decision
    }
}

/// The costs of `count_when` rules, taken once the upstream's status is known (SPEC §2 "Decisions").
///
/// Holds its store, so it stays valid across a reload that happens while the request is in flight.
public struct DeferredCharge: Sendable {
    struct Entry: Sendable {
        var statuses: StatusSet
        var items: [StoreItem]
    }

    let store: any RateLimitStore
    let entries: [Entry]

    /// Takes the cost of every rule whose `count_when` matches `status`. Call once, when the response head arrives.
    public func responseReceived(status: Int, now: LimiterInstant) {
        for entry in self.entries where entry.statuses.contains(status) {
            self.store.commit(entry.items, now: now)
        }
    }
}

/// Everything the proxy needs after ``RateLimiter/evaluate(_:now:)``.
public struct LimitOutcome: Sendable {
    /// The overall decision: `limited` means answer with ``response``; anything else means forward.
    public var decision: Decision
    /// The rule that refused the request (`limited`), or the first shadow rule that would have (`shadowLimited`).
    public var rule: String?
    /// ``rule``'s position in the configuration's `rules` (from 0); `nil` when ``rule`` is.
    public var ruleIndex: Int?
    /// The blocked response of ``rule`` when `limited`.
    public var response: ResponseConfiguration?
    /// `Retry-After` in whole seconds (≥ 1) when `limited`; `nil` when refused for good (cost above COUNT,
    /// `on_missing_key: deny`) or not limited.
    public var retryAfter: Int?
    /// The text of the limit that refused the request (the body's `{limit}`), e.g. `5/minute`.
    public var deniedLimit: String?
    /// Limits of every applicable, non-exempt rule: the one with the least remaining quota first (the earliest on
    /// a tie), then the others in file order (SPEC §5).
    public var statuses: SmallArray<2, LimitStatus>
    /// Which rate-limit headers to send: the blocking rule's setting, else that of the rule of `statuses[0]`.
    public var headerMode: ResponseConfiguration.RateLimitHeaders
    /// `gcra` with `delay`: hold the request this long before forwarding it.
    public var delay: Duration?
    /// The verdict of each rule that applied, in file order.
    public var ruleDecisions: SmallArray<2, RuleDecision>
    /// Costs to take when the upstream answers (`count_when` rules); `nil` when there are none.
    public var deferredCharge: DeferredCharge?
    /// The store could not decide and `on_error: deny` refuses the request: answer 503 (`decision` is `limited`).
    public var storageUnavailable = false
    /// The digest of the request's key under the rule the access log names (``rule``, else the rule of
    /// `statuses[0]`); `nil` when that rule has no key (exempt, `on_missing_key: deny`) or no rule applied.
    ///
    /// A digest, never the key's values: the access log's `key_hash` and the status page show its
    /// ``StorageKey/displayHash`` so an operator can follow one client without Sluice writing its API key anywhere.
    /// Keyed by the store's seed like the counters (random per process for the memory store).
    public var keyDigest: StorageKey?

    public init(
        decision: Decision,
        rule: String? = nil,
        response: ResponseConfiguration? = nil,
        retryAfter: Int? = nil,
        deniedLimit: String? = nil,
        statuses: SmallArray<2, LimitStatus> = SmallArray(),
        headerMode: ResponseConfiguration.RateLimitHeaders = .none,
        delay: Duration? = nil,
        ruleDecisions: SmallArray<2, RuleDecision> = SmallArray(),
        deferredCharge: DeferredCharge? = nil
    ) {
        self.decision = decision
        self.rule = rule
        self.response = response
        self.retryAfter = retryAfter
        self.deniedLimit = deniedLimit
        self.statuses = statuses
        self.headerMode = headerMode
        self.delay = delay
        self.ruleDecisions = ruleDecisions
        self.deferredCharge = deferredCharge
    }

    /// No rule applied.
    public static let noRule = LimitOutcome(decision: .noRule)

    /// Whether the proxy must answer with the blocked response instead of forwarding.
    public var isBlocked: Bool { self.decision == .limited }
}
