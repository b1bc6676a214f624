/// `gcra`: the generic cell rate algorithm, one timestamp per key (SPEC §2 "Algorithms").
///
/// The emission interval is `T = period / COUNT` (rounded up to the microsecond, so the rate is never exceeded) and
/// the tolerance `τ = burst × T`. The key stores its theoretical arrival time (TAT). A request of `cost` units is
/// admitted when `TAT − now ≤ τ`, and then moves the TAT to `max(TAT, now) + cost × T`. So 1 + burst requests fit
/// back to back and then one every `T`, like nginx `limit_req burst=` and redis-cell.
///
/// With `delay` (nginx `delay=`): a request refused now but that would be admitted within `delay` is counted now
/// and answered ``StepVerdict/delayed(nanoseconds:)``: the proxy holds it that long and forwards it.
public enum GCRA {
    /// The theoretical arrival time of one key, nanoseconds since the epoch.
    public struct State: Sendable, Hashable {
        public var theoreticalArrival: Int64

        public init(theoreticalArrival: Int64) {
            self.theoreticalArrival = theoreticalArrival
        }
    }

    /// Nanoseconds between two requests at the sustained rate: `period / COUNT` rounded up to the microsecond.
    ///
    /// Microseconds because the Redis store computes in microseconds (Lua numbers are doubles, exact only to 2^53,
    /// and a Unix time in nanoseconds is not), and both stores must decide alike; rounding up keeps the rate at
    /// or under COUNT per period.
    static func emissionInterval(_ limit: LimitParameters) -> Int64 {
        max(1, FixedPoint.divideRoundingUp(limit.periodNanoseconds, FixedPoint.multiply(limit.count, 1000))) * 1000
    }

    /// Decides a request of `cost` units against `limit` at `now`; pure.
    public static func step(_ state: State?, now: LimiterInstant, cost: Int64, limit: LimitParameters) -> LimitStep<State> {
        let t = now.nanosecondsSinceEpoch
        let interval = self.emissionInterval(limit)
        let tolerance = FixedPoint.multiply(limit.burst, interval)
        let tat = max(state?.theoreticalArrival ?? t, t)
        let next = State(theoreticalArrival: FixedPoint.add(tat, FixedPoint.multiply(cost, interval)))
        let wait = tat - tolerance - t
        if wait <= 0 {
            return LimitStep(
                verdict: .admitted,
                state: next,
                remaining: self.remaining(next, now: t, interval: interval, tolerance: tolerance),
                resetNanoseconds: next.theoreticalArrival - t
            )
        }
        if wait <= limit.delayNanoseconds {
            return LimitStep(
                verdict: .delayed(nanoseconds: wait),
                state: next,
                remaining: 0,
                resetNanoseconds: next.theoreticalArrival - t
            )
        }
        let current = State(theoreticalArrival: tat)
        return LimitStep(
            verdict: .denied(retryAfterNanoseconds: wait),
            state: current,
            remaining: 0,
            resetNanoseconds: tat - t
        )
    }

    /// Takes `cost` units whatever the remaining budget (`count_when` commits after the response).
    public static func consume(_ state: State?, now: LimiterInstant, cost: Int64, limit: LimitParameters) -> State {
        let t = now.nanosecondsSinceEpoch
        let tat = max(state?.theoreticalArrival ?? t, t)
        return State(theoreticalArrival: FixedPoint.add(tat, FixedPoint.multiply(cost, self.emissionInterval(limit))))
    }

    /// How many more single requests would be admitted right now.
    private static func remaining(_ state: State, now t: Int64, interval: Int64, tolerance: Int64) -> Int64 {
        let slack = tolerance - (state.theoreticalArrival - t)
        return slack < 0 ? 0 : slack / interval + 1
    }
}

extension GCRA.State {
    /// Packed for a store table: idle once the theoretical arrival time has passed.
    init(packed: PackedState) {
        self.init(theoreticalArrival: packed.idleAt)
    }

    var packed: PackedState { PackedState(idleAt: self.theoreticalArrival) }
}
