/// `fixed_window`: one counter per window aligned to the Unix epoch (SPEC §2 "Algorithms").
///
/// The window containing `now` starts at `now - now mod period`; its counter resets when the window ends. Simple
/// and cheap, but a client can spend two windows' worth around a boundary (which `sliding_window` smooths out).
public enum FixedWindow {
    /// The counter of one key: the start of the window it counts and the units taken in it.
    public struct State: Sendable, Hashable {
        /// Start of the counted window, nanoseconds since the epoch.
        public var windowStart: Int64
        /// Units taken in that window.
        public var used: Int64

        public init(windowStart: Int64, used: Int64) {
            self.windowStart = windowStart
            self.used = used
        }
    }

    /// Decides a request of `cost` units against `limit` at `now`; pure.
    public static func step(_ state: State?, now: LimiterInstant, cost: Int64, limit: LimitParameters) -> LimitStep<State> {
        let period = limit.periodNanoseconds
        let t = max(0, now.nanosecondsSinceEpoch)
        var windowStart = t - t % period
        var used: Int64 = 0
        if let state {
            if state.windowStart == windowStart {
                used = state.used
            } else if state.windowStart > windowStart {
                // The clock went back: keep counting the newer window (never hand out a fresh budget).
                windowStart = state.windowStart
                used = state.used
            }
        }
        let reset = windowStart + period - t
        let (after, overflow) = used.addingReportingOverflow(cost)
        if !overflow && after <= limit.count {
            return LimitStep(
                verdict: .admitted,
                state: State(windowStart: windowStart, used: after),
                remaining: limit.count - after,
                resetNanoseconds: reset
            )
        }
        // The next window starts empty, so any cost ≤ COUNT fits then.
        return LimitStep(
            verdict: .denied(retryAfterNanoseconds: reset),
            state: State(windowStart: windowStart, used: used),
            remaining: limit.count - used,
            resetNanoseconds: reset
        )
    }

    /// Takes `cost` units whatever the remaining budget (`count_when` commits after the response).
    public static func consume(_ state: State?, now: LimiterInstant, cost: Int64, limit: LimitParameters) -> State {
        var next = self.step(state, now: now, cost: 0, limit: limit).state
        next.used = FixedPoint.add(next.used, cost)
        return next
    }
}

extension FixedWindow.State {
    /// Packed for a store table: idle once the window has ended.
    init(packed: PackedState, limit: LimitParameters) {
        self.init(windowStart: packed.idleAt - limit.periodNanoseconds, used: packed.first)
    }

    func packed(limit: LimitParameters) -> PackedState {
        PackedState(idleAt: FixedPoint.add(self.windowStart, limit.periodNanoseconds), first: self.used)
    }
}
