import Synchronization

/// The last few minutes of ``SluiceMetrics`` totals, as what happened in each sampling interval.
///
/// The status page charts request rates without any work per request beyond the counters that exist anyway: the
/// admin listener reads ``SluiceMetrics/totals()`` every ``interval`` and stores the difference to the previous
/// reading here. Bounded: the oldest interval is dropped once ``capacity`` are kept (5 minutes at 2 s).
///
/// - note: Thread-safe. ``record(_:atMilliseconds:)`` runs on a timer, ``samples`` per status request.
public final class RateHistory: Sendable {
    /// What was counted in one interval.
    public struct Sample: Sendable, Equatable {
        /// Unix time in milliseconds at the end of the interval.
        public var endMilliseconds: Int64
        /// The interval's length in milliseconds (a timer on a busy loop fires a little late).
        public var durationMilliseconds: Int64
        public var counts: MetricTotals
    }

    private struct State {
        var previous: (milliseconds: Int64, totals: MetricTotals)?
        var samples: [Sample] = []
    }

    /// How often the admin listener samples. Defaults to 2 s.
    public let interval: Duration
    /// Samples kept. Defaults to 150 (5 minutes at 2 s).
    public let capacity: Int
    private let state = Mutex(State())

    public init(interval: Duration = .seconds(2), capacity: Int = 150) {
        self.interval = interval
        self.capacity = max(1, capacity)
    }

    /// Stores what was counted since the previous call. The first call only sets the baseline; a clock that went
    /// backwards (or did not move) starts a new baseline too.
    public func record(_ totals: MetricTotals, atMilliseconds now: Int64) {
        self.state.withLock { state in
            defer { state.previous = (now, totals) }
            guard let previous = state.previous, now > previous.milliseconds else { return }
            state.samples.append(
                Sample(
                    endMilliseconds: now,
                    durationMilliseconds: now - previous.milliseconds,
                    counts: totals.subtracting(previous.totals)
                )
            )
            if state.samples.count > self.capacity {
                state.samples.removeFirst(state.samples.count - self.capacity)
            }
        }
    }

    /// The kept samples, oldest first.
    public var samples: [Sample] {
        self.state.withLock { $0.samples }
    }
}
