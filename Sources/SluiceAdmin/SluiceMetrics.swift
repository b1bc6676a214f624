import Prometheus
import SluiceLimiter
import Synchronization

/// The Prometheus families of SPEC §7, fed by the proxy and rendered by `GET /metrics`.
///
/// Owns its own ``PrometheusCollectorRegistry`` instead of bootstrapping the global `MetricsSystem`: the process has
/// exactly one owner of the registry (the admin listener renders it), and tests can build as many independent
/// instances as they like.
///
/// Every family is in the exposition from the start, so dashboards and alerts see a `0` rather than a missing series:
/// label-less metrics are created in `init`, `sluice_config_reloads_total` for both results, and the labelled
/// `sluice_requests_total` / `sluice_upstream_responses_total` get their `# TYPE` line even before their first
/// series exists (call ``prepare(rules:)`` to have zero series for every rule as well).
///
/// Hot path: ``requestDecided(rule:decision:)`` and ``upstreamResponded(status:seconds:)`` run once per request on
/// every event loop. They keep the registry out of it: the counter handles are cached in small `Mutex`-protected
/// tables (one dictionary lookup under a short lock, then two atomic increments: the counter's and a readable total
/// beside it for ``totals()``), and a series is created in the registry only the first time its labels are seen.
///
/// - note: All methods are thread-safe and may be called from any event loop.
public final class SluiceMetrics: Sendable {
    /// Upper bounds of `sluice_upstream_latency_seconds`, 1 ms to 10 s.
    public static let upstreamLatencyBuckets: [Double] = [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
    ]
    /// Upper bounds of `sluice_storage_latency_seconds`, 100 µs to 1 s: a memory decision takes microseconds and a
    /// Redis round trip on a LAN well under a millisecond, so the interesting range sits lower than upstream's.
    public static let storageLatencyBuckets: [Double] = [
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
    ]

    /// The registry the families live in; exposed so the lead can add process metrics to the same exposition.
    public let registry: PrometheusCollectorRegistry

    private let upstreamLatency: ValueHistogram
    private let storageErrors: ReadableCounter
    private let storageLatency: ValueHistogram
    private let trackedKeys: Gauge
    private let evictions: Counter
    private let reloadSuccesses: Counter
    private let reloadFailures: Counter
    private let openConnections: Gauge

    /// `sluice_requests_total` handles by rule, one slot per counted ``Decision``.
    private let requestCounters: Mutex<[String: RuleCounters]>
    /// `sluice_upstream_responses_total` handles by status code.
    private let responseCounters: Mutex<[Int: ReadableCounter]>
    /// Not Prometheus families: the status page's upstream health and Redis latency (``totals()``).
    private let upstreamUnreachable = Atomic<Int>(0)
    private let upstreamTimeouts = Atomic<Int>(0)
    private let storageDecisions = Atomic<Int>(0)
    private let storageNanoseconds = Atomic<Int>(0)
    /// The store's cumulative eviction total at the last ``updateStoreGauges(trackedKeys:evictions:)``.
    private let lastEvictionTotal: Mutex<Int>

    /// The four counters of one rule, indexed by ``Decision/metricSlot``.
    private struct RuleCounters: Sendable {
        var counters: [ReadableCounter]
    }

    /// Computed, not stored: `MetricNameDescriptor` is not `Sendable`, and it is only needed when a series is made.
    private static var requests: MetricNameDescriptor {
        MetricNameDescriptor(
            metricName: "sluice_requests",
            unitName: "total",
            helpText: "Requests per applicable rule and that rule's decision."
        )
    }
    private static var upstreamResponses: MetricNameDescriptor {
        MetricNameDescriptor(
            metricName: "sluice_upstream_responses",
            unitName: "total",
            helpText: "Responses received from the upstream, by status code."
        )
    }

    /// Creates the registry and every label-less family.
    public init() {
        let registry = PrometheusCollectorRegistry()
        self.registry = registry
        self.upstreamLatency = registry.makeValueHistogram(
            descriptor: MetricNameDescriptor(
                metricName: "sluice_upstream_latency",
                unitName: "seconds",
                helpText: "Time from forwarding a request to receiving the upstream's response head."
            ),
            buckets: Self.upstreamLatencyBuckets
        )
        self.storageErrors = ReadableCounter(
            registry.makeCounter(
                descriptor: MetricNameDescriptor(
                    metricName: "sluice_storage_errors",
                    unitName: "total",
                    helpText: "Storage operations that failed or timed out."
                )
            )
        )
        self.storageLatency = registry.makeValueHistogram(
            descriptor: MetricNameDescriptor(
                metricName: "sluice_storage_latency",
                unitName: "seconds",
                helpText: "Time the storage took to decide a request."
            ),
            buckets: Self.storageLatencyBuckets
        )
        self.trackedKeys = registry.makeGauge(
            descriptor: MetricNameDescriptor(
                metricName: "sluice_tracked",
                unitName: "keys",
                helpText: "Keys the storage tracks now."
            )
        )
        self.evictions = registry.makeCounter(
            descriptor: MetricNameDescriptor(
                metricName: "sluice_evictions",
                unitName: "total",
                helpText: "Keys evicted to stay within storage.max_keys."
            )
        )
        let reloads = MetricNameDescriptor(
            metricName: "sluice_config_reloads",
            unitName: "total",
            helpText: "Configuration reloads, by result."
        )
        self.reloadSuccesses = registry.makeCounter(descriptor: reloads, labels: [("result", "success")])
        self.reloadFailures = registry.makeCounter(descriptor: reloads, labels: [("result", "failure")])
        self.openConnections = registry.makeGauge(
            descriptor: MetricNameDescriptor(
                metricName: "sluice_open",
                unitName: "connections",
                helpText: "Client connections open now."
            )
        )
        self.requestCounters = Mutex([:])
        self.responseCounters = Mutex([:])
        self.lastEvictionTotal = Mutex(0)
    }

    // MARK: Hot path

    /// Counts one applicable rule's verdict for a request (`LimitOutcome.ruleDecisions`).
    ///
    /// `Decision.noRule` is not a per-rule verdict and is ignored.
    public func requestDecided(_ decision: RuleDecision) {
        self.requestDecided(rule: decision.rule, decision: decision.decision)
    }

    /// Counts one applicable rule's verdict for a request; `.noRule` is ignored.
    public func requestDecided(rule: String, decision: Decision) {
        guard let slot = decision.metricSlot else { return }
        let cached = self.requestCounters.withLock { $0[rule]?.counters[slot] }
        if let cached {
            cached.increment()
            return
        }
        self.ruleCounters(rule).counters[slot].increment()
    }

    /// Counts one upstream response and records the time to its head.
    public func upstreamResponded(status: Int, seconds: Double) {
        let cached = self.responseCounters.withLock { $0[status] }
        let counter: ReadableCounter
        if let cached {
            counter = cached
        } else {
            // Created outside our lock: the registry takes its own, and a race only builds the same handle twice
            // (the registry returns the existing series for the same labels).
            let made = ReadableCounter(
                self.registry.makeCounter(descriptor: Self.upstreamResponses, labels: [("status", String(status))])
            )
            counter = self.responseCounters.withLock { table in
                if let existing = table[status] { return existing }
                table[status] = made
                return made
            }
        }
        counter.increment()
        self.upstreamLatency.record(max(0, seconds))
    }

    /// Sluice answered 502 (upstream unreachable) or 504 (upstream too slow) itself; for the status page only
    /// (`sluice_upstream_responses_total` counts what the upstream said).
    public func upstreamFailed(status: Int) {
        if status == 504 {
            self.upstreamTimeouts.wrappingAdd(1, ordering: .relaxed)
        } else {
            self.upstreamUnreachable.wrappingAdd(1, ordering: .relaxed)
        }
    }

    /// A client connection was accepted.
    public func connectionOpened() {
        self.openConnections.increment()
    }

    /// A client connection was closed.
    public func connectionClosed() {
        self.openConnections.decrement()
    }

    /// Records the time one storage decision took.
    public func storageObserved(seconds: Double) {
        self.storageLatency.record(max(0, seconds))
        self.storageDecisions.wrappingAdd(1, ordering: .relaxed)
        self.storageNanoseconds.wrappingAdd(Int(max(0, seconds) * 1e9), ordering: .relaxed)
    }

    /// Counts one failed or timed-out storage operation.
    public func storageError() {
        self.storageErrors.increment()
    }

    // MARK: Occasional

    /// Counts a configuration reload (SPEC §6: a bad reload is counted, the process keeps running).
    public func reloaded(success: Bool) {
        (success ? self.reloadSuccesses : self.reloadFailures).increment()
    }

    /// Creates the zero series of every rule × decision, so `rate()` starts from 0 instead of a missing series.
    ///
    /// Optional; call at start and after each successful reload. Series of removed rules stay (Prometheus counters
    /// must not disappear while the process lives).
    public func prepare(rules: some Sequence<String>) {
        for rule in rules { _ = self.ruleCounters(rule) }
    }

    /// Copies the store's numbers into `sluice_tracked_keys` and `sluice_evictions_total`.
    ///
    /// - Parameters:
    ///   - trackedKeys: keys tracked now.
    ///   - evictions: the store's cumulative eviction total; the counter advances by the growth since the last call.
    ///     A smaller total means the store was replaced (a reload that changed `storage`), so the new store's whole
    ///     total is growth.
    public func updateStoreGauges(trackedKeys: Int, evictions: Int) {
        self.trackedKeys.set(Int64(trackedKeys))
        let delta = self.lastEvictionTotal.withLock { last -> Int in
            let delta = evictions >= last ? evictions - last : evictions
            last = evictions
            return delta
        }
        if delta > 0 { self.evictions.increment(by: Int64(delta)) }
    }

    // MARK: Reading back

    /// The totals counted so far, for the status page's sampler. Takes each table's lock once.
    public func totals() -> MetricTotals {
        var totals = MetricTotals()
        totals.requests = self.requestCounters.withLock { table in
            table.mapValues { rule in
                DecisionCounts(
                    admitted: rule.counters[0].value,
                    limited: rule.counters[1].value,
                    shadowLimited: rule.counters[2].value,
                    exempt: rule.counters[3].value
                )
            }
        }
        totals.upstreamResponses = self.responseCounters.withLock { table in table.mapValues(\.value) }
        totals.upstreamUnreachable = self.upstreamUnreachable.load(ordering: .relaxed)
        totals.upstreamTimeouts = self.upstreamTimeouts.load(ordering: .relaxed)
        totals.storageErrors = self.storageErrors.value
        totals.storageDecisions = self.storageDecisions.load(ordering: .relaxed)
        totals.storageNanoseconds = self.storageNanoseconds.load(ordering: .relaxed)
        return totals
    }

    // MARK: Rendering

    /// The Prometheus text exposition (format 0.0.4) of every family.
    public func exposition() -> String {
        var buffer: [UInt8] = []
        buffer.reserveCapacity(4096)
        self.registry.emit(into: &buffer)
        // A labelled family exists in the registry only once it has a series; announce the empty ones ourselves.
        if self.requestCounters.withLock({ $0.isEmpty }) {
            Self.appendEmptyFamily(Self.requests, to: &buffer)
        }
        if self.responseCounters.withLock({ $0.isEmpty }) {
            Self.appendEmptyFamily(Self.upstreamResponses, to: &buffer)
        }
        return String(decoding: buffer, as: UTF8.self)
    }

    // MARK: Helpers

    /// The cached counters of `rule`, creating its four series on first use.
    private func ruleCounters(_ rule: String) -> RuleCounters {
        if let cached = self.requestCounters.withLock({ $0[rule] }) { return cached }
        let made = RuleCounters(
            counters: Decision.countedInMetrics.map { decision in
                ReadableCounter(
                    self.registry.makeCounter(
                        descriptor: Self.requests,
                        labels: [("rule", rule), ("decision", decision.rawValue)]
                    )
                )
            }
        )
        return self.requestCounters.withLock { table in
            if let existing = table[rule] { return existing }
            table[rule] = made
            return made
        }
    }

    private static func appendEmptyFamily(_ descriptor: MetricNameDescriptor, to buffer: inout [UInt8]) {
        if let help = descriptor.helpText {
            buffer.append(contentsOf: "# HELP \(descriptor.name) \(help)\n".utf8)
        }
        buffer.append(contentsOf: "# TYPE \(descriptor.name) counter\n".utf8)
    }
}

extension Decision {
    /// The decisions `sluice_requests_total` has a series for (SPEC §7), in slot order.
    static let countedInMetrics: [Decision] = [.admitted, .limited, .shadowLimited, .exempt]

    /// This decision's index in ``countedInMetrics``; `nil` for `.noRule`.
    var metricSlot: Int? {
        switch self {
        case .admitted: 0
        case .limited: 1
        case .shadowLimited: 2
        case .exempt: 3
        case .noRule: nil
        }
    }
}
