import SluiceConfig
import Synchronization

/// The embedded store (SPEC §2 `storage.kind: memory`): a sharded table bounded by `max_keys`, least recently used
/// keys evicted first, idle keys forgotten by ``removeIdleKeys(now:)``.
///
/// Keys are spread over a power-of-two number of shards by their digest, each a `Mutex`-protected ``KeyTable``, so
/// requests for different keys rarely contend. A request whose items live in several shards locks all of them, in
/// ascending shard order so that two such requests cannot deadlock, and decides while holding them: the check of
/// every item and the commit happen under the same locks (all or nothing, SPEC §2 "Decisions").
///
/// Deciding for keys that already exist allocates nothing: the shard pointers live in a stack buffer, keys are
/// fixed-size digests and states are updated in place. The `max_keys` bound is split evenly over the shards, so
/// eviction is least recently used *per shard*; small tables (under 1,024 keys) use one shard, where it is exact.
public final class MemoryStore: RateLimitStore {
    /// A shard behind its lock; a class because `Mutex` is not copyable and cannot sit in an array directly.
    private final class LockedShard: Sendable {
        let mutex: Mutex<KeyTable>
        init(capacity: Int) {
            self.mutex = Mutex(KeyTable(capacity: capacity))
        }
    }

    private let shards: [LockedShard]
    private let shardMask: Int
    /// The `max_keys` bound.
    public let maxKeys: Int
    public let keySeed: StorageKey

    /// - Parameters:
    ///   - maxKeys: bound on tracked keys (`storage.max_keys`); at least 1.
    ///   - shardCount: number of shards, rounded up to a power of two in 1...64; by default 1 below 1,024 keys,
    ///     16 below 65,536 and 64 above.
    public init(maxKeys: Int, shardCount: Int? = nil) {
        let keys = max(1, maxKeys)
        let requested = shardCount ?? (keys < 1024 ? 1 : keys < 65536 ? 16 : 64)
        var count = 1
        while count < min(64, max(1, requested)) { count <<= 1 }
        self.maxKeys = keys
        self.shardMask = count - 1
        let perShard = (keys + count - 1) / count
        self.shards = (0..<count).map { _ in LockedShard(capacity: perShard) }
        var generator = SystemRandomNumberGenerator()
        self.keySeed = StorageKey(high: generator.next(), low: generator.next())
    }

    @inline(__always)
    private func shardIndex(_ key: StorageKey) -> Int {
        // The bucket inside a shard uses `low`; `high` picks the shard, so the two are independent.
        Int(truncatingIfNeeded: key.high) & self.shardMask
    }

    // MARK: RateLimitStore

    public func decide(_ batch: inout DecisionBatch, now: LimiterInstant) {
        var mask: UInt64 = 0
        for index in 0..<batch.items.count {
            mask |= 1 << UInt64(self.shardIndex(batch.items[index].key))
            if let penalty = batch.items[index].penaltyKey { mask |= 1 << UInt64(self.shardIndex(penalty)) }
        }
        if mask & (mask - 1) == 0 {
            // One shard (the common case): no pointer table needed.
            self.shards[mask.trailingZeroBitCount].mutex.withLock { table in
                withUnsafeMutablePointer(to: &table) { pointer in
                    Self.decideLocked(&batch, now: now) { _ in pointer }
                }
            }
            return
        }
        self.withShards(mask) { tables in
            Self.decideLocked(&batch, now: now) { key in tables[self.shardIndex(key)]! }
        }
    }

    /// The decision of SPEC §2 on tables that are all locked; `table(key)` is the table holding `key`.
    private static func decideLocked(
        _ batch: inout DecisionBatch,
        now: LimiterInstant,
        table: (StorageKey) -> UnsafeMutablePointer<KeyTable>
    ) {
        // 1. Check every item.
        var enforcedAdmit = true
        for index in 0..<batch.items.count {
            let item = batch.items[index]
            let counters = table(item.key)
            var result = counters.pointee.check(item, now: now)
            if let penalty = item.penaltyKey, let until = table(penalty).pointee.blockedUntil(penalty, now: now) {
                // Refused until the block ends, and until the algorithm admits the request after that.
                result.blockedByBreach(forNanoseconds: until - now.nanosecondsSinceEpoch)
            }
            batch.results[index] = result
            if item.isEnforced && !result.verdict.isAdmitted { enforcedAdmit = false }
        }
        batch.isAdmitted = enforcedAdmit
        // 2. Commit all or nothing.
        if enforcedAdmit {
            for index in 0..<batch.items.count {
                let item = batch.items[index]
                guard item.mode == .consume else { continue }
                if !item.isEnforced && !batch.groupAdmitted(item.group) { continue }
                table(item.key).pointee.record(item, pending: batch.results[index].pending, now: now)
            }
        } else {
            for index in 0..<batch.items.count {
                let item = batch.items[index]
                let result = batch.results[index]
                guard item.isEnforced, !result.verdict.isAdmitted, !result.isPenaltyBlocked,
                    let penalty = item.penaltyKey, item.penaltyNanoseconds > 0
                else { continue }
                let until = FixedPoint.add(now.nanosecondsSinceEpoch, item.penaltyNanoseconds)
                table(penalty).pointee.setState(PackedState(idleAt: until), forKey: penalty)
                // The breaching request is answered like the ones the block refuses next: its `Retry-After` and
                // reset wait for the block's end (or the algorithm's own wait, should that be longer).
                batch.results[index].blockedByBreach(forNanoseconds: item.penaltyNanoseconds)
            }
        }
    }

    public func commit(_ items: some Collection<StoreItem>, now: LimiterInstant) {
        for item in items {
            self.shards[self.shardIndex(item.key)].mutex.withLock { table in
                table.consume(item, now: now)
            }
        }
    }

    /// The state of one counter without changing it; `nil` when the key is not tracked.
    public func status(of item: StoreItem, now: LimiterInstant) -> StoreItemResult? {
        self.shards[self.shardIndex(item.key)].mutex.withLock { table in
            guard table.contains(item.key) else { return nil }
            var look = item
            look.cost = 0
            return table.check(look, now: now, touch: false)
        }
    }

    /// The end of the penalty block of `penaltyKey`, `nil` when it is not blocked at `now`.
    public func blockedUntil(_ penaltyKey: StorageKey, now: LimiterInstant) -> LimiterInstant? {
        self.shards[self.shardIndex(penaltyKey)].mutex.withLock { table in
            table.blockedUntil(penaltyKey, now: now).map(LimiterInstant.init(nanosecondsSinceEpoch:))
        }
    }

    /// Forgets a key; returns whether it was tracked.
    @discardableResult
    public func reset(_ key: StorageKey) -> Bool {
        self.shards[self.shardIndex(key)].mutex.withLock { table in
            table.remove(key)
        }
    }

    public func inspect(_ items: [StoreItem], penaltyKey: StorageKey?, now: LimiterInstant) async -> StoreInspection {
        StoreInspection(
            results: items.map { self.status(of: $0, now: now) },
            blockedUntil: penaltyKey.flatMap { self.blockedUntil($0, now: now) }
        )
    }

    public func remove(_ keys: [StorageKey]) async -> Bool {
        keys.reduce(false) { removed, key in self.reset(key) || removed }
    }

    @discardableResult
    public func removeIdleKeys(now: LimiterInstant) -> Int {
        // One shard at a time: each lock is held for one pass over one shard's slots.
        self.shards.reduce(0) { sum, shard in sum + shard.mutex.withLock { $0.removeIdle(now: now) } }
    }

    public var trackedKeys: Int {
        self.shards.reduce(0) { sum, shard in sum + shard.mutex.withLock { $0.count } }
    }

    public var evictions: Int {
        self.shards.reduce(0) { sum, shard in sum + shard.mutex.withLock { $0.evictions } }
    }

    /// Bytes held by the tables (slots, index, moving-window logs), for the memory benchmark.
    public var tableBytes: Int {
        self.shards.reduce(0) { sum, shard in sum + shard.mutex.withLock { $0.bytes } }
    }

    // MARK: Locking

    /// Runs `body` holding the locks of every shard in `mask`, taken in ascending index order.
    ///
    /// `body` gets a table of pointers to the locked shards' tables (the others are `nil`). The pointers are only
    /// valid inside `body`: each comes from `withUnsafeMutablePointer` on the `inout` value of a `withLock` that is
    /// still running further up the stack.
    private func withShards(
        _ mask: UInt64,
        _ body: (UnsafeMutableBufferPointer<UnsafeMutablePointer<KeyTable>?>) -> Void
    ) {
        withUnsafeTemporaryAllocation(of: UnsafeMutablePointer<KeyTable>?.self, capacity: self.shards.count) { tables in
            tables.initialize(repeating: nil)
            self.lock(remaining: mask, tables: tables, body)
        }
    }

    private func lock(
        remaining mask: UInt64,
        tables: UnsafeMutableBufferPointer<UnsafeMutablePointer<KeyTable>?>,
        _ body: (UnsafeMutableBufferPointer<UnsafeMutablePointer<KeyTable>?>) -> Void
    ) {
        guard mask != 0 else {
            body(tables)
            return
        }
        let index = mask.trailingZeroBitCount
        self.shards[index].mutex.withLock { table in
            withUnsafeMutablePointer(to: &table) { pointer in
                tables[index] = pointer
                self.lock(remaining: mask & (mask - 1), tables: tables, body)
                tables[index] = nil
            }
        }
    }
}
