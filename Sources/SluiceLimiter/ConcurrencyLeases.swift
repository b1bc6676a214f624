import SluiceConfig
import Synchronization

// Concurrency slots shared by several instances (issue 22 item 5): with `storage.kind: redis` a slot is a *lease* in
// the shared store, which expires unless its holder renews it, so the slots of an instance that died come back within
// one `storage.lease_ttl`. SluiceLimiter only states what it needs (``ConcurrencyLeaseStore``); SluiceRedis implements
// it (`RedisStore+Leases.swift`), and ``ConcurrencyAdmission`` drives it.

/// A store that keeps concurrency slots as leases shared by every instance.
public protocol ConcurrencyLeaseStore: AnyObject, Sendable {
    /// The key of the hasher that names slots: fixed, so every instance names a key's slots alike.
    var keySeed: StorageKey { get }
    /// What happens while the store cannot answer: `allow` admits, `deny` refuses with 503, `local` takes
    /// `max / instances` (at least 1) slots in this instance's memory.
    var leaseOnError: RedisStorageConfiguration.OnError { get }
    /// `instances` of the storage settings (the divisor of `on_error: local`).
    var leaseInstances: Int { get }

    /// Takes one lease per item, all or nothing (a `shadow` item is taken even over its `max`), and calls
    /// `completion` once, on any thread. The store renews the leases of an answer ``ConcurrencyLeaseReply/acquired(_:overMax:)``
    /// until ``releaseLeases(_:)``.
    func acquireLeases(_ items: [ConcurrencyLeaseItem], completion: @escaping @Sendable (ConcurrencyLeaseReply) -> Void)

    /// Gives back the leases of one acquisition (once) and stops renewing them.
    func releaseLeases(_ handle: ConcurrencyLeaseHandle)
}

/// One slot to take: a rule's key, with the `max` that request is held to.
public struct ConcurrencyLeaseItem: Sendable, Equatable {
    public var rule: String
    public var key: StorageKey
    public var max: Int
    /// `false` for `mode: shadow`: taken even over `max` (then reported in `overMax`).
    public var enforced: Bool

    public init(rule: String, key: StorageKey, max: Int, enforced: Bool) {
        self.rule = rule
        self.key = key
        self.max = max
        self.enforced = enforced
    }
}

/// What a lease store answered.
public enum ConcurrencyLeaseReply: Sendable {
    /// Every lease was taken. `overMax`: the index of the first shadow item that was over its `max`, `nil` for none.
    case acquired(ConcurrencyLeaseHandle, overMax: Int?)
    /// The item at `index` (the first enforced one at its `max`) refused; nothing was taken.
    case refused(index: Int)
    /// The store could not answer (down, too slow, circuit open): `on_error` decides.
    case unavailable
}

/// The leases of one acquisition: what the store needs to renew and give them back.
public final class ConcurrencyLeaseHandle: Sendable {
    /// The member naming this request in each key's set (`instance:request`).
    public let member: String
    /// The store's keys, one per item.
    public let keys: [String]

    public init(member: String, keys: [String]) {
        self.member = member
        self.keys = keys
    }
}

/// Where a request stands with a lease store (kept in its ``ConcurrencyWaiter``, which crosses threads).
enum LeaseAsk: Sendable {
    /// Not asking.
    case idle
    /// An acquire is on its way.
    case asking
    /// The store answered; the answer waits for the request's loop.
    case replied(ConcurrencyLeaseReply)
    /// The request went away while asking: the answer's leases, if any, are given back when it comes.
    case cancelled
}

extension ConcurrencyRuleSlots {
    // With a lease store, this table counts the requests *of this instance* (metrics, `GET /limits`) and holds the
    // local queue (FIFO, `queue.size`); the limit itself is decided by the store. Only the head of a key's queue asks
    // the store again (on a poll, or at once when a request of that key ends here).

    /// A request of this instance holds a lease of `key`.
    func countLease(_ key: StorageKey) {
        self.withSlots(of: key) { slots in slots[key, default: Slot()].inFlight += 1 }
        self.addInFlight(1, key)
    }

    /// A request of this instance gave back its lease of `key`; returns the head of the key's queue, to ask again.
    func uncountLease(_ key: StorageKey) -> ConcurrencyWaiter? {
        let head: ConcurrencyWaiter?? = self.withSlots(of: key) { slots in
            guard let index = slots.index(forKey: key), slots.values[index].inFlight > 0 else { return .none }
            slots.values[index].inFlight -= 1
            let head = slots.values[index].waiters.first
            if slots.values[index].inFlight == 0 && slots.values[index].waiters.isEmpty { slots.remove(at: index) }
            return .some(head)
        }
        guard let head else { return nil }
        self.addInFlight(-1, key)
        return head
    }

    /// Puts `waiter` at the end of its key's local queue when fewer than `queueSize` wait.
    func enqueueForLease(_ waiter: ConcurrencyWaiter, queueSize: Int) -> Bool {
        let queued: Bool = self.withSlots(of: waiter.key) { slots in
            let waiting = slots[waiter.key]?.waiters.count ?? 0
            guard waiting < queueSize else { return false }
            slots[waiter.key, default: Slot()].waiters.append(waiter)
            return true
        }
        if queued { self.addQueued(1, waiter.key) }
        return queued
    }

    /// Takes `waiter` out of its key's local queue; returns the new head when `waiter` was the head.
    func dequeueForLease(_ waiter: ConcurrencyWaiter) -> ConcurrencyWaiter? {
        let result: (removed: Bool, head: ConcurrencyWaiter?) = self.withSlots(of: waiter.key) { slots in
            guard let index = slots.index(forKey: waiter.key),
                let position = slots.values[index].waiters.firstIndex(where: { $0 === waiter })
            else { return (false, nil) }
            slots.values[index].waiters.remove(at: position)
            let head = position == 0 ? slots.values[index].waiters.first : nil
            if slots.values[index].inFlight == 0 && slots.values[index].waiters.isEmpty { slots.remove(at: index) }
            return (true, head)
        }
        if result.removed { self.addQueued(-1, waiter.key) }
        return result.head
    }

    /// Whether `waiter` is first in its key's local queue.
    func isFirstInQueue(_ waiter: ConcurrencyWaiter) -> Bool {
        self.withSlots(of: waiter.key) { slots in slots[waiter.key]?.waiters.first === waiter }
    }
}

extension ConcurrencyAdmission {
    /// How long a queued request waits before its key's queue head asks the store again, when no request of that key
    /// ended on this instance meanwhile (a slot freed by another instance is seen no later than this).
    public static let leasePollInterval: Duration = .milliseconds(50)
}

/// What an admitted request holds through a lease store.
enum LeaseHold {
    /// Leases in the store (renewed by it until released).
    case leases(ConcurrencyLeaseHandle)
    /// Slots of this instance's `on_error: local` table (the store was away).
    case local
    /// Nothing: the store was away and `on_error` is `allow`.
    case unchecked
}

extension ConcurrencyAdmission {
    /// The answer of a lease store's `on_error: deny` (503, as the rate limits say when their store is away).
    static let storageUnavailableResponse = ResponseConfiguration(
        status: 503,
        contentType: "text/plain; charset=utf-8",
        body: BodyTemplate(parts: [.literal("concurrency storage unavailable\n")], source: "concurrency storage unavailable\n"),
        rateLimitHeaders: .none
    )

    /// The first step with a lease store: refuses a missing key at once, else asks the store for every slot.
    func startLeases(_ leases: any ConcurrencyLeaseStore) -> ConcurrencyStep {
        for step in self.allSteps where step.key == nil {
            return self.refuse(step, .missingKey)
        }
        self.askLeases(leases)
        return .asking
    }

    /// Sends one acquire of every step's slot, all or nothing; its answer comes back through the waiter's `wake`.
    private func askLeases(_ leases: any ConcurrencyLeaseStore) {
        guard let wake = self.wake, let firstKey = self.allSteps[0].key else { return }
        let waiter = ConcurrencyWaiter(key: firstKey, max: 0, wake: wake)
        waiter.lease.withLock { $0 = .asking }
        self.leaseAsking = waiter
        var items: [ConcurrencyLeaseItem] = []
        items.reserveCapacity(self.allSteps.count)
        for step in self.allSteps {
            guard let key = step.key else { continue }
            items.append(ConcurrencyLeaseItem(rule: step.rule.name, key: key, max: step.max, enforced: step.rule.isEnforced))
        }
        leases.acquireLeases(items) { reply in
            let cancelled = waiter.lease.withLock { state -> Bool in
                if case .cancelled = state { return true }
                state = .replied(reply)
                return false
            }
            if cancelled {
                // The request went away while asking: what it got goes straight back.
                if case .acquired(let handle, _) = reply { leases.releaseLeases(handle) }
                return
            }
            waiter.wake(waiter)
        }
    }

    /// `granted(_:)` with a lease store: the store answered (`waiter` is the acquire), or a queued request was told
    /// to ask again (`waiter` is its place in the queue).
    func leaseWoken(_ waiter: ConcurrencyWaiter) -> ConcurrencyStep? {
        guard !self.isReleased, let leases = self.leases else { return nil }
        if let asking = self.leaseAsking, asking === waiter {
            let state = waiter.lease.withLock { $0 }
            guard case .replied(let reply) = state else { return nil }
            self.leaseAsking = nil
            return self.leaseReplied(reply, leases)
        }
        if let queued = self.leaseQueued, queued.waiter === waiter {
            self.pollLeases()
        }
        return nil
    }

    /// A request waiting in a local queue asks the store again, when it is first in its key's queue and not asking
    /// already (call every ``leasePollInterval`` while ``isWaiting``); its answer comes through `wake`.
    public func pollLeases() {
        guard !self.isReleased, let leases = self.leases, let queued = self.leaseQueued, self.leaseAsking == nil,
            self.allSteps[queued.step].rule.slots.isFirstInQueue(queued.waiter)
        else { return }
        self.askLeases(leases)
    }

    private func leaseReplied(_ reply: ConcurrencyLeaseReply, _ leases: any ConcurrencyLeaseStore) -> ConcurrencyStep? {
        switch reply {
        case .acquired(let handle, let overMax):
            if let overMax, overMax >= 0, overMax < self.allSteps.count {
                let rule = self.allSteps[overMax].rule
                if self.shadowRule == nil { self.shadowRule = rule.name }
                rule.slots.countShadow()
            }
            return self.holdLeases(.leases(handle))
        case .refused(let index):
            return self.leaseFull(at: Swift.min(Swift.max(0, index), self.allSteps.count - 1))
        case .unavailable:
            switch leases.leaseOnError {
            case .allow:
                return self.holdLeases(.unchecked)
            case .deny:
                let step = self.allSteps[0]
                step.rule.slots.countRefusal(.storageUnavailable)
                self.release()
                return .refused(
                    ConcurrencyRefusal(
                        reason: .storageUnavailable,
                        rule: step.rule.name,
                        response: Self.storageUnavailableResponse,
                        retryAfter: 1,
                        limit: step.rule.limitText
                    )
                )
            case .local:
                return self.takeLocally(instances: leases.leaseInstances)
            }
        }
    }

    /// `on_error: local`: every step's slot in this instance's table, `max / instances` (at least 1), all or nothing.
    private func takeLocally(instances: Int) -> ConcurrencyStep? {
        let steps = self.allSteps
        for index in 0..<steps.count {
            let step = steps[index]
            guard let slots = step.rule.fallbackSlots, let key = step.key else { continue }
            let localMax = Swift.max(1, step.max / Swift.max(1, instances))
            switch slots.acquire(key, max: localMax, shadow: !step.rule.isEnforced) {
            case .acquired:
                break
            case .acquiredOverMax:
                if self.shadowRule == nil { self.shadowRule = step.rule.name }
                step.rule.slots.countShadow()
            case .full:
                for back in 0..<index {
                    if let key = steps[back].key { steps[back].rule.fallbackSlots?.release(key) }
                }
                return self.leaseFull(at: index)
            }
        }
        return self.holdLeases(.local)
    }

    private func holdLeases(_ hold: LeaseHold) -> ConcurrencyStep {
        self.leaveLeaseQueue()
        self.leaseHeld = hold
        for step in self.allSteps {
            if let key = step.key { step.rule.slots.countLease(key) }
        }
        self.wake = nil
        return .admitted
    }

    /// Step `index` is at its `max`: wait in its rule's local queue when it has one (or keep waiting there), else
    /// refuse.
    private func leaseFull(at index: Int) -> ConcurrencyStep? {
        let step = self.allSteps[index]
        guard step.rule.isEnforced, let queue = step.rule.configuration.queue, let wake = self.wake, let key = step.key
        else {
            return self.refuse(step, .concurrency)
        }
        // Already queued: wait for the next poll or the next release of the key here.
        if self.leaseQueued != nil { return nil }
        let waiter = ConcurrencyWaiter(key: key, max: 0, wake: wake)
        guard step.rule.slots.enqueueForLease(waiter, queueSize: queue.size) else {
            return self.refuse(step, .queueFull)
        }
        self.leaseQueued = (waiter, index)
        return .waiting(timeout: queue.timeout)
    }

    private func leaveLeaseQueue() {
        guard let queued = self.leaseQueued else { return }
        self.leaseQueued = nil
        if let head = self.allSteps[queued.step].rule.slots.dequeueForLease(queued.waiter) { head.wake(head) }
    }

    /// `timedOut()` with a lease store: the request leaves its queue (and any acquire on its way is cancelled).
    func leaseTimedOut() -> ConcurrencyRefusal? {
        guard !self.isReleased, let queued = self.leaseQueued else { return nil }
        guard case .refused(let refusal) = self.refuse(self.allSteps[queued.step], .queueTimeout) else { return nil }
        return refusal
    }

    /// `release()` with a lease store: cancels an acquire on its way, leaves the queue, gives back what is held, and
    /// tells the first waiter of each key here to ask again.
    func releaseLeases() {
        guard let leases = self.leases else { return }
        if let asking = self.leaseAsking {
            self.leaseAsking = nil
            let reply: ConcurrencyLeaseReply? = asking.lease.withLock { state in
                defer { state = .cancelled }
                if case .replied(let reply) = state { return reply }
                return nil
            }
            if case .acquired(let handle, _) = reply { leases.releaseLeases(handle) }
        }
        self.leaveLeaseQueue()
        guard let hold = self.leaseHeld else { return }
        self.leaseHeld = nil
        switch hold {
        case .leases(let handle):
            leases.releaseLeases(handle)
        case .local:
            for step in self.allSteps {
                if let key = step.key { step.rule.fallbackSlots?.release(key) }
            }
        case .unchecked:
            break
        }
        for step in self.allSteps {
            if let key = step.key, let head = step.rule.slots.uncountLease(key) { head.wake(head) }
        }
    }
}
