/// Integer helpers shared by the algorithm steps.
///
/// Products of a count and a period in nanoseconds overflow 64 bits for long periods (a day is 8.64e13 ns), so
/// the exact comparisons of the sliding window go through 128-bit intermediates instead of `Double`
/// (SPEC §2: "no rounding").
enum FixedPoint {
    /// ⌊a·b / c⌋ for non-negative inputs and `c > 0`; saturates at `Int64.max`.
    static func multiplyDivide(_ a: Int64, _ b: Int64, _ c: Int64) -> Int64 {
        precondition(a >= 0 && b >= 0 && c > 0)
        let product = UInt64(a).multipliedFullWidth(by: UInt64(b))
        if product.high >= UInt64(c) { return Int64.max }
        let (quotient, _) = UInt64(c).dividingFullWidth(product)
        return quotient > UInt64(Int64.max) ? Int64.max : Int64(quotient)
    }

    /// ⌈a·b / c⌉ for non-negative inputs and `c > 0`; saturates at `Int64.max`.
    static func multiplyDivideRoundingUp(_ a: Int64, _ b: Int64, _ c: Int64) -> Int64 {
        precondition(a >= 0 && b >= 0 && c > 0)
        let product = UInt64(a).multipliedFullWidth(by: UInt64(b))
        if product.high >= UInt64(c) { return Int64.max }
        let (quotient, remainder) = UInt64(c).dividingFullWidth(product)
        let rounded = remainder == 0 ? quotient : quotient &+ 1
        return rounded > UInt64(Int64.max) ? Int64.max : Int64(rounded)
    }

    /// ⌈a / b⌉ for `a >= 0`, `b > 0`.
    static func divideRoundingUp(_ a: Int64, _ b: Int64) -> Int64 {
        a / b + (a % b == 0 ? 0 : 1)
    }

    /// Saturating addition.
    static func add(_ a: Int64, _ b: Int64) -> Int64 {
        let (sum, overflow) = a.addingReportingOverflow(b)
        return overflow ? (b > 0 ? Int64.max : Int64.min) : sum
    }

    /// Saturating multiplication.
    static func multiply(_ a: Int64, _ b: Int64) -> Int64 {
        let (product, overflow) = a.multipliedReportingOverflow(by: b)
        return overflow ? ((a < 0) != (b < 0) ? Int64.min : Int64.max) : product
    }

    /// Nanoseconds to whole seconds, rounded up and at least 1 (SPEC §2 `Retry-After`).
    static func retryAfterSeconds(nanoseconds: Int64) -> Int {
        Int(max(1, self.divideRoundingUp(max(0, nanoseconds), 1_000_000_000)))
    }

    /// Nanoseconds to whole seconds, rounded up (0 stays 0); for `t=` and `X-RateLimit-Reset`.
    static func ceilSeconds(nanoseconds: Int64) -> Int {
        Int(self.divideRoundingUp(max(0, nanoseconds), 1_000_000_000))
    }
}
