import SluiceConfig

/// One limit of one applicable rule for one request: what a store decides on.
public struct StoreItem: Sendable {
    public enum Mode: Sendable, Hashable {
        /// Check and, if the request is admitted, take `cost` units.
        case consume
        /// Check only (`count_when`: the cost is taken later by ``RateLimitStore/commit(_:now:)``).
        case check
    }

    /// This limit's counter (see ``RateLimiter`` for what it digests).
    public var key: StorageKey
    public var algorithm: Algorithm
    public var limit: LimitParameters
    public var cost: Int64
    public var mode: Mode
    /// Items of one rule carry the same group; a shadow rule's group is committed on its own.
    public var group: Int
    /// `false` for `mode: shadow` rules: their verdict never blocks the request.
    public var isEnforced: Bool
    /// The `block_for` penalty-box key of the rule's key, `nil` without `block_for`.
    public var penaltyKey: StorageKey?
    /// How long a breach blocks `penaltyKey`.
    public var penaltyNanoseconds: Int64
    /// Names the rule's key, alike for every limit of it (and its penalty box): a Redis Cluster puts the counters of
    /// one key in one hash slot with it (issue 12). 0: none given, the counter's own key stands in.
    public var clusterTag: UInt32 = 0

    public init(
        key: StorageKey,
        algorithm: Algorithm,
        limit: LimitParameters,
        cost: Int64,
        mode: Mode = .consume,
        group: Int = 0,
        isEnforced: Bool = true,
        penaltyKey: StorageKey? = nil,
        penaltyNanoseconds: Int64 = 0
    ) {
        self.key = key
        self.algorithm = algorithm
        self.limit = limit
        self.cost = cost
        self.mode = mode
        self.group = group
        self.isEnforced = isEnforced
        self.penaltyKey = penaltyKey
        self.penaltyNanoseconds = penaltyNanoseconds
    }
}

/// What a store decided for one ``StoreItem``.
public struct StoreItemResult: Sendable {
    public var verdict: StepVerdict
    /// Quota left (after this request when it was admitted).
    public var remaining: Int64
    public var resetNanoseconds: Int64
    /// Refused because the key sits in the `block_for` penalty box (`verdict` then waits for the block's end).
    public var isPenaltyBlocked: Bool
    /// The state to write if the request is counted; internal to the stores (`nil` for a moving window, whose
    /// log is appended in place).
    var pending: PackedState?

    public init(verdict: StepVerdict, remaining: Int64, resetNanoseconds: Int64, isPenaltyBlocked: Bool = false) {
        self.verdict = verdict
        self.remaining = remaining
        self.resetNanoseconds = resetNanoseconds
        self.isPenaltyBlocked = isPenaltyBlocked
        self.pending = nil
    }

    static let undecided = StoreItemResult(verdict: .admitted, remaining: 0, resetNanoseconds: 0)

    /// Turns the result of an item whose breach has just blocked its key for `nanoseconds` (`block_for`) into a
    /// refusal that waits for the block's end, or for the algorithm's own wait when that is longer: the same
    /// request is admitted only once both allow it (SPEC §2 `Retry-After`).
    mutating func blockedByBreach(forNanoseconds nanoseconds: Int64) {
        var wait = nanoseconds
        if case .denied(let retry) = self.verdict { wait = max(wait, retry) }
        self.verdict = .denied(retryAfterNanoseconds: wait)
        self.remaining = 0
        self.resetNanoseconds = max(self.resetNanoseconds, wait)
        self.isPenaltyBlocked = true
        self.pending = nil
    }
}

/// The items of one request and, after ``RateLimitStore/decide(_:now:)``, their results.
///
/// Up to two items live inline, so a request with a few limits is decided without allocating.
public struct DecisionBatch: Sendable {
    public private(set) var items: SmallArray<2, StoreItem>
    /// One per item, in the same order; filled by the store.
    public var results: SmallArray<2, StoreItemResult>
    /// `true` when every enforced item admitted the request (then consume items were counted).
    public var isAdmitted: Bool
    /// Set when the store could not decide and its `on_error: deny` refuses the request (SPEC §2 `storage`): the
    /// proxy answers 503, not 429.
    public var storageUnavailable: Bool

    public init() {
        self.items = SmallArray()
        self.results = SmallArray()
        self.isAdmitted = true
        self.storageUnavailable = false
    }

    public var isEmpty: Bool { self.items.isEmpty }

    public mutating func append(_ item: StoreItem) {
        self.items.append(item)
        self.results.append(.undecided)
    }

    public mutating func removeAll() {
        self.items.removeAll()
        self.results.removeAll()
        self.isAdmitted = true
        self.storageUnavailable = false
    }

    /// The index of the item counting `key`, if any (two rules of one `shared` budget meet on one key).
    func index(of key: StorageKey) -> Int? {
        for index in 0..<self.items.count where self.items[index].key == key { return index }
        return nil
    }

    /// Turns every item into a check: the store looks without counting.
    mutating func checkOnly() {
        for index in 0..<self.items.count { self.items[index].mode = .check }
    }

    /// Whether every item of `group` admitted the request (a shadow rule is counted only then).
    func groupAdmitted(_ group: Int) -> Bool {
        for index in 0..<self.items.count where self.items[index].group == group {
            if !self.results[index].verdict.isAdmitted { return false }
        }
        return true
    }
}

/// Where counters live: the memory store, or Redis shared by several instances (SPEC §8).
///
/// The contract of ``decide(_:now:)`` is SPEC §2 "Decisions", atomically for the whole request:
/// 1. every item is checked first; an item whose `penaltyKey` is blocked is denied until the block ends;
/// 2. the request is admitted when every *enforced* item admits it (``StepVerdict/delayed(nanoseconds:)`` admits);
/// 3. if admitted, every enforced `.consume` item is counted, and each shadow group whose items all admit is
///    counted too (a shadow rule counts what it would have let through); if refused, **nothing** is counted, and
///    each enforced item refused by its algorithm (not by a block) with a `penaltyKey` blocks that key for
///    `penaltyNanoseconds`. Refusals because of a block never extend it.
///
/// The memory store implements this synchronously under its shard locks. An asynchronous store (Redis) runs the
/// same contract in one Lua script per request (one round trip); it will plug in through an async or
/// callback-based variant of `decide` — ``RateLimiter`` is split into `prepare` (no I/O), the store call, and
/// `finish`, so the proxy can run the store call off the event loop and resume with the filled batch.
public protocol RateLimitStore: AnyObject, Sendable {
    /// The key of the ``KeyHasher`` that names counters: random per process for a private store, fixed for a store
    /// that several instances share.
    var keySeed: StorageKey { get }

    /// Decides every item of `batch` at once (see the type's documentation) and fills `batch.results`.
    ///
    /// A store that talks to a server cannot answer here without blocking; it answers with its local fallback
    /// (see ``decidesSynchronously``).
    func decide(_ batch: inout DecisionBatch, now: LimiterInstant)

    /// Where concurrency slots go when several instances share them (issue 22 item 5: Redis leases); `nil` keeps
    /// them in this instance's memory.
    var concurrencyLeases: (any ConcurrencyLeaseStore)? { get }

    /// Whether the store wants ``StoreItem/clusterTag`` filled (a Redis Cluster, issue 12); `false` by default.
    var usesClusterTags: Bool { get }

    /// Whether ``decide(_:now:)`` is the store's real answer. When `false` (Redis), the proxy uses
    /// ``decide(_:now:completion:)`` and holds the request until it answers.
    var decidesSynchronously: Bool { get }

    /// Decides `batch` and calls `completion` with it filled, on any thread. The store's clock may replace `now`
    /// (Redis takes its own `TIME`, so instances with skewed clocks agree).
    func decide(_ batch: DecisionBatch, now: LimiterInstant, completion: @escaping @Sendable (DecisionBatch) -> Void)

    /// Takes each item's cost unconditionally (`count_when` after a matching response status).
    func commit(_ items: some Collection<StoreItem>, now: LimiterInstant)

    /// The state of counters without changing them (admin `GET /limits/...`, SPEC §7); a shared store answers
    /// after a round trip.
    func inspect(_ items: [StoreItem], penaltyKey: StorageKey?, now: LimiterInstant) async throws -> StoreInspection

    /// Forgets keys (admin `DELETE /limits/...`, SPEC §7) and returns whether any was tracked; a shared store
    /// answers once they are gone.
    func remove(_ keys: [StorageKey]) async throws -> Bool

    /// Forgets the counters of `items` and the penalty block `penaltyKey` (admin `DELETE /limits/...`). The default
    /// forgets their keys with ``remove(_:)``; a store that names a counter by more than its key (memcached names
    /// window counters by window) overrides it.
    func remove(_ items: [StoreItem], penaltyKey: StorageKey?, now: LimiterInstant) async throws -> Bool

    /// Forgets every key whose state has gone idle by `now` (its window passed, its bucket refilled, its block
    /// ended); returns how many. Stores whose keys expire by themselves (Redis TTLs) do nothing.
    @discardableResult
    func removeIdleKeys(now: LimiterInstant) -> Int

    /// Keys tracked now (`sluice_tracked_keys`).
    var trackedKeys: Int { get }

    /// Keys evicted so far to stay within `max_keys` (`sluice_evictions_total`).
    var evictions: Int { get }
}

/// What ``RateLimitStore/inspect(_:penaltyKey:now:)`` found.
public struct StoreInspection: Sendable {
    /// One per item, in order: its counter looked at without taking anything, `nil` when the key is not tracked.
    public var results: [StoreItemResult?]
    /// The end of the penalty block, `nil` when the key is not blocked.
    public var blockedUntil: LimiterInstant?

    public init(results: [StoreItemResult?], blockedUntil: LimiterInstant?) {
        self.results = results
        self.blockedUntil = blockedUntil
    }
}

extension RateLimitStore {
    public var decidesSynchronously: Bool { true }
    public var usesClusterTags: Bool { false }
    public var concurrencyLeases: (any ConcurrencyLeaseStore)? { nil }

    public func remove(_ items: [StoreItem], penaltyKey: StorageKey?, now: LimiterInstant) async throws -> Bool {
        try await self.remove(items.map(\.key) + (penaltyKey.map { [$0] } ?? []))
    }

    public func decide(_ batch: DecisionBatch, now: LimiterInstant, completion: @escaping @Sendable (DecisionBatch) -> Void) {
        var batch = batch
        self.decide(&batch, now: now)
        completion(batch)
    }
}
