/// The name of one counter in a store: a 128-bit digest of the rule's namespace, the limit and the request's key.
///
/// A fixed-size digest instead of the readable key text means deciding for an existing key allocates nothing and a
/// tracked key costs 16 bytes whatever its parts (an API key header may be hundreds of bytes). The digest is
/// SipHash-1-3 with a 128-bit output (``KeyHasher``) keyed by the store's ``RateLimitStore/keySeed``: the memory
/// store picks a random seed per process, so nobody outside can aim two keys at one counter or at one hash bucket;
/// a shared store (Redis) uses a fixed seed so every instance names a key alike. At 128 bits, two keys meeting by
/// chance is not a concern (about 1 in 10^20 among a billion keys).
public struct StorageKey: Hashable, Sendable, CustomStringConvertible {
    public var high: UInt64
    public var low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// 32 lowercase hex digits (Redis key names, logs).
    public var description: String {
        func hex(_ value: UInt64) -> String {
            let digits = String(value, radix: 16)
            return String(repeating: "0", count: 16 - digits.count) + digits
        }
        return hex(self.high) + hex(self.low)
    }

    /// The first 12 hex digits (48 bits): the key hash the access log (`key_hash`) and the status page show.
    ///
    /// Long enough to tell apart every key an operator looks at on one screen or greps for in a day of logs, short
    /// enough to read aloud. Built without allocating (a 12-byte string is stored inline).
    public var displayHash: String {
        let digits = self.high >> 16
        return String(unsafeUninitializedCapacity: 12) { buffer in
            for index in 0..<12 {
                let nibble = UInt8(truncatingIfNeeded: digits >> UInt64((11 - index) * 4)) & 0xf
                buffer[index] = nibble < 10 ? 0x30 + nibble : 0x57 + nibble
            }
            return 12
        }
    }

    public func hash(into hasher: inout Hasher) {
        // Already a keyed hash: one word is as good as both.
        hasher.combine(self.low)
    }
}

/// Streaming SipHash-1-3 with a 128-bit output (the SipHash paper's 128-bit variant, with 1 compression and 3
/// finalisation rounds like Swift's own `Hasher`).
///
/// A value type that can be copied mid-stream: ``RateLimiter`` absorbs a rule's namespace once per configuration
/// load, then per request copies that state and absorbs only the key parts and the limit.
public struct KeyHasher: Sendable {
    private var v0: UInt64
    private var v1: UInt64
    private var v2: UInt64
    private var v3: UInt64
    /// Bytes not yet absorbed (little-endian, `tailCount` of them).
    private var tail: UInt64 = 0
    private var tailCount: Int = 0
    private var length: UInt64 = 0

    /// A hasher keyed by the 128-bit `seed`.
    public init(seed: StorageKey) {
        let k0 = seed.high
        let k1 = seed.low
        self.v0 = k0 ^ 0x736f_6d65_7073_6575
        self.v1 = k1 ^ 0x646f_7261_6e64_6f6d ^ 0xee
        self.v2 = k0 ^ 0x6c79_6765_6e65_7261
        self.v3 = k1 ^ 0x7465_6462_7974_6573
    }

    @inline(__always)
    private mutating func round() {
        self.v0 &+= self.v1
        self.v1 = self.v1.rotatedLeft(13)
        self.v1 ^= self.v0
        self.v0 = self.v0.rotatedLeft(32)
        self.v2 &+= self.v3
        self.v3 = self.v3.rotatedLeft(16)
        self.v3 ^= self.v2
        self.v0 &+= self.v3
        self.v3 = self.v3.rotatedLeft(21)
        self.v3 ^= self.v0
        self.v2 &+= self.v1
        self.v1 = self.v1.rotatedLeft(17)
        self.v1 ^= self.v2
        self.v2 = self.v2.rotatedLeft(32)
    }

    @inline(__always)
    private mutating func compress(_ word: UInt64) {
        self.v3 ^= word
        self.round()
        self.v0 ^= word
    }

    @inline(__always)
    public mutating func combine(byte: UInt8) {
        self.tail |= UInt64(byte) << UInt64(self.tailCount * 8)
        self.tailCount += 1
        self.length &+= 1
        if self.tailCount == 8 {
            self.compress(self.tail)
            self.tail = 0
            self.tailCount = 0
        }
    }

    /// Absorbs the 8 bytes of `word` (little-endian).
    @inline(__always)
    public mutating func combine(_ word: UInt64) {
        if self.tailCount == 0 {
            self.compress(word)
            self.length &+= 8
            return
        }
        var value = word
        for _ in 0..<8 {
            self.combine(byte: UInt8(truncatingIfNeeded: value))
            value >>= 8
        }
    }

    public mutating func combine(bytes: UnsafeRawBufferPointer) {
        var index = 0
        let count = bytes.count
        // Fill the tail up to a word boundary, then whole words, then the rest.
        while self.tailCount != 0 && index < count {
            self.combine(byte: bytes[index])
            index += 1
        }
        while count - index >= 8 {
            self.compress(bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self).littleEndian)
            self.length &+= 8
            index += 8
        }
        while index < count {
            self.combine(byte: bytes[index])
            index += 1
        }
    }

    /// Absorbs the UTF-8 bytes of `text` preceded by their count, so that no sequence of values can spell
    /// another (`"ab" + "c"` ≠ `"a" + "bc"`).
    public mutating func combine<S: StringProtocol>(lengthPrefixed text: S) {
        self.combine(UInt64(text.utf8.count))
        let done: Void? = text.utf8.withContiguousStorageIfAvailable { self.combine(bytes: UnsafeRawBufferPointer($0)) }
        if done == nil {
            // Bridged or non-contiguous text: byte by byte.
            for byte in text.utf8 { self.combine(byte: byte) }
        }
    }

    public consuming func finalize() -> StorageKey {
        self.compress((self.length & 0xff) << 56 | self.tail)
        self.v2 ^= 0xee
        self.round()
        self.round()
        self.round()
        let high = self.v0 ^ self.v1 ^ self.v2 ^ self.v3
        self.v1 ^= 0xdd
        self.round()
        self.round()
        self.round()
        let low = self.v0 ^ self.v1 ^ self.v2 ^ self.v3
        return StorageKey(high: high, low: low)
    }
}

extension UInt64 {
    @inline(__always)
    fileprivate func rotatedLeft(_ count: UInt64) -> UInt64 {
        (self << count) | (self >> (64 - count))
    }
}
