#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import SluiceConfig
import Synchronization

/// `upstream.adaptive_concurrency` (issue 22) at run time: one ``AdaptiveConcurrencyController`` for the upstream,
/// shared by every event loop, and the count of requests in flight to it.
///
/// A request that is about to be forwarded asks ``admit()``: under a short lock the controller ends its interval if
/// one is over (so intervals end and the minimum latency is measured again while no request completes) and says
/// whether one more request fits under the limit; the in-flight count is an atomic, taken under that lock (so the
/// limit is exact) and given back without it. The ``AdaptiveConcurrencyTicket`` the request gets is a value (no
/// allocation per request); ``release(_:)`` gives it back exactly once, and reports its latency as a sample only when
/// the request completed (``AdaptiveConcurrencyTicket/completed``).
///
/// One limiter lives as long as the upstream it belongs to: a reload that keeps the upstream and its settings keeps
/// the limiter (limit and minimum latency), any other gets a new one, and the tickets of the old one still release
/// into the old one (each ticket holds its limiter).
public final class AdaptiveConcurrencyLimiter: Sendable {
    public let configuration: AdaptiveConcurrencyConfiguration
    /// The upstream's targets, as configured: a reload that changes them gets a new limiter.
    public let targets: [UpstreamTarget]
    private let controller: Mutex<AdaptiveConcurrencyController>
    private let inFlightCount = Atomic<Int>(0)
    private let refusalCount = Atomic<Int>(0)
    private let sampleCount = Atomic<Int>(0)
    /// Monotonic nanoseconds; injected so tests can move time.
    private let clock: @Sendable () -> Int64

    public init(
        configuration: AdaptiveConcurrencyConfiguration,
        targets: [UpstreamTarget],
        seed: UInt64 = UInt64.random(in: 0...UInt64.max),
        clock: @escaping @Sendable () -> Int64 = AdaptiveConcurrencyLimiter.monotonicNanoseconds
    ) {
        self.configuration = configuration
        self.targets = targets
        self.clock = clock
        self.controller = Mutex(
            AdaptiveConcurrencyController(parameters: Self.parameters(configuration), now: clock(), seed: seed)
        )
    }

    /// The controller's parameters for a configuration.
    public static func parameters(_ configuration: AdaptiveConcurrencyConfiguration) -> AdaptiveConcurrencyController.Parameters {
        .init(
            minLimit: configuration.min,
            maxLimit: configuration.max,
            sampleIntervalNanoseconds: configuration.sampleInterval.nanoseconds,
            minRTTIntervalNanoseconds: configuration.minRTTInterval.nanoseconds,
            jitter: configuration.jitter,
            minRTTSamples: configuration.minRTTSamples,
            buffer: configuration.buffer,
            percentile: configuration.percentile
        )
    }

    /// Whether a reload to `configuration` with `targets` keeps this limiter.
    public func serves(_ configuration: AdaptiveConcurrencyConfiguration, targets: [UpstreamTarget]) -> Bool {
        self.configuration == configuration && self.targets == targets
    }

    /// A ticket for one more request in flight, or `nil` (counted as a refusal) when the limit is reached.
    @inline(__always)
    public func admit() -> AdaptiveConcurrencyTicket? {
        let now = self.clock()
        let admitted = self.controller.withLock { controller -> Bool in
            controller.tick(now: now)
            guard controller.admits(inFlight: self.inFlightCount.load(ordering: .relaxed)) else { return false }
            self.inFlightCount.add(1, ordering: .relaxed)
            return true
        }
        guard admitted else {
            self.refusalCount.add(1, ordering: .relaxed)
            return nil
        }
        return AdaptiveConcurrencyTicket(limiter: self, startedAt: now)
    }

    /// Gives `ticket`'s place back; its latency becomes a sample when it completed. Call once per ticket.
    public func release(_ ticket: AdaptiveConcurrencyTicket) {
        self.inFlightCount.subtract(1, ordering: .relaxed)
        guard ticket.completed, let respondedAt = ticket.respondedAt else { return }
        let now = self.clock()
        self.sampleCount.add(1, ordering: .relaxed)
        self.controller.withLock {
            $0.completed(startedAt: ticket.startedAt, latency: respondedAt - ticket.startedAt, now: now)
        }
    }

    /// The time a ticket notes (its response head's arrival).
    public func now() -> Int64 {
        self.clock()
    }

    /// Requests in flight to the upstream now.
    public var inFlight: Int { self.inFlightCount.load(ordering: .relaxed) }
    /// Requests refused so far by this limiter.
    public var refusals: Int { self.refusalCount.load(ordering: .relaxed) }
    /// Latencies reported so far (completed requests).
    public var samples: Int { self.sampleCount.load(ordering: .relaxed) }

    /// What `/metrics` shows, after ending an interval that is over.
    public struct State: Sendable, Hashable {
        public var limit: Int
        public var inFlight: Int
        /// Nanoseconds; `nil` before the first measurement ends.
        public var minRTT: Int64?
        /// The last interval's percentile latency, nanoseconds.
        public var sampleLatency: Int64?
        public var measuringMinRTT: Bool
        public var refusals: Int
        public var samples: Int
    }

    public var state: State {
        let now = self.clock()
        return self.controller.withLock { controller in
            controller.tick(now: now)
            let measuring: Bool
            if case .measuringMinRTT = controller.phase { measuring = true } else { measuring = false }
            return State(
                limit: controller.limit,
                inFlight: self.inFlight,
                minRTT: controller.minRTT,
                sampleLatency: controller.lastSample,
                measuringMinRTT: measuring,
                refusals: self.refusals,
                samples: self.samples
            )
        }
    }

    /// `CLOCK_MONOTONIC`, in nanoseconds (the clock `NIODeadline.now()` reads).
    @Sendable public static func monotonicNanoseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }
}

/// One request's place under the upstream's adaptive limit (``AdaptiveConcurrencyLimiter/admit()``): from the moment
/// it is forwarded until the exchange is over. A value; whoever holds it releases it once.
public struct AdaptiveConcurrencyTicket: Sendable {
    public let limiter: AdaptiveConcurrencyLimiter
    /// When it was admitted (monotonic nanoseconds): the request is forwarded at once.
    public let startedAt: Int64
    /// When the response head arrived; `nil` before.
    public var respondedAt: Int64?
    /// The response was relayed to its end: the latency is a sample.
    public var completed = false

    init(limiter: AdaptiveConcurrencyLimiter, startedAt: Int64) {
        self.limiter = limiter
        self.startedAt = startedAt
    }

    /// Notes the response head's arrival (the latency's end).
    public mutating func responded() {
        if self.respondedAt == nil { self.respondedAt = self.limiter.now() }
    }

    /// Gives the place back (a sample when ``completed``).
    public func release() {
        self.limiter.release(self)
    }
}
