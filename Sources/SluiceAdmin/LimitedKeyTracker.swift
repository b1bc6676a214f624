import SluiceLimiter
import Synchronization

/// The keys refused most often in the last few minutes, for the status page: per rule, by key digest.
///
/// Fed once per limited (or shadow-limited) request, so it must stay cheap under a flood: 100k refusals a second
/// spread over the event loops. Each ``ThreadStripe`` (in the proxy: each event loop) has tables of its own, so the
/// loops never wait for each other or share a cache line; ``top(_:nowSeconds:)`` merges them. A stripe holds one
/// fixed table per minute for the last ``minutes`` minutes, each with ``slotsPerMinute`` slots, allocated the first
/// time the stripe records; recording is a linear scan of one table under the stripe's own lock (uncontended), and
/// nothing ever grows. When a minute's table is full, the least counted entry gives its slot to the new key and the
/// new key starts from that count plus one (the Space-Saving algorithm of Metwally et al.): every key refused more
/// than 1/``slotsPerMinute`` of a stripe's refusals in a minute is sure to be in its table, and counts are upper
/// bounds that are exact while the tables have room. Merged counts add the stripes' and the minutes' counts, so they
/// stay upper bounds, exact while every table has room.
///
/// Only digests are kept (``LimitOutcome/keyDigest``), never key values: the page shows what the access log's
/// `key_hash` shows.
///
/// - note: Thread-safe; ``record(rule:key:shadow:nowSeconds:)`` may be called from any event loop.
public final class LimitedKeyTracker: Sendable {
    /// One key's refusals over the window.
    public struct Entry: Sendable, Equatable {
        public var rule: String
        public var key: StorageKey
        /// A shadow rule would have refused these (nothing was refused).
        public var shadow: Bool
        public var count: Int
        /// Unix seconds of the last refusal.
        public var lastSeenSeconds: Int64
    }

    private struct Minute {
        /// The Unix minute this table counts; `-1` when unused.
        var minute: Int64 = -1
        var entries: [Entry]
    }

    /// One stripe's tables behind its own lock.
    private final class Stripe: Sendable {
        /// Empty until the stripe first records (most stripes of a process with fewer loops than stripes never do).
        let tables = Mutex<[Minute]>([])
        /// Keeps the lock words of two stripes off one cache line even when their objects are allocated side by side.
        private let padding = InlineArray<8, UInt64>(repeating: 0)
    }

    /// Minutes kept, the current one included. Defaults to 5.
    public let minutes: Int
    /// Entries per minute and stripe. Defaults to 64.
    public let slotsPerMinute: Int
    private let stripes: [Stripe]

    public init(minutes: Int = 5, slotsPerMinute: Int = 64) {
        self.minutes = max(1, minutes)
        self.slotsPerMinute = max(1, slotsPerMinute)
        self.stripes = (0..<ThreadStripe.count).map { _ in Stripe() }
    }

    /// Counts one refusal of `key` by `rule`.
    public func record(rule: String, key: StorageKey, shadow: Bool, nowSeconds: Int64) {
        let minute = nowSeconds / 60
        let slot = Int(minute % Int64(self.minutes))
        let capacity = self.slotsPerMinute
        self.stripes[ThreadStripe.current].tables.withLock { tables in
            if tables.isEmpty { tables = Self.makeTables(minutes: self.minutes, slots: capacity) }
            if tables[slot].minute != minute {
                tables[slot].minute = minute
                // Keeps the storage: a new minute allocates nothing.
                tables[slot].entries.removeAll(keepingCapacity: true)
            }
            var smallest = 0
            for index in 0..<tables[slot].entries.count {
                if tables[slot].entries[index].key == key, tables[slot].entries[index].shadow == shadow,
                    tables[slot].entries[index].rule == rule
                {
                    tables[slot].entries[index].count += 1
                    // Loops sharing a stripe may record a second out of order.
                    tables[slot].entries[index].lastSeenSeconds = max(tables[slot].entries[index].lastSeenSeconds, nowSeconds)
                    return
                }
                if tables[slot].entries[index].count < tables[slot].entries[smallest].count { smallest = index }
            }
            if tables[slot].entries.count < capacity {
                tables[slot].entries.append(
                    Entry(rule: rule, key: key, shadow: shadow, count: 1, lastSeenSeconds: nowSeconds)
                )
            } else {
                let inherited = tables[slot].entries[smallest].count
                tables[slot].entries[smallest] = Entry(
                    rule: rule,
                    key: key,
                    shadow: shadow,
                    count: inherited + 1,
                    lastSeenSeconds: nowSeconds
                )
            }
        }
    }

    /// The `limit` keys refused most in the minutes kept, the current one included, over every stripe; most refused
    /// first (then most recent first).
    public func top(_ limit: Int, nowSeconds: Int64) -> [Entry] {
        let current = nowSeconds / 60
        struct Identity: Hashable {
            var rule: String
            var key: StorageKey
            var shadow: Bool
        }
        var merged: [Identity: Entry] = [:]
        for stripe in self.stripes {
            // Copied element by element under the lock: sharing the tables' buffers would make the next `record`
            // copy them (an allocation on the request path).
            let recent = stripe.tables.withLock { tables in
                tables.filter { $0.minute > current - Int64(self.minutes) && $0.minute <= current }
                    .map { table in Minute(minute: table.minute, entries: table.entries.map { $0 }) }
            }
            for table in recent {
                for entry in table.entries {
                    let identity = Identity(rule: entry.rule, key: entry.key, shadow: entry.shadow)
                    if var known = merged[identity] {
                        known.count += entry.count
                        known.lastSeenSeconds = max(known.lastSeenSeconds, entry.lastSeenSeconds)
                        merged[identity] = known
                    } else {
                        merged[identity] = entry
                    }
                }
            }
        }
        let sorted = merged.values.sorted { a, b in
            if a.count != b.count { return a.count > b.count }
            if a.lastSeenSeconds != b.lastSeenSeconds { return a.lastSeenSeconds > b.lastSeenSeconds }
            return a.key.description < b.key.description
        }
        return Array(sorted.prefix(max(0, limit)))
    }

    /// One stripe's tables, each with its whole capacity reserved now, so recording never allocates (no shared
    /// buffer to copy on first write, no growth later).
    private static func makeTables(minutes: Int, slots: Int) -> [Minute] {
        (0..<minutes).map { _ in
            var entries: [Entry] = []
            entries.reserveCapacity(slots)
            return Minute(entries: entries)
        }
    }
}
