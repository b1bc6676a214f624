#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A point in wall-clock time, in nanoseconds since the Unix epoch.
///
/// The limiter never reads a clock: every decision takes a `LimiterInstant` argument (STYLE "time is always
/// injected"), so tests drive it with a manual clock. Wall time rather than a monotonic clock is needed because
/// windows are aligned to the Unix epoch (SPEC §2 "Algorithms") and because several instances sharing Redis must
/// agree on the window boundaries.
public struct LimiterInstant: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Nanoseconds since 1970-01-01T00:00:00Z.
    public var nanosecondsSinceEpoch: Int64

    public init(nanosecondsSinceEpoch: Int64) {
        self.nanosecondsSinceEpoch = nanosecondsSinceEpoch
    }

    /// An instant a whole number of seconds after the epoch (handy in tests).
    public static func seconds(_ seconds: Int64) -> LimiterInstant {
        LimiterInstant(nanosecondsSinceEpoch: seconds * 1_000_000_000)
    }

    /// The current wall-clock time; for the proxy, which reads it once per request head.
    ///
    /// Logic in this module never calls this.
    public static func now() -> LimiterInstant {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return LimiterInstant(nanosecondsSinceEpoch: Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec))
    }

    public func advanced(by duration: Duration) -> LimiterInstant {
        LimiterInstant(nanosecondsSinceEpoch: self.nanosecondsSinceEpoch &+ duration.nanoseconds)
    }

    /// Whole seconds since the epoch, rounded down.
    public var unixSeconds: Int64 { self.nanosecondsSinceEpoch / 1_000_000_000 }

    public static func < (lhs: LimiterInstant, rhs: LimiterInstant) -> Bool {
        lhs.nanosecondsSinceEpoch < rhs.nanosecondsSinceEpoch
    }

    public var description: String { "\(self.nanosecondsSinceEpoch)ns" }
}

extension Duration {
    /// The duration in nanoseconds, saturating at `Int64.max`.
    public var nanoseconds: Int64 {
        let (seconds, attoseconds) = self.components
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? Int64.min : Int64.max }
        return scaled &+ attoseconds / 1_000_000_000
    }
}
