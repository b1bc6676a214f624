import SluiceConfig

/// The stored state of one storage key: an algorithm's state or a `block_for` penalty.
///
/// One closed enum lets a store keep every algorithm's state in one table without boxing (the payloads are a few
/// integers, except the moving window's log).
public enum CounterState: Sendable, Hashable {
    case fixedWindow(FixedWindow.State)
    case slidingWindow(SlidingWindow.State)
    case movingWindow(MovingWindow.State)
    case tokenBucket(TokenBucket.State)
    case gcra(GCRA.State)
    /// A penalty-box entry: every request of the key is refused until this instant (SPEC §2 `block_for`).
    case blocked(until: LimiterInstant)

    /// The outcome of ``step(_:state:now:cost:limit:)`` without the algorithm-specific state type.
    public struct Step: Sendable {
        public var verdict: StepVerdict
        public var remaining: Int64
        public var resetNanoseconds: Int64
        /// The state to store if the request is counted.
        public var state: CounterState
    }

    /// Runs the step of `algorithm`; a stored state of another algorithm (impossible: the algorithm is part of the
    /// storage key) is treated as absent.
    public static func step(
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

    /// Takes `cost` units unconditionally (`count_when` commits).
    public static func consume(
        _ algorithm: Algorithm,
        state: CounterState?,
        now: LimiterInstant,
        cost: Int64,
        limit: LimitParameters
    ) -> CounterState {
        switch algorithm {
        case .fixedWindow:
            var previous: FixedWindow.State?
            if case .fixedWindow(let s) = state { previous = s }
            return .fixedWindow(FixedWindow.consume(previous, now: now, cost: cost, limit: limit))
        case .slidingWindow:
            var previous: SlidingWindow.State?
            if case .slidingWindow(let s) = state { previous = s }
            return .slidingWindow(SlidingWindow.consume(previous, now: now, cost: cost, limit: limit))
        case .movingWindow:
            var previous: MovingWindow.State?
            if case .movingWindow(let s) = state { previous = s }
            return .movingWindow(MovingWindow.consume(previous, now: now, cost: cost, limit: limit))
        case .tokenBucket:
            var previous: TokenBucket.State?
            if case .tokenBucket(let s) = state { previous = s }
            return .tokenBucket(TokenBucket.consume(previous, now: now, cost: cost, limit: limit))
        case .gcra:
            var previous: GCRA.State?
            if case .gcra(let s) = state { previous = s }
            return .gcra(GCRA.consume(previous, now: now, cost: cost, limit: limit))
        }
    }
}
