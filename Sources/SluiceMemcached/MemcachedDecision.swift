import NIOCore
import SluiceLimiter

/// One request's decision in memcached: the contract of ``RateLimitStore/decide(_:now:)`` (check every item, admit
/// when every enforced item admits, count all or nothing, block on a breach) played out in a few pipelined rounds.
///
/// 1. **Read.** One exchange: window counters are incremented right away when the item consumes (`ma` with
///    auto-create; a sliding window also reads its previous window), every other counter, the compare-and-swap
///    states and the penalty keys are read (`mg`, with `c` for a CAS value).
/// 2. **Decide** (``evaluate()``): each item's verdict is the limiter's own step on what was read (for an
///    incremented counter, on the count before this request's cost), then SPEC §2's rules across the items.
/// 3. **Write.** One exchange: admitted, the CAS states of the items that count are written with `C<cas>` (or `ME`,
///    add, when there was none) and shadow counters that do not count are decremented; refused, every incremented
///    counter is decremented and the breaches write their penalty keys.
/// 4. A CAS write lost to another writer (`EX`, `NS`, `NF`) re-reads that item after a short random pause (up to
///    0.2 ms per attempt) and decides again (back to 2, with the items already written kept), at most
///    ``MemcachedStore/maximumCASAttempts`` times; a request refused on the way takes back what it wrote.
///
/// A server failing (an error, a timeout, a malformed reply) ends the decision with `on_error` after taking back
/// what can be (best effort), and so does the decision budget (`timeout` + 500 ms) running out, so no request
/// waits longer than that however many rounds it would have needed.
///
/// Lives on `loop`: every callback runs there (`hop` + `assumeIsolated`), so its state needs no lock.
final class MemcachedDecision {
    private enum Kind {
        case fixedWindow
        case slidingWindow
        /// token bucket, gcra, moving window: a state read and written with compare-and-swap.
        case swap
    }

    /// What an item needs in memcached, and what was read and done.
    private struct Plan {
        var kind: Kind
        var server: Int
        var windowStart: Int64 = 0
        /// The window counter (current window), or the CAS key.
        var key: String
        /// The previous window's counter (`sliding_window`).
        var previousKey: String?
        /// `ma` is to take the cost in round 1; `applied` once it did: then the cost must be given back unless the
        /// request is counted.
        var incremented = false
        var applied = false
        /// The count read (after this request's increment when `incremented`), and the previous window's.
        var count: Int64 = 0
        var previousCount: Int64 = 0
        /// The CAS state read (`nil`: absent) and its CAS value.
        var stamps: [Int64]?
        var cas: UInt64?
        /// The state to write if the item counts, with when it means nothing (its TTL).
        var pending: (stamps: [Int64], idleAt: Int64)?
        /// How to take a written state back: shift the timestamp back by this much, or drop units of a stamp.
        var undo: Undo?
        var written = false
        var giveBackSent = false
    }

    private enum Undo {
        case shift(Int64)
        case stamps(Int64, units: Int)
    }

    private struct PenaltyPlan {
        var server: Int
        var key: String
        var until: Int64?
    }

    private let store: MemcachedStore
    private var batch: DecisionBatch
    private let now: LimiterInstant
    private let loop: any EventLoop
    private let completion: @Sendable (DecisionBatch) -> Void
    private var plans: [Plan] = []
    /// By item index; only items with a `block_for` key.
    private var penalties: [Int: PenaltyPlan] = [:]
    private var attempts = 1
    private var finished = false
    private var deadline: Scheduled<Void>?
    private let started = ContinuousClock.now
    /// The one compare-and-swap key of the request, taken in the store's ``MemcachedKeyGate`` (requests with
    /// several such keys are not queued); `holdsGate` while this decision has it.
    private var gateKey: String?
    private var holdsGate = false

    init(
        store: MemcachedStore,
        batch: DecisionBatch,
        now: LimiterInstant,
        loop: any EventLoop,
        completion: @escaping @Sendable (DecisionBatch) -> Void
    ) {
        self.store = store
        self.batch = batch
        self.now = now
        self.loop = loop
        self.completion = completion
    }

    // MARK: Rounds

    /// On `loop`.
    func start() {
        for index in 0..<self.batch.items.count {
            let item = self.batch.items[index]
            let server = self.store.server(for: item.key)
            let period = item.limit.periodNanoseconds
            var plan: Plan
            switch item.algorithm {
            case .fixedWindow, .slidingWindow:
                let start = MemcachedKeyspace.windowStart(self.now, period: period)
                plan = Plan(
                    kind: item.algorithm == .fixedWindow ? .fixedWindow : .slidingWindow,
                    server: server,
                    windowStart: start,
                    key: self.store.keyspace.window(item.key, windowStart: start, period: period)
                )
                if item.algorithm == .slidingWindow {
                    plan.previousKey = self.store.keyspace.window(item.key, windowStart: start - period, period: period)
                }
                plan.incremented = item.mode == .consume && item.cost > 0
            case .tokenBucket, .gcra, .movingWindow:
                plan = Plan(kind: .swap, server: server, key: self.store.keyspace.name(item.key))
            }
            self.plans.append(plan)
            if let penaltyKey = item.penaltyKey {
                self.penalties[index] = PenaltyPlan(server: self.store.server(for: penaltyKey), key: self.store.keyspace.name(penaltyKey))
            }
        }
        // Every server of the request must take decisions now; else `on_error` decides, before anything is sent.
        var granted: [Int] = []
        for server in self.involvedServers {
            guard self.store.servers[server].breaker.allowsRequest(now: self.now) else {
                for other in granted { self.store.servers[other].breaker.probeAbandoned(now: self.now) }
                self.finish(self.store.decideWithoutMemcached(self.batch, now: self.now), observed: nil)
                return
            }
            granted.append(server)
        }
        self.deadline = self.loop.assumeIsolated().scheduleTask(in: self.store.decisionBudget) {
            self.giveUp(MemcachedError.timeout, server: nil)
        }
        let swapKeys = self.plans.filter { $0.kind == .swap }.map(\.key)
        if swapKeys.count == 1 {
            self.gateKey = swapKeys[0]
            let bound = NIOLoopBound(self, eventLoop: self.loop)
            let entered = self.store.gate.enter(swapKeys[0]) {
                bound.eventLoop.execute { bound.value.proceed() }
            }
            guard entered else { return }
        }
        self.proceed()
    }

    /// Round 1, once this decision may go (it holds its key in the gate, or needs none).
    private func proceed() {
        if self.gateKey != nil {
            self.holdsGate = true
            // Given up while it waited: pass the key on.
            if self.finished {
                self.releaseGate()
                return
            }
        }
        self.read(self.plans.indices.map { $0 }, penalties: true)
    }

    private func releaseGate() {
        guard self.holdsGate, let key = self.gateKey else { return }
        self.holdsGate = false
        self.store.gate.leave(key)
    }

    private var involvedServers: [Int] {
        var servers = Set(self.plans.map(\.server))
        for penalty in self.penalties.values { servers.insert(penalty.server) }
        return servers.sorted()
    }

    /// Round 1 for `indices` (and the penalty keys on the first round): increments and reads, pipelined.
    private func read(_ indices: [Int], penalties: Bool) {
        var exchanges: [EventLoopFuture<Void>] = []
        for index in indices {
            let item = self.batch.items[index]
            let plan = self.plans[index]
            switch plan.kind {
            case .fixedWindow, .slidingWindow:
                let until = plan.windowStart + item.limit.periodNanoseconds * (plan.kind == .fixedWindow ? 1 : 2)
                let command =
                    plan.incremented
                    ? MemcachedCommands.increment(plan.key, by: item.cost, ttl: MemcachedKeyspace.ttl(until: until, now: self.now))
                    : MemcachedCommands.get(plan.key)
                exchanges.append(
                    self.exchange(command, server: plan.server) { reply in
                        guard let count = try Self.count(reply, created: plan.incremented) else {
                            throw MemcachedError.protocolError("not a counter under \(plan.key)")
                        }
                        self.plans[index].count = count
                        if plan.incremented { self.plans[index].applied = true }
                    }
                )
                if let previousKey = plan.previousKey {
                    exchanges.append(
                        self.exchange(MemcachedCommands.get(previousKey), server: plan.server) { reply in
                            guard let count = try Self.count(reply, created: false) else {
                                throw MemcachedError.protocolError("not a counter under \(previousKey)")
                            }
                            self.plans[index].previousCount = count
                        }
                    )
                }
            case .swap:
                exchanges.append(
                    self.exchange(MemcachedCommands.getWithCAS(plan.key), server: plan.server) { reply in
                        let (stamps, cas) = try Self.state(reply, key: plan.key)
                        self.plans[index].stamps = stamps
                        self.plans[index].cas = cas
                    }
                )
            }
        }
        if penalties {
            for (index, penalty) in self.penalties {
                exchanges.append(
                    self.exchange(MemcachedCommands.get(penalty.key), server: penalty.server) { reply in
                        let (stamps, _) = try Self.state(reply, key: penalty.key)
                        self.penalties[index]?.until = stamps?.first
                    }
                )
            }
        }
        self.whenAll(exchanges) { self.evaluate() }
    }

    /// Decides from what was read, then writes what the decision needs (round 2).
    private func evaluate() {
        let t = self.now.nanosecondsSinceEpoch
        var admitted = true
        for index in 0..<self.batch.items.count {
            var result = self.result(index)
            if let until = self.penalties[index]?.until, until > t {
                Self.blockedByBreach(&result, forNanoseconds: until - t)
            }
            self.batch.results[index] = result
            if self.batch.items[index].isEnforced && !result.verdict.isAdmitted { admitted = false }
        }
        self.batch.isAdmitted = admitted

        var exchanges: [EventLoopFuture<Void>] = []
        var conflicts: [Int] = []
        for index in 0..<self.batch.items.count {
            let item = self.batch.items[index]
            let counts = admitted && item.mode == .consume && (item.isEnforced || self.groupAdmitted(item.group))
            let plan = self.plans[index]
            switch plan.kind {
            case .fixedWindow, .slidingWindow:
                if plan.applied && !counts && !plan.giveBackSent {
                    self.plans[index].giveBackSent = true
                    exchanges.append(self.exchange(MemcachedCommands.decrement(plan.key, by: item.cost), server: plan.server) { _ in })
                }
            case .swap:
                if counts && !plan.written, let pending = plan.pending {
                    let command = MemcachedCommands.store(
                        plan.key,
                        MemcachedKeyspace.encode(pending.stamps),
                        ttl: MemcachedKeyspace.ttl(until: pending.idleAt, now: self.now),
                        cas: plan.stamps == nil ? nil : plan.cas
                    )
                    exchanges.append(
                        self.exchange(command, server: plan.server) { reply in
                            switch reply.status {
                            case .done: self.plans[index].written = true
                            case .exists, .notStored, .notFound: conflicts.append(index)
                            default: throw MemcachedError.protocolError("unexpected \(reply.status.rawValue) to ms")
                            }
                        }
                    )
                } else if !counts && plan.written {
                    exchanges.append(self.takeBack(index))
                }
            }
        }
        if !admitted {
            // A breach blocks the key (`block_for`); refusals because of a running block never extend it.
            for index in 0..<self.batch.items.count {
                let item = self.batch.items[index]
                guard item.isEnforced, !self.batch.results[index].verdict.isAdmitted, !self.batch.results[index].isPenaltyBlocked,
                    let penalty = self.penalties[index], item.penaltyNanoseconds > 0
                else { continue }
                let until = t &+ item.penaltyNanoseconds
                let command = MemcachedCommands.store(
                    penalty.key,
                    MemcachedKeyspace.encode([until]),
                    ttl: MemcachedKeyspace.ttl(until: until, now: self.now),
                    cas: nil,
                    swap: false
                )
                exchanges.append(self.exchange(command, server: penalty.server) { _ in })
                Self.blockedByBreach(&self.batch.results[index], forNanoseconds: item.penaltyNanoseconds)
            }
        }
        self.whenAll(exchanges) {
            guard !conflicts.isEmpty else {
                self.finish(self.batch, observed: false)
                return
            }
            // Lost races: read those states again and decide again.
            self.attempts += 1
            guard self.attempts <= MemcachedStore.maximumCASAttempts else {
                self.giveUp(MemcachedContention(), server: nil)
                return
            }
            // A short random pause, growing with the attempts, so writers that keep colliding spread out.
            let pause = TimeAmount.microseconds(Int64.random(in: 0...(200 * Int64(self.attempts))))
            self.loop.assumeIsolated().scheduleTask(in: pause) {
                guard !self.finished else { return }
                self.read(conflicts, penalties: false)
            }
        }
    }

    /// The verdict of item `index` from what was read; stores the CAS state to write if it counts.
    private func result(_ index: Int) -> StoreItemResult {
        let item = self.batch.items[index]
        let plan = self.plans[index]
        switch plan.kind {
        case .fixedWindow:
            let before = max(0, plan.incremented ? plan.count - item.cost : plan.count)
            let step = FixedWindow.step(.init(windowStart: plan.windowStart, used: before), now: self.now, cost: item.cost, limit: item.limit)
            return StoreItemResult(verdict: step.verdict, remaining: step.remaining, resetNanoseconds: step.resetNanoseconds)
        case .slidingWindow:
            let before = max(0, plan.incremented ? plan.count - item.cost : plan.count)
            let state = SlidingWindow.State(windowStart: plan.windowStart, current: before, previous: plan.previousCount)
            let step = SlidingWindow.step(state, now: self.now, cost: item.cost, limit: item.limit)
            return StoreItemResult(verdict: step.verdict, remaining: step.remaining, resetNanoseconds: step.resetNanoseconds)
        case .swap:
            let t = self.now.nanosecondsSinceEpoch
            if item.algorithm == .movingWindow {
                let step = MovingWindow.step(plan.stamps.map { MovingWindow.State(log: $0) }, now: self.now, cost: item.cost, limit: item.limit)
                if !plan.written {
                    let log = step.state.log
                    let newest = log.last ?? t
                    self.plans[index].pending = (log, newest &+ item.limit.periodNanoseconds)
                    self.plans[index].undo = .stamps(newest, units: Int(min(item.cost, item.limit.count)))
                }
                return StoreItemResult(verdict: step.verdict, remaining: step.remaining, resetNanoseconds: step.resetNanoseconds)
            }
            let previous = plan.stamps?.first.map { PackedState(idleAt: $0) }
            let step = PackedState.step(item.algorithm, state: previous, now: self.now, cost: item.cost, limit: item.limit)
            if !plan.written {
                self.plans[index].pending = ([step.state.idleAt], step.state.idleAt)
                self.plans[index].undo = .shift(step.state.idleAt - max(previous?.idleAt ?? t, t))
            }
            return StoreItemResult(verdict: step.verdict, remaining: step.remaining, resetNanoseconds: step.resetNanoseconds)
        }
    }

    private func groupAdmitted(_ group: Int) -> Bool {
        for index in 0..<self.batch.items.count where self.batch.items[index].group == group {
            if !self.batch.results[index].verdict.isAdmitted { return false }
        }
        return true
    }

    /// Takes back a state this decision wrote (the request was refused after all, or given up).
    private func takeBack(_ index: Int) -> EventLoopFuture<Void> {
        guard let undo = self.plans[index].undo else { return self.loop.makeSucceededVoidFuture() }
        self.plans[index].written = false
        let period = self.batch.items[index].limit.periodNanoseconds
        return self.store.compareAndSwap(self.plans[index].key, server: self.plans[index].server, loop: self.loop, attempt: 1, now: self.now) {
            stamps in
            var stamps = stamps ?? []
            switch undo {
            case .shift(let delta):
                if let first = stamps.first { stamps = [first &- delta] }
                return (stamps, stamps.first ?? 0)
            case .stamps(let stamp, let units):
                var left = units
                while left > 0, let position = stamps.lastIndex(of: stamp) {
                    stamps.remove(at: position)
                    left -= 1
                }
                return (stamps, (stamps.last ?? 0) &+ period)
            }
        }
    }

    // MARK: Plumbing

    /// Sends `command` and runs `handle` on its reply, on `loop`; a failed or unreadable exchange fails the future
    /// (and is charged to its server's breaker).
    private func exchange(
        _ command: MemcachedCommand,
        server: Int,
        _ handle: @escaping (MemcachedMetaReply) throws -> Void
    ) -> EventLoopFuture<Void> {
        let promise = self.loop.makePromise(of: Void.self)
        self.store.send(command, to: server, on: self.loop).hop(to: self.loop).assumeIsolated().whenComplete { result in
            // Handled even after the decision is over: what was applied must be known to be taken back.
            do {
                try handle(result.get())
                promise.succeed()
            } catch {
                promise.fail(MemcachedServerFailure(server: server, underlying: error))
            }
        }
        return promise.futureResult
    }

    /// Runs `next` once every exchange has completed, unless one failed (then `on_error`) or the decision is over.
    private func whenAll(_ exchanges: [EventLoopFuture<Void>], _ next: @escaping () -> Void) {
        EventLoopFuture.whenAllComplete(exchanges, on: self.loop).assumeIsolated().whenSuccess { results in
            if self.finished {
                self.cleanUp()
                return
            }
            for case .failure(let error) in results {
                let failure = error as? MemcachedServerFailure
                self.giveUp(failure?.underlying ?? error, server: failure?.server)
                return
            }
            for server in self.involvedServers { self.store.servers[server].breaker.recordSuccess() }
            next()
        }
    }

    /// Ends the decision with `on_error`, charging `server` (when known) with the failure, and takes back what this
    /// request took.
    private func giveUp(_ error: any Error, server: Int?) {
        guard !self.finished else { return }
        if let server, !(error is MemcachedContention) {
            self.store.servers[server].breaker.recordFailure(error, now: self.now)
        }
        let decided = self.store.decideWithoutMemcached(self.batch, now: self.now)
        self.finish(decided, observed: !(error is MemcachedContention))
        self.cleanUp()
    }

    /// Gives back every increment and written state (best effort: the decision is already answered).
    private func cleanUp() {
        for index in self.plans.indices {
            let plan = self.plans[index]
            if plan.applied && !plan.giveBackSent {
                self.plans[index].giveBackSent = true
                _ = self.store.send(MemcachedCommands.decrement(plan.key, by: self.batch.items[index].cost), to: plan.server, on: self.loop)
            }
            if plan.written { _ = self.takeBack(index) }
        }
    }

    /// Answers the request once. `observed`: whether memcached was asked and failed (`nil`: not asked, nothing to
    /// time, as when a breaker is open).
    private func finish(_ batch: DecisionBatch, observed failed: Bool?) {
        guard !self.finished else { return }
        self.finished = true
        self.deadline?.cancel()
        self.deadline = nil
        self.releaseGate()
        if let failed, let observe = self.store.observe {
            let elapsed = (ContinuousClock.now - self.started).components
            observe(Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18, failed)
        }
        self.completion(batch)
    }

    // MARK: Reading replies

    /// The count of a window counter: `ma`'s new value, or `mg`'s value (0 when absent); `nil` when not a number.
    private static func count(_ reply: MemcachedMetaReply, created: Bool) throws -> Int64? {
        switch reply.status {
        case .value: return reply.number.map { Int64(clamping: $0) }
        case .miss where !created: return 0
        default: throw MemcachedError.protocolError("unexpected \(reply.status.rawValue) for a counter")
        }
    }

    /// A CAS state: its timestamps (`nil`: absent) and CAS value.
    private static func state(_ reply: MemcachedMetaReply, key: String) throws -> ([Int64]?, UInt64?) {
        switch reply.status {
        case .miss:
            return (nil, nil)
        case .value:
            guard let value = reply.value, let stamps = MemcachedKeyspace.decode(value) else {
                throw MemcachedError.protocolError("a value Sluice did not write under \(key)")
            }
            return (stamps, reply.cas)
        default:
            throw MemcachedError.protocolError("unexpected \(reply.status.rawValue) to mg")
        }
    }

    /// The memory store's `blockedByBreach`: refused until the block ends (or the algorithm's own wait, if longer).
    static func blockedByBreach(_ result: inout StoreItemResult, forNanoseconds nanoseconds: Int64) {
        var wait = nanoseconds
        if case .denied(let retry) = result.verdict { wait = max(wait, retry) }
        result = StoreItemResult(
            verdict: .denied(retryAfterNanoseconds: wait),
            remaining: 0,
            resetNanoseconds: max(result.resetNanoseconds, wait),
            isPenaltyBlocked: true
        )
    }
}

/// An exchange with a server failed; `server` is charged with it.
struct MemcachedServerFailure: Error {
    var server: Int
    var underlying: any Error
}
