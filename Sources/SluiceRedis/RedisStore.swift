import Logging
import NIOCore
import NIOPosix
import SluiceConfig
import SluiceLimiter
import Synchronization

/// `storage.kind: redis` (SPEC §8): counters in a Redis that several Sluice instances share.
///
/// Each request is one `EVALSHA` of ``RedisScript`` (every limit of the request, all or nothing, with the server's
/// `TIME`), pipelined with the other requests of its event loop on a shared connection. Around it:
/// - a ``DenialCache`` answers requests known to be refused without asking Redis;
/// - a ``StorageCircuitBreaker`` stops asking a Redis that keeps failing, and probes it again later;
/// - when Redis cannot answer (down, slower than `timeout`, breaker open), `on_error` decides: `allow` admits,
///   `deny` refuses with 503, `local` decides in a memory store with COUNT/`instances` per limit, so a fleet in
///   degraded mode does not multiply the budget. Back with Redis, the local counts are simply no longer read.
///
/// With `redis+sentinel://` a ``RedisSentinelMonitor`` finds the primary and follows it across failovers: the pool
/// asks it where to connect, tells it of lost connections, and is moved (``RedisPool/reconnectAll()``) when the
/// primary changes; a `READONLY` reply (a demoted primary) also makes it check.
public final class RedisStore: RateLimitStore {
    /// Fixed, so every instance names a key alike (the memory store's seed is random instead).
    public let keySeed = StorageKey(high: 0x736c_7569_6365_2d72, low: 0x6564_6973_2d6b_6579)
    public var decidesSynchronously: Bool { false }

    /// The settings it was made with (a reload with the same ones keeps this store and its connections).
    public let configuration: RedisStorageConfiguration
    let pool: RedisPool
    /// With `redis+sentinel://`: where the primary is, followed across failovers (`RedisSentinelMonitor.swift`).
    public let sentinel: RedisSentinelMonitor?
    let group: any EventLoopGroup
    /// One per event loop of `group`, made up front so that finding a loop's batcher takes no lock.
    private let batchers: [ObjectIdentifier: NIOLoopBoundBox<DecisionBatcher>]
    let prefix: String
    let useServerTime: Bool
    /// What `on_error` answers while the server cannot (shared with the other stores).
    let fallback: StorageFallback
    let breaker: StorageCircuitBreaker
    /// Concurrency leases (issue 22 item 5, `RedisStore+Leases.swift`).
    let leaseState: RedisLeaseState
    let denials: DenialCache?
    let scriptSHA = Mutex<String?>(nil)
    /// The SHA of ``RedisScript/clusterSource`` (Redis Cluster only).
    let clusterScriptSHA = Mutex<String?>(nil)
    /// Cleared when the cluster's servers cannot run ``RedisScript/clusterSource`` (before Redis 7): one call per
    /// slot from then on.
    let crossSlotCalls = Atomic<Bool>(true)
    /// Set for `redis+cluster://` (issue 12, `RedisStore+Cluster.swift`): decisions go to each key's primary; `pool`
    /// is then never used.
    let cluster: RedisCluster?
    /// One per event loop in a cluster (empty otherwise).
    let clusterBatchers: [ObjectIdentifier: NIOLoopBoundBox<ClusterDecisionBatcher>]
    /// Told how long each round trip took and whether it failed (`sluice_storage_latency_seconds`,
    /// `sluice_storage_errors_total`).
    let observe: (@Sendable (Double, Bool) -> Void)?
    private let logger: Logger

    /// - Parameters:
    ///   - useServerTime: `false` only in tests that compare decisions with the memory store at chosen instants.
    ///   - cacheRefusals: `false` only in those tests too (a cached refusal repeats the numbers of the refusal).
    ///   - tlsCAFile: for `rediss://`, certificates to trust instead of the system's (tests with a private CA).
    public init(
        configuration: RedisStorageConfiguration,
        group: any EventLoopGroup,
        localMaxKeys: Int,
        logger: Logger,
        useServerTime: Bool = true,
        cacheRefusals: Bool = true,
        tlsCAFile: String? = nil,
        observe: (@Sendable (_ seconds: Double, _ failed: Bool) -> Void)? = nil,
        observeNode: (@Sendable (_ node: String, _ seconds: Double, _ failed: Bool) -> Void)? = nil
    ) {
        self.observe = observe
        self.denials = cacheRefusals ? DenialCache() : nil
        var endpoint = RedisEndpoint(configuration)
        endpoint.tlsCAFile = tlsCAFile
        self.configuration = configuration
        self.group = group
        var batchers: [ObjectIdentifier: NIOLoopBoundBox<DecisionBatcher>] = [:]
        for loop in group.makeIterator() {
            // Made here, off the loop, and used only on it from now on.
            batchers[ObjectIdentifier(loop)] = .makeBoxSendingValue(DecisionBatcher(eventLoop: loop), eventLoop: loop)
        }
        self.batchers = batchers
        self.leaseState = RedisLeaseState(group: group, ttl: configuration.leaseTTL)
        let timeout = TimeAmount.nanoseconds(configuration.timeout.nanoseconds)
        let connectTimeout = max(timeout, .milliseconds(250))
        let primarySource: RedisSentinelMonitor?
        if case .sentinel(let sentinels, let masterName) = configuration.deployment {
            // Questions to the sentinels are off the request path: a 50 ms Redis timeout is not theirs.
            primarySource = RedisSentinelMonitor(
                sentinels: sentinels,
                masterName: masterName,
                primary: endpoint,
                sentinelPassword: configuration.sentinelPassword,
                group: group,
                connectTimeout: connectTimeout,
                commandTimeout: max(timeout, .milliseconds(250)),
                logger: logger
            )
        } else {
            primarySource = nil
        }
        self.sentinel = primarySource
        // With Sentinel, each connection asks the monitor for the primary, and tells it of trouble.
        var endpointSource: (@Sendable (any EventLoop) -> EventLoopFuture<RedisEndpoint>)?
        var onTrouble: (@Sendable () -> Void)?
        var logName: String?
        if let monitor = primarySource {
            endpointSource = { loop in monitor.endpoint(on: loop) }
            onTrouble = { monitor.primaryTrouble() }
            logName = "primary of sentinel master \(monitor.masterName)/\(configuration.database)"
        }
        self.pool = RedisPool(
            endpoint: endpoint,
            size: max(1, configuration.poolSize),
            group: group,
            connectTimeout: connectTimeout,
            commandTimeout: timeout,
            logger: logger,
            endpointSource: endpointSource,
            onTrouble: onTrouble,
            logName: logName
        )
        if case .cluster(let seeds) = configuration.deployment {
            let cluster = RedisCluster(
                seeds: seeds.map { ($0.host, $0.port) },
                endpoint: endpoint,
                poolSize: max(1, configuration.poolSize),
                group: group,
                connectTimeout: max(timeout, .milliseconds(250)),
                commandTimeout: timeout,
                logger: logger,
                observeNode: observeNode
            )
            self.cluster = cluster
            var clusterBatchers: [ObjectIdentifier: NIOLoopBoundBox<ClusterDecisionBatcher>] = [:]
            for loop in group.makeIterator() {
                clusterBatchers[ObjectIdentifier(loop)] = .makeBoxSendingValue(
                    ClusterDecisionBatcher(clusterLoop: loop),
                    eventLoop: loop
                )
            }
            self.clusterBatchers = clusterBatchers
            cluster.start()
        } else {
            self.cluster = nil
            self.clusterBatchers = [:]
        }
        self.prefix = configuration.keyPrefix
        self.useServerTime = useServerTime
        self.fallback = StorageFallback(onError: configuration.onError, instances: configuration.instances, localMaxKeys: localMaxKeys)
        self.breaker = StorageCircuitBreaker(
            logger: logger,
            recoveredMessage: "redis answers again: decisions go to redis",
            unavailableMessage: "redis unavailable: decisions follow on_error"
        )
        self.logger = logger
        if let sentinel = self.sentinel {
            // Weak: the monitor must not keep the store's pool and breaker alive (close() also stops it).
            sentinel.start { [weak pool = self.pool, weak breaker = self.breaker] _ in
                pool?.reconnectAll()
                breaker?.probeSoon()
            }
        }
    }

    /// Closes the connections (and, with Sentinel, the subscription).
    public func close() async {
        self.sentinel?.close()
        self.leaseState.stopRenewing()
        await self.cluster?.close()
        await self.pool.close()
    }

    /// A Redis Cluster: items carry their rule key's tag (``RedisKeySlot``).
    public var usesClusterTags: Bool { self.cluster != nil }

    /// In a cluster, each primary of the slot map and whether it takes decisions now (the status page); empty
    /// with one server.
    public var clusterNodes: [(address: String, available: Bool)] {
        self.cluster?.nodeHealth ?? []
    }

    /// Whether decisions go to Redis now (`/readyz`).
    public var isAvailable: Bool {
        if let cluster = self.cluster { return cluster.isAvailable }
        return self.breaker.isClosed && self.pool.isConnected
    }

    /// The Redis key of a counter.
    public func redisKey(_ key: StorageKey) -> String {
        self.prefix + key.description
    }

    // MARK: Deciding

    public func decide(_ batch: DecisionBatch, now: LimiterInstant, completion: @escaping @Sendable (DecisionBatch) -> Void) {
        if let known = self.denials?.answer(batch, now: now) {
            completion(known)
            return
        }
        if self.cluster != nil {
            // Each primary has its own breaker (a node away sends only its slots to on_error).
            self.decideInCluster(batch, now: now, completion: completion)
            return
        }
        guard self.breaker.allowsRequest(now: now) else {
            completion(self.fallback.decide(batch, now: now))
            return
        }
        let requested = batch
        let started = ContinuousClock.now
        let request = ScriptRequest(operation: .decide, items: batch.items) { result in
            if let observe = self.observe {
                let elapsed = (ContinuousClock.now - started).components
                let seconds = Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
                if case .failure = result { observe(seconds, true) } else { observe(seconds, false) }
            }
            switch result {
            case .success(let reply):
                guard var decided = Self.apply(reply, to: requested) else {
                    self.breaker.recordFailure(RedisError.protocolError("unexpected script reply"), now: now)
                    completion(self.fallback.decide(requested, now: now))
                    return
                }
                self.breaker.recordSuccess()
                decided.storageUnavailable = false
                self.denials?.remember(decided, now: now)
                completion(decided)
            case .failure(let error):
                self.breaker.recordFailure(error, now: now)
                completion(self.fallback.decide(requested, now: now))
            }
        }
        self.run(request, now: now)
    }

    /// Synchronous callers (not the proxy) get the `on_error` decision: this store never blocks for Redis.
    public func decide(_ batch: inout DecisionBatch, now: LimiterInstant) {
        batch = self.fallback.decide(batch, now: now)
    }

    public func commit(_ items: some Collection<StoreItem>, now: LimiterInstant) {
        _ = self.committed(SmallArray<2, StoreItem>(items), now: now)
    }

    /// `commit`, with a future that completes once the cost is taken (in Redis, or locally); tests wait on it.
    func committed(_ items: SmallArray<2, StoreItem>, now: LimiterInstant) -> EventLoopFuture<Void>? {
        if self.cluster != nil { return self.commitInCluster(items, now: now) }
        guard self.breaker.allowsRequest(now: now) else {
            self.fallback.commitLocally(items, now: now)
            return nil
        }
        let done = (MultiThreadedEventLoopGroup.currentEventLoop ?? self.group.any()).makePromise(of: Void.self)
        let request = ScriptRequest(operation: .commit, items: items) { result in
            switch result {
            case .success: self.breaker.recordSuccess()
            case .failure(let error):
                self.breaker.recordFailure(error, now: now)
                self.fallback.commitLocally(items, now: now)
            }
            done.succeed()
        }
        self.run(request, now: now)
        return done.futureResult
    }

    // MARK: The script

    /// Sends `request` with the others of this tick when called on one of the proxy's loops, else alone.
    private func run(_ request: ScriptRequest, now: LimiterInstant) {
        let loop = MultiThreadedEventLoopGroup.currentEventLoop
        // Tests that pick the instants (no server time) send each request alone, at its own instant.
        if self.useServerTime, let loop, let batcher = self.batchers[ObjectIdentifier(loop)] {
            batcher.value.add(request, store: self)
        } else {
            self.send([request], time: self.useServerTime ? "" : String(now.nanosecondsSinceEpoch / 1000), preferring: loop)
        }
    }

    /// Runs the script for `requests` in one call with `EVALSHA`, loading it (`EVAL`) when Redis does not know it
    /// (`NOSCRIPT`: first use, or after a restart or `SCRIPT FLUSH`). Each request's completion runs on the reply's
    /// loop (the caller's, when the pool has a connection there).
    func send(_ requests: [ScriptRequest], time: String, preferring loop: (any EventLoop)?) {
        guard let sha = self.scriptSHA.withLock({ $0 }) else {
            self.loadAndRun(requests, time: time, preferring: loop)
            return
        }
        let call = ScriptRequest.call("EVALSHA", sha, requests: requests, prefix: self.prefix, time: time)
        self.pool.send(call, preferring: loop).whenComplete { result in
            if case .failure(RedisError.server(let message)) = result, message.hasPrefix("NOSCRIPT") {
                self.loadAndRun(requests, time: time, preferring: loop)
            } else {
                if case .failure(RedisError.server(let message)) = result, message.contains("READONLY") {
                    // A demoted primary (Sentinel): ask where the primary went.
                    self.sentinel?.primaryTrouble()
                }
                ScriptRequest.complete(requests, with: result)
            }
        }
    }

    private func loadAndRun(_ requests: [ScriptRequest], time: String, preferring loop: (any EventLoop)?) {
        // EVAL caches the script server-side; SCRIPT LOAD tells us its SHA for the next calls.
        let call = ScriptRequest.call("EVAL", RedisScript.source, requests: requests, prefix: self.prefix, time: time)
        self.pool.send(call, preferring: loop).whenComplete { result in
            ScriptRequest.complete(requests, with: result)
        }
        self.pool.send(RedisCommand("SCRIPT", "LOAD", RedisScript.source), preferring: loop).whenSuccess { reply in
            if let sha = reply.string { self.scriptSHA.withLock { $0 = sha } }
        }
    }

    /// Fills `batch` from its part of the script's reply (1 if admitted, then 5 integers per item); `nil` when the
    /// part is not what the script returns.
    static func apply(_ values: ArraySlice<RESPValue>, to batch: DecisionBatch) -> DecisionBatch? {
        guard values.count == 1 + 5 * batch.items.count, let admitted = values[values.startIndex].int else {
            return nil
        }
        var decided = batch
        decided.isAdmitted = admitted == 1
        for index in 0..<batch.items.count {
            let base = values.startIndex + 1 + index * 5
            guard let kind = values[base].int, let waitMicroseconds = values[base + 1].int,
                let remaining = values[base + 2].int, let reset = values[base + 3].int, let blocked = values[base + 4].int
            else { return nil }
            let wait = waitMicroseconds * 1000
            let verdict: StepVerdict
            switch kind {
            case 0: verdict = .admitted
            case 1: verdict = .delayed(nanoseconds: wait)
            default: verdict = .denied(retryAfterNanoseconds: max(1, wait))
            }
            decided.results[index] = StoreItemResult(
                verdict: verdict,
                remaining: remaining,
                resetNanoseconds: reset * 1000,
                isPenaltyBlocked: blocked == 1
            )
        }
        return decided
    }

    // MARK: Inspection (admin API)

    /// Each counter looked at through the script (cost 0, check only, so nothing is written), whether each key
    /// exists (an untracked key shows full quotas, as in memory), and the penalty key's remaining TTL, which is what
    /// is left of the block: pipelined, one round trip. Throws when Redis cannot answer (the admin API says 503).
    public func inspect(_ items: [StoreItem], penaltyKey: StorageKey?, now: LimiterInstant) async throws -> StoreInspection {
        if self.cluster != nil { return try await self.inspectInCluster(items, penaltyKey: penaltyKey, now: now) }
        var batch = DecisionBatch()
        for var item in items {
            item.cost = 0
            item.mode = .check
            item.isEnforced = false
            item.penaltyKey = nil
            item.penaltyNanoseconds = 0
            batch.append(item)
        }
        let promise = self.group.any().makePromise(of: ArraySlice<RESPValue>.self)
        let look = ScriptRequest(operation: .decide, items: batch.items) { promise.completeWith($0) }
        self.send([look], time: self.useServerTime ? "" : String(now.nanosecondsSinceEpoch / 1000), preferring: nil)
        let exists = items.map { self.pool.send(RedisCommand("EXISTS", self.redisKey($0.key)), preferring: nil) }
        let blockLeft = penaltyKey.map { self.pool.send(RedisCommand("PTTL", self.redisKey($0)), preferring: nil) }

        guard let looked = Self.apply(try await promise.futureResult.get(), to: batch) else {
            throw RedisError.protocolError("unexpected script reply")
        }
        var results: [StoreItemResult?] = []
        for (index, existing) in exists.enumerated() {
            results.append(try await existing.get().int == 1 ? looked.results[index] : nil)
        }
        var blockedUntil: LimiterInstant?
        if let milliseconds = try await blockLeft?.get().int, milliseconds > 0 {
            blockedUntil = LimiterInstant(nanosecondsSinceEpoch: now.nanosecondsSinceEpoch + milliseconds * 1_000_000)
        }
        return StoreInspection(results: results, blockedUntil: blockedUntil)
    }

    /// `DEL` of the keys, awaited; refusals of them cached here are forgotten too, so the next request asks Redis.
    public func remove(_ keys: [StorageKey]) async throws -> Bool {
        if self.cluster != nil {
            // Bare keys: each is tagged by itself (counters of a rule key go through `remove(_:penaltyKey:now:)`).
            return try await self.removeInCluster(keys.map { (max(1, UInt32(truncatingIfNeeded: $0.high >> 32)), $0) })
        }
        self.denials?.forget(keys)
        let command = RedisCommand(arguments: [ByteBuffer(string: "DEL")] + keys.map { ByteBuffer(string: self.redisKey($0)) })
        let removed = try await self.pool.send(command, preferring: nil).get()
        for key in keys { self.fallback.local.reset(key) }
        return (removed.int ?? 0) > 0
    }

    /// The counters of `items` and the block `penaltyKey` (`DELETE /limits/...`); in a cluster each under its rule
    /// key's tag.
    public func remove(_ items: [StoreItem], penaltyKey: StorageKey?, now: LimiterInstant) async throws -> Bool {
        guard self.cluster != nil else { return try await self.remove(items.map(\.key) + (penaltyKey.map { [$0] } ?? [])) }
        var keys = items.map { (RedisKeySlot.tag(of: $0), $0.key) }
        if let penaltyKey, let first = items.first { keys.append((RedisKeySlot.tag(of: first), penaltyKey)) }
        return try await self.removeInCluster(keys)
    }

    /// Redis keys expire on their own (every write sets a TTL).
    @discardableResult
    public func removeIdleKeys(now: LimiterInstant) -> Int {
        self.fallback.local.removeIdleKeys(now: now)
    }

    public var trackedKeys: Int { self.fallback.local.trackedKeys }
    public var evictions: Int { self.fallback.local.evictions }
}
