extension RateLimit {
    /// Parses one limit in Flask-Limiter's syntax (SPEC §2 "Limit strings").
    ///
    /// Accepted: `COUNT/PERIOD`, `COUNT per PERIOD`, `COUNT/N PERIOD`, `COUNT per N PERIOD`, where PERIOD is
    /// `second`, `minute`, `hour`, `day`, their plurals or `s`, `m`, `h`, `d`, case-insensitively, with any
    /// spaces between the parts (`10 / 2 hours`, `100/10s`). Errors carry the offset of the offending part
    /// within `text`.
    static func parse(_ text: String) -> Result<RateLimit, ValueSyntaxError> {
        let scalars = Array(text.unicodeScalars)
        let shown = text.trimmingSpaces
        var i = 0
        func skipSpaces() {
            while i < scalars.count, scalars[i] == " " || scalars[i] == "\t" { i += 1 }
        }
        /// Reads digits at `i`; `nil` if there are none, `-1` on overflow.
        func number() -> Int? {
            let start = i
            var value = 0
            var overflow = false
            while i < scalars.count, let digit = scalars[i].asciiDigit {
                let (times, o1) = value.multipliedReportingOverflow(by: 10)
                let (sum, o2) = times.addingReportingOverflow(digit)
                overflow = overflow || o1 || o2
                value = sum
                i += 1
            }
            if i == start { return nil }
            return overflow ? -1 : value
        }

        skipSpaces()
        let textStart = i
        let countStart = i
        guard let count = number() else {
            return .failure(ValueSyntaxError("invalid limit '\(shown)': expected a count first, as in 10/minute", at: countStart))
        }
        guard count >= 0 else { return .failure(ValueSyntaxError("invalid limit '\(shown)': count is too large", at: countStart)) }
        guard count >= 1 else {
            return .failure(ValueSyntaxError("invalid limit '\(shown)': count must be at least 1", at: countStart))
        }
        skipSpaces()
        if i < scalars.count, scalars[i] == "/" {
            i += 1
        } else if i + 3 <= scalars.count, String(String.UnicodeScalarView(scalars[i..<(i + 3)])).lowercased() == "per" {
            i += 3
        } else {
            return .failure(ValueSyntaxError("invalid limit '\(shown)': expected '/' or 'per' after the count", at: i))
        }
        skipSpaces()
        var multiplier = 1
        let multiplierStart = i
        if let n = number() {
            guard n >= 0 else {
                return .failure(ValueSyntaxError("invalid limit '\(shown)': period is too large", at: multiplierStart))
            }
            guard n >= 1 else {
                return .failure(ValueSyntaxError("invalid limit '\(shown)': period must be greater than 0", at: multiplierStart))
            }
            multiplier = n
            skipSpaces()
        }
        let unitStart = i
        while i < scalars.count, scalars[i].properties.isAlphabetic { i += 1 }
        let unit = String(String.UnicodeScalarView(scalars[unitStart..<i])).lowercased()
        let seconds: Int
        switch unit {
        case "second", "seconds", "s": seconds = 1
        case "minute", "minutes", "m": seconds = 60
        case "hour", "hours", "h": seconds = 3600
        case "day", "days", "d": seconds = 86400
        case "":
            return .failure(
                ValueSyntaxError("invalid limit '\(shown)': expected a period (second, minute, hour or day)", at: unitStart)
            )
        default:
            return .failure(
                ValueSyntaxError(
                    "invalid limit '\(shown)': unknown period '\(unit)' (expected second, minute, hour or day)",
                    at: unitStart
                )
            )
        }
        let unitEnd = i
        skipSpaces()
        guard i == scalars.count else {
            return .failure(ValueSyntaxError("invalid limit '\(shown)': unexpected text after the period", at: i))
        }
        let (period, overflow) = multiplier.multipliedReportingOverflow(by: seconds)
        guard !overflow else {
            return .failure(ValueSyntaxError("invalid limit '\(shown)': period is too large", at: multiplierStart))
        }
        let written = String(String.UnicodeScalarView(scalars[textStart..<unitEnd]))
        return .success(RateLimit(count: count, periodSeconds: period, text: written))
    }
}
