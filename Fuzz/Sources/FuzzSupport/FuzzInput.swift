/// The bytes libFuzzer hands a target, and the ways of feeding them that a target compares.
public enum FuzzInput {
    /// A copy of libFuzzer's input.
    public static func bytes(_ data: UnsafePointer<UInt8>?, _ size: Int) -> [UInt8] {
        guard let data, size > 0 else { return [] }
        return Array(UnsafeBufferPointer(start: data, count: size))
    }

    /// How `count` bytes are fed, as piece sizes in order: one byte at a time, then three splits into random pieces
    /// (up to 3, 16 and 200 bytes long) drawn from a generator seeded with the input itself, so a crash file replays
    /// the same splits. All at once is `[count]`, which the caller takes as the reference.
    public static func splits(of bytes: [UInt8]) -> [[Int]] {
        let count = bytes.count
        guard count > 1 else { return [] }
        var plans: [[Int]] = [Array(repeating: 1, count: count)]
        var random = SplitMix64(seed: Self.fnv1a(bytes))
        for longest in [3, 16, 200] {
            var pieces: [Int] = []
            var left = count
            while left > 0 {
                let piece = 1 + Int(random.next() % UInt64(min(left, longest)))
                pieces.append(piece)
                left -= piece
            }
            plans.append(pieces)
        }
        return plans
    }

    /// 64-bit FNV-1a.
    public static func fnv1a(_ bytes: [UInt8]) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01B3
        }
        return hash
    }

    /// `bytes` as text for a failure message: CR, LF and every byte outside printable ASCII escaped.
    public static func escaped(_ bytes: some Sequence<UInt8>) -> String {
        let hex: [Character] = Array("0123456789ABCDEF")
        var text = ""
        for b in bytes {
            switch b {
            case 0x0D: text += "\\r"
            case 0x0A: text += "\\n"
            case 0x5C: text += "\\\\"
            case 0x20...0x7E: text.append(Character(UnicodeScalar(b)))
            default: text += "\\x" + String(hex[Int(b >> 4)]) + String(hex[Int(b & 0xF)])
            }
        }
        return text
    }
}

/// SplitMix64 (Steele, Lea & Flood 2014), as in SluiceTestSupport: the same numbers on every platform.
public struct SplitMix64 {
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

    /// Uniform enough in `0..<n`.
    public mutating func below(_ n: Int) -> Int {
        Int(self.next() % UInt64(n))
    }
}
