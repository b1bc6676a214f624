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
