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
/// series exists (``ruleCounters(for:)`` and ``prepare(rules:)`` make zero series for every rule as well).
///
/// Hot path: a request's rule decisions, its upstream response and its storage decision are counted without a lock,
/// a dictionary or a string: each is one or two relaxed atomic adds on a cache line that only the calling event loop
/// writes (``StripedCounters``, ``StripedHistogram``).
/// - Rule decisions go through the ``RuleDecisionCounters`` of the configuration snapshot (``ruleCounters(for:)``,
///   made once per load), indexed by the rule's position in the file (``RuleDecision/ruleIndex``).
/// - Upstream statuses 100-599 have a fixed table; the registry's series of a status is made when it is first
///   rendered with a count.
/// - The registry's `sluice_requests_total` and `sluice_upstream_responses_total` counters are brought up to these
///   counts by ``exposition()`` just before it renders them, and the two latency histograms are rendered by
///   ``StripedHistogram`` in the registry's own format: render through ``exposition()``, not `registry.emit`.
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

    /// The status codes with a slot of their own in ``statusCounts``; others (which an upstream would have to
    /// invent) are counted under a lock.
    static let tabledStatuses = 100..<600

    /// The registry the counters and gauges live in; exposed so the lead can add process metrics to the same
    /// exposition. Render it through ``exposition()``, which brings the request counters up to date first.
    public let registry: PrometheusCollectorRegistry

    private let upstreamLatency: StripedHistogram
    private let storageErrors: ReadableCounter
    private let storageLatency: StripedHistogram
    private let trackedKeys: Gauge
    private let evictions: Counter
    private let reloadSuccesses: Counter
    private let reloadFailures: Counter
    private let openConnections: Gauge

    /// `sluice_requests_total` by rule name: every rule ever prepared or counted. Series of removed rules stay
    /// (Prometheus counters must not disappear while the process lives), and a rule that keeps its name across a
    /// reload keeps its series wherever it moves in the file.
    private let requestSeries: Mutex<[String: RuleSeries]>
    /// `sluice_upstream_responses_total`, counted: slot `status - 100` for ``tabledStatuses``.
    private let statusCounts = StripedCounters(width: SluiceMetrics.tabledStatuses.count)
    /// `sluice_upstream_responses_total`, rendered: the registry's series of each status seen so far.
    private let statusSeries: Mutex<StatusSeries>
    /// Not Prometheus families: the status page's upstream health (``totals()``).
    private let upstreamUnreachable = Atomic<Int>(0)
    private let upstreamTimeouts = Atomic<Int>(0)
    /// The store's cumulative eviction total at the last ``updateStoreGauges(trackedKeys:evictions:)``.
    private let lastEvictionTotal: Mutex<Int>
    /// `sluice_storage_server_up` by `server` and `role`: every series made so far (``updateStorageServers(_:)``).
    let storageServerUp = Mutex<[String: Gauge]>([:])
    /// The concurrency slots to render (issue 22), read at each scrape; `nil` until a gate sets it.
    private let concurrencySource = Mutex<(@Sendable () -> [ConcurrencyRuleSlots])?>(nil)
    /// The upstream's adaptive limiter to render (issue 22 item 7), read at each scrape, and the totals of limiters a
    /// reload replaced (so the counters only grow).
    private let adaptiveSource = Mutex<AdaptiveSeries>(AdaptiveSeries())

    private struct AdaptiveSeries {
        var source: (@Sendable () -> AdaptiveConcurrencyLimiter?)?
        var last: AdaptiveConcurrencyLimiter?
        var retiredRefusals = 0
        var retiredSamples = 0
    }

    /// The registry's series of `sluice_upstream_responses_total` and what each shows.
    private struct StatusSeries {
        var counters: [Int: (counter: Counter, shown: Int)] = [:]
        /// Counts of statuses outside ``tabledStatuses``.
        var untabled: [Int: Int] = [:]
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
        self.upstreamLatency = StripedHistogram(
            name: "sluice_upstream_latency_seconds",
            help: "Time from forwarding a request to receiving the upstream's response head.",
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
        self.storageLatency = StripedHistogram(
            name: "sluice_storage_latency_seconds",
            help: "Time the storage took to decide a request.",
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
        self.requestSeries = Mutex([:])
        self.statusSeries = Mutex(StatusSeries())
        self.lastEvictionTotal = Mutex(0)
    }

    // MARK: Hot path

    /// Counts one upstream response and records the time to its head.
    public func upstreamResponded(status: Int, seconds: Double) {
        if Self.tabledStatuses.contains(status) {
            self.statusCounts.add(status &- Self.tabledStatuses.lowerBound)
        } else {
            self.statusSeries.withLock { $0.untabled[status, default: 0] += 1 }
        }
        self.upstreamLatency.observe(max(0, seconds))
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
        self.storageLatency.observe(max(0, seconds))
    }

    /// Counts one failed or timed-out storage operation.
    public func storageError() {
        self.storageErrors.increment()
    }

    /// The per-server families of a storage spread over several servers (memcached, issue 21):
    /// `sluice_storage_server_errors_total{server}` and `sluice_storage_server_latency_seconds{server}` (one exchange
    /// with the server each), with a zero series for every server of `servers` (`host:port`) from the start.
    ///
    /// A server that leaves the configuration keeps its series (Prometheus counters must not disappear while the
    /// process lives); one that stays keeps its counts.
    public func storageServerMetrics(for servers: [String]) -> StorageServerMetrics {
        StorageServerMetrics(
            errors: servers.map { server in
                self.registry.makeCounter(
                    descriptor: MetricNameDescriptor(
                        metricName: "sluice_storage_server_errors",
                        unitName: "total",
                        helpText: "Exchanges with one storage server that failed or timed out."
                    ),
                    labels: [("server", server)]
                )
            },
            latency: servers.map { server in
                self.registry.makeValueHistogram(
                    descriptor: MetricNameDescriptor(
                        metricName: "sluice_storage_server_latency",
                        unitName: "seconds",
                        helpText: "Time one exchange with one storage server took."
                    ),
                    labels: [("server", server)],
                    buckets: Self.storageLatencyBuckets
                )
            }
        )
    }

    // MARK: Per configuration

    /// The counters of `rules` (a configuration's rule names, in file order) for the request path: make once per
    /// configuration load, then count each request's decisions with ``RuleDecisionCounters/record(_:)``.
    ///
    /// Creates the zero series of every rule × decision that does not exist yet, so `rate()` starts from 0 instead of
    /// a missing series; a rule that existed before (under its name, wherever it was in the file) keeps its series
    /// and its counts.
    public func ruleCounters(for rules: [String]) -> RuleDecisionCounters {
        RuleDecisionCounters(series: rules.map(self.series(forRule:)))
    }

    /// Creates the zero series of every rule × decision, like ``ruleCounters(for:)`` without keeping the table.
    ///
    /// Series of removed rules stay (Prometheus counters must not disappear while the process lives).
    public func prepare(rules: some Sequence<String>) {
        for rule in rules { _ = self.series(forRule: rule) }
    }

    /// Counts one applicable rule's verdict by the rule's name; `.noRule` is ignored.
    ///
    /// A dictionary lookup under a lock: the request path counts through ``ruleCounters(for:)`` instead.
    public func requestDecided(rule: String, decision: Decision) {
        guard let slot = decision.metricSlot else { return }
        self.series(forRule: rule).counts.add(slot)
    }

    // MARK: Occasional

    /// Counts a configuration reload (SPEC §6: a bad reload is counted, the process keeps running).
    public func reloaded(success: Bool) {
        (success ? self.reloadSuccesses : self.reloadFailures).increment()
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

    /// The totals counted so far, for the status page's sampler.
    public func totals() -> MetricTotals {
        var totals = MetricTotals()
        totals.requests = self.requestSeries.withLock { table in table.mapValues(\.counts.decisionCounts) }
        let untabled = self.statusSeries.withLock { $0.untabled }
        for status in Self.tabledStatuses {
            let count = self.statusCounts.value(status - Self.tabledStatuses.lowerBound)
            if count > 0 { totals.upstreamResponses[status] = count }
        }
        totals.upstreamResponses.merge(untabled) { $0 + $1 }
        totals.upstreamUnreachable = self.upstreamUnreachable.load(ordering: .relaxed)
        totals.upstreamTimeouts = self.upstreamTimeouts.load(ordering: .relaxed)
        totals.storageErrors = self.storageErrors.value
        totals.storageDecisions = self.storageLatency.count
        totals.storageNanoseconds = Int((self.storageLatency.sum * 1e9).rounded())
        for rule in self.concurrencySource.withLock({ $0 })?() ?? [] {
            totals.concurrency[rule.name] = MetricTotals.ConcurrencyReading(
                inFlight: rule.inFlight,
                queued: rule.queued,
                refusals: ConcurrencyRefusalReason.allCases.reduce(0) { $0 + rule.refusals($1) }
            )
        }
        return totals
    }

    // MARK: Rendering

    /// The Prometheus text exposition (format 0.0.4) of every family.
    public func exposition() -> String {
        self.updateRegistryCounters()
        var buffer: [UInt8] = []
        buffer.reserveCapacity(4096)
        self.registry.emit(into: &buffer)
        // A labelled family exists in the registry only once it has a series; announce the empty ones ourselves.
        if self.requestSeries.withLock({ $0.isEmpty }) {
            Self.appendEmptyFamily(Self.requests, to: &buffer)
        }
        if self.statusSeries.withLock({ $0.counters.isEmpty }) {
            Self.appendEmptyFamily(Self.upstreamResponses, to: &buffer)
        }
        self.upstreamLatency.emit(into: &buffer)
        self.storageLatency.emit(into: &buffer)
        self.emitConcurrency(into: &buffer)
        self.emitAdaptiveConcurrency(into: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }

    /// Where ``exposition()`` reads the upstream's adaptive limiter from (the running snapshot's; `nil` without
    /// `upstream.adaptive_concurrency`).
    public func setAdaptiveConcurrencySource(_ source: @escaping @Sendable () -> AdaptiveConcurrencyLimiter?) {
        self.adaptiveSource.withLock { $0.source = source }
    }

    /// `sluice_adaptive_concurrency_limit`, `_in_flight`, `_min_rtt_seconds`, `_sample_latency_seconds`,
    /// `_measuring_min_rtt` (gauges), `_refusals_total` and `_samples_total` (counters), when the upstream has
    /// `adaptive_concurrency`; the counters keep the totals of limiters a reload replaced.
    private func emitAdaptiveConcurrency(into buffer: inout [UInt8]) {
        let current: (limiter: AdaptiveConcurrencyLimiter, retiredRefusals: Int, retiredSamples: Int)? =
            self.adaptiveSource.withLock { series in
                guard let limiter = series.source?() else { return nil }
                if let last = series.last, last !== limiter {
                    series.retiredRefusals += last.refusals
                    series.retiredSamples += last.samples
                }
                series.last = limiter
                return (limiter, series.retiredRefusals, series.retiredSamples)
            }
        guard let current else { return }
        let state = current.limiter.state
        func seconds(_ nanoseconds: Int64) -> String { "\(Double(nanoseconds) / 1e9)" }
        var text = "# HELP sluice_adaptive_concurrency_limit Requests the upstream's adaptive limit lets in flight now.\n"
        text += "# TYPE sluice_adaptive_concurrency_limit gauge\nsluice_adaptive_concurrency_limit \(state.limit)\n"
        text += "# HELP sluice_adaptive_concurrency_in_flight Requests in flight to the upstream under its adaptive limit.\n"
        text += "# TYPE sluice_adaptive_concurrency_in_flight gauge\nsluice_adaptive_concurrency_in_flight \(state.inFlight)\n"
        text += "# HELP sluice_adaptive_concurrency_min_rtt_seconds The upstream's measured minimum latency.\n"
        text += "# TYPE sluice_adaptive_concurrency_min_rtt_seconds gauge\n"
        if let minRTT = state.minRTT { text += "sluice_adaptive_concurrency_min_rtt_seconds \(seconds(minRTT))\n" }
        text += "# HELP sluice_adaptive_concurrency_sample_latency_seconds The last interval's latency percentile.\n"
        text += "# TYPE sluice_adaptive_concurrency_sample_latency_seconds gauge\n"
        if let sample = state.sampleLatency {
            text += "sluice_adaptive_concurrency_sample_latency_seconds \(seconds(sample))\n"
        }
        text += "# HELP sluice_adaptive_concurrency_measuring_min_rtt 1 while the minimum latency is being measured.\n"
        text += "# TYPE sluice_adaptive_concurrency_measuring_min_rtt gauge\n"
        text += "sluice_adaptive_concurrency_measuring_min_rtt \(state.measuringMinRTT ? 1 : 0)\n"
        text += "# HELP sluice_adaptive_concurrency_refusals_total Requests refused (503) by the upstream's adaptive limit.\n"
        text += "# TYPE sluice_adaptive_concurrency_refusals_total counter\n"
        text += "sluice_adaptive_concurrency_refusals_total \(current.retiredRefusals + state.refusals)\n"
        text += "# HELP sluice_adaptive_concurrency_samples_total Completed requests whose latency was a sample.\n"
        text += "# TYPE sluice_adaptive_concurrency_samples_total counter\n"
        text += "sluice_adaptive_concurrency_samples_total \(current.retiredSamples + state.samples)\n"
        buffer.append(contentsOf: text.utf8)
    }

    /// Where ``exposition()`` reads the concurrency families from (the slot table, which outlives reloads).
    public func setConcurrencySource(_ source: @escaping @Sendable () -> [ConcurrencyRuleSlots]) {
        self.concurrencySource.withLock { $0 = source }
    }

    /// `sluice_concurrency_in_flight{rule}`, `sluice_concurrency_queued{rule}` (gauges) and
    /// `sluice_concurrency_refusals_total{rule,reason}` (reason: `concurrency`, `queue_full`, `queue_timeout`,
    /// `missing_key`, and `shadow` for requests a shadow rule let through over its max), for every rule that ever had
    /// `concurrency`; the families are announced even before the first such rule.
    private func emitConcurrency(into buffer: inout [UInt8]) {
        let rules = self.concurrencySource.withLock { $0 }?() ?? []
        var text = "# HELP sluice_concurrency_in_flight Requests holding a concurrency slot, by rule.\n"
        text += "# TYPE sluice_concurrency_in_flight gauge\n"
        for rule in rules { text += "sluice_concurrency_in_flight{rule=\"\(rule.name)\"} \(rule.inFlight)\n" }
        text += "# HELP sluice_concurrency_queued Requests waiting in a concurrency queue, by rule.\n"
        text += "# TYPE sluice_concurrency_queued gauge\n"
        for rule in rules { text += "sluice_concurrency_queued{rule=\"\(rule.name)\"} \(rule.queued)\n" }
        text += "# HELP sluice_concurrency_refusals_total Requests refused by a concurrency limit, by rule and reason.\n"
        text += "# TYPE sluice_concurrency_refusals_total counter\n"
        for rule in rules {
            for reason in ConcurrencyRefusalReason.allCases {
                text += "sluice_concurrency_refusals_total{rule=\"\(rule.name)\",reason=\"\(reason.rawValue)\"} \(rule.refusals(reason))\n"
            }
            text += "sluice_concurrency_refusals_total{rule=\"\(rule.name)\",reason=\"shadow\"} \(rule.shadowAdmissions)\n"
        }
        buffer.append(contentsOf: text.utf8)
    }

    // MARK: Helpers

    /// Advances the registry's request and response counters to what was counted, making the series of statuses
    /// seen for the first time.
    private func updateRegistryCounters() {
        self.requestSeries.withLock { table in
            for series in table.values { series.updateRegistry() }
        }
        self.statusSeries.withLock { state in
            func advance(_ status: Int, to count: Int) {
                guard count > 0 else { return }
                let entry =
                    state.counters[status]
                    ?? (
                        self.registry.makeCounter(
                            descriptor: Self.upstreamResponses,
                            labels: [("status", String(status))]
                        ), 0
                    )
                if count > entry.shown { entry.counter.increment(by: Int64(count - entry.shown)) }
                state.counters[status] = (entry.counter, max(count, entry.shown))
            }
            for status in Self.tabledStatuses {
                advance(status, to: self.statusCounts.value(status - Self.tabledStatuses.lowerBound))
            }
            for (status, count) in state.untabled { advance(status, to: count) }
        }
    }

    /// The series of `rule`, making its four registry series on first use.
    private func series(forRule rule: String) -> RuleSeries {
        if let known = self.requestSeries.withLock({ $0[rule] }) { return known }
        // Made outside our lock: the registry takes its own, and a race only builds the same handles twice (the
        // registry returns the existing series for the same labels; only the series that wins is ever counted in).
        let made = RuleSeries(
            counters: Decision.countedInMetrics.map { decision in
                self.registry.makeCounter(
                    descriptor: Self.requests,
                    labels: [("rule", rule), ("decision", decision.rawValue)]
                )
            }
        )
        return self.requestSeries.withLock { table in
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

/// The `sluice_requests_total` counters of one configuration's rules, by the rule's position in the file: what the
/// request path counts a decision into (``SluiceMetrics/ruleCounters(for:)``, made once per load).
///
/// Recording is an array index and one relaxed atomic add on the calling event loop's own cache line: no lock, no
/// dictionary, no string. A reload makes a new table; rules that keep their name share their series with the old
/// one, so requests still finishing on the old snapshot count where the new ones do.
public struct RuleDecisionCounters: Sendable {
    /// Keeps the counters of ``handles`` alive.
    private let series: [RuleSeries]
    /// Each rule's counters, read without retaining anything.
    private let handles: [StripedCounters.Handle]

    init(series: [RuleSeries]) {
        self.series = series
        self.handles = series.map(\.counts.handle)
    }

    /// Rules in the table.
    public var count: Int { self.handles.count }

    /// Counts one applicable rule's verdict (`LimitOutcome.ruleDecisions`); `.noRule` is ignored.
    ///
    /// - Precondition: the decision comes from the configuration this table was made for (its `ruleIndex` is in
    ///   range); an index outside the table is ignored (and stops a debug build).
    @inline(__always)
    public func record(_ decision: RuleDecision) {
        self.record(ruleIndex: decision.ruleIndex, decision: decision.decision)
    }

    /// Counts `decision` for the rule at `ruleIndex` in the file; `.noRule` is ignored.
    @inline(__always)
    public func record(ruleIndex: Int, decision: Decision) {
        guard let slot = decision.metricSlot else { return }
        guard ruleIndex >= 0, ruleIndex < self.handles.count else {
            assertionFailure("rule index \(ruleIndex) outside a table of \(self.handles.count) rules")
            return
        }
        self.handles[ruleIndex].add(slot)
    }
}

/// One rule name's `sluice_requests_total`: its counts by ``Decision/metricSlot`` and the four registry counters that
/// ``SluiceMetrics/exposition()`` advances to them.
final class RuleSeries: Sendable {
    let counts = StripedCounters(width: Decision.countedInMetrics.count)
    private let counters: [Counter]
    /// The counts the registry counters show (each advanced by the growth since).
    private let shown: Mutex<[Int]>

    init(counters: [Counter]) {
        self.counters = counters
        self.shown = Mutex(Array(repeating: 0, count: counters.count))
    }

    func updateRegistry() {
        self.shown.withLock { shown in
            for slot in 0..<self.counters.count {
                let count = self.counts.value(slot)
                if count > shown[slot] {
                    self.counters[slot].increment(by: Int64(count - shown[slot]))
                    shown[slot] = count
                }
            }
        }
    }
}

extension StripedCounters {
    /// The four decision counts of a ``RuleSeries``.
    fileprivate var decisionCounts: DecisionCounts {
        DecisionCounts(
            admitted: self.value(0),
            limited: self.value(1),
            shadowLimited: self.value(2),
            exempt: self.value(3)
        )
    }
}

extension Decision {
    /// The decisions `sluice_requests_total` has a series for (SPEC §7), in slot order.
    static let countedInMetrics: [Decision] = [.admitted, .limited, .shadowLimited, .exempt]

    /// This decision's index in ``countedInMetrics``; `nil` for `.noRule`.
    @inline(__always)
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
