/// Durations in the YAML file's syntax (`250ms`, `2s`, `5m`, `1h`), for `/config`.
enum DurationText {
    /// The largest unit that divides `duration` exactly; sub-millisecond remainders are rounded to the millisecond.
    static func format(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        let milliseconds = seconds * 1000 + (attoseconds + 500_000_000_000_000) / 1_000_000_000_000_000
        if milliseconds == 0 { return "0s" }
        if milliseconds % 1000 != 0 { return "\(milliseconds)ms" }
        let wholeSeconds = milliseconds / 1000
        if wholeSeconds % 3600 == 0 { return "\(wholeSeconds / 3600)h" }
        if wholeSeconds % 60 == 0 { return "\(wholeSeconds / 60)m" }
        return "\(wholeSeconds)s"
    }
}
