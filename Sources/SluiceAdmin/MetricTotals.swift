import Prometheus
import SluiceLimiter
import Synchronization

/// Running totals of the counters the status page charts, read back from ``SluiceMetrics/totals()``.
///
/// swift-prometheus renders a `Counter` but does not expose its value, so ``SluiceMetrics`` keeps a plain atomic
/// total beside each counter it feeds (``ReadableCounter``). The sampler (``RateHistory``) subtracts two of these to
/// get what happened in between.
public struct MetricTotals: Sendable, Equatable {
    /// `sluice_requests_total` per rule.
    public var requests: [String: DecisionCounts] = [:]
    /// `sluice_upstream_responses_total` per status code.
    public var upstreamResponses: [Int: Int] = [:]
    /// 502 answers Sluice wrote because the upstream could not be reached.
    public var upstreamUnreachable = 0
    /// 504 answers Sluice wrote because the upstream did not answer in time.
    public var upstreamTimeouts = 0
    /// `sluice_storage_errors_total`.
    public var storageErrors = 0
    /// Storage decisions timed in `sluice_storage_latency_seconds`, and their summed time.
    public var storageDecisions = 0
    public var storageNanoseconds = 0
    /// Per concurrency rule (issue 22): requests in flight and queued when read (gauges), and refusals (a counter).
    public var concurrency: [String: ConcurrencyReading] = [:]

    public struct ConcurrencyReading: Sendable, Equatable {
        public var inFlight = 0
        public var queued = 0
        /// Every reason together (`sluice_concurrency_refusals_total` without `shadow`).
        public var refusals = 0

        public init(inFlight: Int = 0, queued: Int = 0, refusals: Int = 0) {
            self.inFlight = inFlight
            self.queued = queued
            self.refusals = refusals
        }
    }

    public init() {}

    /// What was counted since `earlier` (a series missing from `earlier` counts from zero).
    public func subtracting(_ earlier: MetricTotals) -> MetricTotals {
        var delta = MetricTotals()
        for (rule, counts) in self.requests {
            delta.requests[rule] = counts.subtracting(earlier.requests[rule] ?? DecisionCounts())
        }
        for (status, count) in self.upstreamResponses {
            delta.upstreamResponses[status] = count - (earlier.upstreamResponses[status] ?? 0)
        }
        delta.upstreamUnreachable = self.upstreamUnreachable - earlier.upstreamUnreachable
        delta.upstreamTimeouts = self.upstreamTimeouts - earlier.upstreamTimeouts
        delta.storageErrors = self.storageErrors - earlier.storageErrors
        delta.storageDecisions = self.storageDecisions - earlier.storageDecisions
        delta.storageNanoseconds = self.storageNanoseconds - earlier.storageNanoseconds
        // Gauges are what the later reading says; the refusals what happened in between.
        for (rule, reading) in self.concurrency {
            var change = reading
            change.refusals = reading.refusals - (earlier.concurrency[rule]?.refusals ?? 0)
            delta.concurrency[rule] = change
        }
        return delta
    }

    /// The sum of `self` and `other` (adding up samples).
    public func adding(_ other: MetricTotals) -> MetricTotals {
        var sum = self
        for (rule, counts) in other.requests {
            sum.requests[rule] = (sum.requests[rule] ?? DecisionCounts()).adding(counts)
        }
        for (status, count) in other.upstreamResponses {
            sum.upstreamResponses[status, default: 0] += count
        }
        sum.upstreamUnreachable += other.upstreamUnreachable
        sum.upstreamTimeouts += other.upstreamTimeouts
        sum.storageErrors += other.storageErrors
        sum.storageDecisions += other.storageDecisions
        sum.storageNanoseconds += other.storageNanoseconds
        // Added samples keep the highest gauges and the sum of refusals.
        for (rule, reading) in other.concurrency {
            var total = sum.concurrency[rule] ?? ConcurrencyReading()
            total.inFlight = max(total.inFlight, reading.inFlight)
            total.queued = max(total.queued, reading.queued)
            total.refusals += reading.refusals
            sum.concurrency[rule] = total
        }
        return sum
    }
}

/// One rule's requests by decision (the four series of `sluice_requests_total{rule}`).
public struct DecisionCounts: Sendable, Hashable {
    public var admitted = 0
    public var limited = 0
    public var shadowLimited = 0
    public var exempt = 0

    public init(admitted: Int = 0, limited: Int = 0, shadowLimited: Int = 0, exempt: Int = 0) {
        self.admitted = admitted
        self.limited = limited
        self.shadowLimited = shadowLimited
        self.exempt = exempt
    }

    /// The count of `decision` (`0` for `.noRule`).
    public subscript(_ decision: Decision) -> Int {
        switch decision {
        case .admitted: self.admitted
        case .limited: self.limited
        case .shadowLimited: self.shadowLimited
        case .exempt: self.exempt
        case .noRule: 0
        }
    }

    func subtracting(_ other: DecisionCounts) -> DecisionCounts {
        DecisionCounts(
            admitted: self.admitted - other.admitted,
            limited: self.limited - other.limited,
            shadowLimited: self.shadowLimited - other.shadowLimited,
            exempt: self.exempt - other.exempt
        )
    }

    func adding(_ other: DecisionCounts) -> DecisionCounts {
        DecisionCounts(
            admitted: self.admitted + other.admitted,
            limited: self.limited + other.limited,
            shadowLimited: self.shadowLimited + other.shadowLimited,
            exempt: self.exempt + other.exempt
        )
    }
}

/// A Prometheus counter and a plain total beside it that can be read back.
///
/// One relaxed atomic add more per increment; the table lookup that finds the counter is shared.
final class ReadableCounter: Sendable {
    let counter: Counter
    private let total = Atomic<Int>(0)

    init(_ counter: Counter) {
        self.counter = counter
    }

    func increment() {
        self.counter.increment()
        self.total.wrappingAdd(1, ordering: .relaxed)
    }

    var value: Int { self.total.load(ordering: .relaxed) }
}
