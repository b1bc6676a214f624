/// `token_bucket`: COUNT + burst tokens, full at first, refilled continuously at COUNT per period (SPEC §2).
///
/// Stored like ``GCRA`` as one timestamp: the instant the bucket will be full again (`fullAt`). With `T = period /
/// COUNT` per token and capacity `C = COUNT + burst`, the tokens available at `now` are
/// `C − (max(fullAt, now) − now) / T`, so a request of `cost` units fits when
/// `max(fullAt, now) + cost × T − now ≤ C × T`. Unlike GCRA's tolerance check, the whole cost must be available, so
/// the bucket never goes into debt.
public enum TokenBucket {
    /// When the bucket of one key is full again, nanoseconds since the epoch.
    public struct State: Sendable, Hashable {
        public var fullAt: Int64

        public init(fullAt: Int64) {
            self.fullAt = fullAt
        }
    }

    /// Decides a request of `cost` units against `limit` at `now`; pure.
    public static func step(_ state: State?, now: LimiterInstant, cost: Int64, limit: LimitParameters) -> LimitStep<State> {
        let t = now.nanosecondsSinceEpoch
        let interval = GCRA.emissionInterval(limit)
        let capacitySpan = FixedPoint.multiply(FixedPoint.add(limit.count, limit.burst), interval)
        let fullAt = max(state?.fullAt ?? t, t)
        let next = FixedPoint.add(fullAt, FixedPoint.multiply(cost, interval))
        let excess = next - t - capacitySpan
        if excess <= 0 {
            return LimitStep(
                verdict: .admitted,
                state: State(fullAt: next),
                remaining: -excess / interval,
                resetNanoseconds: next - t
            )
        }
        return LimitStep(
            verdict: .denied(retryAfterNanoseconds: excess),
            state: State(fullAt: fullAt),
            remaining: (capacitySpan - (fullAt - t)) / interval,
            resetNanoseconds: fullAt - t
        )
    }

    /// Takes `cost` units whatever the remaining budget (`count_when` commits after the response).
    public static func consume(_ state: State?, now: LimiterInstant, cost: Int64, limit: LimitParameters) -> State {
        let t = now.nanosecondsSinceEpoch
        let fullAt = max(state?.fullAt ?? t, t)
        return State(fullAt: FixedPoint.add(fullAt, FixedPoint.multiply(cost, GCRA.emissionInterval(limit))))
    }
}

extension TokenBucket.State {
    /// Packed for a store table: idle once the bucket is full.
    init(packed: PackedState) {
        self.init(fullAt: packed.idleAt)
    }

    var packed: PackedState { PackedState(idleAt: self.fullAt) }
}
