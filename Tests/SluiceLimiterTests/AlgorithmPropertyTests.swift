import SluiceConfig
import SluiceTestSupport
import Testing
@testable import SluiceLimiter

// Property-based tests of the algorithm steps and of the engine, over seeded random sequences.
//
// Every sequence comes from one 64-bit seed; a failure prints it with the scenario and the requests up to the
// failing one. To replay a step-level sequence: `AlgorithmPropertyTests.simulate(seed:algorithm:shape:)` (the
// `shape` is printed too); an engine sequence of the model test: `EnginePropertyTests.run(seed:budget:)`; the other
// engine properties rebuild theirs from `EnginePropertyTests.Scenario(seed:)`.
// Seeds read 0xPPAA_0000_0000_IIII: PP the property, AA the algorithm, IIII the sequence number.

// MARK: - Deterministic randomness

let allAlgorithms: [Algorithm] = [.fixedWindow, .slidingWindow, .movingWindow, .tokenBucket, .gcra]

func sequenceSeed(property: UInt64, _ algorithm: Algorithm?, _ index: Int) -> UInt64 {
    let tag = UInt64(algorithm.map { allAlgorithms.firstIndex(of: $0)! + 1 } ?? 0)
    return property << 56 | tag << 48 | UInt64(index)
}

/// Stops a property after a few failing sequences, so that one bug does not print thousands of issues.
struct FailureBudget {
    private(set) var failures = 0

    var exhausted: Bool { self.failures >= 3 }

    /// Records `message` when `condition` is false; returns `condition`.
    @discardableResult
    mutating func check(
        _ condition: Bool,
        _ message: @autoclosure () -> String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) -> Bool {
        if !condition {
            self.failures += 1
            Issue.record(Comment(rawValue: message()), sourceLocation: sourceLocation)
        }
        return condition
    }
}

let nanosecondsPerSecond: Int64 = 1_000_000_000

// MARK: - Step-level sequences

@Suite struct AlgorithmPropertyTests {
    /// Sequences per algorithm and property; each has 1...60 requests (about 30 on average).
    static let sequences = 1000

    /// Options of the generator that a property needs.
    struct Shape: CustomStringConvertible {
        /// Every cost is 1 (back-to-back counts).
        var unitCosts = false
        /// `gcra`: `true` forces a delay, `false` forbids one, `nil` draws it.
        var delay: Bool?

        var description: String { "Shape(unitCosts: \(self.unitCosts), delay: \(self.delay.map(String.init) ?? "nil"))" }
    }

    /// A random sequence run through the production step the way the engine runs it: the state is stored only
    /// when the request is let through; a cost above COUNT is refused for good by the engine before any step, so
    /// its step is recorded (to compare with the models) but never stored.
    struct Trace: CustomStringConvertible {
        struct Entry {
            var t: Int64
            var cost: Int64
            /// The stored state the step saw.
            var before: CounterState?
            var step: CounterState.Step
        }

        var seed: UInt64
        var shape: Shape
        var algorithm: Algorithm
        var limit: LimitParameters
        var entries: [Entry] = []
        /// The stored state after the last request.
        var final: CounterState?

        /// Whether the engine would store the step of entry `index` (it is let through, and the cost can fit).
        func isCounted(_ index: Int) -> Bool {
            self.entries[index].cost <= self.limit.count && self.entries[index].step.verdict.isAdmitted
        }

        /// The units of entry `index` and when the upstream sees them (a delayed request is held).
        func forwarded(_ index: Int) -> Int64 {
            if case .delayed(let wait) = self.entries[index].step.verdict { return self.entries[index].t + wait }
            return self.entries[index].t
        }

        var header: String {
            "seed 0x\(String(self.seed, radix: 16)) (\(self.shape)): \(self.algorithm.rawValue) COUNT=\(self.limit.count) "
                + "period=\(self.limit.periodNanoseconds)ns burst=\(self.limit.burst) delay=\(self.limit.delayNanoseconds)ns"
        }

        /// The scenario and the requests up to `last`: (Δt since the previous request in ns, cost → production verdict).
        func describe(through last: Int) -> String {
            var text = self.header + "; first request at \(self.entries.first?.t ?? 0)ns; requests (Δt, cost → verdict):"
            var previous = self.entries.first?.t ?? 0
            for entry in self.entries.prefix(last + 1) {
                text += " [+\(entry.t - previous) c\(entry.cost) → \(entry.step.verdict)]"
                previous = entry.t
            }
            return text
        }

        var description: String { self.describe(through: self.entries.count - 1) }
    }

    static func simulate(seed: UInt64, algorithm: Algorithm, shape: Shape = Shape(), maxRequests: Int64 = 60) -> Trace {
        var rng = SplitMix64(seed: seed)
        let limit = Self.randomLimit(algorithm, shape: shape, &rng)
        var trace = Trace(seed: seed, shape: shape, algorithm: algorithm, limit: limit)
        var t = Self.randomStart(limit.periodNanoseconds, &rng)
        var state: CounterState?
        var lastRetry: Int64?
        for index in 0..<rng.int(1...maxRequests) {
            if index > 0 { t += Self.clockStep(now: t, limit, lastRetry: lastRetry, &rng) }
            let cost = shape.unitCosts ? 1 : Self.randomCost(limit, &rng)
            let step = CounterState.step(algorithm, state: state, now: LimiterInstant(nanosecondsSinceEpoch: t), cost: cost, limit: limit)
            trace.entries.append(Trace.Entry(t: t, cost: cost, before: state, step: step))
            lastRetry = nil
            if cost <= limit.count {
                switch step.verdict {
                case .admitted, .delayed: state = step.state
                case .denied(let retry): lastRetry = retry
                }
            }
        }
        trace.final = state
        return trace
    }

    // MARK: Generators

    static func randomLimit(_ algorithm: Algorithm, shape: Shape, _ rng: inout SplitMix64) -> LimitParameters {
        let count = rng.int(1...20)
        let period: Int64
        switch rng.percent() {
        case ..<40: period = rng.pick([1, 2, 3, 5, 7, 10, 30, 60, 300, 900, 3600]) * nanosecondsPerSecond
        case ..<70: period = rng.int(1...3600) * nanosecondsPerSecond
        default: period = rng.int(nanosecondsPerSecond...3600 * nanosecondsPerSecond)  // any nanosecond count
        }
        var burst: Int64 = 0
        if algorithm == .tokenBucket || algorithm == .gcra, rng.percent() < 60 { burst = rng.int(1...10) }
        var delay: Int64 = 0
        if algorithm == .gcra, shape.delay ?? (rng.percent() < 40) {
            let interval = (period + count * 1000 - 1) / (count * 1000) * 1000
            switch rng.percent() {
            case ..<40: delay = rng.int(1...interval)
            case ..<80: delay = rng.int(interval...4 * interval)
            default: delay = rng.int(1...2 * period)
            }
        }
        return LimitParameters(count: count, periodNanoseconds: period, burst: burst, delayNanoseconds: delay)
    }

    /// Somewhere after the epoch, often exactly on a window boundary or one nanosecond before one.
    static func randomStart(_ period: Int64, _ rng: inout SplitMix64) -> Int64 {
        let windowStart = rng.int(1...(1 << 60) / period) * period
        switch rng.percent() {
        case ..<30: return windowStart
        case ..<45: return windowStart - 1
        case ..<55: return rng.int(0...period)
        default: return windowStart + rng.below(period)
        }
    }

    /// 0 ns up to 2 periods: many zero and tiny steps, steps to (and around) window boundaries and multiples of
    /// the emission interval, and after a denial often exactly its Retry-After (in ns or whole seconds, or where a
    /// gcra delay starts holding it) or just before.
    static func clockStep(now t: Int64, _ limit: LimitParameters, lastRetry: Int64?, _ rng: inout SplitMix64) -> Int64 {
        let period = limit.periodNanoseconds
        let interval = (period + limit.count * 1000 - 1) / (limit.count * 1000) * 1000
        if let retry = lastRetry, rng.percent() < 30 {
            let seconds = (retry + nanosecondsPerSecond - 1) / nanosecondsPerSecond * nanosecondsPerSecond
            let held = retry - limit.delayNanoseconds  // gcra with delay: the first instant it is let through (held)
            return max(0, rng.pick([retry, retry - 1, retry + 1, seconds, seconds - nanosecondsPerSecond, held, held - 1]))
        }
        switch rng.percent() {
        case ..<20: return 0
        case ..<30: return rng.int(1...1000)
        case ..<42: return rng.int(0...interval)
        case ..<52: return max(0, rng.int(1...3) * interval + rng.pick([-1, 0, 0, 1]))
        case ..<64: return rng.int(0...2 * period)
        case ..<78: return max(0, period - t % period + rng.pick([-1, 0, 0, 1]) + rng.pick([0, 0, period]))
        case ..<90: return rng.int(0...nanosecondsPerSecond)
        default: return rng.int(0...period / 4)
        }
    }

    /// Mostly 1 or up to COUNT; sometimes just above COUNT (within a token bucket's burst) or well above.
    static func randomCost(_ limit: LimitParameters, _ rng: inout SplitMix64) -> Int64 {
        switch rng.percent() {
        case ..<55: return 1
        case ..<85: return rng.int(1...limit.count)
        case ..<95: return limit.count + rng.int(1...limit.burst + 1)
        default: return rng.int(limit.count + 1...2 * limit.count + 5)
        }
    }

    static func verdict(_ trace: Trace, _ state: CounterState?, at t: Int64, cost: Int64) -> StepVerdict {
        let now = LimiterInstant(nanosecondsSinceEpoch: t)
        return CounterState.step(trace.algorithm, state: state, now: now, cost: cost, limit: trace.limit).verdict
    }

    // MARK: Properties

    /// The production step and the reference model give the same verdict (and the same hold when delayed) for every
    /// request.
    @Test(arguments: allAlgorithms) func agreesWithReferenceModel(_ algorithm: Algorithm) {
        var budget = FailureBudget()
        for index in 0..<Self.sequences where !budget.exhausted {
            let trace = Self.simulate(seed: sequenceSeed(property: 1, algorithm, index), algorithm: algorithm)
            var model = referenceModel(algorithm, trace.limit)
            for (k, entry) in trace.entries.enumerated() {
                let expected = model.verdict(at: entry.t, cost: entry.cost)
                guard budget.check(
                    expected == ModelVerdict(entry.step.verdict),
                    "model says \(expected) for the last request of \(trace.describe(through: k))"
                ) else { break }
                if trace.isCounted(k) { model.take(at: entry.t, cost: entry.cost) }
            }
        }
    }

    /// Safety, checked on the log of admitted units (a delayed request counts when it is forwarded):
    /// fixed_window (and sliding_window, whose estimate includes the current count) never more than COUNT in one
    /// epoch-aligned window; moving_window never more than COUNT in any (t − period, t]; token_bucket and gcra never
    /// more than COUNT + burst + COUNT × d / period units within any interval of length d (the exact rate of the
    /// spec; the nanosecond rounding of the interval only makes them stricter).
    @Test(arguments: allAlgorithms) func neverAdmitsMoreThanTheLimit(_ algorithm: Algorithm) {
        var budget = FailureBudget()
        for index in 0..<Self.sequences where !budget.exhausted {
            let trace = Self.simulate(seed: sequenceSeed(property: 2, algorithm, index), algorithm: algorithm)
            let limit = trace.limit
            // (time, units) per instant, in time order; `last` is the entry that admitted the last units there.
            var log: [(time: Int64, units: Int64, last: Int)] = []
            for k in trace.entries.indices where trace.isCounted(k) {
                log.append((trace.forwarded(k), trace.entries[k].cost, k))
            }
            log.sort { $0.time < $1.time }
            var merged: [(time: Int64, units: Int64, last: Int)] = []
            for entry in log {
                if merged.last?.time == entry.time {
                    merged[merged.count - 1].units += entry.units
                    merged[merged.count - 1].last = max(merged[merged.count - 1].last, entry.last)
                } else {
                    merged.append(entry)
                }
            }
            let failure: String?
            switch algorithm {
            case .fixedWindow, .slidingWindow:
                var perWindow: [Int64: Int64] = [:]
                for entry in merged { perWindow[entry.time / limit.periodNanoseconds, default: 0] += entry.units }
                failure = perWindow.first { $0.value > limit.count }.map { "window #\($0.key) holds \($0.value) units" }
            case .movingWindow:
                failure = merged.indices.lazy.compactMap { j -> String? in
                    let units = merged[...j].filter { $0.time > merged[j].time - limit.periodNanoseconds }.reduce(0) { $0 + $1.units }
                    return units > limit.count ? "\(units) units in the period ending at \(merged[j].time)ns" : nil
                }.first
            case .tokenBucket, .gcra:
                var prefix: [Int64] = [0]
                for entry in merged { prefix.append(prefix.last! + entry.units) }
                var found: String?
                search: for i in merged.indices {
                    for j in i..<merged.count {
                        let units = prefix[j + 1] - prefix[i]
                        let span = merged[j].time - merged[i].time
                        // units ≤ COUNT + burst + COUNT × span / period, multiplied out by the period.
                        if (units - limit.count - limit.burst) * limit.periodNanoseconds > limit.count * span {
                            found = "\(units) units within \(span)ns, from \(merged[i].time)ns"
                            break search
                        }
                    }
                }
                failure = found
            }
            if let failure {
                budget.check(false, "\(failure) in \(trace.describe(through: merged.last?.last ?? 0))")
            }
        }
    }

    /// A denied request's Retry-After r is exact for a single limit: the same request from the same state is
    /// admitted at now + r and not at now + r − 1 ns, and at the whole-second level admitted at now + ⌈r⌉ s and not
    /// at now + ⌈r⌉ s − 1 s (when that is after now); the reference model agrees at those instants. "Admitted" is
    /// without a hold: with gcra's `delay` the request is let through (held) from now + r − delay on, checked too.
    /// A cost above COUNT never fits (the engine refuses it without Retry-After): skipped.
    @Test(arguments: allAlgorithms) func retryAfterIsExact(_ algorithm: Algorithm) {
        var budget = FailureBudget()
        var probed = 0
        for index in 0..<Self.sequences where !budget.exhausted {
            let trace = Self.simulate(seed: sequenceSeed(property: 3, algorithm, index), algorithm: algorithm)
            var model = referenceModel(algorithm, trace.limit)
            for (k, entry) in trace.entries.enumerated() {
                defer { if trace.isCounted(k) { model.take(at: entry.t, cost: entry.cost) } }
                guard entry.cost <= trace.limit.count, case .denied(let retry) = entry.step.verdict else { continue }
                probed += 1
                func at(_ t: Int64) -> (production: StepVerdict, model: ModelVerdict) {
                    (Self.verdict(trace, entry.before, at: t, cost: entry.cost), model.verdict(at: t, cost: entry.cost))
                }
                func fails(_ what: String) -> String { "\(what) (Retry-After \(retry)ns) after \(trace.describe(through: k))" }
                guard budget.check(retry >= 1, fails("Retry-After below 1 ns")) else { break }
                var probes: [(t: Int64, admitted: Bool, label: String)] = [
                    (entry.t + retry, true, "now + r"), (entry.t + retry - 1, false, "now + r − 1ns"),
                ]
                let seconds = (retry + nanosecondsPerSecond - 1) / nanosecondsPerSecond
                probes.append((entry.t + seconds * nanosecondsPerSecond, true, "now + \(seconds)s"))
                if seconds >= 2 { probes.append((entry.t + (seconds - 1) * nanosecondsPerSecond, false, "now + \(seconds - 1)s")) }
                var ok = true
                for probe in probes where ok {
                    let (production, model) = at(probe.t)
                    ok = budget.check(
                        (production == .admitted) == probe.admitted && (model == .admitted) == probe.admitted,
                        fails("at \(probe.label): production \(production), model \(model), expected \(probe.admitted ? "" : "not ")admitted")
                    )
                }
                let delay = trace.limit.delayNanoseconds
                if ok && delay > 0 {
                    let held = at(entry.t + retry - delay)
                    let before = at(entry.t + retry - delay - 1)
                    ok = budget.check(
                        held.production == .delayed(nanoseconds: delay) && held.model == .delayed(delay)
                            && before.production.isAdmitted == false && before.model == .denied,
                        fails("around now + r − delay: production \(held.production) then \(before.production) 1ns earlier")
                    )
                }
                if !ok { break }
            }
        }
        #expect(probed > Self.sequences / 2, "too few denials to probe: \(probed)")
    }

    /// A denied step changes nothing: adopting the state a denied step returns (instead of keeping the stored one,
    /// as the engine does) gives exactly the same future verdicts, Retry-After values and header numbers.
    @Test(arguments: allAlgorithms) func deniedStepChangesNothing(_ algorithm: Algorithm) {
        var budget = FailureBudget()
        for index in 0..<Self.sequences where !budget.exhausted {
            let trace = Self.simulate(seed: sequenceSeed(property: 4, algorithm, index), algorithm: algorithm)
            var twin: CounterState?
            for (k, entry) in trace.entries.enumerated() {
                let now = LimiterInstant(nanosecondsSinceEpoch: entry.t)
                let step = CounterState.step(algorithm, state: twin, now: now, cost: entry.cost, limit: trace.limit)
                guard budget.check(
                    step.verdict == entry.step.verdict && step.remaining == entry.step.remaining
                        && step.resetNanoseconds == entry.step.resetNanoseconds,
                    "after adopting the states of denied steps: \(step.verdict), remaining \(step.remaining), reset "
                        + "\(step.resetNanoseconds)ns instead of remaining \(entry.step.remaining), reset "
                        + "\(entry.step.resetNanoseconds)ns for the last request of \(trace.describe(through: k))"
                ) else { break }
                // Adopt every step's state, except an admitted cost above COUNT (the engine never runs that step).
                if entry.cost <= trace.limit.count || !step.verdict.isAdmitted { twin = step.state }
            }
        }
    }

    /// The `remaining` of the rate-limit headers (SPEC §5) is what the reference model says is left at that
    /// instant: after an admitted request, how many more cost-1 requests it would admit right away; after a denied
    /// one, how many it admits now. (gcra without delay, so that "admitted" is unambiguous.)
    @Test(arguments: allAlgorithms) func remainingMatchesModel(_ algorithm: Algorithm) {
        var budget = FailureBudget()
        for index in 0..<Self.sequences where !budget.exhausted {
            let trace = Self.simulate(seed: sequenceSeed(property: 10, algorithm, index), algorithm: algorithm, shape: Shape(delay: false))
            let limit = trace.limit
            var model = referenceModel(algorithm, limit)
            for (k, entry) in trace.entries.enumerated() where entry.cost <= limit.count {
                if trace.isCounted(k) { model.take(at: entry.t, cost: entry.cost) }
                var probe = model
                var left: Int64 = 0
                while left <= limit.count + limit.burst, probe.verdict(at: entry.t, cost: 1) == .admitted {
                    probe.take(at: entry.t, cost: 1)
                    left += 1
                }
                guard budget.check(
                    entry.step.remaining == left,
                    "remaining \(entry.step.remaining), the model has \(left) left after the last request of \(trace.describe(through: k))"
                ) else { break }
            }
        }
    }

    /// gcra with delay: a delayed verdict holds 0 < w ≤ delay, and the request is counted: the same request at the
    /// same instant then waits exactly cost × T longer.
    @Test func gcraDelayHoldsAndCounts() {
        var budget = FailureBudget()
        var delayed = 0
        for index in 0..<Self.sequences where !budget.exhausted {
            let shape = Shape(delay: true)
            let trace = Self.simulate(seed: sequenceSeed(property: 5, .gcra, index), algorithm: .gcra, shape: shape)
            let interval = (trace.limit.periodNanoseconds + trace.limit.count * 1000 - 1) / (trace.limit.count * 1000) * 1000
            for (k, entry) in trace.entries.enumerated() {
                guard case .delayed(let wait) = entry.step.verdict else { continue }
                delayed += 1
                let next: Int64? =
                    switch Self.verdict(trace, entry.step.state, at: entry.t, cost: entry.cost) {
                    case .admitted: nil
                    case .delayed(let w): w
                    case .denied(let r): r
                    }
                guard budget.check(
                    wait > 0 && wait <= trace.limit.delayNanoseconds && next == wait + entry.cost * interval,
                    "delayed \(wait)ns, then the same request waits \(next.map(String.init) ?? "nothing"), in \(trace.describe(through: k))"
                ) else { break }
            }
        }
        #expect(delayed > Self.sequences, "too few delayed requests: \(delayed)")
    }

    /// Back to back (cost 1, no delay): gcra admits at most 1 + burst and token_bucket at most COUNT + burst, and
    /// exactly that many when the key is idle (fresh, or the model's bucket is empty / full).
    @Test(arguments: [Algorithm.gcra, .tokenBucket]) func backToBack(_ algorithm: Algorithm) {
        var budget = FailureBudget()
        for index in 0..<Self.sequences where !budget.exhausted {
            var rng = SplitMix64(seed: ~sequenceSeed(property: 6, algorithm, index))
            let shape = Shape(unitCosts: true, delay: false)
            let trace = Self.simulate(seed: sequenceSeed(property: 6, algorithm, index), algorithm: algorithm, shape: shape)
            let limit = trace.limit
            let most = algorithm == .gcra ? 1 + limit.burst : limit.count + limit.burst
            var model = referenceModel(algorithm, limit)
            for k in trace.entries.indices where trace.isCounted(k) { model.take(at: trace.entries[k].t, cost: 1) }
            let last = trace.entries.last!.t
            let t = last + Self.clockStep(now: last, limit, lastRetry: nil, &rng)
            let idle =
                switch model {
                case let gcra as GCRAModel: gcra.content(at: t) == 0
                case let bucket as TokenBucketModel: bucket.level(at: t) == bucket.capacity
                default: false
                }
            for (state, fresh) in [(nil, true), (trace.final, false)] as [(CounterState?, Bool)] {
                var state = state
                var admitted: Int64 = 0
                let now = LimiterInstant(nanosecondsSinceEpoch: t)
                while admitted <= most {
                    let step = CounterState.step(algorithm, state: state, now: now, cost: 1, limit: limit)
                    guard step.verdict == .admitted else { break }
                    admitted += 1
                    state = step.state
                }
                let exact = fresh || idle
                budget.check(
                    exact ? admitted == most : admitted <= most,
                    "\(admitted) back to back at +\(t - last)ns (expected \(exact ? "" : "at most ")\(most)) "
                        + (fresh ? "from a fresh key" : "after \(trace)")
                )
            }
        }
    }
}

// MARK: - Engine-level sequences

/// The engine (``RateLimiter`` over a ``MemoryStore``) with 2–3 rules of 1–3 limits each: mixed algorithms, costs
/// from an `X-Cost` header with a default and a max, some `burst`, gcra `delay` and `block_for`; three clients,
/// some rules keyed by IP and some global, some only for POST.
@Suite struct EnginePropertyTests {
    /// Sequences per property; each has 1...80 requests (about 40 on average).
    static let sequences = 300

    static let clients = ["192.0.2.1", "192.0.2.2", "198.51.100.7"].map { IPAddress($0)! }

    struct Scenario {
        var seed: UInt64
        var rules: [RuleConfiguration]
        var rng: SplitMix64

        init(seed: UInt64) {
            self.seed = seed
            self.rng = SplitMix64(seed: seed)
            self.rules = []
            for index in 0..<Int(self.rng.int(2...3)) {
                let algorithm = self.rng.pick(allAlgorithms)
                var periods = [1, 2, 3, 5, 10, 30, 60, 120, 300]
                var limits: [RateLimit] = []
                for _ in 0..<self.rng.int(1...3) {
                    let period = periods.remove(at: Int(self.rng.below(Int64(periods.count))))
                    let count = Int(self.rng.int(1...12))
                    limits.append(RateLimit(count: count, periodSeconds: period, text: "\(count)/\(period)s"))
                }
                var rule = RuleConfiguration(
                    name: "r\(index)",
                    key: self.rng.percent() < 70 ? [.ip] : [.const("all")],
                    limits: limits,
                    algorithm: algorithm
                )
                if self.rng.percent() < 30 { rule.match = RuleMatch(methods: ["POST"]) }
                if algorithm == .tokenBucket || algorithm == .gcra { rule.burst = Int(self.rng.int(0...3)) }
                if algorithm == .gcra && self.rng.percent() < 40 { rule.delay = .milliseconds(self.rng.int(1...3000)) }
                switch self.rng.percent() {
                case ..<40: rule.cost = .fixed(1)
                case ..<55: rule.cost = .fixed(Int(self.rng.int(2...3)))
                default:
                    let most = Int(self.rng.int(2...15))
                    rule.cost = .header(name: "x-cost", default: Int(self.rng.int(1...2)), max: most)
                }
                if self.rng.percent() < 25 { rule.blockFor = .seconds(self.rng.int(1...120)) }
                self.rules.append(rule)
            }
        }

        mutating func request() -> TestRequest {
            let method = self.rng.percent() < 50 ? "GET" : "POST"
            var request = TestRequest(method: method, uri: "/", clientIP: self.rng.pick(EnginePropertyTests.clients))
            switch self.rng.percent() {
            case ..<40: break
            case ..<85: request.headers = [("X-Cost", "\(self.rng.int(1...16))")]
            default: request.headers = [("X-Cost", self.rng.pick(["0", "-1", "abc", "", "99999999999999999999"]))]
            }
            return request
        }

        /// Mostly the same instant or under a second; sometimes seconds, or up to two of the longest periods.
        mutating func clockStep() -> Int64 {
            switch self.rng.percent() {
            case ..<25: return 0
            case ..<50: return self.rng.int(1...999) * 1_000_000
            case ..<60: return self.rng.int(1...nanosecondsPerSecond)
            case ..<85: return self.rng.int(1...10) * nanosecondsPerSecond
            default: return self.rng.int(0...600 * nanosecondsPerSecond)
            }
        }

        var header: String {
            let rules = self.rules.map { rule in
                var text = "\(rule.name): \(rule.algorithm.rawValue) \(rule.limits.map(\.text)) key \(rule.key)"
                if let methods = rule.match.methods { text += " methods \(methods)" }
                text += " cost \(rule.cost)"
                if rule.burst > 0 { text += " burst \(rule.burst)" }
                if rule.delay > .zero { text += " delay \(rule.delay)" }
                if rule.blockFor > .zero { text += " block_for \(rule.blockFor)" }
                return text
            }
            return "seed 0x\(String(self.seed, radix: 16)); rules: \(rules.joined(separator: "; "))"
        }
    }

    static func describe(_ request: TestRequest) -> String {
        "\(request.method) \(request.clientIP)" + (request.header("x-cost").map { " X-Cost:\($0)" } ?? "")
    }

    static func describe(_ outcome: LimitOutcome) -> String {
        var text = outcome.decision.rawValue
        if let retry = outcome.retryAfter { text += " retry \(retry)s" }
        if let delay = outcome.delay { text += " delay \(delay)" }
        return text
    }

    static func sameOutcome(_ a: LimitOutcome, _ b: LimitOutcome) -> Bool {
        a.decision == b.decision && a.rule == b.rule && a.retryAfter == b.retryAfter && a.deniedLimit == b.deniedLimit
            && a.statuses == b.statuses && a.delay == b.delay && a.ruleDecisions == b.ruleDecisions
    }

    static let start: Int64 = 1_700_000_000 * nanosecondsPerSecond

    /// The engine agrees with ``EngineModel`` (decision, per-rule decisions, Retry-After present exactly when not
    /// refused for good, the hold of gcra `delay`), and its Retry-After R is exact: the same request right after
    /// it is admitted at now + R s and, where probing cannot itself change the state (no `block_for`, no `delay` on
    /// the request's rules), still limited at now + R s − 1 s.
    @Test func agreesWithModelAndRetryAfter() {
        var budget = FailureBudget()
        var probes = 0
        for index in 0..<Self.sequences where !budget.exhausted {
            probes += Self.run(seed: sequenceSeed(property: 7, nil, index), budget: &budget)
        }
        #expect(probes > Self.sequences / 2, "too few Retry-After probes: \(probes)")
    }

    /// One engine sequence of ``agreesWithModelAndRetryAfter()``; returns the number of Retry-After probes.
    @discardableResult
    static func run(seed: UInt64, budget: inout FailureBudget) -> Int {
        var scenario = Scenario(seed: seed)
        let limiter = RateLimiter(configuration: SluiceConfiguration(rules: scenario.rules), previous: nil)
        var model = EngineModel(rules: scenario.rules)
        var t = Self.start + scenario.rng.below(nanosecondsPerSecond)
        var history = ""
        var pending: [(t: Int64, request: TestRequest, limited: Bool)] = []
        var probes = 0
        for _ in 0..<scenario.rng.int(1...80) {
            let request: TestRequest
            var expectLimited: Bool?
            if pending.isEmpty {
                t += scenario.clockStep()
                request = scenario.request()
            } else {
                let probe = pending.removeFirst()
                t = probe.t
                request = probe.request
                expectLimited = probe.limited
                probes += 1
            }
            let outcome = limiter.evaluate(request, now: LimiterInstant(nanosecondsSinceEpoch: t))
            let expected = model.evaluate(request, at: t)
            let probeNote = expectLimited.map { $0 ? " (probe: expect limited)" : " (probe: expect admitted)" } ?? ""
            history += " [\(t - Self.start)ns \(Self.describe(request)) → \(Self.describe(outcome))\(probeNote)]"
            let actual = EngineModel.Expectation(
                decision: outcome.decision,
                refusedForGood: outcome.decision == .limited && outcome.retryAfter == nil,
                ruleDecisions: Array(outcome.ruleDecisions),
                delayNanoseconds: outcome.delay.map(EngineModel.nanoseconds) ?? 0
            )
            guard budget.check(actual == expected, "model expects \(expected), engine gave \(actual); \(scenario.header); requests:\(history)"),
                budget.check(
                    expectLimited.map { $0 == (outcome.decision == .limited) && ($0 || outcome.decision == .admitted) } ?? true,
                    "Retry-After probe failed; \(scenario.header); requests:\(history)"
                )
            else { break }
            if outcome.decision == .limited, let retry = outcome.retryAfter, expectLimited == nil, scenario.rng.percent() < 40 {
                let rules = model.applicable(request)
                let probeEarly = retry >= 2 && !rules.contains { $0.blockFor > .zero || ($0.algorithm == .gcra && $0.delay > .zero) }
                if probeEarly { pending.append((t + Int64(retry - 1) * nanosecondsPerSecond, request, true)) }
                pending.append((t + Int64(retry) * nanosecondsPerSecond, request, false))
            }
        }
        return probes
    }

    /// A request the engine denies changes nothing anywhere: a twin limiter that never sees the denied requests
    /// gives exactly the same outcomes (decisions, Retry-After, header numbers) for all the others. The one allowed
    /// change is a `block_for` breach, which the spec makes block the key: such a request is sent to the twin too
    /// (and must only ever happen on a denial).
    @Test func deniedRequestChangesNothing() {
        var budget = FailureBudget()
        var skipped = 0
        for index in 0..<Self.sequences where !budget.exhausted {
            var scenario = Scenario(seed: sequenceSeed(property: 8, nil, index))
            let limiter = RateLimiter(configuration: SluiceConfiguration(rules: scenario.rules), previous: nil)
            let twin = RateLimiter(configuration: SluiceConfiguration(rules: scenario.rules), previous: nil)
            var t = Self.start + scenario.rng.below(nanosecondsPerSecond)
            var history = ""
            for _ in 0..<scenario.rng.int(1...80) {
                t += scenario.clockStep()
                let request = scenario.request()
                let now = LimiterInstant(nanosecondsSinceEpoch: t)
                let penaltyKeys = Array(Set(limiter.prepare(request, now: now).batch.items.compactMap(\.penaltyKey)))
                let blocksBefore = penaltyKeys.map { (limiter.store as! MemoryStore).blockedUntil($0, now: now) }
                let outcome = limiter.evaluate(request, now: now)
                let breach = penaltyKeys.map { (limiter.store as! MemoryStore).blockedUntil($0, now: now) } != blocksBefore
                history += " [\(t - Self.start)ns \(Self.describe(request)) → \(Self.describe(outcome))\(breach ? " (breach)" : "")]"
                guard budget.check(!breach || outcome.decision == .limited, "an admitted request set a block; \(scenario.header); requests:\(history)")
                else { break }
                if outcome.decision == .limited && !breach {
                    skipped += 1
                    continue
                }
                let twinOutcome = twin.evaluate(request, now: now)
                guard budget.check(
                    Self.sameOutcome(outcome, twinOutcome),
                    "the twin that skipped the denied requests says \(Self.describe(twinOutcome)) \(twinOutcome.statuses.map(\.remaining)) "
                        + "vs \(outcome.statuses.map(\.remaining)); \(scenario.header); requests:\(history)"
                ) else { break }
            }
        }
        #expect(skipped > Self.sequences, "too few denied requests: \(skipped)")
    }

    /// All or nothing: when the engine denies a request, no counter of any of its limits moves, in particular those
    /// of rules that admitted it.
    @Test func deniedRequestConsumesNoLimit() {
        var budget = FailureBudget()
        var partial = 0
        for index in 0..<Self.sequences where !budget.exhausted {
            var scenario = Scenario(seed: sequenceSeed(property: 9, nil, index))
            let limiter = RateLimiter(configuration: SluiceConfiguration(rules: scenario.rules), previous: nil)
            var t = Self.start + scenario.rng.below(nanosecondsPerSecond)
            var history = ""
            for _ in 0..<scenario.rng.int(1...80) {
                t += scenario.clockStep()
                let request = scenario.request()
                let now = LimiterInstant(nanosecondsSinceEpoch: t)
                let items = limiter.prepare(request, now: now).batch.items
                func counters() -> [String] {
                    items.map { item in
                        (limiter.store as! MemoryStore).status(of: item, now: now).map { "\($0.verdict) \($0.remaining) \($0.resetNanoseconds)" } ?? "untracked"
                    }
                }
                let before = counters()
                let outcome = limiter.evaluate(request, now: now)
                history += " [\(t - Self.start)ns \(Self.describe(request)) → \(Self.describe(outcome))]"
                guard outcome.decision == .limited else { continue }
                if outcome.ruleDecisions.contains(where: { $0.decision == .admitted }) { partial += 1 }
                guard budget.check(
                    counters() == before,
                    "counters moved on a denied request: \(before) → \(counters()) for \(items.map(\.key)); \(scenario.header); requests:\(history)"
                ) else { break }
            }
        }
        #expect(partial > Self.sequences / 2, "too few requests denied by one rule and admitted by another: \(partial)")
    }
}
