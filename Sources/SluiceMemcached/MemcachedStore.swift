import Logging
import NIOCore
import NIOPosix
import SluiceConfig
import SluiceLimiter

/// `storage.kind: memcached` (issue 21): counters in one or more memcached servers that several Sluice instances
/// share, with the guarantees of the Redis store wherever memcached can give them.
///
/// memcached runs no scripts, so a request's decision is a short exchange (``MemcachedDecision``):
/// - `fixed_window`: one `ma` per limit, creating the window's counter with its TTL (`N`, `J`) or adding the cost
///   (`D`), and answering the count: one round trip;
/// - `sliding_window`: the same `ma` on the current window's counter and an `mg` of the previous one, pipelined;
/// - `token_bucket`, `gcra`, `moving_window` and `block_for` penalty keys: `mg` with the CAS value, the limiter's
///   own step on the state read, then `ms` with `C` (compare and swap); a lost race is retried with a fresh read,
///   up to ``maximumCASAttempts`` times, and then `on_error` decides. This instance's own decisions on one such key
///   wait for each other (``MemcachedKeyGate``), so only other instances make a swap fail.
/// The verdicts come from the limiter's step functions (``FixedWindow``, ``SlidingWindow``, ``PackedState``,
/// ``MovingWindow``), so the arithmetic is the memory store's. A request that is refused takes nothing back: counters
/// incremented for it are decremented before it is answered (so a concurrent request may be refused where a lone
/// one would not have been, never the reverse).
///
/// The decisions run on the caller's event loop, and every loop has connections of its own to every server
/// (``MemcachedServerPool``); a tick's commands for one server leave in one write, which batches one tick's
/// decisions per server as ``DecisionBatcher`` does for Redis.
///
/// Several servers: keys are spread by a ``KetamaContinuum``. Each server has its own ``StorageCircuitBreaker``;
/// a request touching a server that is down (breaker open, no connection, or a command failing or slower than
/// `timeout`) is decided by `on_error` (`allow`, `deny` with 503, or `local` with COUNT/`instances`), and only such
/// requests: the other keys keep being shared. The breaker probes the server again by itself.
///
/// Less exact than Redis (docs/behaviour.md): memcached may evict a counter under memory pressure, and time is
/// Sluice's own clock (`now`), not the server's: instances must keep their clocks in step.
public final class MemcachedStore: RateLimitStore {
    /// Fixed, so every instance names a key alike.
    public let keySeed = StorageKey(high: 0x736c_7569_6365_2d6d, low: 0x656d_6361_6368_6564)
    public var decidesSynchronously: Bool { false }

    /// How many times a compare-and-swap lost to another writer is retried before `on_error` decides.
    public static let maximumCASAttempts = 10

    /// The settings it was made with (a reload with the same ones keeps this store and its connections).
    public let configuration: MemcachedStorageConfiguration
    let servers: [Server]
    let continuum: KetamaContinuum
    let keyspace: MemcachedKeyspace
    let group: any EventLoopGroup
    /// What `on_error` answers while the server cannot (shared with the other stores).
    let fallback: StorageFallback
    /// The longest a decision may take before `on_error` answers it (`timeout` + 500 ms: a few rounds of commands).
    let decisionBudget: TimeAmount
    /// Told how long each decision took and whether it failed (`sluice_storage_latency_seconds`,
    /// `sluice_storage_errors_total`).
    let observe: (@Sendable (Double, Bool) -> Void)?
    /// Told, per server (its index in ``serverNames``), how long each exchange took and whether it failed.
    let observeServer: (@Sendable (Int, Double, Bool) -> Void)?
    let logger: Logger
    /// This instance's decisions on one compare-and-swap key run one at a time.
    let gate = MemcachedKeyGate()
    /// One per event loop of `group`, made up front so that finding a loop's watchdog takes no lock.
    private let watchdogs: [ObjectIdentifier: NIOLoopBoundBox<MemcachedDecisionWatchdog>]

    /// One server: its connections and its breaker.
    struct Server: Sendable {
        var address: MemcachedServerAddress
        var pool: MemcachedServerPool
        var breaker: StorageCircuitBreaker
    }

    public init(
        configuration: MemcachedStorageConfiguration,
        group: any EventLoopGroup,
        localMaxKeys: Int,
        logger: Logger,
        observe: (@Sendable (_ seconds: Double, _ failed: Bool) -> Void)? = nil,
        observeServer: (@Sendable (_ server: Int, _ seconds: Double, _ failed: Bool) -> Void)? = nil
    ) {
        self.configuration = configuration
        self.group = group
        let timeout = TimeAmount.nanoseconds(configuration.timeout.nanoseconds)
        self.servers = configuration.servers.map { address in
            var serverLogger = logger
            serverLogger[metadataKey: "memcached"] = "\(address)"
            return Server(
                address: address,
                pool: MemcachedServerPool(
                    server: address,
                    size: max(1, configuration.poolSize),
                    group: group,
                    connectTimeout: max(timeout, .milliseconds(250)),
                    commandTimeout: timeout,
                    logger: logger
                ),
                breaker: StorageCircuitBreaker(
                    logger: serverLogger,
                    recoveredMessage: "memcached server answers again: decisions go to it",
                    unavailableMessage: "memcached server unavailable: decisions for its keys follow on_error"
                )
            )
        }
        var watchdogs: [ObjectIdentifier: NIOLoopBoundBox<MemcachedDecisionWatchdog>] = [:]
        for loop in group.makeIterator() {
            // Made here, off the loop, and used only on it from now on.
            watchdogs[ObjectIdentifier(loop)] = .makeBoxSendingValue(MemcachedDecisionWatchdog(eventLoop: loop), eventLoop: loop)
        }
        self.watchdogs = watchdogs
        self.continuum = KetamaContinuum(servers: configuration.servers.map(\.description))
        self.keyspace = MemcachedKeyspace(prefix: configuration.keyPrefix)
        self.fallback = StorageFallback(onError: configuration.onError, instances: configuration.instances, localMaxKeys: localMaxKeys)
        self.decisionBudget = timeout + .milliseconds(500)
        self.observe = observe
        self.observeServer = observeServer
        self.logger = logger
    }

    /// Closes the connections.
    public func close() async {
        for server in self.servers { await server.pool.close() }
    }

    /// The servers' `host:port`, in configuration order.
    public var serverNames: [String] { self.servers.map(\.address.description) }

    /// Whether decisions go to each server now (breaker closed, a connection up), in configuration order.
    public var serverAvailability: [Bool] {
        self.servers.map { $0.breaker.isClosed && $0.pool.isConnected }
    }

    /// Whether decisions go to memcached now (`/readyz`): while at least one server answers, the keys of the others
    /// follow `on_error` and the instance keeps serving.
    public var isAvailable: Bool {
        self.serverAvailability.contains(true)
    }

    /// The index of the server holding `key`'s counters.
    func server(for key: StorageKey) -> Int {
        if self.continuum.serverCount == 1 { return 0 }
        return self.continuum.server(for: self.keyspace.name(key).utf8)
    }

    // MARK: Deciding

    public func decide(_ batch: DecisionBatch, now: LimiterInstant, completion: @escaping @Sendable (DecisionBatch) -> Void) {
        let loop = MultiThreadedEventLoopGroup.currentEventLoop ?? self.group.any()
        if loop.inEventLoop {
            MemcachedDecision(store: self, batch: batch, now: now, loop: loop, completion: completion).start()
        } else {
            loop.execute {
                MemcachedDecision(store: self, batch: batch, now: now, loop: loop, completion: completion).start()
            }
        }
    }

    /// Synchronous callers (not the proxy) get the `on_error` decision: this store never blocks for memcached.
    public func decide(_ batch: inout DecisionBatch, now: LimiterInstant) {
        batch = self.fallback.decide(batch, now: now)
    }

    /// Sends `command` to server `index`, timing the exchange for that server's metrics.
    func send(_ command: MemcachedCommand, to index: Int, on loop: any EventLoop) -> EventLoopFuture<MemcachedMetaReply> {
        let reply = self.servers[index].pool.send(command, preferring: loop)
        guard let observeServer = self.observeServer else { return reply }
        let started = ContinuousClock.now
        reply.whenComplete { result in
            let elapsed = (ContinuousClock.now - started).components
            let seconds = Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
            if case .failure = result { observeServer(index, seconds, true) } else { observeServer(index, seconds, false) }
        }
        return reply
    }

    /// A bit of a decision's tag: the exchange went through ``send(_:to:on:)``, which timed it already.
    static let observedTag = 1 << 31

    /// Sends a decision's command to server `index` from `loop`: straight into the connection of `loop` when it has
    /// one (no promise), else through ``send(_:to:on:)`` and back to `loop`. Either way the reply reaches
    /// `receiver` with `tag`, on `loop`.
    func send(_ command: MemcachedKeyCommand, to index: Int, on loop: any EventLoop, receiver: MemcachedDecision, tag: Int) {
        if self.keyspace.hasValidPrefix, let connection = self.servers[index].pool.connection(on: loop) {
            connection.send(command, prefix: self.keyspace.prefix, receiver: receiver, tag: tag)
            return
        }
        let reply = self.send(command.command(prefix: self.keyspace.prefix), to: index, on: loop)
        reply.hop(to: loop).assumeIsolated().whenComplete { result in
            receiver.received(result, tag: tag | Self.observedTag)
        }
    }

    /// Watches `decision`'s budget with `loop`'s watchdog; `false` when `loop` has none (not one of `group`'s).
    func watch(_ decision: MemcachedDecision, on loop: any EventLoop) -> Bool {
        guard let watchdog = self.watchdogs[ObjectIdentifier(loop)] else { return false }
        watchdog.value.watch(decision, until: .now() + self.decisionBudget)
        return true
    }

    /// A decision on `loop` is answered: the watchdog forgets the answered decisions at its head.
    func finished(on loop: any EventLoop) {
        self.watchdogs[ObjectIdentifier(loop)]?.value.dropFinished()
    }

    // MARK: count_when

    public func commit(_ items: some Collection<StoreItem>, now: LimiterInstant) {
        _ = self.committed(Array(items), now: now)
    }

    /// `commit`, with a future that completes once every cost is taken (in memcached, or locally); tests wait on it.
    func committed(_ items: [StoreItem], now: LimiterInstant) -> EventLoopFuture<Void> {
        let loop = MultiThreadedEventLoopGroup.currentEventLoop ?? self.group.any()
        let futures = items.map { item in
            self.commitOne(item, now: now, loop: loop).flatMapError { error in
                if !(error is MemcachedContention) {
                    self.servers[self.server(for: item.key)].breaker.recordFailure(error, now: now)
                }
                self.fallback.commitLocally([item], now: now)
                return loop.makeSucceededVoidFuture()
            }
        }
        return EventLoopFuture.andAllComplete(futures, on: loop)
    }

    private func commitOne(_ item: StoreItem, now: LimiterInstant, loop: any EventLoop) -> EventLoopFuture<Void> {
        let index = self.server(for: item.key)
        guard self.servers[index].breaker.allowsRequest(now: now) else {
            return loop.makeFailedFuture(MemcachedError.unavailable("circuit open"))
        }
        let period = item.limit.periodNanoseconds
        let start = MemcachedKeyspace.windowStart(now, period: period)
        switch item.algorithm {
        case .fixedWindow, .slidingWindow:
            let until = start + (item.algorithm == .fixedWindow ? period : 2 * period)
            let command = MemcachedCommands.increment(
                self.keyspace.window(item.key, windowStart: start, period: period),
                by: item.cost,
                ttl: MemcachedKeyspace.ttl(until: until, now: now)
            )
            return self.send(command, to: index, on: loop).flatMapThrowing { reply in
                guard reply.status == .value || reply.status == .done else {
                    throw MemcachedError.protocolError("unexpected \(reply.status.rawValue) to ma")
                }
                self.servers[index].breaker.recordSuccess()
            }
        case .tokenBucket, .gcra, .movingWindow:
            return self.compareAndSwap(self.keyspace.name(item.key), server: index, loop: loop, attempt: 1, now: now) { stamps in
                switch item.algorithm {
                case .movingWindow:
                    let log = MovingWindow.consume(stamps.map { MovingWindow.State(log: $0) }, now: now, cost: item.cost, limit: item.limit).log
                    return (log, (log.last ?? now.nanosecondsSinceEpoch) + period)
                default:
                    let state = PackedState.consume(
                        item.algorithm,
                        state: stamps?.first.map { PackedState(idleAt: $0) },
                        now: now,
                        cost: item.cost,
                        limit: item.limit
                    )
                    return ([state.idleAt], state.idleAt)
                }
            }
            .map { self.servers[index].breaker.recordSuccess() }
        }
    }

    /// Reads `key` with its CAS value, writes `transform(state)` back if nobody wrote meanwhile, and starts over
    /// when someone did (up to ``maximumCASAttempts`` times). `transform` returns the new stamps and when they mean
    /// nothing any more (for the TTL).
    func compareAndSwap(
        _ key: String,
        server index: Int,
        loop: any EventLoop,
        attempt: Int,
        now: LimiterInstant? = nil,
        _ transform: @escaping @Sendable ([Int64]?) -> (stamps: [Int64], idleAt: Int64)
    ) -> EventLoopFuture<Void> {
        self.send(MemcachedCommands.getWithCAS(key), to: index, on: loop).flatMap { reply in
            let stamps: [Int64]?
            switch reply.status {
            case .miss:
                stamps = nil
            case .value:
                guard let value = reply.value, let decoded = MemcachedKeyspace.decode(value), reply.cas != nil else {
                    return loop.makeFailedFuture(MemcachedError.protocolError("a value Sluice did not write under \(key)"))
                }
                stamps = decoded
            default:
                return loop.makeFailedFuture(MemcachedError.protocolError("unexpected \(reply.status.rawValue) to mg"))
            }
            let clock = now ?? LimiterInstant.now()
            let next = transform(stamps)
            let command = MemcachedCommands.store(
                key,
                MemcachedKeyspace.encode(next.stamps),
                ttl: MemcachedKeyspace.ttl(until: next.idleAt, now: clock),
                cas: stamps == nil ? nil : reply.cas
            )
            return self.send(command, to: index, on: loop).flatMap { written in
                switch written.status {
                case .done:
                    return loop.makeSucceededVoidFuture()
                case .exists, .notStored, .notFound:
                    guard attempt < Self.maximumCASAttempts else {
                        return loop.makeFailedFuture(MemcachedContention())
                    }
                    return self.compareAndSwap(key, server: index, loop: loop, attempt: attempt + 1, now: now, transform)
                default:
                    return loop.makeFailedFuture(MemcachedError.protocolError("unexpected \(written.status.rawValue) to ms"))
                }
            }
        }
    }

    // MARK: Inspection (admin API)

    /// Each counter looked at without counting (cost 0, as the memory store does), `nil` for a key memcached does not
    /// hold, and the penalty block's end: one pipelined exchange. Throws when a server cannot answer (503).
    public func inspect(_ items: [StoreItem], penaltyKey: StorageKey?, now: LimiterInstant) async throws -> StoreInspection {
        let loop = self.group.any()
        var looks: [EventLoopFuture<StoreItemResult?>] = []
        for item in items {
            looks.append(self.look(at: item, now: now, loop: loop))
        }
        var blockedUntil: LimiterInstant?
        if let penaltyKey {
            let reply = try await self.send(MemcachedCommands.get(self.keyspace.name(penaltyKey)), to: self.server(for: penaltyKey), on: loop).get()
            if reply.status == .value, let until = reply.value.flatMap(MemcachedKeyspace.decode)?.first,
                until > now.nanosecondsSinceEpoch
            {
                blockedUntil = LimiterInstant(nanosecondsSinceEpoch: until)
            }
        }
        var results: [StoreItemResult?] = []
        for look in looks { results.append(try await look.get()) }
        return StoreInspection(results: results, blockedUntil: blockedUntil)
    }

    private func look(at item: StoreItem, now: LimiterInstant, loop: any EventLoop) -> EventLoopFuture<StoreItemResult?> {
        let index = self.server(for: item.key)
        let period = item.limit.periodNanoseconds
        let start = MemcachedKeyspace.windowStart(now, period: period)
        switch item.algorithm {
        case .fixedWindow:
            return self.send(MemcachedCommands.get(self.keyspace.window(item.key, windowStart: start, period: period)), to: index, on: loop)
                .map { reply in
                    guard let used = Self.count(reply) else { return nil }
                    let step = FixedWindow.step(.init(windowStart: start, used: used), now: now, cost: 0, limit: item.limit)
                    return StoreItemResult(verdict: step.verdict, remaining: step.remaining, resetNanoseconds: step.resetNanoseconds)
                }
        case .slidingWindow:
            let current = self.send(MemcachedCommands.get(self.keyspace.window(item.key, windowStart: start, period: period)), to: index, on: loop)
            let previous = self.send(
                MemcachedCommands.get(self.keyspace.window(item.key, windowStart: start - period, period: period)),
                to: index,
                on: loop
            )
            return current.and(previous).map { current, previous in
                let (c, p) = (Self.count(current), Self.count(previous))
                guard c != nil || p != nil else { return nil }
                let state = SlidingWindow.State(windowStart: start, current: c ?? 0, previous: p ?? 0)
                let step = SlidingWindow.step(state, now: now, cost: 0, limit: item.limit)
                return StoreItemResult(verdict: step.verdict, remaining: step.remaining, resetNanoseconds: step.resetNanoseconds)
            }
        case .tokenBucket, .gcra, .movingWindow:
            return self.send(MemcachedCommands.get(self.keyspace.name(item.key)), to: index, on: loop).map { reply in
                guard reply.status == .value, let stamps = reply.value.flatMap(MemcachedKeyspace.decode) else { return nil }
                if item.algorithm == .movingWindow {
                    let check = MovingWindow.decide(stamps, now: now, cost: 0, limit: item.limit)
                    return StoreItemResult(verdict: check.verdict, remaining: check.remaining, resetNanoseconds: check.resetNanoseconds)
                }
                guard let idleAt = stamps.first else { return nil }
                let step = PackedState.step(item.algorithm, state: PackedState(idleAt: idleAt), now: now, cost: 0, limit: item.limit)
                return StoreItemResult(verdict: step.verdict, remaining: step.remaining, resetNanoseconds: step.resetNanoseconds)
            }
        }
    }

    /// A window counter's count, `nil` when memcached holds none.
    private static func count(_ reply: MemcachedMetaReply) -> Int64? {
        reply.status == .value ? reply.number.map { Int64(clamping: $0) } : nil
    }

    /// Forgets `keys` (their `md`): the penalty key and the counters of the CAS-based algorithms, whose name is the
    /// key itself. Window counters are named by window too: ``remove(_:penaltyKey:now:)`` forgets those.
    public func remove(_ keys: [StorageKey]) async throws -> Bool {
        try await self.delete(keys.map { (self.keyspace.name($0), self.server(for: $0)) })
    }

    /// Forgets every counter of `items` (the current and previous windows of window counters) and the penalty key.
    public func remove(_ items: [StoreItem], penaltyKey: StorageKey?, now: LimiterInstant) async throws -> Bool {
        var names: [(String, Int)] = []
        for item in items {
            let index = self.server(for: item.key)
            let period = item.limit.periodNanoseconds
            let start = MemcachedKeyspace.windowStart(now, period: period)
            switch item.algorithm {
            case .fixedWindow, .slidingWindow:
                names.append((self.keyspace.window(item.key, windowStart: start, period: period), index))
                names.append((self.keyspace.window(item.key, windowStart: start - period, period: period), index))
            case .tokenBucket, .gcra, .movingWindow:
                names.append((self.keyspace.name(item.key), index))
            }
            self.fallback.local.reset(item.key)
        }
        if let penaltyKey { names.append((self.keyspace.name(penaltyKey), self.server(for: penaltyKey))) }
        return try await self.delete(names)
    }

    private func delete(_ names: [(String, Int)]) async throws -> Bool {
        let loop = self.group.any()
        let replies = names.map { name, index in self.send(MemcachedCommands.delete(name), to: index, on: loop) }
        var removed = false
        for reply in replies where try await reply.get().status == .done { removed = true }
        return removed
    }

    /// memcached keys expire on their own (every write sets a TTL); only the local fallback's are swept.
    @discardableResult
    public func removeIdleKeys(now: LimiterInstant) -> Int {
        self.fallback.local.removeIdleKeys(now: now)
    }

    public var trackedKeys: Int { self.fallback.local.trackedKeys }
    public var evictions: Int { self.fallback.local.evictions }
}

/// A compare-and-swap lost to other writers ``MemcachedStore/maximumCASAttempts`` times in a row: not the server's
/// fault (its breaker is not told), but the request is decided by `on_error`.
struct MemcachedContention: Error {}

/// The commands the store sends.
enum MemcachedCommands {
    /// `ma KEY N<ttl> J<cost> D<cost> v`: creates the counter at `cost` with its TTL, or adds `cost`; the new count.
    static func increment(_ key: String, by cost: Int64, ttl: Int64) -> MemcachedCommand {
        MemcachedCommand(.arithmetic, key: key, flags: ["N\(ttl)", "J\(cost)", "D\(cost)", "v"])
    }

    /// `ma KEY MD D<cost>`: takes `cost` back (memcached stops at 0).
    static func decrement(_ key: String, by cost: Int64) -> MemcachedCommand {
        MemcachedCommand(.arithmetic, key: key, flags: ["MD", "D\(cost)"])
    }

    /// `mg KEY v`.
    static func get(_ key: String) -> MemcachedCommand {
        MemcachedCommand(.get, key: key, flags: ["v"])
    }

    /// `mg KEY v c`: the value and its CAS value.
    static func getWithCAS(_ key: String) -> MemcachedCommand {
        MemcachedCommand(.get, key: key, flags: ["v", "c"])
    }

    /// `ms KEY <len> T<ttl> C<cas>`, or `ME` (add: only if absent) without a CAS value; without `swap`, a plain set.
    static func store(_ key: String, _ value: ByteBuffer, ttl: Int64, cas: UInt64?, swap: Bool = true) -> MemcachedCommand {
        var flags = ["T\(ttl)"]
        if swap { flags.append(cas.map { "C\($0)" } ?? "ME") }
        return MemcachedCommand(.set, key: key, flags: flags, value: value)
    }

    /// `md KEY`.
    static func delete(_ key: String) -> MemcachedCommand {
        MemcachedCommand(.delete, key: key)
    }
}

/// Gives up the decisions of one event loop that outlive the decision budget, with one timer for all of them.
///
/// Every decision of a loop gets the same budget, so their deadlines come in the order they started: a FIFO, whose
/// head's deadline is the only one a timer needs. Answered decisions leave the head as they finish; the timer, when
/// it fires, gives up the overdue ones and is armed again for the new head, so a loop busy with thousands of decisions
/// per budget schedules about one task per budget instead of one per decision.
///
/// Lives on its loop (held in a `NIOLoopBoundBox`); not thread-safe.
final class MemcachedDecisionWatchdog {
    private let eventLoop: any EventLoop
    private var watched = CircularBuffer<(deadline: NIODeadline, decision: MemcachedDecision)>(initialCapacity: 64)
    private var task: Scheduled<Void>?

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    func watch(_ decision: MemcachedDecision, until deadline: NIODeadline) {
        self.watched.append((deadline, decision))
        if self.task == nil { self.arm(deadline) }
    }

    /// Forgets the answered decisions at the head.
    func dropFinished() {
        while let first = self.watched.first, first.decision.isFinished { self.watched.removeFirst() }
    }

    private func arm(_ deadline: NIODeadline) {
        self.task = self.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
            self.fired()
        }
    }

    private func fired() {
        self.task = nil
        let now = NIODeadline.now()
        while let first = self.watched.first {
            if first.decision.isFinished {
                self.watched.removeFirst()
            } else if first.deadline <= now {
                self.watched.removeFirst()
                first.decision.timedOut()
            } else {
                break
            }
        }
        if let first = self.watched.first { self.arm(first.deadline) }
    }
}
