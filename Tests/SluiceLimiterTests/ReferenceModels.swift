import SluiceConfig
@testable import SluiceLimiter

// Reference models of the five algorithms of SPEC §2 "Algorithms", written from the spec and not from the
// production steps: plain data structures, exact integer arithmetic, no attempt at being cheap. The property tests
// (AlgorithmPropertyTests.swift) check that the production steps agree with them.
//
// Every model is driven by a clock that never goes back. `verdict(at:cost:)` only looks; `take(at:cost:)` counts a
// request that was let through (admitted or delayed). A denied request is simply never taken: the spec says it
// consumes nothing.

/// What a model says about a request (the production `StepVerdict` without its `Retry-After`, which the tests check
/// by probing instead).
enum ModelVerdict: Equatable, CustomStringConvertible {
    case admitted
    /// `gcra` with `delay`: counted now, forwarded after this many nanoseconds.
    case delayed(Int64)
    case denied

    init(_ verdict: StepVerdict) {
        switch verdict {
        case .admitted: self = .admitted
        case .delayed(let wait): self = .delayed(wait)
        case .denied: self = .denied
        }
    }

    var description: String {
        switch self {
        case .admitted: "admitted"
        case .delayed(let wait): "delayed(\(wait))"
        case .denied: "denied"
        }
    }
}

protocol ReferenceModel {
    init(_ limit: LimitParameters)
    func verdict(at t: Int64, cost: Int64) -> ModelVerdict
    mutating func take(at t: Int64, cost: Int64)
}

/// The reference model of `algorithm`, with nothing counted yet.
func referenceModel(_ algorithm: Algorithm, _ limit: LimitParameters) -> any ReferenceModel {
    switch algorithm {
    case .fixedWindow: FixedWindowModel(limit)
    case .slidingWindow: SlidingWindowModel(limit)
    case .movingWindow: MovingWindowModel(limit)
    case .tokenBucket: TokenBucketModel(limit)
    case .gcra: GCRAModel(limit)
    }
}

/// `fixed_window`: a map from window number to the units taken in it. Windows are aligned to the epoch, so the
/// window of `t` is simply `t / period`.
struct FixedWindowModel: ReferenceModel {
    let count: Int64
    let period: Int64
    var used: [Int64: Int64] = [:]

    init(_ limit: LimitParameters) {
        self.count = limit.count
        self.period = limit.periodNanoseconds
    }

    func verdict(at t: Int64, cost: Int64) -> ModelVerdict {
        self.used[t / self.period, default: 0] + cost <= self.count ? .admitted : .denied
    }

    mutating func take(at t: Int64, cost: Int64) {
        self.used[t / self.period, default: 0] += cost
    }
}

/// `sliding_window`: the same per-window counts as `fixed_window`;
/// estimate = previous × (period − elapsed) / period + current, admitted while estimate + cost ≤ COUNT.
/// "No rounding": both sides are multiplied by the period, so the comparison is between integers.
struct SlidingWindowModel: ReferenceModel {
    let count: Int64
    let period: Int64
    var used: [Int64: Int64] = [:]

    init(_ limit: LimitParameters) {
        self.count = limit.count
        self.period = limit.periodNanoseconds
    }

    func verdict(at t: Int64, cost: Int64) -> ModelVerdict {
        let window = t / self.period
        let elapsed = t % self.period
        let previous = self.used[window - 1, default: 0]
        let current = self.used[window, default: 0]
        // previous × (P − e) / P + current + cost ≤ COUNT  ⇔  previous × (P − e) + (current + cost) × P ≤ COUNT × P
        let lhs = previous * (self.period - elapsed) + (current + cost) * self.period
        return lhs <= self.count * self.period ? .admitted : .denied
    }

    mutating func take(at t: Int64, cost: Int64) {
        self.used[t / self.period, default: 0] += cost
    }
}

/// `moving_window`: one timestamp per unit taken; at `t` a unit counts while it lies in (t − period, t].
struct MovingWindowModel: ReferenceModel {
    let count: Int64
    let period: Int64
    var units: [Int64] = []

    init(_ limit: LimitParameters) {
        self.count = limit.count
        self.period = limit.periodNanoseconds
    }

    func inWindow(at t: Int64) -> Int64 {
        Int64(self.units.filter { $0 > t - self.period && $0 <= t }.count)
    }

    func verdict(at t: Int64, cost: Int64) -> ModelVerdict {
        self.inWindow(at: t) + cost <= self.count ? .admitted : .denied
    }

    mutating func take(at t: Int64, cost: Int64) {
        self.units += Array(repeating: t, count: Int(cost))
        // A unit at or before t − period never counts again (the clock only moves forward): forget it, so the
        // log stays short.
        self.units.removeAll { $0 <= t - self.period }
    }
}

/// `token_bucket`: a level measured in nanosecond-token units: one token is worth the time it takes to refill,
/// `T = ⌈period / COUNT⌉` rounded up to the microsecond, so the level simply grows by 1 per elapsed nanosecond, up to the capacity of
/// (COUNT + burst) tokens. Full at first; a request takes `cost` tokens only if they are all there (no debt).
///
/// `T` is rounded *up* to the microsecond, the same documented choice as `gcra`'s emission interval: the refill is
/// then at most 1 µs per token slower than exactly COUNT per period, never faster. (The property tests check the
/// exact rate of the spec separately, as a bound on admitted units.)
struct TokenBucketModel: ReferenceModel {
    let tokenNanoseconds: Int64
    let capacity: Int64
    /// The level at `last` (nanosecond-token units).
    var level: Int64
    var last: Int64?

    init(_ limit: LimitParameters) {
        self.tokenNanoseconds = (limit.periodNanoseconds + limit.count * 1000 - 1) / (limit.count * 1000) * 1000
        self.capacity = (limit.count + limit.burst) * self.tokenNanoseconds
        self.level = self.capacity
    }

    func level(at t: Int64) -> Int64 {
        guard let last = self.last else { return self.capacity }
        return min(self.capacity, self.level + (t - last))
    }

    func verdict(at t: Int64, cost: Int64) -> ModelVerdict {
        self.level(at: t) >= cost * self.tokenNanoseconds ? .admitted : .denied
    }

    mutating func take(at t: Int64, cost: Int64) {
        self.level = self.level(at: t) - cost * self.tokenNanoseconds
        self.last = t
    }
}

/// `gcra` in its "continuous-state leaky bucket" form (ITU-T I.371), which is equivalent to the virtual-scheduling
/// (TAT) form but computed differently: a bucket holding `content` nanoseconds of work that drains at 1 ns per ns.
/// Each unit adds the emission interval `T = ⌈period / COUNT⌉` rounded up to the microsecond; a request conforms while the bucket holds at most
/// the tolerance `τ = burst × T`, so 1 + burst single requests fit back to back and then one every T.
/// As in nginx and redis-cell's single-unit case, the test is on the content *before* the request: a conforming
/// request may take several units at once and leave the bucket above τ.
/// With `delay`: a request that would conform after waiting w ≤ delay is counted now and held for w.
struct GCRAModel: ReferenceModel {
    let interval: Int64
    let tolerance: Int64
    let delay: Int64
    /// The content at `last`.
    var content: Int64 = 0
    var last: Int64?

    init(_ limit: LimitParameters) {
        self.interval = (limit.periodNanoseconds + limit.count * 1000 - 1) / (limit.count * 1000) * 1000
        self.tolerance = limit.burst * self.interval
        self.delay = limit.delayNanoseconds
    }

    func content(at t: Int64) -> Int64 {
        guard let last = self.last else { return 0 }
        return max(0, self.content - (t - last))
    }

    func verdict(at t: Int64, cost: Int64) -> ModelVerdict {
        let wait = self.content(at: t) - self.tolerance
        if wait <= 0 { return .admitted }
        if wait <= self.delay { return .delayed(wait) }
        return .denied
    }

    mutating func take(at t: Int64, cost: Int64) {
        self.content = self.content(at: t) + cost * self.interval
        self.last = t
    }
}

/// The engine of SPEC §2 "Decisions" composed from the models above: every rule whose `match` holds applies; a cost
/// above one of its limits' COUNT refuses the request for good; otherwise the request is admitted only if every
/// limit of every applicable rule admits it, and then every one of them counts it. A refused request counts
/// nowhere, except that a `block_for` rule refused by its own limits (not by a running block) blocks its key.
///
/// Covers what the engine property tests configure: `methods` matching, `ip` / `const` keys, fixed or header costs,
/// `burst`, `delay`, `block_for`, every rule enforced.
struct EngineModel {
    struct Expectation: Equatable {
        var decision: Decision
        /// Refused whatever the counters say, so without `Retry-After`.
        var refusedForGood = false
        var ruleDecisions: [RuleDecision] = []
        /// The longest hold of a `delayed` limit, 0 for none.
        var delayNanoseconds: Int64 = 0
    }

    let rules: [RuleConfiguration]
    /// One model per rule, key and limit.
    private var counters: [String: any ReferenceModel] = [:]
    /// `block_for`: rule and key → end of the block.
    private var blockedUntil: [String: Int64] = [:]

    init(rules: [RuleConfiguration]) {
        self.rules = rules
    }

    /// The rules that apply to `request`.
    func applicable(_ request: TestRequest) -> [RuleConfiguration] {
        self.rules.filter { rule in
            // `methods: [GET]` also matches HEAD (SPEC §3 "Hostile clients").
            guard let methods = rule.match.methods else { return true }
            return methods.contains(request.method) || (request.method == "HEAD" && methods.contains("GET"))
        }
    }

    mutating func evaluate(_ request: TestRequest, at t: Int64) -> Expectation {
        let rules = self.applicable(request)
        guard !rules.isEmpty else { return Expectation(decision: .noRule) }
        var expectation = Expectation(decision: .admitted)
        var everyLimitAdmits = true
        var toCount: [(counter: String, cost: Int64)] = []
        var breached: [(key: String, until: Int64)] = []
        for rule in rules {
            // Rule names are unique in a configuration; the engine reports the rule's position in the file.
            let ruleIndex = self.rules.firstIndex { $0.name == rule.name }!
            let key = rule.name + "|" + rule.key.map { $0 == .ip ? "\(request.clientIP)" : $0.description }.joined(separator: ",")
            let cost = Self.cost(rule.cost, request)
            if rule.limits.contains(where: { Int64($0.count) < cost }) {
                expectation.refusedForGood = true
                expectation.ruleDecisions.append(RuleDecision(rule: rule.name, ruleIndex: ruleIndex, decision: .limited))
                continue
            }
            let blocked = (self.blockedUntil[key] ?? Int64.min) > t
            var ruleAdmits = true
            for limit in rule.limits {
                let counter = "\(key)|\(limit.count)/\(limit.periodSeconds)"
                let parameters = Self.parameters(rule, limit)
                let verdict: ModelVerdict = blocked ? .denied : (self.counters[counter] ?? referenceModel(rule.algorithm, parameters)).verdict(at: t, cost: cost)
                switch verdict {
                case .admitted: break
                case .delayed(let wait): expectation.delayNanoseconds = max(expectation.delayNanoseconds, wait)
                case .denied: ruleAdmits = false
                }
                toCount.append((counter, cost))
                if self.counters[counter] == nil { self.counters[counter] = referenceModel(rule.algorithm, parameters) }
            }
            expectation.ruleDecisions.append(RuleDecision(rule: rule.name, ruleIndex: ruleIndex, decision: ruleAdmits ? .admitted : .limited))
            if !ruleAdmits {
                everyLimitAdmits = false
                let blockFor = Self.nanoseconds(rule.blockFor)
                if !blocked && blockFor > 0 { breached.append((key, t + blockFor)) }
            }
        }
        if everyLimitAdmits && !expectation.refusedForGood {
            for (counter, cost) in toCount { self.counters[counter]!.take(at: t, cost: cost) }
            return expectation
        }
        for (key, until) in breached { self.blockedUntil[key] = until }
        expectation.decision = .limited
        expectation.delayNanoseconds = 0  // a refused request is not held
        return expectation
    }

    /// SPEC §2 `cost`: a header that is absent, not an integer or below 1 counts as `default`, above `max` as `max`
    /// (an integer too large for `Int64` too).
    static func cost(_ cost: RuleConfiguration.Cost, _ request: TestRequest) -> Int64 {
        switch cost {
        case .fixed(let units):
            return Int64(units)
        case .header(let name, let defaultUnits, let maxUnits):
            guard let raw = request.header(name) else { return Int64(defaultUnits) }
            var text = Substring(raw)
            while let first = text.first, first == " " || first == "\t" { text.removeFirst() }
            while let last = text.last, last == " " || last == "\t" { text.removeLast() }
            let unsigned = text.hasPrefix("+") ? text.dropFirst() : text
            if Int64(text) == nil, !unsigned.isEmpty, unsigned.allSatisfy({ ("0"..."9").contains($0) }) {
                return Int64(maxUnits)
            }
            guard let units = Int64(text), units >= 1 else { return Int64(defaultUnits) }
            return min(units, Int64(maxUnits))
        }
    }

    /// A limit string of `rule` in the models' units; `delay` is `gcra`'s only (SPEC §2).
    static func parameters(_ rule: RuleConfiguration, _ limit: RateLimit) -> LimitParameters {
        LimitParameters(
            count: Int64(limit.count),
            periodNanoseconds: Int64(limit.periodSeconds) * 1_000_000_000,
            burst: Int64(rule.burst),
            delayNanoseconds: rule.algorithm == .gcra ? self.nanoseconds(rule.delay) : 0
        )
    }

    static func nanoseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000
    }
}
