/// Parses durations written as in Go and nginx: `250ms`, `2s`, `5m`, `1h`, `1d`, and sums such as `1m30s`.
///
/// Units are `ms`, `s`, `m`, `h` and `d` (lower case); a bare `0` is zero. Whole numbers only: `1.5s` is an
/// error, write `1500ms`. The result has millisecond precision, which is all any Sluice timer needs.
enum DurationSyntax {
    static func parse(_ text: String) -> Result<Duration, ValueSyntaxError> {
        let scalars = Array(text.trimmingSpaces.unicodeScalars)
        let invalid = ValueSyntaxError("invalid duration '\(text)' (expected a number and a unit: 250ms, 2s, 5m, 1h, 1d)")
        if scalars == ["0"] { return .success(.zero) }
        guard !scalars.isEmpty else { return .failure(invalid) }
        var milliseconds: Int64 = 0
        var i = 0
        while i < scalars.count {
            var number: Int64 = 0
            let numberStart = i
            while i < scalars.count, let digit = scalars[i].asciiDigit {
                let (times, overflow1) = number.multipliedReportingOverflow(by: 10)
                let (sum, overflow2) = times.addingReportingOverflow(Int64(digit))
                guard !overflow1, !overflow2 else { return .failure(ValueSyntaxError("duration '\(text)' is too large")) }
                number = sum
                i += 1
            }
            guard i > numberStart else { return .failure(invalid) }
            let unitStart = i
            while i < scalars.count, scalars[i].properties.isAlphabetic { i += 1 }
            let unit = String(String.UnicodeScalarView(scalars[unitStart..<i]))
            let factor: Int64
            switch unit {
            case "ms": factor = 1
            case "s": factor = 1000
            case "m": factor = 60_000
            case "h": factor = 3_600_000
            case "d": factor = 86_400_000
            default: return .failure(invalid)
            }
            let (part, overflow1) = number.multipliedReportingOverflow(by: factor)
            let (total, overflow2) = milliseconds.addingReportingOverflow(part)
            guard !overflow1, !overflow2 else { return .failure(ValueSyntaxError("duration '\(text)' is too large")) }
            milliseconds = total
        }
        return .success(.milliseconds(milliseconds))
    }
}

extension Unicode.Scalar {
    /// The value of an ASCII digit, `nil` for anything else.
    var asciiDigit: Int? {
        ("0"..."9").contains(self) ? Int(self.value - 48) : nil
    }
}
