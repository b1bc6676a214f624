/// One shard of the memory store: a bounded table from ``StorageKey`` to ``PackedState`` with least-recently-used
/// eviction, built to cost about 56 bytes per tracked key.
///
/// Layout:
/// - `slots`: one 48-byte slot per key (digest, packed state, two 32-bit links of the recency list). Slots never
///   move, so the links are plain indices; a freed slot joins an intrusive free list.
/// - `index`: open addressing with linear probing over 32-bit slot numbers, at most half full, deleted entries
///   removed by backward shifting (no tombstones). The digest is already a keyed hash, so its low bits are the
///   bucket.
/// - `logs`: the moving window's timestamp logs by slot; only keys of that algorithm have one.
/// Both arrays grow geometrically up to what `capacity` needs, so an idle process holds little, and a full one
/// holds the slots exactly.
struct KeyTable {
    struct Slot {
        var key: StorageKey
        var state: PackedState
        /// More recently used neighbour (-1 at the head); ``KeyTable/freeMark`` for a free slot.
        var newer: Int32
        /// Less recently used neighbour (-1 at the tail); the next free slot for a free slot.
        var older: Int32
    }

    private static let freeMark: Int32 = -2

    private var slots: [Slot] = []
    private var index: [Int32]
    private var indexMask: Int
    private let maxIndexSize: Int
    private var logs: [Int32: [Int64]] = [:]
    private var firstFree: Int32 = -1
    private var newest: Int32 = -1
    private var oldest: Int32 = -1
    let capacity: Int
    private(set) var count = 0
    private(set) var evictions = 0

    init(capacity: Int) {
        self.capacity = max(1, capacity)
        var size = 16
        while size < 2 * self.capacity { size <<= 1 }
        self.maxIndexSize = size
        self.index = Array(repeating: -1, count: 16)
        self.indexMask = 15
    }

    // MARK: Deciding

    func contains(_ key: StorageKey) -> Bool {
        self.find(key) != nil
    }

    /// What `item` would get now, without counting it; marks the key most recently used unless `touch` is false.
    mutating func check(_ item: StoreItem, now: LimiterInstant, touch: Bool = true) -> StoreItemResult {
        let slot = self.find(item.key)
        if touch, let slot { self.touch(slot) }
        if item.algorithm == .movingWindow {
            let log = slot.flatMap { self.logs[$0] } ?? []
            let check = MovingWindow.decide(log, now: now, cost: item.cost, limit: item.limit)
            return StoreItemResult(verdict: check.verdict, remaining: check.remaining, resetNanoseconds: check.resetNanoseconds)
        }
        let state = slot.map { self.slots[Int($0)].state }
        let step = PackedState.step(item.algorithm, state: state, now: now, cost: item.cost, limit: item.limit)
        var result = StoreItemResult(verdict: step.verdict, remaining: step.remaining, resetNanoseconds: step.resetNanoseconds)
        result.pending = step.state
        return result
    }

    /// Counts an admitted `item`: writes the state its check computed, or appends to its moving-window log.
    mutating func record(_ item: StoreItem, pending: PackedState?, now: LimiterInstant) {
        if item.algorithm == .movingWindow {
            self.recordInLog(item, now: now)
        } else if let pending {
            self.setState(pending, forKey: item.key)
        }
    }

    /// Takes `item`'s cost whatever the remaining budget (`count_when`).
    mutating func consume(_ item: StoreItem, now: LimiterInstant) {
        if item.algorithm == .movingWindow {
            self.recordInLog(item, now: now)
            return
        }
        let state = self.find(item.key).map { self.slots[Int($0)].state }
        self.setState(
            PackedState.consume(item.algorithm, state: state, now: now, cost: item.cost, limit: item.limit),
            forKey: item.key
        )
    }

    /// The end of the penalty block stored under `key`, if it is still running at `now`.
    func blockedUntil(_ key: StorageKey, now: LimiterInstant) -> Int64? {
        guard let slot = self.find(key) else { return nil }
        let until = self.slots[Int(slot)].state.idleAt
        return until > now.nanosecondsSinceEpoch ? until : nil
    }

    private mutating func recordInLog(_ item: StoreItem, now: LimiterInstant) {
        let slot = self.setState(PackedState(idleAt: now.nanosecondsSinceEpoch), forKey: item.key)
        MovingWindow.record(&self.logs[slot, default: []], now: now, cost: item.cost, limit: item.limit)
        let newest = self.logs[slot]?.last ?? now.nanosecondsSinceEpoch
        self.slots[Int(slot)].state.idleAt = MovingWindow.idleAt(newest: newest, limit: item.limit)
    }

    // MARK: Keys

    /// Stores `state` under `key` (most recently used), evicting the least recently used key when full.
    @discardableResult
    mutating func setState(_ state: PackedState, forKey key: StorageKey) -> Int32 {
        if let slot = self.find(key) {
            self.slots[Int(slot)].state = state
            self.touch(slot)
            return slot
        }
        let slot: Int32
        if self.count >= self.capacity {
            slot = self.oldest
            self.forget(slot)
            self.evictions += 1
        } else if self.firstFree >= 0 {
            slot = self.firstFree
            self.firstFree = self.slots[Int(slot)].older
        } else {
            if self.slots.count == self.slots.capacity {
                // Geometric growth, but never past what the bound needs: a full table holds its slots exactly.
                self.slots.reserveCapacity(min(self.capacity, max(16, self.slots.count * 2)))
            }
            slot = Int32(self.slots.count)
            self.slots.append(Slot(key: key, state: state, newer: -1, older: -1))
        }
        self.slots[Int(slot)] = Slot(key: key, state: state, newer: -1, older: -1)
        self.growIndexIfNeeded()
        self.insertIntoIndex(slot, key: key)
        self.linkAsNewest(slot)
        self.count += 1
        return slot
    }

    mutating func remove(_ key: StorageKey) -> Bool {
        guard let slot = self.find(key) else { return false }
        self.forget(slot)
        self.slots[Int(slot)].newer = Self.freeMark
        self.slots[Int(slot)].older = self.firstFree
        self.firstFree = slot
        return true
    }

    /// Forgets every key whose state is idle at `now`; returns how many.
    mutating func removeIdle(now: LimiterInstant) -> Int {
        let t = now.nanosecondsSinceEpoch
        var removed = 0
        for slot in self.slots.indices where self.slots[slot].newer != Self.freeMark && self.slots[slot].state.idleAt <= t {
            _ = self.remove(self.slots[slot].key)
            removed += 1
        }
        return removed
    }

    /// Keys from most to least recently used (tests).
    var keysByRecency: [StorageKey] {
        var keys: [StorageKey] = []
        var slot = self.newest
        while slot >= 0 {
            keys.append(self.slots[Int(slot)].key)
            slot = self.slots[Int(slot)].older
        }
        return keys
    }

    /// Bytes held by this table's arrays (allocator overhead aside).
    var bytes: Int {
        var total = self.slots.capacity * MemoryLayout<Slot>.stride + self.index.capacity * MemoryLayout<Int32>.stride
        total += self.logs.capacity * (MemoryLayout<Int32>.stride + MemoryLayout<[Int64]>.stride)
        for log in self.logs.values { total += 32 + log.capacity * MemoryLayout<Int64>.stride }
        return total
    }

    /// Removes `slot`'s key from the index, the recency list and the logs; the slot itself is left to the caller.
    private mutating func forget(_ slot: Int32) {
        self.removeFromIndex(self.slots[Int(slot)].key)
        self.unlink(slot)
        if !self.logs.isEmpty { self.logs.removeValue(forKey: slot) }
        self.count -= 1
    }

    // MARK: Index

    @inline(__always)
    private func find(_ key: StorageKey) -> Int32? {
        var bucket = Int(truncatingIfNeeded: key.low) & self.indexMask
        while true {
            let slot = self.index[bucket]
            if slot < 0 { return nil }
            if self.slots[Int(slot)].key == key { return slot }
            bucket = (bucket + 1) & self.indexMask
        }
    }

    private mutating func insertIntoIndex(_ slot: Int32, key: StorageKey) {
        var bucket = Int(truncatingIfNeeded: key.low) & self.indexMask
        while self.index[bucket] >= 0 { bucket = (bucket + 1) & self.indexMask }
        self.index[bucket] = slot
    }

    private mutating func removeFromIndex(_ key: StorageKey) {
        var hole = Int(truncatingIfNeeded: key.low) & self.indexMask
        while self.slots[Int(self.index[hole])].key != key { hole = (hole + 1) & self.indexMask }
        self.index[hole] = -1
        // Backward shift: pull later entries of the probe run into the hole when their home allows it.
        var bucket = (hole + 1) & self.indexMask
        while self.index[bucket] >= 0 {
            let home = Int(truncatingIfNeeded: self.slots[Int(self.index[bucket])].key.low) & self.indexMask
            // Can the entry at `bucket` move to `hole`? Only if its home is not in (hole, bucket] (cyclically).
            let homeInRun = hole <= bucket ? (home > hole && home <= bucket) : (home > hole || home <= bucket)
            if !homeInRun {
                self.index[hole] = self.index[bucket]
                self.index[bucket] = -1
                hole = bucket
            }
            bucket = (bucket + 1) & self.indexMask
        }
    }

    private mutating func growIndexIfNeeded() {
        guard (self.count + 1) * 2 > self.index.count, self.index.count < self.maxIndexSize else { return }
        let size = self.index.count * 2
        self.index = Array(repeating: -1, count: size)
        self.indexMask = size - 1
        var slot = self.newest
        while slot >= 0 {
            self.insertIntoIndex(slot, key: self.slots[Int(slot)].key)
            slot = self.slots[Int(slot)].older
        }
    }

    // MARK: Recency

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
