/// `moving_window`: an exact log, at most COUNT units in any window of the period (SPEC §2 "Algorithms").
///
/// The key stores one timestamp per unit taken (ascending), pruned of those older than one period. Exact but
/// memory-hungry: up to COUNT timestamps per key, which is why it is not the default.
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

    /// Decides a request of `cost` units against `limit` at `now`; pure.
    public static func step(_ state: State?, now: LimiterInstant, cost: Int64, limit: LimitParameters) -> LimitStep<State> {
        let t = now.nanosecondsSinceEpoch
        var log = self.pruned(state?.log ?? [], now: t, period: limit.periodNanoseconds)
        let used = Int64(log.count)
        if used + cost <= limit.count {
            log.append(contentsOf: repeatElement(t, count: Int(cost)))
            return LimitStep(
                verdict: .admitted,
                state: State(log: log),
                remaining: limit.count - Int64(log.count),
                resetNanoseconds: (log.last ?? t) + limit.periodNanoseconds - t
            )
        }
        // Enough of the oldest units must expire: the (used + cost − COUNT)-th oldest leaves the window last.
        let mustExpire = Int(used + cost - limit.count)
        let retry: Int64
        if cost > limit.count || mustExpire > log.count {
            retry = limit.periodNanoseconds  // never fits; the engine refuses it for good
        } else {
            retry = max(1, log[mustExpire - 1] + limit.periodNanoseconds - t)
        }
        return LimitStep(
            verdict: .denied(retryAfterNanoseconds: retry),
            state: State(log: log),
            remaining: limit.count - used,
            resetNanoseconds: (log.last ?? t) + limit.periodNanoseconds - t
        )
    }

    /// Takes `cost` units whatever the remaining budget (`count_when` commits after the response).
    public static func consume(_ state: State?, now: LimiterInstant, cost: Int64, limit: LimitParameters) -> State {
        let t = now.nanosecondsSinceEpoch
        var log = self.pruned(state?.log ?? [], now: t, period: limit.periodNanoseconds)
        log.append(contentsOf: repeatElement(t, count: Int(min(cost, limit.count))))
        if log.count > Int(limit.count) { log.removeFirst(log.count - Int(limit.count)) }
        return State(log: log)
    }

    private static func pruned(_ log: [Int64], now t: Int64, period: Int64) -> [Int64] {
        // Entries at or before t − period have left the window.
        let firstLive = log.firstIndex { $0 > t - period } ?? log.endIndex
        if firstLive == log.startIndex { return log }
        var kept = log
        kept.removeFirst(firstLive)
        return kept
    }
}
