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
/// waits longer than that however many rounds it would have needed. The budget is watched by the loop's
/// ``MemcachedDecisionWatchdog`` (one timer for every decision of the loop), not by a timer of its own.
///
/// Cheap on the common path (one `ma`): the commands go straight into the loop's connection with this decision as
/// their ``MemcachedReplyReceiver`` and a tag saying what each reply answers; the decision counts the replies of its
/// round itself. No promise, future, closure or `String` is made per command, and the plans are plain values.
///
/// Lives on `loop`: every reply reaches it there (directly, or `hop` + `assumeIsolated` on the rarer future path),
/// so its state needs no lock.
final class MemcachedDecision: MemcachedReplyReceiver {
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
        var name: MemcachedKeyName
        /// The previous window's counter (`sliding_window`): the window before `name`'s.
        var hasPrevious = false
        /// `ma` is to take the cost in round 1; `applied` once it did: then the cost must be given back unless the
        /// request is counted.
        var incremented = false
        var applied = false
        /// The count read (after this request's increment when `incremented`), and the previous window's.
        var count: Int64 = 0
        var previousCount: Int64 = 0
        /// The CAS value of the state read (its timestamps are in ``Swap``).
        var cas: UInt64?
        var written = false
        var giveBackSent = false
    }

    /// What a compare-and-swap item read and would write, kept apart from ``Plan`` so a plan is plain data (copied
    /// without reference counting on the window counters' path).
    private struct Swap {
        /// The CAS state read (`nil`: absent).
        var stamps: [Int64]?
        /// The state to write if the item counts, with when it means nothing (its TTL).
        var pending: (stamps: [Int64], idleAt: Int64)?
        /// How to take a written state back: shift the timestamp back by this much, or drop units of a stamp.
        var undo: Undo?
    }

    private enum Undo {
        case shift(Int64)
        case stamps(Int64, units: Int)
    }

    private struct PenaltyPlan {
        var server: Int
        var name: MemcachedKeyName
        var until: Int64?
    }

    /// What a reply answers (the low bits of a command's tag; above them the item's index and the command's order
    /// in its round).
    private enum Reply: Int {
        case counter = 0
        case previous = 1
        case state = 2
        case penalty = 3
        case swap = 4
        case giveBack = 5
        case takeBack = 6
        case penaltyWrite = 7
    }

    /// The waiting stage a round's end leads to.
    private enum Stage {
        case read
        case write
    }

    private let store: MemcachedStore
    private var batch: DecisionBatch
    private let now: LimiterInstant
    private let loop: any EventLoop
    private let completion: @Sendable (DecisionBatch) -> Void
    private var plans = SmallArray<2, Plan>()
    /// By item index; only compare-and-swap items.
    private var swaps: [Int: Swap] = [:]
    /// The servers of the request (its items' and penalty keys'), ascending, each once.
    private var involved = SmallArray<2, Int>()
    /// By item index; only items with a `block_for` key.
    private var penalties: [Int: PenaltyPlan] = [:]
    private var attempts = 1
    private var finished = false
    /// Only when the store has no watchdog for `loop` (a loop of another group): then a timer of its own.
    private var deadline: Scheduled<Void>?
    private let started = ContinuousClock.now
    /// The round of commands under way: replies still awaited (plus one while it is being sent), its stage, the
    /// failure of the earliest command that failed (by its order), when it started (per-server latency) and the
    /// commands of a CAS write that lost its race.
    private var outstanding = 0
    private var stage = Stage.read
    private var sentInRound = 0
    private var failure: (order: Int, server: Int?, error: any Error)?
    private var roundStarted = ContinuousClock.now
    private var conflicts: [Int] = []
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
        let keyspace = self.store.keyspace
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
                    name: keyspace.windowName(item.key, windowStart: start, period: period)
                )
                plan.hasPrevious = item.algorithm == .slidingWindow
                plan.incremented = item.mode == .consume && item.cost > 0
            case .tokenBucket, .gcra, .movingWindow:
                plan = Plan(kind: .swap, server: server, name: MemcachedKeyName(key: item.key))
            }
            self.plans.append(plan)
            self.involve(server)
            if let penaltyKey = item.penaltyKey {
                let penaltyServer = self.store.server(for: penaltyKey)
                self.penalties[index] = PenaltyPlan(server: penaltyServer, name: MemcachedKeyName(key: penaltyKey))
                self.involve(penaltyServer)
            }
        }
        // Every server of the request must take decisions now; else `on_error` decides, before anything is sent.
        for position in 0..<self.involved.count {
            guard self.store.servers[self.involved[position]].breaker.allowsRequest(now: self.now) else {
                for other in 0..<position { self.store.servers[self.involved[other]].breaker.probeAbandoned(now: self.now) }
                self.finish(self.store.fallback.decide(self.batch, now: self.now), observed: nil)
                return
            }
        }
        if !self.store.watch(self, on: self.loop) {
            self.deadline = self.loop.assumeIsolated().scheduleTask(in: self.store.decisionBudget) {
                self.timedOut()
            }
        }
        var swapKey: String?
        var swapKeys = 0
        for plan in self.plans where plan.kind == .swap {
            swapKeys += 1
            if swapKeys == 1 { swapKey = plan.name.string(prefix: keyspace.prefix) }
        }
        if swapKeys == 1, let swapKey {
            self.gateKey = swapKey
            let bound = NIOLoopBound(self, eventLoop: self.loop)
            let entered = self.store.gate.enter(swapKey) {
                bound.eventLoop.execute { bound.value.proceed() }
            }
            guard entered else { return }
        }
        self.proceed()
    }

    /// Adds `server` to ``involved``, keeping it ascending without duplicates.
    private func involve(_ server: Int) {
        var position = 0
        while position < self.involved.count, self.involved[position] < server { position += 1 }
        if position < self.involved.count, self.involved[position] == server { return }
        self.involved.append(server)
        var index = self.involved.count - 1
        while index > position {
            self.involved[index] = self.involved[index - 1]
            index -= 1
        }
        self.involved[position] = server
    }

    /// Whether the decision is answered (the watchdog drops it).
    var isFinished: Bool { self.finished }

    /// The decision budget ran out (the store's watchdog, or its own timer).
    func timedOut() {
        self.giveUp(MemcachedError.timeout, server: nil)
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
        self.read(nil, penalties: true)
    }

    private func releaseGate() {
        guard self.holdsGate, let key = self.gateKey else { return }
        self.holdsGate = false
        self.store.gate.leave(key)
    }

    /// Round 1 for `indices` (every item when `nil`; and the penalty keys on the first round): increments and
    /// reads, pipelined.
    private func read(_ indices: [Int]?, penalties: Bool) {
        self.beginRound(.read)
        let count = indices?.count ?? self.plans.count
        for position in 0..<count {
            let index = indices?[position] ?? position
            let item = self.batch.items[index]
            let plan = self.plans[index]
            switch plan.kind {
            case .fixedWindow, .slidingWindow:
                let until = plan.windowStart + item.limit.periodNanoseconds * (plan.kind == .fixedWindow ? 1 : 2)
                let command: MemcachedKeyCommand =
                    plan.incremented
                    ? .increment(plan.name, cost: item.cost, ttl: MemcachedKeyspace.ttl(until: until, now: self.now))
                    : .get(plan.name)
                self.send(command, server: plan.server, .counter, index)
                if plan.hasPrevious {
                    var previous = plan.name
                    previous.window = (plan.name.window ?? 0) - 1
                    self.send(.get(previous), server: plan.server, .previous, index)
                }
            case .swap:
                self.send(.getWithCAS(plan.name), server: plan.server, .state, index)
            }
        }
        if penalties {
            for (index, penalty) in self.penalties {
                self.send(.get(penalty.name), server: penalty.server, .penalty, index)
            }
        }
        self.endSending()
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

        self.beginRound(.write)
        self.conflicts.removeAll()
        for index in 0..<self.batch.items.count {
            let item = self.batch.items[index]
            let counts = admitted && item.mode == .consume && (item.isEnforced || self.groupAdmitted(item.group))
            let plan = self.plans[index]
            switch plan.kind {
            case .fixedWindow, .slidingWindow:
                if plan.applied && !counts && !plan.giveBackSent {
                    self.plans[index].giveBackSent = true
                    self.send(.decrement(plan.name, cost: item.cost), server: plan.server, .giveBack, index)
                }
            case .swap:
                if counts && !plan.written, let pending = self.swaps[index]?.pending {
                    let command = MemcachedKeyCommand.store(
                        plan.name,
                        value: MemcachedKeyspace.encode(pending.stamps),
                        ttl: MemcachedKeyspace.ttl(until: pending.idleAt, now: self.now),
                        cas: self.swaps[index]?.stamps == nil ? nil : plan.cas,
                        swap: true
                    )
                    self.send(command, server: plan.server, .swap, index)
                } else if !counts && plan.written {
                    self.track(self.takeBack(index), index)
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
                let command = MemcachedKeyCommand.store(
                    penalty.name,
                    value: MemcachedKeyspace.encode([until]),
                    ttl: MemcachedKeyspace.ttl(until: until, now: self.now),
                    cas: nil,
                    swap: false
                )
                self.send(command, server: penalty.server, .penaltyWrite, index)
                Self.blockedByBreach(&self.batch.results[index], forNanoseconds: item.penaltyNanoseconds)
            }
        }
        self.endSending()
    }

    /// The write round is over, every exchange answered.
    private func written() {
        guard !self.conflicts.isEmpty else {
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
        let conflicts = self.conflicts
        self.loop.assumeIsolated().scheduleTask(in: pause) {
            guard !self.finished else { return }
            self.read(conflicts, penalties: false)
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
                let step = MovingWindow.step(self.swaps[index]?.stamps.map { MovingWindow.State(log: $0) }, now: self.now, cost: item.cost, limit: item.limit)
                if !plan.written {
                    let log = step.state.log
                    let newest = log.last ?? t
                    self.swaps[index, default: Swap()].pending = (log, newest &+ item.limit.periodNanoseconds)
                    self.swaps[index, default: Swap()].undo = .stamps(newest, units: Int(min(item.cost, item.limit.count)))
                }
                return StoreItemResult(verdict: step.verdict, remaining: step.remaining, resetNanoseconds: step.resetNanoseconds)
            }
            let previous = self.swaps[index]?.stamps?.first.map { PackedState(idleAt: $0) }
            let step = PackedState.step(item.algorithm, state: previous, now: self.now, cost: item.cost, limit: item.limit)
            if !plan.written {
                self.swaps[index, default: Swap()].pending = ([step.state.idleAt], step.state.idleAt)
                self.swaps[index, default: Swap()].undo = .shift(step.state.idleAt - max(previous?.idleAt ?? t, t))
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
        guard let undo = self.swaps[index]?.undo else { return self.loop.makeSucceededVoidFuture() }
        self.plans[index].written = false
        let period = self.batch.items[index].limit.periodNanoseconds
        let key = self.plans[index].name.string(prefix: self.store.keyspace.prefix)
        return self.store.compareAndSwap(key, server: self.plans[index].server, loop: self.loop, attempt: 1, now: self.now) {
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

    /// Starts a round of commands: its replies are awaited together (``endSending()`` once they are sent).
    private func beginRound(_ stage: Stage) {
        self.stage = stage
        self.outstanding = 1
        self.sentInRound = 0
        self.failure = nil
        if self.store.observeServer != nil { self.roundStarted = ContinuousClock.now }
    }

    /// Every command of the round is sent; ends it at once when none is still awaited.
    private func endSending() {
        self.outstanding -= 1
        if self.outstanding == 0 { self.roundEnded() }
    }

    /// A tag: what the reply answers, the item's index, and the command's order in its round.
    private func tag(_ reply: Reply, _ index: Int) -> Int {
        self.sentInRound += 1
        return (self.sentInRound << 32) | (index << 3) | reply.rawValue
    }

    /// Sends a command of this round to `server`; its reply comes to ``received(_:tag:)``.
    private func send(_ command: MemcachedKeyCommand, server: Int, _ reply: Reply, _ index: Int) {
        self.outstanding += 1
        self.store.send(command, to: server, on: self.loop, receiver: self, tag: self.tag(reply, index))
    }

    /// Counts `future` (a take-back) in this round.
    private func track(_ future: EventLoopFuture<Void>, _ index: Int) {
        self.outstanding += 1
        let tag = self.tag(.takeBack, index)
        future.hop(to: self.loop).assumeIsolated().whenComplete { result in
            self.received(result.map { MemcachedMetaReply(status: .done) }, tag: tag)
        }
    }

    /// A command's reply, on `loop`. Handled even after the decision is over: what was applied must be known to be
    /// taken back.
    func received(_ result: Result<MemcachedMetaReply, any Error>, tag: Int) {
        let index = (tag >> 3) & 0x0FFF_FFFF
        let kind = Reply(rawValue: tag & 7)!
        let server: Int? =
            switch kind {
            case .takeBack: nil
            case .penalty, .penaltyWrite: self.penalties[index]?.server
            default: self.plans[index].server
            }
        if let server, let observeServer = self.store.observeServer, tag & MemcachedStore.observedTag == 0 {
            let elapsed = (ContinuousClock.now - self.roundStarted).components
            let seconds = Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
            if case .failure = result { observeServer(server, seconds, true) } else { observeServer(server, seconds, false) }
        }
        do {
            try self.handle(result.get(), kind, index)
        } catch {
            let order = tag >> 32
            if self.failure == nil || order < self.failure!.order { self.failure = (order, server, error) }
        }
        self.outstanding -= 1
        if self.outstanding == 0 { self.roundEnded() }
    }

    /// What a reply tells about item `index`.
    private func handle(_ reply: MemcachedMetaReply, _ kind: Reply, _ index: Int) throws {
        switch kind {
        case .counter:
            let plan = self.plans[index]
            guard let count = try Self.count(reply, created: plan.incremented) else {
                throw MemcachedError.protocolError("not a counter under \(plan.name.string(prefix: self.store.keyspace.prefix))")
            }
            self.plans[index].count = count
            if plan.incremented { self.plans[index].applied = true }
        case .previous:
            guard let count = try Self.count(reply, created: false) else {
                var previous = self.plans[index].name
                previous.window = (previous.window ?? 0) - 1
                throw MemcachedError.protocolError("not a counter under \(previous.string(prefix: self.store.keyspace.prefix))")
            }
            self.plans[index].previousCount = count
        case .state:
            let (stamps, cas) = try Self.state(reply) { self.plans[index].name.string(prefix: self.store.keyspace.prefix) }
            self.swaps[index, default: Swap()].stamps = stamps
            self.plans[index].cas = cas
        case .penalty:
            let (stamps, _) = try Self.state(reply) { self.penalties[index]?.name.string(prefix: self.store.keyspace.prefix) ?? "" }
            self.penalties[index]?.until = stamps?.first
        case .swap:
            switch reply.status {
            case .done: self.plans[index].written = true
            case .exists, .notStored, .notFound: self.conflicts.append(index)
            default: throw MemcachedError.protocolError("unexpected \(reply.status.rawValue) to ms")
            }
        case .giveBack, .takeBack, .penaltyWrite:
            break
        }
    }

    /// Every command of the round has answered: on to the next stage unless one failed (then `on_error`) or the
    /// decision is over.
    private func roundEnded() {
        if self.finished {
            self.cleanUp()
            return
        }
        if let failure = self.failure {
            self.failure = nil
            self.giveUp(failure.error, server: failure.server)
            return
        }
        for position in 0..<self.involved.count { self.store.servers[self.involved[position]].breaker.recordSuccess() }
        switch self.stage {
        case .read: self.evaluate()
        case .write: self.written()
        }
    }

    /// Ends the decision with `on_error`, charging `server` (when known) with the failure, and takes back what this
    /// request took.
    private func giveUp(_ error: any Error, server: Int?) {
        guard !self.finished else { return }
        if let server, !(error is MemcachedContention) {
            self.store.servers[server].breaker.recordFailure(error, now: self.now)
        }
        let decided = self.store.fallback.decide(self.batch, now: self.now)
        self.finish(decided, observed: !(error is MemcachedContention))
        self.cleanUp()
    }

    /// Gives back every increment and written state (best effort: the decision is already answered).
    private func cleanUp() {
        for index in self.plans.indices {
            let plan = self.plans[index]
            if plan.applied && !plan.giveBackSent {
                self.plans[index].giveBackSent = true
                let key = plan.name.string(prefix: self.store.keyspace.prefix)
                _ = self.store.send(MemcachedCommands.decrement(key, by: self.batch.items[index].cost), to: plan.server, on: self.loop)
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
        self.store.finished(on: self.loop)
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
    private static func state(_ reply: MemcachedMetaReply, key: () -> String) throws -> ([Int64]?, UInt64?) {
        switch reply.status {
        case .miss:
            return (nil, nil)
        case .value:
            guard let value = reply.value, let stamps = MemcachedKeyspace.decode(value) else {
                throw MemcachedError.protocolError("a value Sluice did not write under \(key())")
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
