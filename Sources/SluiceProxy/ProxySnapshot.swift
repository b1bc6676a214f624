import Atomics
import Logging
import SluiceAdmin
import NIOConcurrencyHelpers
import NIOCore
import SluiceConfig
import SluiceJWT
import SluiceLimiter

/// Everything a request needs from one config, compiled once per load and shared read-only by
/// every event loop. A request reads the current snapshot once, when its head arrives (SPEC §6:
/// in-flight requests finish with the config they started with).
final class ProxySnapshot: Sendable, AtomicReference {
    let configuration: SluiceConfiguration
    let gate: any RequestGate
    /// ``gate`` when it is the limiter's (every running server's): called directly, the compiler specialises the
    /// decision for the proxy's request type instead of running the generic code through witness tables.
    let limiterGate: LimiterGate?
    /// `limiterGate.concurrency`, unretained (the gate keeps it alive for as long as this snapshot lives, and a
    /// request's connection holds the snapshot): the limiter is shared by every event loop, and retaining it per
    /// request bounces its reference count between cores.
    let concurrencyRef: Unmanaged<ConcurrencyLimiter>?
    let clientIP: ClientIPResolver
    let targets: [UpstreamTarget]
    let preserveHost: Bool
    /// Read at accept time for the listeners, and per new upstream connection for `https://` targets.
    let tls: TLSContexts
    let maxBodyBytes: Int
    let maxIdlePerLoop: Int
    let headerReadTimeout: TimeAmount
    let idleTimeout: TimeAmount
    let upstreamConnectTimeout: TimeAmount
    let upstreamResponseTimeout: TimeAmount
    let bodyReadTimeout: TimeAmount
    let sendTimeout: TimeAmount
    let tunnelIdleTimeout: TimeAmount
    /// `upstream.adaptive_concurrency` (issue 22 item 7), `nil` without it: a request asks it just before it is
    /// forwarded. Kept from the previous snapshot while the upstream and the settings stay the same.
    let adaptive: AdaptiveConcurrencyLimiter?
    /// The answer to a request over the adaptive limit: 503 with `Retry-After`, no rate-limit fields; made once.
    let adaptiveRefusal: BlockedAnswer?
    /// Checks the requests' JWTs (issue 15); `nil` when no rule reads a claim. Prepared before the snapshot serves.
    let jwt: JWTVerifier?

    /// - Parameter previousAdaptive: the running snapshot's ``adaptive``, kept when it serves the same upstream with
    ///   the same settings (its limit and minimum latency carry over a reload).
    init(
        configuration: SluiceConfiguration,
        gate: any RequestGate,
        tls: TLSContexts = TLSContexts(),
        previousAdaptive: AdaptiveConcurrencyLimiter? = nil,
        jwt: JWTVerifier? = nil
    ) {
        self.configuration = configuration
        self.jwt = jwt
        self.gate = gate
        self.limiterGate = gate as? LimiterGate
        self.concurrencyRef = self.limiterGate?.concurrency.map { Unmanaged.passUnretained($0) }
        self.tls = tls
        let server = configuration.server
        self.clientIP = ClientIPResolver(trustedProxies: server.trustedProxies, header: server.clientIPHeader)
        self.targets = configuration.upstream.targets
        self.preserveHost = configuration.upstream.preserveHost
        self.maxBodyBytes = server.maxBodyBytes
        self.maxIdlePerLoop = configuration.upstream.maxIdlePerLoop
        self.headerReadTimeout = TimeAmount(server.timeouts.headerRead)
        self.idleTimeout = TimeAmount(server.timeouts.idle)
        self.upstreamConnectTimeout = TimeAmount(server.timeouts.upstreamConnect)
        self.upstreamResponseTimeout = TimeAmount(server.timeouts.upstreamResponse)
        self.bodyReadTimeout = TimeAmount(server.timeouts.bodyRead)
        self.sendTimeout = TimeAmount(server.timeouts.send)
        self.tunnelIdleTimeout = TimeAmount(server.timeouts.tunnelIdle)
        if let adaptive = configuration.upstream.adaptiveConcurrency {
            let targets = configuration.upstream.targets
            if let previousAdaptive, previousAdaptive.serves(adaptive, targets: targets) {
                self.adaptive = previousAdaptive
            } else {
                self.adaptive = AdaptiveConcurrencyLimiter(configuration: adaptive, targets: targets)
            }
            self.adaptiveRefusal = BlockedAnswer(adaptiveRetryAfter: adaptive.retryAfterSeconds)
        } else {
            self.adaptive = nil
            self.adaptiveRefusal = nil
        }
    }
}

/// State shared by every connection of a server: the current snapshot (swapped on reload),
/// the draining flag, the logger and the access log.
final class ProxyShared: Sendable {
    private let snapshot: ManagedAtomic<ProxySnapshot>
    /// Counts ``replace(with:)``s, so a connection can keep the snapshot it read and check with one plain load that
    /// it is still current (``ProxySnapshotCache``): loading the snapshot itself takes a retain on an object every
    /// event loop shares, whose reference count then moves between cores on every request.
    private let generation = ManagedAtomic<Int>(0)
    private let draining = ManagedAtomic<Bool>(false)
    let logger: Logger
    let accessLog: AccessLog
    /// The Prometheus families of SPEC §7 (rendered by the admin listener).
    let metrics: SluiceMetrics

    init(snapshot: ProxySnapshot, logger: Logger, accessLog: AccessLog, metrics: SluiceMetrics) {
        self.snapshot = ManagedAtomic(snapshot)
        self.logger = logger
        self.accessLog = accessLog
        self.metrics = metrics
    }

    @inline(__always)
    func current() -> ProxySnapshot {
        self.snapshot.load(ordering: .acquiring)
    }

    func replace(with snapshot: ProxySnapshot) {
        self.snapshot.store(snapshot, ordering: .releasing)
        self.generation.wrappingIncrement(ordering: .releasing)
    }

    /// The number of replacements so far (see ``ProxySnapshotCache``).
    @inline(__always)
    var currentGeneration: Int {
        self.generation.load(ordering: .acquiring)
    }

    var isDraining: Bool { self.draining.load(ordering: .relaxed) }

    func startDraining() {
        self.draining.store(true, ordering: .relaxed)
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}

/// One connection's copy of the current snapshot, refreshed only when a reload replaced it.
///
/// The generation is read before the snapshot, and ``ProxyShared/replace(with:)`` stores the snapshot before counting
/// the replacement, so a snapshot read after seeing a generation is at least that new.
struct ProxySnapshotCache {
    private(set) var snapshot: ProxySnapshot
    private var generation: Int

    init(_ shared: ProxyShared) {
        self.generation = shared.currentGeneration
        self.snapshot = shared.current()
    }

    /// The current snapshot: the cached one unless a reload replaced it.
    @inline(__always)
    mutating func current(_ shared: ProxyShared) -> ProxySnapshot {
        let generation = shared.currentGeneration
        if generation != self.generation {
            self.generation = generation
            self.snapshot = shared.current()
        }
        return self.snapshot
    }
}
