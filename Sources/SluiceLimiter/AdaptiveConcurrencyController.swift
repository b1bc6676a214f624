/// `upstream.adaptive_concurrency` (issue 22): one concurrency limit for an upstream that follows the upstream's
/// latency, with the gradient controller of Envoy's adaptive concurrency filter and Netflix's Gradient2.
///
/// - **Minimum latency.** The controller starts by measuring the upstream unloaded: the limit is pinned to
///   ``Parameters/minLimit`` until ``Parameters/minRTTSamples`` requests have completed, and the
///   ``Parameters/percentile`` of their latencies is the minimum latency (`minRTT`). It is measured again every
///   ``Parameters/minRTTIntervalNanoseconds`` plus a random part of ``Parameters/jitter`` of it (so a fleet does not
///   pin its limits at the same moment), and the limit comes back to where it was once the measurement is done.
/// - **Gradient.** Every ``Parameters/sampleIntervalNanoseconds`` the percentile of the latencies completed in the
///   interval (`sample`) is compared with the minimum: `gradient = minRTT × (1 + buffer) / sample`, clamped to
///   0.5...2. The new limit is `gradient × limit + √(gradient × limit)`: at the minimum latency the limit grows by
///   its square root (headroom to discover more capacity), when queueing doubles the latency it shrinks by
///   about a third, and it never leaves ``Parameters/minLimit``...``Parameters/maxLimit``.
/// - **No growth when the upstream is not the bottleneck.** An interval whose in-flight count never reached half the
///   limit does not raise it (Gradient2's "app-limited" rule): a quiet upstream's limit would otherwise grow without
///   bound and protect nothing when the load comes.
///
/// Only the latencies of completed requests are samples: the caller does not report refusals, cancelled requests
/// or time spent in a queue, and a re-measurement counts only requests that started after it began. The clock is
/// an input (monotonic nanoseconds), so the controller is tested without sleeping, and so is the jitter (a seeded
/// generator). A value: the proxy keeps one per upstream behind a lock (``AdaptiveConcurrencyLimiter``).
public struct AdaptiveConcurrencyController: Sendable {
    public struct Parameters: Sendable, Hashable {
        /// The limit while the minimum latency is measured, and the lowest it ever goes.
        public var minLimit: Int
        /// The highest the limit goes.
        public var maxLimit: Int
        /// How often the limit is recomputed (Envoy's `concurrency_update_interval`).
        public var sampleIntervalNanoseconds: Int64
        /// How often the minimum latency is measured again (Envoy's `min_rtt_calc_interval`).
        public var minRTTIntervalNanoseconds: Int64
        /// Up to this fraction of ``minRTTIntervalNanoseconds`` is added at random to each wait for a re-measurement.
        public var jitter: Double
        /// Completed requests that make one measurement of the minimum latency (Envoy's `request_count`).
        public var minRTTSamples: Int
        /// How much above the minimum a latency may be and still count as unloaded (Envoy's `buffer`).
        public var buffer: Double
        /// Which percentile of a set of latencies stands for the set.
        public var percentile: Double

        public init(
            minLimit: Int = 8,
            maxLimit: Int = 1000,
            sampleIntervalNanoseconds: Int64 = 100_000_000,
            minRTTIntervalNanoseconds: Int64 = 60_000_000_000,
            jitter: Double = 0.15,
            minRTTSamples: Int = 50,
            buffer: Double = 0.25,
            percentile: Double = 0.5
        ) {
            self.minLimit = max(1, minLimit)
            self.maxLimit = max(self.minLimit, maxLimit)
            self.sampleIntervalNanoseconds = max(1, sampleIntervalNanoseconds)
            self.minRTTIntervalNanoseconds = max(1, minRTTIntervalNanoseconds)
            self.jitter = min(max(0, jitter), 1)
            self.minRTTSamples = max(1, minRTTSamples)
            self.buffer = max(0, buffer)
            self.percentile = min(max(0, percentile), 1)
        }
    }

    public enum Phase: Sendable, Hashable {
        /// Pinned to the minimum limit while the minimum latency is measured; `resumeAt` is the limit after.
        case measuringMinRTT(resumeAt: Int)
        case adjusting
    }

    /// The most latencies one interval keeps: beyond it, a new latency replaces a random kept one (a uniform
    /// sample of the interval), so memory stays bounded under any load.
    public static let maximumSamples = 4096

    public let parameters: Parameters
    /// Requests allowed in flight now.
    public private(set) var limit: Int
    /// The measured minimum latency, nanoseconds; `nil` before the first measurement ends.
    public private(set) var minRTT: Int64?
    /// The percentile latency of the last interval that changed the limit (for metrics), nanoseconds.
    public private(set) var lastSample: Int64?
    public private(set) var phase: Phase
    /// When the next measurement of the minimum latency starts (monotonic nanoseconds).
    public private(set) var nextMinRTTAt: Int64 = .max

    private var samples: [Int64] = []
    /// Latencies offered in this interval (kept or not).
    private var offered = 0
    private var intervalStart: Int64
    /// The most requests in flight seen in this interval.
    private var peakInFlight = 0
    /// When the running measurement of the minimum latency began; `.min` for the first one (nothing was in flight
    /// before the controller).
    private var measuringSince: Int64 = .min
    private var random: SplitMix

    public init(parameters: Parameters, now: Int64, seed: UInt64) {
        self.parameters = parameters
        self.limit = parameters.minLimit
        self.phase = .measuringMinRTT(resumeAt: parameters.minLimit)
        self.intervalStart = now
        self.random = SplitMix(state: seed)
        self.samples.reserveCapacity(min(Self.maximumSamples, max(parameters.minRTTSamples, 64)))
    }

    /// Whether a request may start with `inFlight` others of the upstream running; records the count for the
    /// "not the bottleneck" rule when it may.
    public mutating func admits(inFlight: Int) -> Bool {
        guard inFlight < self.limit else { return false }
        self.peakInFlight = max(self.peakInFlight, inFlight + 1)
        return true
    }

    /// A request completed after `latency` nanoseconds (from being forwarded to its response), having started
    /// `latency` before `now`.
    public mutating func completed(latency: Int64, now: Int64) {
        self.completed(startedAt: now - latency, latency: latency, now: now)
    }

    /// A request that started (was forwarded) at `startedAt` completed, its latency `latency` nanoseconds.
    ///
    /// While the minimum latency is measured again, a request that started before the measurement did is not
    /// counted: it was admitted under the old, higher limit, and its latency is the loaded one (counted, the requests
    /// in flight when the measurement began would be the whole measurement as soon as more than
    /// ``Parameters/minRTTSamples`` of them were in flight).
    public mutating func completed(startedAt: Int64, latency: Int64, now: Int64) {
        let latency = max(0, latency)
        switch self.phase {
        case .measuringMinRTT(let resumeAt):
            guard startedAt >= self.measuringSince else { return }
            self.samples.append(latency)
            guard self.samples.count >= self.parameters.minRTTSamples else { return }
            self.minRTT = max(1, self.takePercentile())
            self.limit = min(max(resumeAt, self.parameters.minLimit), self.parameters.maxLimit)
            self.phase = .adjusting
            self.startInterval(now)
            self.nextMinRTTAt = now + self.parameters.minRTTIntervalNanoseconds + self.jitterNanoseconds()
        case .adjusting:
            self.offered += 1
            if self.samples.count < Self.maximumSamples {
                self.samples.append(latency)
            } else {
                let slot = Int(self.random.next() % UInt64(self.offered))
                if slot < Self.maximumSamples { self.samples[slot] = latency }
            }
            self.tick(now: now)
        }
    }

    /// Ends the interval when it is over (recomputing the limit) and starts a measurement of the minimum latency
    /// when one is due. Called on every completion, and periodically by the owner so that both happen without
    /// traffic too.
    public mutating func tick(now: Int64) {
        guard case .adjusting = self.phase else { return }
        if now >= self.nextMinRTTAt {
            self.phase = .measuringMinRTT(resumeAt: self.limit)
            self.measuringSince = now
            self.limit = self.parameters.minLimit
            self.samples.removeAll(keepingCapacity: true)
            self.nextMinRTTAt = .max
            return
        }
        guard now - self.intervalStart >= self.parameters.sampleIntervalNanoseconds else { return }
        if !self.samples.isEmpty, let minRTT = self.minRTT {
            let sample = max(1, self.takePercentile())
            self.lastSample = sample
            let gradient = min(2, max(0.5, Double(minRTT) * (1 + self.parameters.buffer) / Double(sample)))
            let notTheBottleneck = self.peakInFlight * 2 < self.limit
            if !(gradient >= 1 && notTheBottleneck) {
                let scaled = gradient * Double(self.limit)
                let next = (scaled + scaled.squareRoot()).rounded(.down)
                self.limit = Int(min(max(next, Double(self.parameters.minLimit)), Double(self.parameters.maxLimit)))
            }
        }
        self.startInterval(now)
    }

    private mutating func startInterval(_ now: Int64) {
        self.samples.removeAll(keepingCapacity: true)
        self.offered = 0
        self.peakInFlight = 0
        self.intervalStart = now
    }

    /// The ``Parameters/percentile`` of ``samples`` (which it sorts); the samples are not empty.
    private mutating func takePercentile() -> Int64 {
        self.samples.sort()
        let index = Int((Double(self.samples.count - 1) * self.parameters.percentile).rounded(.up))
        return self.samples[min(max(0, index), self.samples.count - 1)]
    }

    private mutating func jitterNanoseconds() -> Int64 {
        let fraction = Double(self.random.next() >> 11) / Double(1 << 53)
        return Int64(Double(self.parameters.minRTTIntervalNanoseconds) * self.parameters.jitter * fraction)
    }

    /// SplitMix64 (Steele, Lea & Flood 2014): the same numbers for the same seed on every platform.
    private struct SplitMix: Sendable {
        var state: UInt64

        mutating func next() -> UInt64 {
            self.state &+= 0x9E37_79B9_7F4A_7C15
            var z = self.state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }
}
