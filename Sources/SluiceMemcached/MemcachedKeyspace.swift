import NIOCore
import SluiceConfig
import SluiceLimiter

/// How counters are named, stored and expired in memcached.
///
/// - A counter's **name** is the prefix and its digest in 32 hex digits (`sluice:0f3a...`); the ketama continuum
///   places it by that name, so every key of one counter (its windows) lives on one server.
/// - `fixed_window` and `sliding_window` keep one decimal counter per window, `NAME:N` with `N` the window's number
///   since the epoch (`ma` increments it): a new window starts at 0 without a read, and old windows expire.
/// - `token_bucket` and `gcra` keep their one timestamp (``PackedState/idleAt``, nanoseconds) as 8 bytes
///   little-endian under `NAME`; `moving_window` its log, 8 bytes per unit; a `block_for` penalty key the block's
///   end. Those are updated with compare-and-swap.
/// - Every key is written with a TTL that ends one second after its state stops meaning anything (memcached counts
///   whole seconds), so nothing outlives its window. TTLs above 30 days are sent as a Unix time, as memcached reads
///   them.
struct MemcachedKeyspace: Sendable {
    let prefix: String
    /// Whether every key under `prefix` is one memcached takes (printable ASCII, at most 250 bytes with the longest
    /// digest and window number): then decisions write keys from their parts (``MemcachedKeyName``); else they go
    /// the way of every other command, which refuses them (``MemcachedCommand/problem``).
    let hasValidPrefix: Bool

    init(prefix: String) {
        self.prefix = prefix
        self.hasValidPrefix = prefix.utf8.count + 32 + 21 <= 250 && prefix.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }
    }

    /// ``window(_:windowStart:period:)`` as parts.
    func windowName(_ key: StorageKey, windowStart: Int64, period: Int64) -> MemcachedKeyName {
        MemcachedKeyName(key: key, window: windowStart / period)
    }

    /// `prefix` + the digest in hex.
    func name(_ key: StorageKey) -> String {
        self.prefix + key.description
    }

    /// The counter of the window starting at `windowStart` (nanoseconds, a multiple of `period`).
    func window(_ key: StorageKey, windowStart: Int64, period: Int64) -> String {
        self.name(key) + ":" + String(windowStart / period)
    }

    /// The `T` (or `N`) token value: seconds from `now` until `until`, plus one, at least 1.
    static func ttl(until: Int64, now: LimiterInstant) -> Int64 {
        let seconds = max(1, (max(0, until - now.nanosecondsSinceEpoch) + 999_999_999) / 1_000_000_000 + 1)
        // memcached reads a TTL above 30 days as a Unix time.
        return seconds > 2_592_000 ? now.unixSeconds + seconds : seconds
    }

    /// The start of the window holding `now`.
    static func windowStart(_ now: LimiterInstant, period: Int64) -> Int64 {
        let t = max(0, now.nanosecondsSinceEpoch)
        return t - t % period
    }

    // MARK: Values

    /// Timestamps as 8 bytes each, little-endian.
    static func encode(_ stamps: [Int64]) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(stamps.count * 8)
        for stamp in stamps { buffer.writeInteger(stamp, endianness: .little) }
        return buffer
    }

    /// The timestamps of a value; `nil` when its length is not a multiple of 8 (not written by Sluice).
    static func decode(_ value: ByteBuffer) -> [Int64]? {
        guard value.readableBytes % 8 == 0 else { return nil }
        var value = value
        var stamps: [Int64] = []
        stamps.reserveCapacity(value.readableBytes / 8)
        while let stamp = value.readInteger(endianness: .little, as: Int64.self) { stamps.append(stamp) }
        return stamps
    }
}

/// A counter's memcached key as parts, written straight into the outgoing buffer (``MemcachedKeyCommand``): the
/// prefix, the digest in 32 hex digits and, for a window counter, `:` and the window's number. The same bytes as
/// ``MemcachedKeyspace/name(_:)`` and ``MemcachedKeyspace/window(_:windowStart:period:)``, without a `String`.
struct MemcachedKeyName {
    var key: StorageKey
    /// The window's number (`windowStart / period`), `nil` for a key named by its digest alone.
    var window: Int64?

    init(key: StorageKey, window: Int64? = nil) {
        self.key = key
        self.window = window
    }

    /// Appends the key's bytes, `prefix` first.
    func write(prefix: String, into buffer: inout ByteBuffer) {
        buffer.writeString(prefix)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 32) { bytes in
            Self.hex(self.key.high, into: bytes, at: 0)
            Self.hex(self.key.low, into: bytes, at: 16)
            return 32
        }
        if let window = self.window {
            buffer.writeInteger(UInt8(ascii: ":"))
            MemcachedDecimal.write(window, into: &buffer)
        }
    }

    /// The key as text (logs, errors, the compare-and-swap gate).
    func string(prefix: String) -> String {
        var buffer = ByteBuffer()
        self.write(prefix: prefix, into: &buffer)
        return String(buffer: buffer)
    }

    private static func hex(_ value: UInt64, into bytes: UnsafeMutableRawBufferPointer, at offset: Int) {
        for index in 0..<16 {
            let nibble = UInt8(truncatingIfNeeded: value >> UInt64((15 - index) * 4)) & 0xf
            bytes[offset + index] = nibble < 10 ? 0x30 + nibble : 0x57 + nibble
        }
    }
}

/// Decimal numbers written into a buffer without an intermediate `String`.
enum MemcachedDecimal {
    static func write(_ value: Int64, into buffer: inout ByteBuffer) {
        if value < 0 { buffer.writeInteger(UInt8(ascii: "-")) }
        self.write(value.magnitude, into: &buffer)
    }

    static func write(_ value: UInt64, into buffer: inout ByteBuffer) {
        var digits = 1
        var rest = value / 10
        while rest > 0 {
            digits += 1
            rest /= 10
        }
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: digits) { bytes in
            var value = value
            var index = digits - 1
            while index >= 0 {
                bytes[index] = 0x30 + UInt8(truncatingIfNeeded: value % 10)
                value /= 10
                index -= 1
            }
            return digits
        }
    }
}
