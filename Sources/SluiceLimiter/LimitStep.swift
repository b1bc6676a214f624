import SluiceConfig

/// One limit of a rule in the units the algorithm steps work in (integers, nanoseconds).
public struct LimitParameters: Sendable, Hashable {
    /// COUNT of the limit string (≥ 1).
    public var count: Int64
    /// The period in nanoseconds (> 0).
    public var periodNanoseconds: Int64
    /// Extra requests allowed at once (`gcra`, `token_bucket`). Defaults to 0.
    public var burst: Int64
    /// `gcra` only: a request that would fit after waiting at most this long is held, not refused. Defaults to 0.
    public var delayNanoseconds: Int64

    public init(count: Int64, periodNanoseconds: Int64, burst: Int64 = 0, delayNanoseconds: Int64 = 0) {
        precondition(count >= 1 && periodNanoseconds >= 1, "validated by the loader")
        self.count = count
        self.periodNanoseconds = periodNanoseconds
        self.burst = max(0, burst)
        self.delayNanoseconds = max(0, delayNanoseconds)
    }

    /// The parameters of a parsed limit string; periods beyond ~290 years saturate.
    public init(_ limit: RateLimit, burst: Int = 0, delay: Duration = .zero) {
        let period = FixedPoint.multiply(Int64(limit.periodSeconds), 1_000_000_000)
        self.init(
            count: Int64(max(1, limit.count)),
            periodNanoseconds: max(1, period),
            burst: Int64(burst),
            delayNanoseconds: delay.nanoseconds
        )
    }
}

/// What one algorithm step says about one limit.
public enum StepVerdict: Sendable, Hashable {
    /// The request fits now.
    case admitted
    /// The request fits after waiting this long (`gcra` with `delay`); it is counted now and must be held.
    case delayed(nanoseconds: Int64)
    /// The request does not fit; the same request would fit after this long.
    case denied(retryAfterNanoseconds: Int64)

    public var isAdmitted: Bool {
        if case .denied = self { return false }
        return true
    }
}

/// The result of a pure algorithm step: the verdict, the state to store if the request is counted, and the
/// numbers the rate-limit headers need (SPEC §5).
public struct LimitStep<State: Sendable>: Sendable {
    public var verdict: StepVerdict
    /// The state after counting the request when admitted; the (rolled-forward) unchanged state when denied.
    public var state: State
    /// Quota left after this request (as if counted when admitted), never negative.
    public var remaining: Int64
    /// Nanoseconds until the quota is restored (the `t=` of `RateLimit`).
    public var resetNanoseconds: Int64

    public init(verdict: StepVerdict, state: State, remaining: Int64, resetNanoseconds: Int64) {
        self.verdict = verdict
        self.state = state
        self.remaining = max(0, remaining)
        self.resetNanoseconds = max(0, resetNanoseconds)
    }
}
