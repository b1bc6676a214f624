import SluiceConfig
@testable import SluiceLimiter

// The algorithm steps behind one enum, as the property tests drive them (the stores keep packed states instead;
// the engine-level properties go through those).

enum CounterState: Sendable, Hashable {
    case fixedWindow(FixedWindow.State)
    case slidingWindow(SlidingWindow.State)
    case movingWindow(MovingWindow.State)
    case tokenBucket(TokenBucket.State)
    case gcra(GCRA.State)
    /// A penalty-box entry: every request of the key is refused until this instant (SPEC §2 `block_for`).
    case blocked(until: LimiterInstant)

    /// The outcome of ``step(_:state:now:cost:limit:)`` without the algorithm-specific state type.
    struct Step: Sendable {
        var verdict: StepVerdict
        var remaining: Int64
        var resetNanoseconds: Int64
        /// The state to store if the request is counted.
        var state: CounterState
    }

    /// Runs the step of `algorithm`; a stored state of another algorithm (impossible: the algorithm is part of the
    /// storage key) is treated as absent.
    static func step(
        _ algorithm: Algorithm,
        state: CounterState?,
        now: LimiterInstant,
        cost: Int64,
        limit: LimitParameters
    ) -> Step {
        switch algorithm {
        case .fixedWindow:
            var previous: FixedWindow.State?
            if case .fixedWindow(let s) = state { previous = s }
            let r = FixedWindow.step(previous, now: now, cost: cost, limit: limit)
            return Step(verdict: r.verdict, remaining: r.remaining, resetNanoseconds: r.resetNanoseconds, state: .fixedWindow(r.state))
        case .slidingWindow:
            var previous: SlidingWindow.State?
            if case .slidingWindow(let s) = state { previous = s }
            let r = SlidingWindow.step(previous, now: now, cost: cost, limit: limit)
            return Step(verdict: r.verdict, remaining: r.remaining, resetNanoseconds: r.resetNanoseconds, state: .slidingWindow(r.state))
        case .movingWindow:
            var previous: MovingWindow.State?
            if case .movingWindow(let s) = state { previous = s }
            let r = MovingWindow.step(previous, now: now, cost: cost, limit: limit)
            return Step(verdict: r.verdict, remaining: r.remaining, resetNanoseconds: r.resetNanoseconds, state: .movingWindow(r.state))
        case .tokenBucket:
            var previous: TokenBucket.State?
            if case .tokenBucket(let s) = state { previous = s }
            let r = TokenBucket.step(previous, now: now, cost: cost, limit: limit)
            return Step(verdict: r.verdict, remaining: r.remaining, resetNanoseconds: r.resetNanoseconds, state: .tokenBucket(r.state))
        case .gcra:
            var previous: GCRA.State?
            if case .gcra(let s) = state { previous = s }
            let r = GCRA.step(previous, now: now, cost: cost, limit: limit)
            return Step(verdict: r.verdict, remaining: r.remaining, resetNanoseconds: r.resetNanoseconds, state: .gcra(r.state))
        }
    }
}
