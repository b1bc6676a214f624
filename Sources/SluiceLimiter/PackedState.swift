import SluiceConfig

/// One counter's state in three words, the same layout for every algorithm, so a store keeps all its keys in one
/// flat table without boxing.
///
/// `idleAt` is the instant from which the state means the same as no state at all (a window has passed, a bucket is
/// full again, a block has ended): a store may forget the key then, which is how idle keys expire on their own.
/// Each algorithm's file says how its state packs. The moving window's log does not fit: a store keeps it beside the
/// table and packs only its `idleAt`.
public struct PackedState: Sendable, Hashable {
    public var idleAt: Int64
    public var first: Int64
    public var second: Int64

    public init(idleAt: Int64, first: Int64 = 0, second: Int64 = 0) {
        self.idleAt = idleAt
        self.first = first
        self.second = second
    }

    /// A `block_for` penalty: every request of the key is refused until `until` (SPEC §2).
    public static func blocked(until: LimiterInstant) -> PackedState {
        PackedState(idleAt: until.nanosecondsSinceEpoch)
    }

    /// The outcome of ``step(_:state:now:cost:limit:)``.
    public struct Step: Sendable {
        public var verdict: StepVerdict
        public var remaining: Int64
        public var resetNanoseconds: Int64
        /// The state to store if the request is counted.
        public var state: PackedState
    }

    /// Runs the step of `algorithm` on a packed state (every algorithm but `moving_window`, whose log lives
    /// outside the table).
    public static func step(
        _ algorithm: Algorithm,
        state: PackedState?,
        now: LimiterInstant,
        cost: Int64,
        limit: LimitParameters
    ) -> Step {
        switch algorithm {
        case .fixedWindow:
            let r = FixedWindow.step(state.map { .init(packed: $0, limit: limit) }, now: now, cost: cost, limit: limit)
            return Step(verdict: r.verdict, remaining: r.remaining, resetNanoseconds: r.resetNanoseconds, state: r.state.packed(limit: limit))
        case .slidingWindow:
            let r = SlidingWindow.step(state.map { .init(packed: $0, limit: limit) }, now: now, cost: cost, limit: limit)
            return Step(verdict: r.verdict, remaining: r.remaining, resetNanoseconds: r.resetNanoseconds, state: r.state.packed(limit: limit))
        case .tokenBucket:
            let r = TokenBucket.step(state.map { .init(packed: $0) }, now: now, cost: cost, limit: limit)
            return Step(verdict: r.verdict, remaining: r.remaining, resetNanoseconds: r.resetNanoseconds, state: r.state.packed)
        case .gcra:
            let r = GCRA.step(state.map { .init(packed: $0) }, now: now, cost: cost, limit: limit)
            return Step(verdict: r.verdict, remaining: r.remaining, resetNanoseconds: r.resetNanoseconds, state: r.state.packed)
        case .movingWindow:
            preconditionFailure("moving_window keeps its log outside packed states")
        }
    }

    /// Takes `cost` units unconditionally (`count_when` commits); not for `moving_window`.
    public static func consume(
        _ algorithm: Algorithm,
        state: PackedState?,
        now: LimiterInstant,
        cost: Int64,
        limit: LimitParameters
    ) -> PackedState {
        switch algorithm {
        case .fixedWindow:
            FixedWindow.consume(state.map { .init(packed: $0, limit: limit) }, now: now, cost: cost, limit: limit).packed(limit: limit)
        case .slidingWindow:
            SlidingWindow.consume(state.map { .init(packed: $0, limit: limit) }, now: now, cost: cost, limit: limit).packed(limit: limit)
        case .tokenBucket:
            TokenBucket.consume(state.map { .init(packed: $0) }, now: now, cost: cost, limit: limit).packed
        case .gcra:
            GCRA.consume(state.map { .init(packed: $0) }, now: now, cost: cost, limit: limit).packed
        case .movingWindow:
            preconditionFailure("moving_window keeps its log outside packed states")
        }
    }
}
