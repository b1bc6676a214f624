import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import SluiceConfig
import SluiceLimiter
import SluiceListener
import Synchronization

/// The admin listener of SPEC §7 (`server.admin`): health, readiness, metrics, config and per-key limit state, and
/// the status page (`/`, `/status`).
///
/// While listening it samples the metrics' totals into a ``RateHistory`` every 2 s, for the status page's charts.
///
/// Runs on the event loop group it is given (the proxy's), one ``AdminHTTPHandler`` per connection behind NIO's
/// HTTP/1.1 server pipeline, with keep-alive. It binds one address; on a reload that changes `server.admin`, the
/// owner stops this server and starts a new one (keeping the old one if the new address cannot be bound, SPEC §6).
///
/// Hostile clients (SPEC §3): every connection has the proxy's `header_read` and `idle` timeouts
/// (``AdminTimeoutHandler``, read per connection), and the listener holds at most `server.admin_max_connections`
/// (default 64, read at ``start(host:port:)``; a reload does not change it, like the address) with its own
/// ``ConnectionCap``, so a flood of admin connections cannot take the descriptors the proxy needs.
///
/// ```swift
/// let admin = AdminServer(backend: proxy, metrics: metrics, group: group)
/// try await admin.start(address: configuration.server.admin!)
/// print("sluice admin listening on \(admin.localAddress!)")
/// ...
/// await admin.stop()
/// ```
public final class AdminServer: Sendable {
    private enum State {
        /// Waiting for ``AdminServer/start(host:port:)``.
        case idle
        /// Binding; a second `start` is refused.
        case starting
        /// Accepting on this channel.
        case listening(any Channel)
        /// Stopped for good.
        case stopped
    }

    private let group: any EventLoopGroup
    private let router: AdminRouter
    private let metrics: SluiceMetrics
    private let clock: @Sendable () -> LimiterInstant
    /// The status page's rates, sampled from `metrics` while listening.
    private let history: RateHistory
    private let sampler = Mutex<RepeatedTask?>(nil)
    private let state = Mutex<State>(.idle)
    /// Open client connections, closed by ``stop()`` so keep-alive scrapers do not hold the process.
    private let connections = Mutex<[ObjectIdentifier: any Channel]>([:])
    /// Reports listener pauses and accept errors.
    private let logger: Logger

    /// - Parameters:
    ///   - backend: the running proxy, read per request.
    ///   - metrics: rendered by `GET /metrics`.
    ///   - group: the event loops to run on (usually the proxy's).
    ///   - clock: the time `/limits` reads counters at. Defaults to the wall clock.
    ///   - logger: where the listener reports pauses at its connection cap and failed accepts.
    public init(
        backend: any AdminBackend,
        metrics: SluiceMetrics,
        group: any EventLoopGroup,
        clock: @escaping @Sendable () -> LimiterInstant = { LimiterInstant.now() },
        logger: Logger = Logger(label: "sluice.admin")
    ) {
        self.group = group
        self.logger = logger
        self.metrics = metrics
        self.clock = clock
        let history = RateHistory()
        self.history = history
        self.router = AdminRouter(backend: backend, metrics: metrics, clock: clock, history: history)
    }

    /// Binds `address` and starts accepting.
    public func start(address: ListenAddress) async throws {
        try await self.start(host: address.host, port: address.port)
    }

    /// Binds `host:port` (port 0 picks a free port, see ``localAddress``) and starts accepting.
    ///
    /// - Throws: the bind error, or ``AdminServerError/alreadyStarted`` when called twice.
    public func start(host: String, port: Int) async throws {
        try self.state.withLock { state in
            guard case .idle = state else { throw AdminServerError.alreadyStarted }
            state = .starting
        }
        let router = self.router
        let cap = ConnectionCap(limit: router.backend.configuration.server.adminMaxConnections)
        let logger = self.logger
        let bootstrap = ServerBootstrap(group: self.group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.maxMessagesPerRead, value: ListenerGuards.acceptsPerRead)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try ListenerGuards.add(to: channel.pipeline.syncOperations, cap: cap, logger: logger, role: "admin")
                }
            }
            .childChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [self] channel in
                self.track(channel)
                let timeouts = router.backend.configuration.server.timeouts
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    let timeoutHandler = AdminTimeoutHandler(
                        headerRead: TimeAmount(timeouts.headerRead),
                        idle: TimeAmount(timeouts.idle)
                    )
                    try channel.pipeline.syncOperations.addHandler(timeoutHandler)
                    try channel.pipeline.syncOperations.addHandler(AdminHTTPHandler(router: router))
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.bind(host: host, port: port).get()
        } catch {
            self.state.withLock { $0 = .idle }
            throw error
        }
        let stoppedMeanwhile = self.state.withLock { state -> Bool in
            if case .stopped = state { return true }
            state = .listening(channel)
            return false
        }
        if stoppedMeanwhile {
            try? await channel.close()
            return
        }
        self.startSampling()
    }

    /// Reads the metrics' totals into the history every `history.interval`: the status page's rates cost the
    /// request path nothing beyond the counters it feeds anyway.
    private func startSampling() {
        let (history, metrics, clock) = (self.history, self.metrics, self.clock)
        let sample: @Sendable () -> Void = {
            history.record(metrics.totals(), atMilliseconds: clock().nanosecondsSinceEpoch / 1_000_000)
        }
        sample()
        let (seconds, attoseconds) = history.interval.components
        let every = TimeAmount.nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
        let task = self.group.next().scheduleRepeatedTask(initialDelay: every, delay: every) { _ in sample() }
        self.sampler.withLock { $0 = task }
    }

    /// The bound address, `nil` unless listening.
    public var localAddress: SocketAddress? {
        self.state.withLock { state in
            if case .listening(let channel) = state { channel.localAddress } else { nil }
        }
    }

    /// Stops accepting and closes open connections. Responses being written are cut off: admin answers are small
    /// and a scraper retries. Safe to call more than once.
    public func stop() async {
        let listener = self.state.withLock { state -> (any Channel)? in
            defer { state = .stopped }
            if case .listening(let channel) = state { return channel }
            return nil
        }
        self.sampler.withLock { task in
            task?.cancel()
            task = nil
        }
        if let listener { try? await listener.close() }
        let open = self.connections.withLock { table in
            defer { table.removeAll() }
            return Array(table.values)
        }
        for connection in open { try? await connection.close() }
    }

    private func track(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        self.connections.withLock { $0[id] = channel }
        channel.closeFuture.whenComplete { [self] _ in
            _ = self.connections.withLock { $0.removeValue(forKey: id) }
        }
    }
}

/// Why ``AdminServer`` refused to start.
public struct AdminServerError: Error, Hashable, CustomStringConvertible {
    private enum Code: Hashable {
        case alreadyStarted
    }

    private let code: Code

    /// `start` was called on a server that is started or was stopped; make a new ``AdminServer`` instead.
    public static let alreadyStarted = AdminServerError(code: .alreadyStarted)

    public var description: String {
        switch self.code {
        case .alreadyStarted: "the admin server was already started"
        }
    }
}
