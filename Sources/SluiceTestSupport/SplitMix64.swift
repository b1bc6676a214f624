/// SplitMix64 (Steele, Lea & Flood 2014): tiny and the same on every platform and toolchain (unlike the standard
/// library's `random(in:using:)` algorithms, which may change), so a printed seed replays anywhere.
public struct SplitMix64: Sendable {
    public var state: UInt64

    public init(seed: UInt64) {
        self.state = seed
    }

    public mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in `0..<n` (the modulo bias is negligible for the small `n` used here).
    public mutating func below(_ n: Int64) -> Int64 {
        Int64(self.next() % UInt64(n))
    }

    public mutating func int(_ range: ClosedRange<Int64>) -> Int64 {
        range.lowerBound + self.below(range.upperBound - range.lowerBound + 1)
    }

    public mutating func percent() -> Int64 {
        self.below(100)
    }

    public mutating func pick<T>(_ values: [T]) -> T {
        values[Int(self.below(Int64(values.count)))]
    }
}
