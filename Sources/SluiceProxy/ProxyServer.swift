import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOExtras
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOTLS
import ServiceLifecycle
import SluiceAdmin
import SluiceConfig
import SluiceJWT
import SluiceLimiter
import SluiceListener
import SluiceMemcached
import SluiceRedis

/// The proxy as a `Service`: binds the listeners, serves until graceful shutdown, then drains
/// (SPEC §1: stop accepting, let in-flight requests finish up to `timeouts.shutdown`).
public final class ProxyServer: Service, Sendable {
    private struct State {
        var group: MultiThreadedEventLoopGroup?
        var listeners: [(ListenAddress, Channel)] = []
        var quiesce: ServerQuiescingHelper?
        var pools: [ObjectIdentifier: NIOLoopBound<UpstreamPool>] = [:]
        var stopped = false
    }

    private let shared: ProxyShared
    private let state = NIOLockedValueBox(State())
    /// The event loops: created with the server so that a store talking to a server (Redis) keeps its connections
    /// on the loops that serve the requests; run from ``start()``, shut down by ``stop()``.
    private let group: MultiThreadedEventLoopGroup
    /// Open client connections, so a drain that outlives `timeouts.shutdown` can close them
    /// while their loops still run. One lock operation per connection, none per request.
    private let clients = NIOLockedValueBox<[ObjectIdentifier: Channel]>([:])
    /// `server.max_connections`: open client connections across every listener; accepting pauses at the limit.
    private let connectionCap: ConnectionCap
    /// Reload counts and the last result, for the status page (`sluice_config_reloads_total` counts them too).
    private let reloads: NIOLockedValueBox<ReloadStatus>
    /// The keys refused most in the last minutes, fed by the gate, shown by the status page.
    private let limitedKeyTracker: LimitedKeyTracker
    private let logger: Logger
    /// Called with each bound address once it accepts connections.
    private let onListening: @Sendable (SocketAddress) -> Void

    /// The Prometheus families of SPEC §7, fed by the request path; the admin listener renders them.
    public var metrics: SluiceMetrics { self.shared.metrics }

    /// The event loops (the admin listener runs on them too).
    public var eventLoopGroup: any EventLoopGroup { self.group }

    /// Reads the TLS files of the configuration (``TLSContexts``); call it off the event loops.
    ///
    /// - Throws: ``TLSSetupError`` when a certificate, key or CA file of the configuration cannot be used.
    public init(
        configuration: SluiceConfiguration,
        logger: Logger,
        metrics: SluiceMetrics = SluiceMetrics(),
        onListening: @escaping @Sendable (SocketAddress) -> Void = { _ in }
    ) throws(TLSSetupError) {
        let tls = try TLSContexts(configuration: configuration)
        let jwt = try Self.makeJWTVerifier(configuration)
        self.logger = logger
        self.onListening = onListening
        let group = MultiThreadedEventLoopGroup(numberOfThreads: configuration.server.threads ?? System.coreCount)
        self.group = group
        self.connectionCap = ConnectionCap(limit: configuration.server.effectiveMaxConnections)
        let accessLog = AccessLog(configuration.server.accessLog)
        let limitedKeys = LimitedKeyTracker()
        self.limitedKeyTracker = limitedKeys
        self.reloads = NIOLockedValueBox(ReloadStatus(startedMilliseconds: Self.unixMilliseconds()))
        self.shared = ProxyShared(
            snapshot: ProxySnapshot(
                configuration: configuration,
                gate: Self.makeGate(
                    configuration,
                    previous: nil,
                    group: group,
                    logger: logger,
                    metrics: metrics,
                    limitedKeys: limitedKeys
                ),
                tls: tls,
                jwt: jwt
            ),
            logger: logger,
            accessLog: accessLog,
            metrics: metrics
        )
        // Weak: the metrics belong to `shared`.
        metrics.setAdaptiveConcurrencySource { [weak shared = self.shared] in shared?.current().adaptive }
    }

    /// The running configuration.
    public var configuration: SluiceConfiguration { self.shared.current().configuration }

    /// Addresses the listeners are bound to (after ``start()``).
    public var listeningAddresses: [SocketAddress] {
        self.state.withLockedValue { $0.listeners.compactMap(\.1.localAddress) }
    }

    /// The gate of a configuration; counters of unchanged rules carry over from `previous` (SPEC §6).
    static func makeGate(
        _ configuration: SluiceConfiguration,
        previous: (any RequestGate)?,
        group: any EventLoopGroup,
        logger: Logger,
        metrics: SluiceMetrics,
        limitedKeys: LimitedKeyTracker
    ) -> any RequestGate {
        let previousStore = (previous as? LimiterGate)?.limiter.store
        let store = StoreFactory.store(
            for: configuration.storage,
            previous: previousStore,
            group: group,
            logger: logger,
            metrics: metrics
        )
        return LimiterGate(
            limiter: RateLimiter(configuration: configuration, store: store),
            logger: logger,
            metrics: metrics,
            limitedKeys: limitedKeys,
            concurrencySlots: (previous as? LimiterGate)?.concurrencySlots ?? ConcurrencySlotTable()
        )
    }

    /// Swaps in a validated configuration (SPEC §6): new requests use it at once, requests in
    /// flight keep the snapshot they started with.
    ///
    /// The TLS files are read again even when the configuration is unchanged, so renewed certificates take
    /// effect for new connections.
    ///
    /// - Throws: ``TLSSetupError`` when a TLS file cannot be used; nothing changes then (the caller counts the
    ///   failure with ``recordReloadFailure(reason:)``).
    public func reload(_ configuration: SluiceConfiguration) async throws(TLSSetupError) {
        let tls = try TLSContexts(configuration: configuration)
        // The key files (a JWKS file rotated by the identity provider, say) are read again: SIGHUP picks up new keys.
        let jwt = try Self.makeJWTVerifier(configuration)
        try await Self.prepare(jwt)
        self.reloads.withLockedValue { reloads in
            reloads.successes += 1
            reloads.last = ReloadStatus.Attempt(milliseconds: Self.unixMilliseconds(), succeeded: true)
        }
        let previous = self.shared.current()
        let snapshot = ProxySnapshot(
            configuration: configuration,
            gate: Self.makeGate(
                configuration,
                previous: previous.gate,
                group: self.group,
                logger: self.logger,
                metrics: self.metrics,
                limitedKeys: self.limitedKeyTracker
            ),
            tls: tls,
            previousAdaptive: previous.adaptive,
            jwt: jwt
        )
        self.metrics.reloaded(success: true)
        self.shared.replace(with: snapshot)
        if let old = (previous.gate as? LimiterGate)?.limiter.store, old !== (snapshot.gate as? LimiterGate)?.limiter.store {
            // A new kind of storage (or new Redis settings): the old store's requests in flight finish first.
            Task { [logger = self.logger] in
                try? await Task.sleep(for: .seconds(5))
                await StoreFactory.close(old)
                logger.debug("closed the previous rate-limit store")
            }
        }
        self.shared.accessLog.reconfigure(configuration.server.accessLog)
        // Applies at once: a higher cap lets waiting connections in now; a lower one closes nothing, it only holds
        // new ones back until enough have closed.
        let cap = configuration.server.effectiveMaxConnections
        if cap != self.connectionCap.limit {
            self.connectionCap.setLimit(cap)
            self.logMaxConnections(configuration.server)
        }
        // Compared with the listeners actually bound, not the previous file: a listener that could not be
        // bound on an earlier reload is tried again.
        await self.reconcileListeners(configuration.server.listen)
    }

    /// The JWT verifier of `configuration` (issue 15), `nil` when no rule reads a claim. A key file that cannot be used
    /// is reported as a setup error naming `jwt` and the file's `FILE:LINE:COLUMN` (`sluice check` reports the same).
    static func makeJWTVerifier(_ configuration: SluiceConfiguration) throws(TLSSetupError) -> JWTVerifier? {
        do {
            return try JWTVerifier.make(for: configuration)
        } catch {
            throw Self.jwtSetupError(error)
        }
    }

    static func prepare(_ jwt: JWTVerifier?) async throws(TLSSetupError) {
        do {
            try await jwt?.prepare()
        } catch {
            throw Self.jwtSetupError(error)
        }
    }

    private static func jwtSetupError(_ error: ConfigErrorList) -> TLSSetupError {
        let first = error.errors.first
        return TLSSetupError(
            setting: "jwt",
            file: first.map { "\($0.file):\($0.line):\($0.column)" } ?? "",
            reason: error.errors.map(\.message).joined(separator: "; ")
        )
    }

    /// Reopens the access log file at its path (SIGUSR1, for logrotate).
    public func reopenAccessLog() {
        self.shared.accessLog.reopen()
    }

    /// Counts a reload that failed validation (SPEC §6); the running configuration stays.
    ///
    /// - Parameter reason: what was wrong (the `FILE:LINE:COLUMN: message` lines), shown on the status page.
    public func recordReloadFailure(reason: String) {
        self.reloads.withLockedValue { reloads in
            reloads.failures += 1
            reloads.last = ReloadStatus.Attempt(milliseconds: Self.unixMilliseconds(), succeeded: false, error: reason)
        }
        self.metrics.reloaded(success: false)
    }

    /// Reloads applied and refused since start (for `sluice_config_reloads_total{result}`).
    public var reloadCounts: (success: Int, failure: Int) {
        self.reloads.withLockedValue { ($0.successes, $0.failures) }
    }

    /// Says which cap is in force and where it comes from (the operational log, at start and when a reload changes it).
    private func logMaxConnections(_ server: ServerConfiguration) {
        let source =
            if server.maxConnections != nil {
                "set in the file"
            } else if let limit = ServerConfiguration.openFileLimit {
                "default: 80 % of the open-file limit, \(limit)"
            } else {
                "default: the open-file limit is unlimited"
            }
        let cap = server.effectiveMaxConnections
        self.logger.info("accepting at most \(cap) client connections at once (max_connections; \(source))")
    }

    private static func unixMilliseconds() -> Int64 {
        LimiterInstant.now().nanosecondsSinceEpoch / 1_000_000
    }

    /// Binds every listener; throws if one cannot be bound.
    public func start() async throws {
        let configuration = self.shared.current().configuration
        try await Self.prepare(self.shared.current().jwt)
        let group = self.group
        self.logMaxConnections(configuration.server)
        do {
            try await self.bindListeners(configuration.server.listen, group: group)
        } catch {
            // `bindListeners` has released everything that completes work on the loops.
            try? await group.shutdownGracefully()
            throw error
        }
    }

    /// Creates the per-loop pools and the quiescing helper and binds every listener; on failure
    /// undoes all of it (while the loops still run) and rethrows.
    private func bindListeners(_ addresses: [ListenAddress], group: MultiThreadedEventLoopGroup) async throws {
        var pools: [ObjectIdentifier: NIOLoopBound<UpstreamPool>] = [:]
        for loop in group.makeIterator() {
            pools[ObjectIdentifier(loop)] = try await loop.submit {
                NIOLoopBound(UpstreamPool(eventLoop: loop), eventLoop: loop)
            }.get()
        }
        let quiesce = ServerQuiescingHelper(group: group)
        self.state.withLockedValue {
            $0.group = group
            $0.quiesce = quiesce
            $0.pools = pools
        }
        var listeners: [(ListenAddress, Channel)] = []
        do {
            for address in addresses {
                listeners.append((address, try await self.bind(address, group: group, quiesce: quiesce, pools: pools)))
            }
        } catch {
            for (_, channel) in listeners { try? await channel.close() }
            let quiesced = group.next().makePromise(of: Void.self)
            quiesce.initiateShutdown(promise: quiesced)
            try? await quiesced.futureResult.get()
            self.state.withLockedValue {
                $0.group = nil
                $0.quiesce = nil
                $0.pools = [:]
            }
            throw error
        }
        self.state.withLockedValue { $0.listeners = listeners }
        for (_, channel) in listeners {
            if let address = channel.localAddress { self.onListening(address) }
        }
    }

    private func bind(
        _ address: ListenAddress,
        group: EventLoopGroup,
        quiesce: ServerQuiescingHelper,
        pools: [ObjectIdentifier: NIOLoopBound<UpstreamPool>]
    ) async throws -> Channel {
        let shared = self.shared
        let clients = self.clients
        let (cap, logger) = (self.connectionCap, self.logger)
        // An IPv6 listener accepts IPv6 only (nginx's `ipv6only=on`), so `0.0.0.0:P` and `[::]:P`
        // can both be listed; NIO's default would make `[::]` take IPv4 too and the pair clash.
        var bootstrap = ServerBootstrap(group: group)
        if address.host.contains(":") {
            bootstrap = bootstrap.serverChannelOption(
                ChannelOptions.Types.SocketOption(level: .ipv6, name: .ipv6_v6only),
                value: 1
            )
        }
        bootstrap = bootstrap
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.maxMessagesPerRead, value: ListenerGuards.acceptsPerRead)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // One cap for every listener (server.max_connections), and a pause after a failed accept.
                    try ListenerGuards.add(to: channel.pipeline.syncOperations, cap: cap, logger: logger, role: "proxy")
                    try channel.pipeline.syncOperations.addHandler(quiesce.makeServerChannelHandler(channel: channel))
                }
            }
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .tuned(ProxyTuning.fromEnvironment)
            .childChannelInitializer { channel in
                let id = ObjectIdentifier(channel)
                clients.withLockedValue { $0[id] = channel }
                channel.closeFuture.whenComplete { _ in
                    clients.withLockedValue { _ = $0.removeValue(forKey: id) }
                }
                return channel.eventLoop.makeCompletedFuture {
                    let pool = pools[ObjectIdentifier(channel.eventLoop)]!.value
                    // Read at accept: after a reload, new connections get the new certificate, open ones keep theirs.
                    let snapshot = shared.current()
                    try Self.configureClientPipeline(
                        channel.pipeline.syncOperations,
                        channel: channel,
                        shared: shared,
                        pool: pool,
                        server: snapshot.configuration.server,
                        tls: snapshot.tls.server
                    )
                }
            }
        do {
            return try await bootstrap.bind(host: address.host, port: address.port).get()
        } catch {
            throw ListenError(address: address, underlying: error)
        }
    }

    /// Makes the listeners match `addresses` (SPEC §6): binds the new ones first, then closes the
    /// ones no longer listed. When an address cannot be bound, the reason is logged and the listeners
    /// stay exactly as they were (the next reload tries again).
    private func reconcileListeners(_ addresses: [ListenAddress]) async {
        let (group, quiesce, pools, current) = self.state.withLockedValue {
            ($0.group, $0.quiesce, $0.pools, $0.listeners)
        }
        guard let group, let quiesce else { return }
        var next: [(ListenAddress, Channel)] = []
        var bound: [Channel] = []
        for address in addresses {
            if let existing = current.first(where: { $0.0 == address }) {
                next.append(existing)
                continue
            }
            do {
                let channel = try await self.bind(address, group: group, quiesce: quiesce, pools: pools)
                next.append((address, channel))
                bound.append(channel)
            } catch {
                self.logger.error("reload: \(error); keeping the old listeners")
                // All or nothing: the listeners bound so far for this reload are not kept either.
                for channel in bound { try? await channel.close() }
                return
            }
        }
        for (address, channel) in current where !next.contains(where: { $0.0 == address }) {
            try? await channel.close()
        }
        self.state.withLockedValue { $0.listeners = next }
        for channel in bound {
            if let address = channel.localAddress { self.onListening(address) }
        }
    }

    /// The client connection's pipeline, assembled in one place.
    ///
    /// - TLS (`server.tls`) is terminated first; a failed handshake (plain HTTP sent to a TLS port among them) closes
    ///   that connection only. With `server.http2` (the default) ALPN offers `h2, http/1.1` and the protocol the
    ///   client chose gets its handlers once the handshake is done (``HTTP2ConnectionSetup`` for `h2`); the handshake
    ///   must complete within `header_read`.
    /// - A plain listener with `server.h2c` tells prior-knowledge HTTP/2 from HTTP/1.1 by the first bytes
    ///   (``H2CPrefaceHandler``).
    /// - Otherwise (plain, no h2c) the pipeline is the HTTP/1.1 handler alone, as before issue 13.
    static func configureClientPipeline(
        _ pipeline: ChannelPipeline.SynchronousOperations,
        channel: any Channel,
        shared: ProxyShared,
        pool: UpstreamPool,
        server: ServerConfiguration,
        tls: NIOSSLContext? = nil
    ) throws {
        let maxHeaderBytes = server.maxHeaderBytes
        let overTLS = tls != nil
        if let tls {
            try pipeline.addHandler(NIOSSLServerHandler(context: tls))
        }
        // No HTTP decoder or encoder: the handler parses and writes the bytes itself (issue 19).
        guard (overTLS && server.http2) || (!overTLS && server.h2c) else {
            try pipeline.addHandler(
                ProxyConnectionHandler(shared: shared, pool: pool, maxHeaderBytes: maxHeaderBytes, overTLS: overTLS)
            )
            return
        }
        let http2 = HTTP2ConnectionSetup.Configuration(server)
        let boundPool = NIOLoopBound(pool, eventLoop: channel.eventLoop)
        let configure: @Sendable (Bool, ChannelPipeline.SynchronousOperations) throws -> Void = { isHTTP2, pipeline in
            if isHTTP2 {
                try HTTP2ConnectionSetup.configure(
                    pipeline,
                    channel: channel,
                    configuration: http2,
                    shared: shared,
                    pool: boundPool.value,
                    overTLS: overTLS
                )
            } else {
                try pipeline.addHandler(
                    ProxyConnectionHandler(shared: shared, pool: boundPool.value, maxHeaderBytes: maxHeaderBytes, overTLS: overTLS)
                )
            }
        }
        let headerRead = TimeAmount(server.timeouts.headerRead)
        if overTLS {
            // The handshake and the choice of protocol must be done within header_read (before, the HTTP/1.1
            // handler's own head timer covered the handshake).
            let handshakeTimeout = channel.eventLoop.scheduleTask(in: headerRead) { channel.close(promise: nil) }
            channel.closeFuture.whenComplete { _ in handshakeTimeout.cancel() }
            try pipeline.addHandler(
                ApplicationProtocolNegotiationHandler { result, channel in
                    handshakeTimeout.cancel()
                    return channel.eventLoop.makeCompletedFuture {
                        let isHTTP2 = if case .negotiated("h2") = result { true } else { false }
                        try configure(isHTTP2, channel.pipeline.syncOperations)
                    }
                }
            )
        } else {
            try pipeline.addHandler(
                H2CPrefaceHandler(headerReadTimeout: headerRead) { decision, pipeline in
                    try configure(decision == .http2, pipeline)
                }
            )
        }
    }

    public func run() async throws {
        try await self.start()
        await withTaskGroup(of: Void.self) { tasks in
            tasks.addTask { await self.removeIdleKeysPeriodically() }
            try? await gracefulShutdown()
            tasks.cancelAll()
        }
        await self.stop()
    }

    /// The concurrency rules of the running configuration (issue 22), `nil` without any.
    public var concurrencyLimiter: ConcurrencyLimiter? {
        (self.shared.current().gate as? LimiterGate)?.concurrency
    }

    /// The upstream's adaptive concurrency limiter of the running configuration (issue 22 item 7), `nil` without one.
    public var adaptiveConcurrency: AdaptiveConcurrencyLimiter? {
        self.shared.current().adaptive
    }

    /// The limiter of the running configuration.
    public var limiter: RateLimiter? {
        (self.shared.current().gate as? LimiterGate)?.limiter
    }

    /// The limiter of the running configuration with its `sluice_requests_total` counters (by rule index), for
    /// another front end that decides with it (the gRPC rate-limit service, issue 14).
    public var limiterWithCounters: (limiter: RateLimiter, ruleCounters: RuleDecisionCounters)? {
        guard let gate = self.shared.current().gate as? LimiterGate else { return nil }
        return (gate.limiter, gate.ruleCounters)
    }

    /// Forgets idle counters (a window passed, a bucket refilled, a block ended) every `interval` until cancelled,
    /// so the memory store shrinks back after a burst of one-off keys instead of waiting for LRU eviction.
    ///
    /// Runs on the concurrency pool, never on an event loop: a sweep walks every slot of the table, one shard lock
    /// at a time: for a million keys, about 2 ms when nothing is idle and 65 ms when everything is, each shard
    /// locked for about 1 ms at most.
    public func removeIdleKeysPeriodically(every interval: Duration = .seconds(10)) async {
        while true {
            do { try await Task.sleep(for: interval) } catch { return }
            if let removed = self.limiter?.store.removeIdleKeys(now: .now()), removed > 0 {
                self.logger.debug("forgot idle keys", metadata: ["count": "\(removed)"])
            }
            if let store = self.limiter?.store {
                self.metrics.updateStoreGauges(trackedKeys: store.trackedKeys, evictions: store.evictions)
            }
        }
    }

    /// Drains: stop accepting, let in-flight exchanges finish within `timeouts.shutdown`, then close.
    public func stop() async {
        let (alreadyStopped, group, quiesce, listeners, pools) = self.state.withLockedValue { state in
            let alreadyStopped = state.stopped
            state.stopped = true
            defer {
                // Released here, while its loop still runs: its deinit completes a promise there.
                state.quiesce = nil
                state.pools = [:]
            }
            return alreadyStopped
                ? (true, nil, nil, [], [])
                : (false, state.group, state.quiesce, state.listeners.map(\.1), Array(state.pools.values))
        }
        if alreadyStopped { return }
        guard let group else {
            // Never started (or its start failed): only the store and the loops to release.
            await StoreFactory.close(self.limiter?.store)
            try? await self.group.shutdownGracefully()
            return
        }
        self.shared.startDraining()
        let timeout = self.shared.current().configuration.server.timeouts.shutdown
        if let quiesce {
            let promise = group.next().makePromise(of: Void.self)
            quiesce.initiateShutdown(promise: promise)
            let drained = promise.futureResult
            let deadline = group.next().scheduleTask(in: TimeAmount(timeout)) {}
            // Whichever comes first: every connection closed, or the shutdown timeout.
            _ = try? await drained.or(deadline.futureResult).get()
            deadline.cancel()
            // Time is up: close what is left while the loops still run, then let the quiescing
            // helper see every channel gone before the loops stop.
            let remaining = self.clients.withLockedValue { Array($0.values) }
            if !remaining.isEmpty {
                self.logger.warning("shutdown timeout: closing \(remaining.count) connection(s) still in flight")
                for channel in remaining { channel.close(promise: nil) }
                let grace = group.next().scheduleTask(in: .seconds(2)) {}
                _ = try? await drained.or(grace.futureResult).get()
                grace.cancel()
            }
        } else {
            for channel in listeners { try? await channel.close() }
        }
        for pool in pools {
            try? await pool.eventLoop.submit { pool.value.closeAll() }.get()
        }
        _ = consume quiesce
        self.shared.accessLog.flush()
        await StoreFactory.close(self.limiter?.store)
        try? await group.shutdownGracefully()
    }
}

extension EventLoopFuture {
    /// Completes when either future completes.
    fileprivate func or(_ other: EventLoopFuture<Void>) -> EventLoopFuture<Void> {
        let promise = self.eventLoop.makePromise(of: Void.self)
        self.whenComplete { _ in promise.succeed(()) }
        other.whenComplete { _ in promise.succeed(()) }
        return promise.futureResult
    }
}

/// A listener that could not be bound, with the address the operator wrote.
public struct ListenError: Error, CustomStringConvertible {
    public var address: ListenAddress
    public var underlying: Error

    public var description: String {
        if let io = self.underlying as? IOError {
            return "cannot listen on \(self.address): \(String(cString: strerror(io.errnoCode)))"
        }
        return "cannot listen on \(self.address): \(self.underlying)"
    }
}

extension ProxyServer: AdminBackend {
    /// Accepting traffic (started, not draining) and, with Redis storage, decisions going to Redis (SPEC §7).
    public var isReady: Bool {
        let listening = self.state.withLockedValue { !$0.listeners.isEmpty && !$0.stopped }
        guard listening, !self.shared.isDraining else { return false }
        return self.storageAvailable
    }

    /// With Redis storage, whether decisions go to Redis (breaker closed, a connection up); memory always decides.
    public var storageAvailable: Bool {
        if let redis = self.limiter?.store as? RedisStore { return redis.isAvailable }
        if let memcached = self.limiter?.store as? MemcachedStore { return memcached.isAvailable }
        return true
    }

    /// With memcached storage, each server's health; with Redis Sentinel, the primary in use and each sentinel's
    /// (the status page, `/metrics`).
    public var storageServers: [StorageServerHealth] {
        if let redis = self.limiter?.store as? RedisStore, let sentinel = redis.sentinel {
            var servers: [StorageServerHealth] = []
            if let primary = sentinel.primary {
                servers.append(StorageServerHealth(address: primary.description, available: redis.isAvailable, role: .primary))
            }
            for health in sentinel.sentinelHealth {
                servers.append(StorageServerHealth(address: health.address, available: health.healthy == true, role: .sentinel))
            }
            return servers
        }
        if let redis = self.limiter?.store as? RedisStore, !redis.clusterNodes.isEmpty {
            return redis.clusterNodes.map { StorageServerHealth(address: $0.address, available: $0.available, role: .primary) }
        }
        guard let memcached = self.limiter?.store as? MemcachedStore else { return [] }
        return zip(memcached.serverNames, memcached.serverAvailability).map { StorageServerHealth(address: $0, available: $1) }
    }

    public var limitedKeys: LimitedKeyTracker? { self.limitedKeyTracker }

    public var reloadStatus: ReloadStatus? { self.reloads.withLockedValue { $0 } }
}
