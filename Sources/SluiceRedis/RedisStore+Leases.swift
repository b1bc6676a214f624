import NIOCore
import NIOPosix
import SluiceConfig
import SluiceLimiter
import Synchronization

/// The lease side of a Redis store (issue 22 item 5): this instance's id, its leases to renew, and the batchers.
final class RedisLeaseState: Sendable {
    /// Random per start: names this instance in every lease it takes.
    let instance: String
    private let sequence = Atomic<UInt64>(0)
    let ttlMilliseconds: Int64
    /// Leases held now, renewed every third of the TTL until released.
    let held = Mutex<[ObjectIdentifier: ConcurrencyLeaseHandle]>([:])
    /// The renewal timer, started with the first lease (a configuration without concurrency rules never starts it).
    private let renewal = Mutex<(started: Bool, task: RepeatedTask?)>((false, nil))
    /// Set once the timer is started: the per-acquire check without the lock.
    private let renewalStarted = Atomic<Bool>(false)
    /// One per event loop, made up front (finding a loop's batcher takes no lock).
    let batchers: [ObjectIdentifier: NIOLoopBoundBox<LeaseBatcher>]
    let scriptSHA = Mutex<String?>(nil)
    let group: any EventLoopGroup

    init(group: any EventLoopGroup, ttl: Duration) {
        var generator = SystemRandomNumberGenerator()
        let random: UInt64 = generator.next()
        self.instance = String(random, radix: 16)
        let (seconds, attoseconds) = ttl.components
        self.ttlMilliseconds = max(1, seconds * 1000 + attoseconds / 1_000_000_000_000_000)
        var batchers: [ObjectIdentifier: NIOLoopBoundBox<LeaseBatcher>] = [:]
        for loop in group.makeIterator() {
            batchers[ObjectIdentifier(loop)] = .makeBoxSendingValue(LeaseBatcher(eventLoop: loop), eventLoop: loop)
        }
        self.batchers = batchers
        self.group = group
    }

    /// A member naming a new request of this instance.
    func nextMember() -> String {
        self.instance + ":" + String(self.sequence.wrappingAdd(1, ordering: .relaxed).newValue)
    }

    /// Starts the renewal timer once: every third of the TTL, `renew` runs on one of the group's loops.
    func startRenewing(_ renew: @escaping @Sendable () -> Void) {
        guard !self.renewalStarted.load(ordering: .relaxed) else { return }
        self.renewalStarted.store(true, ordering: .relaxed)
        self.renewal.withLock { renewal in
            guard !renewal.started else { return }
            renewal.started = true
            let every = TimeAmount.milliseconds(max(1, self.ttlMilliseconds / 3))
            renewal.task = self.group.any().scheduleRepeatedTask(initialDelay: every, delay: every) { _ in renew() }
        }
    }

    func stopRenewing() {
        self.renewal.withLock { renewal in
            renewal.task?.cancel()
            renewal.task = nil
            renewal.started = true
        }
    }
}

extension RedisStore: ConcurrencyLeaseStore {
    public var concurrencyLeases: (any ConcurrencyLeaseStore)? { self }
    public var leaseOnError: RedisStorageConfiguration.OnError { self.configuration.onError }
    public var leaseInstances: Int { self.configuration.instances }

    /// The sorted set of a rule's key: `PREFIX` `cc:` rule name `:` key digest.
    func leaseKey(rule: String, key: StorageKey) -> String {
        if self.cluster != nil {
            // Redis Cluster: the key's own tag, so every rule's set of one key digest shares a slot.
            return self.prefix + "cc:{" + RedisKeySlot.tagText(max(1, UInt32(truncatingIfNeeded: key.high >> 32))) + "}" + rule + ":"
                + key.description
        }
        return self.prefix + "cc:" + rule + ":" + key.description
    }

    public func acquireLeases(
        _ items: [ConcurrencyLeaseItem],
        completion: @escaping @Sendable (ConcurrencyLeaseReply) -> Void
    ) {
        if self.cluster != nil {
            self.acquireLeasesInCluster(items, completion: completion)
            return
        }
        let now = LimiterInstant.now()
        guard self.breaker.allowsRequest(now: now) else {
            completion(.unavailable)
            return
        }
        let member = self.leaseState.nextMember()
        let keys = items.map { self.leaseKey(rule: $0.rule, key: $0.key) }
        let request = LeaseRequest(
            operation: .acquire,
            member: member,
            keys: keys,
            maxes: items.map(\.max),
            enforced: items.map(\.enforced)
        ) { result in
            switch result {
            case .success(let answer):
                self.breaker.recordSuccess()
                if answer.refused > 0 {
                    completion(.refused(index: answer.refused - 1))
                    return
                }
                let handle = ConcurrencyLeaseHandle(member: member, keys: keys)
                self.leaseState.held.withLock { $0[ObjectIdentifier(handle)] = handle }
                self.leaseState.startRenewing { [weak self] in self?.renewLeases() }
                completion(.acquired(handle, overMax: answer.overMax > 0 ? answer.overMax - 1 : nil))
            case .failure(let error):
                self.breaker.recordFailure(error, now: now)
                // The acquire may have been applied before the reply was lost: take it back if Redis can hear it
                // (else the lease, never renewed, expires within one TTL).
                self.runLease(LeaseRequest(operation: .release, member: member, keys: keys))
                completion(.unavailable)
            }
        }
        self.runLease(request)
    }

    public func releaseLeases(_ handle: ConcurrencyLeaseHandle) {
        self.leaseState.held.withLock { _ = $0.removeValue(forKey: ObjectIdentifier(handle)) }
        // Sent even while the breaker is open: a release that fails costs nothing, one that is skipped holds a slot
        // for up to a TTL.
        self.runLease(LeaseRequest(operation: .release, member: handle.member, keys: handle.keys))
    }

    /// Moves the expiry of every lease held here to now + TTL, in calls of at most ``LeaseBatcher/maxRequests``.
    func renewLeases() {
        let handles = self.leaseState.held.withLock { Array($0.values) }
        guard !handles.isEmpty else { return }
        var chunk: [LeaseRequest] = []
        chunk.reserveCapacity(min(handles.count, LeaseBatcher.maxRequests))
        for handle in handles {
            chunk.append(LeaseRequest(operation: .renew, member: handle.member, keys: handle.keys))
            if chunk.count == LeaseBatcher.maxRequests {
                self.sendLeases(chunk, preferring: nil)
                chunk.removeAll(keepingCapacity: true)
            }
        }
        if !chunk.isEmpty { self.sendLeases(chunk, preferring: nil) }
    }

    /// Sends `request` with the others of this tick when called on one of the group's loops, else alone.
    func runLease(_ request: LeaseRequest) {
        if self.cluster != nil {
            self.sendLeasesInCluster([request], preferring: MultiThreadedEventLoopGroup.currentEventLoop)
            return
        }
        let loop = MultiThreadedEventLoopGroup.currentEventLoop
        if let loop, let batcher = self.leaseState.batchers[ObjectIdentifier(loop)] {
            batcher.value.add(request, store: self)
        } else {
            self.sendLeases([request], preferring: loop)
        }
    }

    /// Runs the lease script for `requests` in one call (`EVALSHA`, or `EVAL` when Redis does not know it).
    func sendLeases(_ requests: [LeaseRequest], preferring loop: (any EventLoop)?) {
        if self.cluster != nil {
            self.sendLeasesInCluster(requests, preferring: loop)
            return
        }
        let ttl = self.leaseState.ttlMilliseconds
        guard let sha = self.leaseState.scriptSHA.withLock({ $0 }) else {
            self.loadAndRunLeases(requests, preferring: loop)
            return
        }
        let call = LeaseRequest.call("EVALSHA", sha, requests: requests, ttlMilliseconds: ttl)
        self.pool.send(call, preferring: loop).whenComplete { result in
            if case .failure(RedisError.server(let message)) = result, message.hasPrefix("NOSCRIPT") {
                self.loadAndRunLeases(requests, preferring: loop)
            } else {
                LeaseRequest.complete(requests, with: result)
            }
        }
    }

    private func loadAndRunLeases(_ requests: [LeaseRequest], preferring loop: (any EventLoop)?) {
        let call = LeaseRequest.call("EVAL", LeaseScript.source, requests: requests, ttlMilliseconds: self.leaseState.ttlMilliseconds)
        self.pool.send(call, preferring: loop).whenComplete { result in
            LeaseRequest.complete(requests, with: result)
        }
        self.pool.send(RedisCommand("SCRIPT", "LOAD", LeaseScript.source), preferring: loop).whenSuccess { reply in
            if let sha = reply.string { self.leaseState.scriptSHA.withLock { $0 = sha } }
        }
    }

    /// Leases held by this instance now (tests, metrics).
    public var heldLeaseCount: Int { self.leaseState.held.withLock { $0.count } }
}
