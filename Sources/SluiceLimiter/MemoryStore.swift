import Synchronization

/// The embedded store (SPEC §2 `storage.kind: memory`): a sharded table bounded by `max_keys`, least recently used
/// keys evicted first.
///
/// Keys are spread over a power-of-two number of shards by hash, each a `Mutex`-protected LRU table, so requests
/// for different keys rarely contend. A request whose items live in several shards locks all of them, in
/// ascending shard order so that two such requests cannot deadlock, and decides while holding them: the check of
/// every item and the commit happen under the same locks (all or nothing, SPEC §2 "Decisions").
///
/// Deciding for keys that already exist allocates nothing: the shard pointers live in a stack buffer and the
/// states are updated in place. The `max_keys` bound is split evenly over the shards, so eviction is least recently
/// used *per shard*; small tables (under 1,024 keys) use one shard, where it is exact.
public final class MemoryStore: RateLimitStore {
    /// A shard behind its lock; a class because `Mutex` is not copyable and cannot sit in an array directly.
    private final class LockedShard: Sendable {
        let mutex: Mutex<LRUTable>
        init(capacity: Int) {
            self.mutex = Mutex(LRUTable(capacity: capacity))
        }
    }

    private let shards: [LockedShard]
    private let shardMask: Int
    /// The `max_keys` bound.
    public let maxKeys: Int

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
    }

    private func shardIndex(_ key: String) -> Int {
        key.hashValue & self.shardMask
    }

    // MARK: RateLimitStore

    public func decide(_ batch: inout DecisionBatch, now: LimiterInstant) {
        var mask: UInt64 = 0
        for item in batch.items {
            mask |= 1 << UInt64(self.shardIndex(item.key))
            if let penalty = item.penaltyKey { mask |= 1 << UInt64(self.shardIndex(penalty)) }
        }
        self.withShards(mask) { tables in
            self.decideLocked(&batch, now: now, tables: tables)
        }
    }

    private func decideLocked(
        _ batch: inout DecisionBatch,
        now: LimiterInstant,
        tables: UnsafeMutableBufferPointer<UnsafeMutablePointer<LRUTable>?>
    ) {
        // 1. Check every item.
        var enforcedAdmit = true
        for index in batch.items.indices {
            let item = batch.items[index]
            if let penalty = item.penaltyKey,
                case .blocked(let until)? = tables[self.shardIndex(penalty)]!.pointee.state(forKey: penalty),
                until > now
            {
                // Refused until the block ends, and until the algorithm admits the request after that.
                let state = tables[self.shardIndex(item.key)]!.pointee.state(forKey: item.key)
                let step = CounterState.step(item.algorithm, state: state, now: now, cost: item.cost, limit: item.limit)
                var result = StoreItemResult(verdict: step.verdict, remaining: 0, resetNanoseconds: step.resetNanoseconds)
                result.blockedByBreach(forNanoseconds: until.nanosecondsSinceEpoch - now.nanosecondsSinceEpoch)
                batch.results[index] = result
            } else {
                let state = tables[self.shardIndex(item.key)]!.pointee.state(forKey: item.key)
                let step = CounterState.step(item.algorithm, state: state, now: now, cost: item.cost, limit: item.limit)
                var result = StoreItemResult(
                    verdict: step.verdict,
                    remaining: step.remaining,
                    resetNanoseconds: step.resetNanoseconds
                )
                result.pending = step.state
                batch.results[index] = result
            }
            if item.isEnforced && !batch.results[index].verdict.isAdmitted { enforcedAdmit = false }
        }
        batch.isAdmitted = enforcedAdmit
        // 2. Commit all or nothing.
        if enforcedAdmit {
            for index in batch.items.indices {
                let item = batch.items[index]
                guard item.mode == .consume, let pending = batch.results[index].pending else { continue }
                if !item.isEnforced && !batch.groupAdmitted(item.group) { continue }
                tables[self.shardIndex(item.key)]!.pointee.setState(pending, forKey: item.key)
            }
        } else {
            for index in batch.items.indices {
                let item = batch.items[index]
                let result = batch.results[index]
                guard item.isEnforced, !result.verdict.isAdmitted, !result.isPenaltyBlocked,
                    let penalty = item.penaltyKey, item.penaltyNanoseconds > 0
                else { continue }
                let until = LimiterInstant(
                    nanosecondsSinceEpoch: FixedPoint.add(now.nanosecondsSinceEpoch, item.penaltyNanoseconds)
                )
                tables[self.shardIndex(penalty)]!.pointee.setState(.blocked(until: until), forKey: penalty)
                // The breaching request is answered like the ones the block refuses next: its `Retry-After` and
                // reset wait for the block's end (or the algorithm's own wait, should that be longer).
                batch.results[index].blockedByBreach(forNanoseconds: item.penaltyNanoseconds)
            }
        }
    }

    public func commit(_ items: [StoreItem], now: LimiterInstant) {
        for item in items {
            self.shards[self.shardIndex(item.key)].mutex.withLock { table in
                let state = table.state(forKey: item.key)
                let next = CounterState.consume(item.algorithm, state: state, now: now, cost: item.cost, limit: item.limit)
                table.setState(next, forKey: item.key)
            }
        }
    }

    public func status(of item: StoreItem, now: LimiterInstant) -> StoreItemResult? {
        let state: CounterState? = self.shards[self.shardIndex(item.key)].mutex.withLock { table in
            table.peekState(forKey: item.key)
        }
        guard let state else { return nil }
        let step = CounterState.step(item.algorithm, state: state, now: now, cost: 0, limit: item.limit)
        return StoreItemResult(verdict: step.verdict, remaining: step.remaining, resetNanoseconds: step.resetNanoseconds)
    }

    public func blockedUntil(_ penaltyKey: String, now: LimiterInstant) -> LimiterInstant? {
        let state: CounterState? = self.shards[self.shardIndex(penaltyKey)].mutex.withLock { table in
            table.peekState(forKey: penaltyKey)
        }
        if case .blocked(let until) = state, until > now { return until }
        return nil
    }

    @discardableResult
    public func reset(_ key: String) -> Bool {
        self.shards[self.shardIndex(key)].mutex.withLock { table in
            table.remove(key)
        }
    }

    public var trackedKeys: Int {
        self.shards.reduce(0) { sum, shard in sum + shard.mutex.withLock { $0.count } }
    }

    public var evictions: Int {
        self.shards.reduce(0) { sum, shard in sum + shard.mutex.withLock { $0.evictions } }
    }

    // MARK: Locking

    /// Runs `body` holding the locks of every shard in `mask`, taken in ascending index order.
    ///
    /// `body` gets a table of pointers to the locked shards' tables (the others are `nil`). The pointers are only
    /// valid inside `body`: each comes from `withUnsafeMutablePointer` on the `inout` value of a `withLock` that is
    /// still running further up the stack.
    private func withShards(
        _ mask: UInt64,
        _ body: (UnsafeMutableBufferPointer<UnsafeMutablePointer<LRUTable>?>) -> Void
    ) {
        withUnsafeTemporaryAllocation(of: UnsafeMutablePointer<LRUTable>?.self, capacity: self.shards.count) { tables in
            tables.initialize(repeating: nil)
            self.lock(remaining: mask, tables: tables, body)
        }
    }

    private func lock(
        remaining mask: UInt64,
        tables: UnsafeMutableBufferPointer<UnsafeMutablePointer<LRUTable>?>,
        _ body: (UnsafeMutableBufferPointer<UnsafeMutablePointer<LRUTable>?>) -> Void
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

/// One shard's table: a dictionary from key to slot plus an intrusive doubly linked list in recency order.
///
/// Slots are reused in place (the evicted slot takes the new key), so a full table allocates only the new key's
/// dictionary entry.
struct LRUTable {
    private struct Slot {
        var key: String
        var state: CounterState
        /// More recently used neighbour, -1 at the head.
        var newer: Int32
        /// Less recently used neighbour, -1 at the tail.
        var older: Int32
    }

    private var slotByKey: [String: Int32] = [:]
    private var slots: [Slot] = []
    private var freeSlots: [Int32] = []
    private var newest: Int32 = -1
    private var oldest: Int32 = -1
    let capacity: Int
    private(set) var evictions = 0

    init(capacity: Int) {
        self.capacity = max(1, capacity)
    }

    var count: Int { self.slotByKey.count }

    /// The state of `key`, marking it most recently used.
    mutating func state(forKey key: String) -> CounterState? {
        guard let slot = self.slotByKey[key] else { return nil }
        self.touch(slot)
        return self.slots[Int(slot)].state
    }

    /// The state of `key` without touching the recency order.
    func peekState(forKey key: String) -> CounterState? {
        self.slotByKey[key].map { self.slots[Int($0)].state }
    }

    mutating func setState(_ state: CounterState, forKey key: String) {
        if let slot = self.slotByKey[key] {
            self.slots[Int(slot)].state = state
            self.touch(slot)
            return
        }
        let slot: Int32
        if self.slotByKey.count >= self.capacity {
            // Evict the least recently used key and reuse its slot.
            slot = self.oldest
            self.unlink(slot)
            self.slotByKey.removeValue(forKey: self.slots[Int(slot)].key)
            self.evictions += 1
            self.slots[Int(slot)].key = key
            self.slots[Int(slot)].state = state
        } else if let free = self.freeSlots.popLast() {
            slot = free
            self.slots[Int(slot)].key = key
            self.slots[Int(slot)].state = state
        } else {
            slot = Int32(self.slots.count)
            self.slots.append(Slot(key: key, state: state, newer: -1, older: -1))
        }
        self.slotByKey[key] = slot
        self.linkAsNewest(slot)
    }

    mutating func remove(_ key: String) -> Bool {
        guard let slot = self.slotByKey.removeValue(forKey: key) else { return false }
        self.unlink(slot)
        self.slots[Int(slot)].key = ""
        self.freeSlots.append(slot)
        return true
    }

    /// Keys from most to least recently used (tests).
    var keysByRecency: [String] {
        var keys: [String] = []
        var slot = self.newest
        while slot >= 0 {
            keys.append(self.slots[Int(slot)].key)
            slot = self.slots[Int(slot)].older
        }
        return keys
    }

    private mutating func touch(_ slot: Int32) {
        guard slot != self.newest else { return }
        self.unlink(slot)
        self.linkAsNewest(slot)
    }

    private mutating func unlink(_ slot: Int32) {
        let newer = self.slots[Int(slot)].newer
        let older = self.slots[Int(slot)].older
        if newer >= 0 { self.slots[Int(newer)].older = older } else { self.newest = older }
        if older >= 0 { self.slots[Int(older)].newer = newer } else { self.oldest = newer }
        self.slots[Int(slot)].newer = -1
        self.slots[Int(slot)].older = -1
    }

    private mutating func linkAsNewest(_ slot: Int32) {
        self.slots[Int(slot)].newer = -1
        self.slots[Int(slot)].older = self.newest
        if self.newest >= 0 { self.slots[Int(self.newest)].newer = slot }
        self.newest = slot
        if self.oldest < 0 { self.oldest = slot }
    }
}
