import SluiceConfig
import Synchronization

// Concurrency limits (issue 22, memory storage): how many requests of one key are in flight at once.
//
// The algorithm, in one file:
// - ``ConcurrencySlotTable`` outlives configuration snapshots: one ``ConcurrencyRuleSlots`` per rule *name*, so a
//   reload keeps the counts of a rule it keeps, and requests of a removed rule still release into the table they
//   took their slot from.
// - ``ConcurrencyRuleSlots`` is a sharded table `key -> (in flight, FIFO of waiters)`, each shard behind a short
//   `Mutex`. Taking or returning a slot of a key that exists allocates nothing.
// - ``ConcurrencyLimiter`` belongs to one snapshot: it matches a request's concurrency rules and derives their keys
//   (``admission(for:)``).
// - ``ConcurrencyAdmission`` is one request's progress through its rules, in file order: it takes the slots all or
//   nothing (a refusal by a later rule gives back the earlier rules' slots at once), may wait in a rule's queue
//   (holding the earlier rules' slots: every request takes rules in the same order, so two requests never wait on
//   each other), and gives every slot back exactly once in ``ConcurrencyAdmission/release()``. Whoever owns it (the
//   proxy's connection state machine) calls `release()` when the exchange is over.
//
// A waiter is woken by whichever thread releases the slot it gets: the slot is handed over under the shard lock (the
// count does not move), and ``ConcurrencyWaiter``'s `wake` runs after the lock is dropped; the proxy's `wake` hops to
// the waiter's own event loop. A handed-over slot belongs to the admission from then on: if the admission was released
// meanwhile (the client left), ``ConcurrencyAdmission/release()`` finds the waiter gone from the queue and returns the
// slot itself; the late `wake` then finds nothing pending and does nothing.
//
// With a lease store (`storage.kind: redis`, ``ConcurrencyLeaseStore``) the slots are leases shared by every instance,
// taken all or nothing in one round trip; the tables here then count this instance's requests and hold its local
// queues (`ConcurrencyLeases.swift`).

/// Every rule's slots, by rule name; shared by all event loops and kept across reloads (issue 22 item 6).
public final class ConcurrencySlotTable: Sendable {
    private let rules = Mutex<[String: ConcurrencyRuleSlots]>([:])
    /// With a lease store: each rule's slots while the store is away and `on_error` is `local` (`max / instances`).
    private let fallbackRules = Mutex<[String: ConcurrencyRuleSlots]>([:])
    /// Keys the slot digests per process, so nobody outside can aim two keys at one slot.
    let seed: StorageKey

    public init() {
        var generator = SystemRandomNumberGenerator()
        self.seed = StorageKey(high: generator.next(), low: generator.next())
    }

    /// The slots of rule `name`, made on first use. Called when a configuration is compiled, not per request.
    public func rule(named name: String) -> ConcurrencyRuleSlots {
        self.rules.withLock { rules in
            if let existing = rules[name] { return existing }
            let created = ConcurrencyRuleSlots(name: name)
            rules[name] = created
            return created
        }
    }

    /// The `on_error: local` slots of rule `name` (lease stores only), made on first use.
    public func fallbackRule(named name: String) -> ConcurrencyRuleSlots {
        self.fallbackRules.withLock { rules in
            if let existing = rules[name] { return existing }
            let created = ConcurrencyRuleSlots(name: name)
            rules[name] = created
            return created
        }
    }

    /// Every rule that ever had slots, by name (metrics).
    public var allRules: [ConcurrencyRuleSlots] {
        self.rules.withLock { Array($0.values) }.sorted { $0.name < $1.name }
    }
}

/// Why a request got no slot (the access log's `decision`, the refusal metric's `reason`).
public enum ConcurrencyRefusalReason: String, Sendable, Hashable, CaseIterable {
    /// Over `max`, no queue.
    case concurrency
    /// Over `max` and the queue is full.
    case queueFull = "queue_full"
    /// Waited `queue.timeout` without getting a slot.
    case queueTimeout = "queue_timeout"
    /// `on_missing_key: deny` (refused for good: no `Retry-After`).
    case missingKey = "missing_key"
    /// The shared store of slots cannot answer and `on_error` is `deny` (503).
    case storageUnavailable = "storage_unavailable"

    /// The access log's `decision`: the reason, and `limited` for a request refused for good (as the rate limits say).
    public var logDecision: String {
        self == .missingKey ? "limited" : self.rawValue
    }
}

/// A request that waits in a rule's queue for a slot of its key.
public final class ConcurrencyWaiter: Sendable {
    let key: StorageKey
    /// The `max` of the configuration the request started with: a slot is handed over only while the key holds fewer.
    let max: Int
    /// Told (once, from the releasing thread, no lock held) that a slot was handed over; must not block. With a lease
    /// store: told that the store answered (``lease``), or, for a queued request, that it should ask again.
    let wake: @Sendable (ConcurrencyWaiter) -> Void
    /// With a lease store: the acquire this waiter stands for.
    let lease = Mutex<LeaseAsk>(.idle)

    init(key: StorageKey, max: Int, wake: @escaping @Sendable (ConcurrencyWaiter) -> Void) {
        self.key = key
        self.max = max
        self.wake = wake
    }
}

/// The slots of one rule: in-flight counts and FIFO queues by key, sharded, each shard behind a short lock.
public final class ConcurrencyRuleSlots: Sendable {
    struct Slot {
        var inFlight = 0
        /// First come, first served; at most the queue's `size` (an empty array allocates nothing).
        var waiters: [ConcurrencyWaiter] = []
    }

    /// A shard behind its lock; a class because `Mutex` is not copyable. Its totals sit beside the lock the request
    /// has just taken (its cache line is this core's already): one counter shared by every event loop would bounce
    /// between cores twice per request.
    private final class LockedShard: Sendable {
        let mutex = Mutex<[StorageKey: Slot]>([:])
        let inFlight = Atomic<Int>(0)
        let queued = Atomic<Int>(0)
    }

    public let name: String
    private let shards: [LockedShard]
    /// The same shards, unretained (``shards`` keeps them alive): every event loop reaches them, so a retain per
    /// request would bounce each shard's reference count between cores.
    private let shardRefs: [Unmanaged<LockedShard>]
    private static let shardCount = 16
    private let refusedConcurrency = Atomic<Int>(0)
    private let refusedQueueFull = Atomic<Int>(0)
    private let refusedQueueTimeout = Atomic<Int>(0)
    private let refusedMissingKey = Atomic<Int>(0)
    private let refusedStorage = Atomic<Int>(0)
    private let shadowOverMax = Atomic<Int>(0)

    init(name: String) {
        self.name = name
        self.shards = (0..<Self.shardCount).map { _ in LockedShard() }
        self.shardRefs = self.shards.map { Unmanaged.passUnretained($0) }
    }

    /// Runs `body` with the shard of `key`, without retaining it.
    @inline(__always)
    private func withShard<T>(_ key: StorageKey, _ body: (LockedShard) -> T) -> T {
        self.shardRefs[Int(truncatingIfNeeded: key.high) & (Self.shardCount - 1)]._withUnsafeGuaranteedRef(body)
    }

    // MARK: numbers (metrics, admin)

    /// Requests of this rule holding a slot now, every key together.
    public var inFlight: Int { self.shards.reduce(0) { $0 + $1.inFlight.load(ordering: .relaxed) } }
    /// Requests of this rule waiting in a queue now.
    public var queued: Int { self.shards.reduce(0) { $0 + $1.queued.load(ordering: .relaxed) } }
    /// Requests refused for `reason` since start.
    public func refusals(_ reason: ConcurrencyRefusalReason) -> Int {
        switch reason {
        case .concurrency: self.refusedConcurrency.load(ordering: .relaxed)
        case .queueFull: self.refusedQueueFull.load(ordering: .relaxed)
        case .queueTimeout: self.refusedQueueTimeout.load(ordering: .relaxed)
        case .missingKey: self.refusedMissingKey.load(ordering: .relaxed)
        case .storageUnavailable: self.refusedStorage.load(ordering: .relaxed)
        }
    }
    /// Requests a `mode: shadow` rule let through over its `max` since start.
    public var shadowAdmissions: Int { self.shadowOverMax.load(ordering: .relaxed) }

    func countRefusal(_ reason: ConcurrencyRefusalReason) {
        switch reason {
        case .concurrency: self.refusedConcurrency.wrappingAdd(1, ordering: .relaxed)
        case .queueFull: self.refusedQueueFull.wrappingAdd(1, ordering: .relaxed)
        case .queueTimeout: self.refusedQueueTimeout.wrappingAdd(1, ordering: .relaxed)
        case .missingKey: self.refusedMissingKey.wrappingAdd(1, ordering: .relaxed)
        case .storageUnavailable: self.refusedStorage.wrappingAdd(1, ordering: .relaxed)
        }
    }

    /// Runs `body` on the shard of `key`, under its lock.
    func withSlots<T: Sendable>(of key: StorageKey, _ body: (inout [StorageKey: Slot]) -> T) -> T {
        self.withShard(key) { shard in shard.mutex.withLock { slots in body(&slots) } }
    }

    func addInFlight(_ delta: Int, _ key: StorageKey) {
        _ = self.withShard(key) { shard in shard.inFlight.wrappingAdd(delta, ordering: .relaxed) }
    }
    func addQueued(_ delta: Int, _ key: StorageKey) {
        _ = self.withShard(key) { shard in shard.queued.wrappingAdd(delta, ordering: .relaxed) }
    }

    /// The in-flight count and queue length of one key.
    public func state(of key: StorageKey) -> (inFlight: Int, queued: Int) {
        self.withShard(key) { shard in
            shard.mutex.withLock { slots in slots[key].map { ($0.inFlight, $0.waiters.count) } ?? (0, 0) }
        }
    }

    // MARK: taking and returning

    enum Acquisition: Equatable {
        case acquired
        /// `shadow` only: taken over `max`.
        case acquiredOverMax
        case full
    }

    /// Takes a slot of `key` if it holds fewer than `max` and nobody waits (first come, first served); a `shadow`
    /// request always takes one.
    func acquire(_ key: StorageKey, max: Int, shadow: Bool) -> Acquisition {
        self.withShard(key) { shard in Self.acquire(key, max: max, shadow: shadow, in: shard) }
    }

    @inline(__always)
    private static func acquire(_ key: StorageKey, max: Int, shadow: Bool, in shard: LockedShard) -> Acquisition {
        let result: Acquisition = shard.mutex.withLock { slots in
            if let index = slots.index(forKey: key) {
                let slot = slots.values[index]
                if slot.inFlight < max && slot.waiters.isEmpty {
                    slots.values[index].inFlight += 1
                    return .acquired
                }
                guard shadow else { return .full }
                slots.values[index].inFlight += 1
                return .acquiredOverMax
            }
            slots[key] = Slot(inFlight: 1)
            return .acquired
        }
        if result != .full { shard.inFlight.wrappingAdd(1, ordering: .relaxed) }
        return result
    }

    enum Enqueuing: Equatable {
        case acquired
        case queued
        case full
    }

    /// ``acquire(_:max:shadow:)``, or a place at the end of the key's queue when at most `queueSize - 1` wait.
    func acquireOrEnqueue(_ waiter: ConcurrencyWaiter, queueSize: Int) -> Enqueuing {
        self.withShard(waiter.key) { shard in Self.acquireOrEnqueue(waiter, queueSize: queueSize, in: shard) }
    }

    private static func acquireOrEnqueue(_ waiter: ConcurrencyWaiter, queueSize: Int, in shard: LockedShard) -> Enqueuing {
        let result: Enqueuing = shard.mutex.withLock { slots in
            guard let index = slots.index(forKey: waiter.key) else {
                slots[waiter.key] = Slot(inFlight: 1)
                return .acquired
            }
            let slot = slots.values[index]
            if slot.inFlight < waiter.max && slot.waiters.isEmpty {
                slots.values[index].inFlight += 1
                return .acquired
            }
            guard slot.waiters.count < queueSize else { return .full }
            slots.values[index].waiters.append(waiter)
            return .queued
        }
        switch result {
        case .acquired: shard.inFlight.wrappingAdd(1, ordering: .relaxed)
        case .queued: shard.queued.wrappingAdd(1, ordering: .relaxed)
        case .full: break
        }
        return result
    }

    /// Returns a slot of `key`: hands it to the first waiter when the key then holds fewer than that waiter's `max`
    /// (and wakes it, after the lock), else the count goes down. Never below zero: a key is forgotten at zero with
    /// nobody waiting, and returning a slot of a key that holds none does nothing.
    func release(_ key: StorageKey) {
        self.withShard(key) { shard in Self.release(key, in: shard) }
    }

    @inline(__always)
    private static func release(_ key: StorageKey, in shard: LockedShard) {
        let woken: ConcurrencyWaiter? = shard.mutex.withLock { slots in
            guard let index = slots.index(forKey: key), slots.values[index].inFlight > 0 else {
                assertionFailure("a concurrency slot returned twice")
                return nil
            }
            if let first = slots.values[index].waiters.first, slots.values[index].inFlight - 1 < first.max {
                slots.values[index].waiters.removeFirst()
                return first
            }
            slots.values[index].inFlight -= 1
            if slots.values[index].inFlight == 0 && slots.values[index].waiters.isEmpty {
                slots.remove(at: index)
            }
            return nil
        }
        if let woken {
            shard.queued.wrappingAdd(-1, ordering: .relaxed)
            woken.wake(woken)
        } else {
            shard.inFlight.wrappingAdd(-1, ordering: .relaxed)
        }
    }

    /// Takes `waiter` out of its queue: `true` when it was still waiting, `false` when a slot was handed to it already
    /// (the caller owns that slot then).
    func cancel(_ waiter: ConcurrencyWaiter) -> Bool {
        self.withShard(waiter.key) { shard in Self.cancel(waiter, in: shard) }
    }

    private static func cancel(_ waiter: ConcurrencyWaiter, in shard: LockedShard) -> Bool {
        let removed: Bool = shard.mutex.withLock { slots in
            guard let index = slots.index(forKey: waiter.key),
                let position = slots.values[index].waiters.firstIndex(where: { $0 === waiter })
            else { return false }
            slots.values[index].waiters.remove(at: position)
            if slots.values[index].inFlight == 0 && slots.values[index].waiters.isEmpty {
                slots.remove(at: index)
            }
            return true
        }
        if removed { shard.queued.wrappingAdd(-1, ordering: .relaxed) }
        return removed
    }
}

/// One snapshot's concurrency rules: matching and keys (issue 22). `nil` on a configuration without any, so the
/// request path asks nothing.
public final class ConcurrencyLimiter: Sendable {
    /// A rule with `concurrency`, compiled once per load.
    final class Rule: Sendable {
        let name: String
        let configuration: ConcurrencyConfiguration
        let isEnforced: Bool
        let matcher: RuleMatcher
        let exempt: [CIDR]
        let key: KeyBuilder
        let keyPrefix: KeyHasher
        let onMissingKey: RuleConfiguration.OnMissingKey
        let fallback: (key: KeyBuilder, keyPrefix: KeyHasher)?
        let tierPart: KeyPart?
        let tierMax: [String: Int]
        let defaultTierMax: Int?
        let response: ResponseConfiguration
        let slots: ConcurrencyRuleSlots
        /// ``slots`` unretained (it keeps them alive), for the request path: see ``ConcurrencyAdmission/Step``.
        let slotsRef: Unmanaged<ConcurrencyRuleSlots>
        /// With a lease store: the slots taken while it is away (`on_error: local`); the store's key of a slot.
        let fallbackSlots: ConcurrencyRuleSlots?
        /// `{limit}` of a refusal: `N concurrent`.
        let limitText: String

        init(
            _ rule: RuleConfiguration,
            concurrency: ConcurrencyConfiguration,
            table: ConcurrencySlotTable,
            leases: (any ConcurrencyLeaseStore)?
        ) {
            // Slots in a shared store are named alike by every instance: the store's fixed seed.
            let seed = leases?.keySeed ?? table.seed
            self.name = rule.name
            self.configuration = concurrency
            self.isEnforced = rule.mode == .enforce
            self.matcher = RuleMatcher(rule.match)
            self.exempt = rule.exempt
            self.key = KeyBuilder(parts: rule.key)
            self.keyPrefix = Self.prefix("key", rule.key, seed: seed)
            self.onMissingKey = rule.onMissingKey
            if case .fallback(let parts) = rule.onMissingKey {
                self.fallback = (KeyBuilder(parts: parts), Self.prefix("fallback", parts, seed: seed))
            } else {
                self.fallback = nil
            }
            self.tierPart = rule.tiers?.by
            self.tierMax = rule.tiers?.concurrencyMax ?? [:]
            self.defaultTierMax = rule.tiers?.defaultConcurrencyMax
            self.response = rule.response
            self.slots = table.rule(named: rule.name)
            self.slotsRef = Unmanaged.passUnretained(self.slots)
            self.fallbackSlots = leases == nil ? nil : table.fallbackRule(named: rule.name)
            self.limitText = "\(concurrency.max) concurrent"
        }

        /// The rule's name is its table; within it, a key is its parts' kinds and values.
        private static func prefix(_ label: String, _ parts: [KeyPart], seed: StorageKey) -> KeyHasher {
            var hasher = KeyHasher(seed: seed)
            hasher.combine(lengthPrefixed: "concurrency;\(label)=\(parts.map(\.description).joined(separator: ","))")
            return hasher
        }

        /// `max` for a request whose tier key part has `tierValue`.
        func max(tierValue: String?) -> Int {
            if let tierValue, let max = self.tierMax[tierValue] { return max }
            return self.defaultTierMax ?? self.configuration.max
        }
    }

    let rules: [Rule]
    /// ``rules`` unretained (it keeps them alive), for the request path: see ``ConcurrencyAdmission/Step``.
    private let ruleRefs: [Unmanaged<Rule>]
    private let needsPath: Bool
    public let table: ConcurrencySlotTable
    /// Where the slots are when several instances share them (`storage.kind: redis`); `nil`: in ``table``.
    let leases: (any ConcurrencyLeaseStore)?

    /// The concurrency rules of `configuration`, or `nil` when it has none.
    public init?(
        configuration: SluiceConfiguration,
        table: ConcurrencySlotTable,
        leases: (any ConcurrencyLeaseStore)? = nil
    ) {
        let rules = configuration.rules.compactMap { rule in
            rule.concurrency.map { Rule(rule, concurrency: $0, table: table, leases: leases) }
        }
        guard !rules.isEmpty else { return nil }
        self.rules = rules
        self.ruleRefs = rules.map { Unmanaged.passUnretained($0) }
        self.table = table
        self.leases = leases
        self.needsPath = configuration.rules.contains { rule in
            guard rule.concurrency != nil else { return false }
            return RuleMatcher(rule.match).needsPath || rule.key.contains(.path) || rule.tiers?.by == .path
                || { if case .fallback(let parts) = rule.onMissingKey { parts.contains(.path) } else { false } }()
        }
    }

    /// The admission of `request` through every concurrency rule that applies to it, `nil` when none does.
    public func admission<R: RequestAttributes>(for request: R) -> ConcurrencyAdmission? {
        let path = self.needsPath ? PathNormalizer.normalize(request.uri) : "/"
        var steps = SmallArray<2, ConcurrencyAdmission.Step>()
        self.collectSteps(request, path: path, into: &steps)
        guard !steps.isEmpty else { return nil }
        return ConcurrencyAdmission(steps: steps, limiter: self)
    }

    /// The steps of `request`: every concurrency rule that applies, in file order, with its key and `max`.
    @inline(__always)
    private func collectSteps<R: RequestAttributes>(_ request: R, path: Substring, into steps: inout SmallArray<2, ConcurrencyAdmission.Step>) {
        for ruleRef in self.ruleRefs {
            ruleRef._withUnsafeGuaranteedRef { rule in Self.collectStep(rule, ruleRef, request, path: path, into: &steps) }
        }
    }

    @inline(__always)
    private static func collectStep<R: RequestAttributes>(
        _ rule: Rule,
        _ ruleRef: Unmanaged<Rule>,
        _ request: R,
        path: Substring,
        into steps: inout SmallArray<2, ConcurrencyAdmission.Step>
    ) {
        do {
            guard rule.matcher.matches(request, path: path) else { return }
            if !rule.exempt.isEmpty, rule.exempt.contains(where: { $0.contains(request.clientIP) }) { return }
            var keyed = rule.keyPrefix
            if !rule.key.combineKey(for: request, path: path, into: &keyed) {
                switch rule.onMissingKey {
                case .skip:
                    return
                case .deny:
                    steps.append(ConcurrencyAdmission.Step(ruleRef: ruleRef, key: nil, max: 0))
                    return
                case .fallback:
                    guard let fallback = rule.fallback else { return }
                    keyed = fallback.keyPrefix
                    guard fallback.key.combineKey(for: request, path: path, into: &keyed) else { return }
                }
            }
            let tierValue = rule.tierPart.flatMap { KeyBuilder.value(of: $0, request: request, path: path) }
            steps.append(ConcurrencyAdmission.Step(ruleRef: ruleRef, key: keyed.finalize(), max: rule.max(tierValue: tierValue)))
        }
    }

    /// ``admission(for:)``, reusing `spare` (the connection's previous admission) when it is released and nobody else
    /// holds it: a connection's requests then take their slots without an allocation each. A stale timer or wake that
    /// still holds the old admission makes it not unique, so a fresh one is made and identities stay distinct.
    public func admission<R: RequestAttributes>(for request: R, reusing spare: inout ConcurrencyAdmission?) -> ConcurrencyAdmission? {
        let path = self.needsPath ? PathNormalizer.normalize(request.uri) : "/"
        var steps = SmallArray<2, ConcurrencyAdmission.Step>()
        self.collectSteps(request, path: path, into: &steps)
        guard !steps.isEmpty else { return nil }
        if var reusable = spare.take(), reusable.isReleased, isKnownUniquelyReferenced(&reusable) {
            reusable.reset(steps: steps, limiter: self)
            spare = reusable
            return reusable
        }
        let admission = ConcurrencyAdmission(steps: steps, limiter: self)
        spare = admission
        return admission
    }

    /// The in-flight count and queue length of a key given in display form (`GET /limits`), `nil` for a rule
    /// without `concurrency`.
    public func keyState(rule name: String, displayKey: String) -> (max: Int, inFlight: Int, queued: Int)? {
        guard let rule = self.rules.first(where: { $0.name == name }) else { return nil }
        var keyed = rule.keyPrefix
        guard rule.key.combineKey(fromDisplayKey: displayKey, into: &keyed) else {
            return (rule.configuration.max, 0, 0)
        }
        let state = rule.slots.state(of: keyed.finalize())
        return (rule.configuration.max, state.inFlight, state.queued)
    }

    /// The slots of every rule of this configuration, in file order.
    public var ruleSlots: [ConcurrencyRuleSlots] { self.rules.map(\.slots) }
}

/// Why a request was refused, and what its answer says (the rule's `response`, `Retry-After`).
public struct ConcurrencyRefusal: Sendable {
    public var reason: ConcurrencyRefusalReason
    public var rule: String
    public var response: ResponseConfiguration
    /// Whole seconds; `nil` for a request refused for good (`on_missing_key: deny`).
    public var retryAfter: Int?
    /// `{limit}`: `N concurrent`.
    public var limit: String
}

/// What an admission says next.
public enum ConcurrencyStep: Sendable {
    /// Every rule gave a slot: go on (to the rate limits).
    case admitted
    /// The request waits in a rule's queue, for at most `timeout`; ``ConcurrencyAdmission/granted(_:)`` or
    /// ``ConcurrencyAdmission/timedOut()`` says what then.
    case waiting(timeout: Duration)
    /// No slot: answer this. The slots already taken are back.
    case refused(ConcurrencyRefusal)
    /// The shared store was asked (one round trip; the request waits unread): the answer comes through the `wake` of
    /// ``ConcurrencyAdmission/start(wake:)`` and ``ConcurrencyAdmission/granted(_:)``.
    case asking
}

/// One request's slots: taken rule by rule, all or nothing, and given back exactly once.
///
/// Not `Sendable`: it lives on its connection's event loop, owned by the connection's state machine, which calls
/// ``release()`` when the exchange is over (on every path: the response ended, the client left, the upstream failed, a
/// local answer, a refusal, the tunnel closed). `release()` is idempotent, so no path can return a slot twice.
public final class ConcurrencyAdmission {
    struct Step {
        /// Unretained: the admission's ``ConcurrencyAdmission/limiter`` keeps its rules alive. Rules are shared by every
        /// event loop, so retaining one per request would bounce its reference count between cores (measured: the
        /// retains of shared objects cost several times those of a connection's own).
        let ruleRef: Unmanaged<ConcurrencyLimiter.Rule>
        /// `nil`: `on_missing_key: deny`.
        let key: StorageKey?
        let max: Int

        var rule: ConcurrencyLimiter.Rule { self.ruleRef.takeUnretainedValue() }

        /// Runs `body` with the rule and its slots, retaining neither.
        @inline(__always)
        func withRule<T>(_ body: (ConcurrencyLimiter.Rule, ConcurrencyRuleSlots) -> T) -> T {
            self.ruleRef._withUnsafeGuaranteedRef { rule in rule.slotsRef._withUnsafeGuaranteedRef { body(rule, $0) } }
        }
    }

    private var steps: SmallArray<2, Step>
    /// The configuration's limiter: keeps the steps' rules alive for as long as this admission may use them (after a
    /// reload too, until its request ends).
    private(set) var limiter: ConcurrencyLimiter
    /// With a lease store (Redis): the slots are leases there, taken all or nothing in one round trip.
    var leases: (any ConcurrencyLeaseStore)? { self.limiter.leases }
    /// What this request holds through ``leases`` once admitted (`nil`: nothing yet).
    var leaseHeld: LeaseHold?
    /// The acquire on its way to ``leases``.
    var leaseAsking: ConcurrencyWaiter?
    /// Its place in a rule's local queue while the store refuses it: the waiter and the step it waits for.
    var leaseQueued: (waiter: ConcurrencyWaiter, step: Int)?
    /// The next step to take.
    private var next = 0
    /// Slots held: the first `held` steps' (those with a key).
    private var held = 0
    private var pending: (waiter: ConcurrencyWaiter, step: Int)?
    var wake: (@Sendable (ConcurrencyWaiter) -> Void)?
    public internal(set) var isReleased = false
    /// The first `mode: shadow` rule this request went over the `max` of (it was let through).
    public internal(set) var shadowRule: String?

    init(steps: SmallArray<2, Step>, limiter: ConcurrencyLimiter) {
        self.steps = steps
        self.limiter = limiter
    }

    /// Makes a released admission new again for the next request of its connection (``ConcurrencyLimiter/admission(for:reusing:)``).
    fileprivate func reset(steps: SmallArray<2, Step>, limiter: ConcurrencyLimiter) {
        precondition(self.isReleased, "only a released admission is reused")
        self.steps = steps
        // Assigned only when it changed (a reload): the same limiter needs no retain and release.
        if self.limiter !== limiter { self.limiter = limiter }
        self.leaseHeld = nil
        self.leaseAsking = nil
        self.leaseQueued = nil
        self.next = 0
        self.held = 0
        self.pending = nil
        self.wake = nil
        self.isReleased = false
        self.shadowRule = nil
    }

    /// The rule steps (for the lease code).
    var allSteps: SmallArray<2, Step> { self.steps }

    /// The first rule that applied (the access log's rule of an admitted request that no rate limit named).
    public var firstRule: String { self.steps[0].rule.name }
    /// Slots this request holds now.
    public var heldSlots: Int {
        if self.leases != nil { return self.leaseHeld == nil ? 0 : self.steps.count }
        return self.steps[0..<self.held].reduce(0) { $0 + ($1.key == nil ? 0 : 1) }
    }
    /// Whether it waits in a queue.
    public var isWaiting: Bool { self.pending != nil || self.leaseQueued != nil }
    /// Whether the slots are leases in a shared store (then a queued request asks again on a poll:
    /// ``pollLeases()``, every ``leasePollInterval``).
    public var usesLeases: Bool { self.leases != nil }

    /// Takes the slots of the remaining rules, in order.
    ///
    /// - Parameter wake: told, from any thread, when a queued request got its slot; it must hop to the request's own
    ///   event loop and call ``granted(_:)`` there.
    public func start(wake: @escaping @Sendable (ConcurrencyWaiter) -> Void) -> ConcurrencyStep {
        precondition(self.next == 0 && !self.isReleased, "an admission starts once")
        self.wake = wake
        if let leases = self.leases { return self.startLeases(leases) }
        return self.advance()
    }

    /// What taking one step's slot came to.
    private enum Take {
        case taken
        /// `shadow` only: taken over `max`.
        case takenOverMax
        case refused(ConcurrencyRefusalReason)
        case queued(ConcurrencyWaiter, timeout: Duration)
    }

    private func advance() -> ConcurrencyStep {
        while self.next < self.steps.count {
            let step = self.steps[self.next]
            guard let key = step.key else {
                return self.refuse(step, .missingKey)
            }
            let take: Take = step.withRule { rule, slots in
                if !rule.isEnforced {
                    return slots.acquire(key, max: step.max, shadow: true) == .acquiredOverMax ? .takenOverMax : .taken
                }
                if slots.acquire(key, max: step.max, shadow: false) != .full { return .taken }
                guard let queue = rule.configuration.queue, let wake = self.wake else { return .refused(.concurrency) }
                let waiter = ConcurrencyWaiter(key: key, max: step.max, wake: wake)
                switch slots.acquireOrEnqueue(waiter, queueSize: queue.size) {
                case .acquired: return .taken
                case .full: return .refused(.queueFull)
                case .queued: return .queued(waiter, timeout: queue.timeout)
                }
            }
            switch take {
            case .taken:
                break
            case .takenOverMax:
                let rule = step.rule
                if self.shadowRule == nil { self.shadowRule = rule.name }
                rule.slots.countShadow()
            case .refused(let reason):
                return self.refuse(step, reason)
            case .queued(let waiter, let timeout):
                self.pending = (waiter, self.next)
                return .waiting(timeout: timeout)
            }
            self.next += 1
            self.held = self.next
        }
        self.wake = nil
        return .admitted
    }

    /// Gives back what is held and says why.
    func refuse(_ step: Step, _ reason: ConcurrencyRefusalReason) -> ConcurrencyStep {
        step.rule.slots.countRefusal(reason)
        self.release()
        return .refused(
            ConcurrencyRefusal(
                reason: reason,
                rule: step.rule.name,
                response: step.rule.response,
                retryAfter: reason == .missingKey ? nil : step.rule.configuration.retryAfterSeconds,
                limit: step.rule.limitText
            )
        )
    }

    /// A slot was handed to `waiter` (call on the request's event loop). `nil` when `waiter` is not this admission's
    /// (the admission was released meanwhile, and returned that slot itself): nothing to do.
    public func granted(_ waiter: ConcurrencyWaiter) -> ConcurrencyStep? {
        if self.leases != nil { return self.leaseWoken(waiter) }
        guard let pending = self.pending, pending.waiter === waiter, !self.isReleased else { return nil }
        self.pending = nil
        self.next = pending.step + 1
        self.held = self.next
        return self.advance()
    }

    /// The queue timeout passed: the refusal, or `nil` when the slot was handed over already (its ``granted(_:)``
    /// is on its way) or nothing waits.
    public func timedOut() -> ConcurrencyRefusal? {
        if self.leases != nil { return self.leaseTimedOut() }
        guard let pending = self.pending else { return nil }
        let step = self.steps[pending.step]
        guard step.rule.slots.cancel(pending.waiter) else { return nil }
        self.pending = nil
        guard case .refused(let refusal) = self.refuse(step, .queueTimeout) else { return nil }
        return refusal
    }

    /// Gives every slot back and leaves any queue; the second and later calls do nothing.
    public func release() {
        guard !self.isReleased else { return }
        self.isReleased = true
        self.wake = nil
        if self.leases != nil {
            self.releaseLeases()
            return
        }
        if let pending = self.pending {
            self.pending = nil
            let step = self.steps[pending.step]
            if !step.rule.slots.cancel(pending.waiter), let key = step.key {
                // Handed over already: the slot is ours, and goes straight back.
                step.rule.slots.release(key)
            }
        }
        for index in 0..<self.held {
            let step = self.steps[index]
            if let key = step.key { step.withRule { _, slots in slots.release(key) } }
        }
        self.held = 0
    }

    /// Admissions dropped without ``release()`` while holding or awaiting a slot (their slots were returned here). A
    /// bug of the owner if it is ever above zero; the tests check it.
    public static var releasedOnDeinit: Int { Self.deinitReleases.load(ordering: .relaxed) }
    private static let deinitReleases = Atomic<Int>(0)

    deinit {
        // The owner releases; this is the net under a path that forgot to, so that a slot is never lost for good.
        if !self.isReleased && (self.held > 0 || self.pending != nil || self.leaseHeld != nil || self.leaseAsking != nil
            || self.leaseQueued != nil)
        {
            Self.deinitReleases.wrappingAdd(1, ordering: .relaxed)
            self.release()
        }
    }
}

extension ConcurrencyRuleSlots {
    func countShadow() {
        self.shadowOverMax.wrappingAdd(1, ordering: .relaxed)
    }
}
