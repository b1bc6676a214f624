/// `moving_window`: an exact log, at most COUNT units in any window of the period (SPEC §2 "Algorithms").
///
/// The key stores one timestamp per unit taken (ascending); those at or before `now − period` have left the
/// window. Exact but memory-hungry: up to COUNT timestamps per key, which is why it is not the default.
///
/// The algorithm is ``decide(_:now:cost:limit:)`` (read only) and ``record(_:now:cost:limit:)`` (in place), so a
/// store can keep each key's log in a buffer it reuses and decide without copying it; ``step(_:now:cost:limit:)``
/// is the pure form built from the two.
///
/// Decision where the spec is silent: units taken unconditionally by `count_when` commits keep the log at COUNT
/// entries at most (the oldest are dropped), bounding memory.
public enum MovingWindow {
    /// Timestamps of the units taken within the last period, oldest first.
    public struct State: Sendable, Hashable {
        public var log: [Int64]

        public init(log: [Int64]) {
            self.log = log
        }
    }

    /// What ``decide(_:now:cost:limit:)`` says about a request.
    public struct Check: Sendable {
        public var verdict: StepVerdict
        public var remaining: Int64
        public var resetNanoseconds: Int64
    }

    /// Decides a request of `cost` units against `limit` at `now` from `log`, without changing it.
    public static func decide(_ log: [Int64], now: LimiterInstant, cost: Int64, limit: LimitParameters) -> Check {
        let t = now.nanosecondsSinceEpoch
        let firstLive = self.firstLive(log, now: t, period: limit.periodNanoseconds)
        let used = Int64(log.count - firstLive)
        let newest = used > 0 ? log[log.count - 1] : t
        if used + cost <= limit.count {
            // Counted now, the request's own units leave last; a look without counting (cost 0) waits for the newest.
            let reset = cost > 0 ? limit.periodNanoseconds : (used > 0 ? newest + limit.periodNanoseconds - t : 0)
            return Check(verdict: .admitted, remaining: limit.count - used - cost, resetNanoseconds: reset)
        }
        // Enough of the oldest units must expire: the (used + cost − COUNT)-th oldest leaves the window last.
        let mustExpire = Int(used + cost - limit.count)
        let retry: Int64
        if cost > limit.count || mustExpire > Int(used) {
            retry = limit.periodNanoseconds  // never fits; the engine refuses it for good
        } else {
            retry = max(1, log[firstLive + mustExpire - 1] + limit.periodNanoseconds - t)
        }
        return Check(
            verdict: .denied(retryAfterNanoseconds: retry),
            remaining: limit.count - used,
            resetNanoseconds: newest + limit.periodNanoseconds - t
        )
    }

    /// Takes `cost` units at `now`: drops the timestamps that left the window and appends `cost` of `now`, keeping
    /// at most COUNT. Allocates nothing once the log has grown to its working size.
    public static func record(_ log: inout [Int64], now: LimiterInstant, cost: Int64, limit: LimitParameters) {
        let t = now.nanosecondsSinceEpoch
        let firstLive = self.firstLive(log, now: t, period: limit.periodNanoseconds)
        if firstLive > 0 { log.removeFirst(firstLive) }
        let units = Int(min(cost, limit.count))
        let overflow = log.count + units - Int(limit.count)
        if overflow > 0 { log.removeFirst(min(overflow, log.count)) }
        // Two event loops may decide for one key with instants read a moment apart, so `t` can be a little older
        // than the newest entry; stamping it as the newest keeps the log sorted and never shortens a unit's stay.
        let stamp = max(t, log.last ?? t)
        for _ in 0..<units { log.append(stamp) }
    }

    /// Decides a request of `cost` units against `limit` at `now`; pure.
    public static func step(_ state: State?, now: LimiterInstant, cost: Int64, limit: LimitParameters) -> LimitStep<State> {
        let log = state?.log ?? []
        let check = self.decide(log, now: now, cost: cost, limit: limit)
        var next = log
        if check.verdict.isAdmitted {
            self.record(&next, now: now, cost: cost, limit: limit)
        } else {
            self.record(&next, now: now, cost: 0, limit: limit)
        }
        return LimitStep(
            verdict: check.verdict,
            state: State(log: next),
            remaining: check.remaining,
            resetNanoseconds: check.resetNanoseconds
        )
    }

    /// Takes `cost` units whatever the remaining budget (`count_when` commits after the response).
    public static func consume(_ state: State?, now: LimiterInstant, cost: Int64, limit: LimitParameters) -> State {
        var log = state?.log ?? []
        self.record(&log, now: now, cost: cost, limit: limit)
        return State(log: log)
    }

    /// When a log whose newest timestamp is `newest` is empty again.
    static func idleAt(newest: Int64, limit: LimitParameters) -> Int64 {
        FixedPoint.add(newest, limit.periodNanoseconds)
    }

    /// The index of the oldest timestamp still inside the window `(t − period, t]` (binary search).
    private static func firstLive(_ log: [Int64], now t: Int64, period: Int64) -> Int {
        let cutoff = t - period
        var low = 0
        var high = log.count
        while low < high {
            let middle = (low + high) / 2
            if log[middle] <= cutoff { low = middle + 1 } else { high = middle }
        }
        return low
    }
}
