/// `sliding_window` (the default): epoch-aligned windows with a weighted previous count (SPEC §2 "Algorithms").
///
/// estimate = previous × (1 − elapsed fraction of the current window) + current; a request of `cost` units is
/// admitted while estimate + cost ≤ COUNT, with no rounding. The comparison is done exactly in integers:
/// `previous × (period − elapsed) / period` is a rational number, and for an integer bound `k`,
/// `x ≤ k ⇔ ⌈x⌉ ≤ k`, so the weighted previous count is rounded *up* and the rest is integer arithmetic
/// (with 128-bit products, see ``FixedPoint``).
///
/// Decision where the spec is silent: the `t=` reset reported in headers is the end of the current window, as for
/// `fixed_window`.
public enum SlidingWindow {
    /// The counters of one key: the current window's start, its count and the previous window's count.
    public struct State: Sendable, Hashable {
        public var windowStart: Int64
        public var current: Int64
        public var previous: Int64

        public init(windowStart: Int64, current: Int64, previous: Int64) {
            self.windowStart = windowStart
            self.current = current
            self.previous = previous
        }
    }

    /// Decides a request of `cost` units against `limit` at `now`; pure.
    public static func step(_ state: State?, now: LimiterInstant, cost: Int64, limit: LimitParameters) -> LimitStep<State> {
        let period = limit.periodNanoseconds
        let count = limit.count
        let t = max(0, now.nanosecondsSinceEpoch)
        let rolled = self.roll(state, to: t, period: period)
        let elapsed = max(0, min(period, t - rolled.windowStart))
        let weightedPrevious = FixedPoint.multiplyDivideRoundingUp(rolled.previous, period - elapsed, period)
        let untilWindowEnd = rolled.windowStart + period - t
        let used = FixedPoint.add(weightedPrevious, rolled.current)
        let after = FixedPoint.add(used, cost)
        if after <= count {
            var next = rolled
            next.current += cost
            return LimitStep(verdict: .admitted, state: next, remaining: count - after, resetNanoseconds: untilWindowEnd)
        }
        return LimitStep(
            verdict: .denied(retryAfterNanoseconds: self.retryAfter(rolled, now: t, cost: cost, count: count, period: period)),
            state: rolled,
            remaining: count - used,
            resetNanoseconds: untilWindowEnd
        )
    }

    /// Takes `cost` units whatever the remaining budget (`count_when` commits after the response).
    public static func consume(_ state: State?, now: LimiterInstant, cost: Int64, limit: LimitParameters) -> State {
        var next = self.roll(state, to: max(0, now.nanosecondsSinceEpoch), period: limit.periodNanoseconds)
        next.current = FixedPoint.add(next.current, cost)
        return next
    }

    /// The state seen from the window containing `t`.
    static func roll(_ state: State?, to t: Int64, period: Int64) -> State {
        let windowStart = t - t % period
        guard let state else { return State(windowStart: windowStart, current: 0, previous: 0) }
        if state.windowStart >= windowStart { return state }  // same window, or the clock went back
        if state.windowStart == windowStart - period {
            return State(windowStart: windowStart, current: 0, previous: state.current)
        }
        return State(windowStart: windowStart, current: 0, previous: 0)
    }

    /// Nanoseconds until `estimate + cost ≤ count` (the smallest such wait, exact to the nanosecond).
    static func retryAfter(_ state: State, now t: Int64, cost: Int64, count: Int64, period: Int64) -> Int64 {
        let elapsed = t - state.windowStart
        if cost > count { return state.windowStart + 2 * period - t }  // never fits; the engine refuses it for good
        let room = count - cost - state.current
        if room >= 0 {
            // Only the previous window's weight is in the way: wait until
            // previous × (period − e) ≤ room × period, i.e. e ≥ period − ⌊room × period / previous⌋.
            let allowedRemainingSpan = FixedPoint.multiplyDivide(room, period, state.previous)
            return max(1, period - allowedRemainingSpan - elapsed)
        }
        // The current window alone is too full: in the next one it becomes `previous` and must decay until
        // current × (period − e) ≤ (count − cost) × period.
        let allowedRemainingSpan = FixedPoint.multiplyDivide(count - cost, period, state.current)
        return (period - elapsed) + (period - allowedRemainingSpan)
    }
}

extension SlidingWindow.State {
    /// Packed for a store table: idle once the window after the current one has ended (then both counts are 0).
    init(packed: PackedState, limit: LimitParameters) {
        self.init(
            windowStart: packed.idleAt - 2 * limit.periodNanoseconds,
            current: packed.first,
            previous: packed.second
        )
    }

    func packed(limit: LimitParameters) -> PackedState {
        PackedState(
            idleAt: FixedPoint.add(self.windowStart, FixedPoint.multiply(2, limit.periodNanoseconds)),
            first: self.current,
            second: self.previous
        )
    }
}
