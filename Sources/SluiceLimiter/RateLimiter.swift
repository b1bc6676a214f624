import SluiceConfig

/// The limiter engine for one configuration snapshot (SPEC §2 "Decisions").
///
/// Built once per load (matchers, key builders and storage namespaces are precompiled) and shared read-only by
/// every event loop; the counters live in the ``RateLimitStore``, which outlives snapshots. The proxy calls
/// ``evaluate(_:now:)`` once per request head, envoy-style: match rules, derive keys, decide all-or-nothing in the
/// store, then turn the ``LimitOutcome`` into a forwarded request or a blocked response.
///
/// Per request, in file order, every rule whose `match` holds applies:
/// - a client IP in `exempt` makes the rule `exempt` for this request;
/// - the key is derived; an absent part applies `on_missing_key` (`skip`: the rule does not apply; `deny`: refused
///   for good; `fallback`: the fallback parts, and if one of those is absent too the rule is skipped);
/// - the cost is fixed or read from a header (absent, not an integer or below 1 → `default`; above `max` → `max`,
///   however many digits; see ``cost(_:request:)``);
/// - limits come from `tiers` (by a key part's value, else `default`, else `limits`);
/// - a cost above a limit's COUNT refuses the request for good (no `Retry-After`);
/// - every limit becomes a ``StoreItem`` and the store decides them together.
/// `mode: shadow` rules are counted but never block: they turn an admitted request into `shadowLimited`.
/// A rule with only `concurrency` (no `limits`, no tier limits), or a tier without limits, is not a rate limit: it is
/// skipped here and left to the ``ConcurrencyLimiter``, which the proxy asks first (issue 22).
///
/// Decisions where the spec is silent: when two applicable rules produce the same storage key (rules with one
/// `shared` name, the same key parts and the same limit), the request is counted once for it; a request refused for
/// good still reports its other limits' numbers (checked without counting) so headers can be sent.
public final class RateLimiter: Sendable {
    public let configuration: SluiceConfiguration
    /// Where the counters live; reused by the next snapshot on reload.
    public let store: any RateLimitStore
    let rules: [CompiledRule]
    private let ruleIndexByName: [String: Int]
    private let needsPath: Bool
    /// The store is a Redis Cluster: items carry their rule key's ``StoreItem/clusterTag``.
    private let needsClusterTags: Bool

    /// - Parameters:
    ///   - configuration: the validated snapshot.
    ///   - store: the counters, usually those of the previous snapshot.
    public init(configuration: SluiceConfiguration, store: any RateLimitStore) {
        self.configuration = configuration
        self.store = store
        self.rules = configuration.rules.enumerated().map {
            CompiledRule(index: $0.offset, configuration: $0.element, keySeed: store.keySeed)
        }
        var byName: [String: Int] = [:]
        for rule in self.rules { byName[rule.name] = rule.index }
        self.ruleIndexByName = byName
        self.needsClusterTags = store.usesClusterTags
        self.needsPath = self.rules.contains { rule in
            rule.matcher.needsPath || rule.configuration.key.contains(.path)
                || rule.configuration.tiers?.by == .path
                || { if case .fallback(let parts) = rule.configuration.onMissingKey { parts.contains(.path) } else { false } }()
        }
    }

    /// The engine of a reloaded configuration (SPEC §6): keeps `previous`'s store, so the counters of rules whose
    /// name, key and limits are unchanged carry over (their storage keys are the same); without `previous`, a new
    /// ``MemoryStore`` bounded by `storage.max_keys`.
    ///
    /// Counters of changed or removed rules are not deleted; they are never read again and age out of the LRU.
    public convenience init(configuration: SluiceConfiguration, previous: RateLimiter?) {
        self.init(
            configuration: configuration,
            store: previous?.store ?? MemoryStore(maxKeys: configuration.storage.maxKeys)
        )
    }

    /// Decides a request: ``prepare(_:now:)``, the store, ``finish(_:now:)``.
    public func evaluate<R: RequestAttributes>(_ request: R, now: LimiterInstant) -> LimitOutcome {
        var prepared = PreparedDecision()
        self.prepare(request, now: now, into: &prepared)
        if !prepared.batch.isEmpty {
            self.store.decide(&prepared.batch, now: now)
        }
        return self.finish(prepared, now: now)
    }

    /// Decides a request from async code (the gRPC front end, issue 14): at once with a store that decides
    /// synchronously (memory), else ``prepare(_:now:)``, the store's round trip awaited, ``finish(_:now:)``.
    public func decide<R: RequestAttributes>(_ request: R, now: LimiterInstant) async -> LimitOutcome {
        if self.store.decidesSynchronously { return self.evaluate(request, now: now) }
        var prepared = self.prepare(request, now: now)
        if !prepared.batch.isEmpty {
            let batch = prepared.batch
            let store = self.store
            prepared.batch = await withCheckedContinuation { continuation in
                store.decide(batch, now: now) { decided in continuation.resume(returning: decided) }
            }
        }
        return self.finish(prepared, now: now)
    }

    // MARK: Preparing

    /// A request's applicable rules and store items, before the store decides. No I/O, no locks, and for up to
    /// four limits and four rules no allocation.
    public struct PreparedDecision: Sendable {
        /// Hand this to ``RateLimitStore/decide(_:now:)`` (unless empty), then to ``RateLimiter/finish(_:now:)``.
        public var batch = DecisionBatch()
        fileprivate var entries = SmallArray<2, Entry>()
        /// For each counted entry's limits, in order, the index of its item in `batch` (two rules of one `shared`
        /// budget may point at one item).
        fileprivate var positions = SmallArray<2, Int>()
    }

    fileprivate struct Entry: Sendable {
        enum Kind: Sendable {
            case exempt
            /// Refused whatever the counters say; the text for `{limit}`.
            case refusedForGood(limit: String)
            /// One item per limit, found through `positions[firstPosition...]`. With `refusedLimit`, the request is
            /// refused for good by that limit (cost above its COUNT) and the items only look at the counters, for
            /// the headers of the blocked response.
            case counted(limits: [CompiledLimit], firstPosition: Int, refusedLimit: String?)
        }

        var rule: Int
        var kind: Kind
        /// The hasher after the request's key (`counted` entries only). Kept rather than finalised: only the rule
        /// the outcome names gets its ``LimitOutcome/keyDigest``, once per request.
        var keyed: KeyHasher? = nil
    }

    /// Matches the rules and derives the store items of `request`.
    public func prepare<R: RequestAttributes>(_ request: R, now: LimiterInstant) -> PreparedDecision {
        var prepared = PreparedDecision()
        self.prepare(request, now: now, into: &prepared)
        return prepared
    }

    /// ``prepare(_:now:)`` into an empty `prepared` that the caller owns (no copy of the result).
    private func prepare<R: RequestAttributes>(_ request: R, now: LimiterInstant, into prepared: inout PreparedDecision) {
        let path = self.needsPath ? PathNormalizer.normalize(request.uri) : "/"
        var refusedEnforced = false
        for ruleIndex in 0..<self.rules.count {
            let rule = self.rules[ruleIndex]
            guard rule.hasRateLimits, rule.matcher.matches(request, path: path) else { continue }
            if !rule.exempt.isEmpty, request.hasClientIP, rule.exempt.contains(where: { $0.contains(request.clientIP) }) {
                prepared.entries.append(Entry(rule: rule.index, kind: .exempt))
                continue
            }
            var keyed = rule.keyPrefix
            if !rule.key.combineKey(for: request, path: path, into: &keyed) {
                switch rule.onMissingKey {
                case .skip:
                    continue
                case .deny:
                    prepared.entries.append(Entry(rule: rule.index, kind: .refusedForGood(limit: rule.limitsText)))
                    refusedEnforced = refusedEnforced || rule.isEnforced
                    continue
                case .fallback:
                    guard let fallback = rule.fallback else { continue }
                    keyed = fallback.keyPrefix
                    guard fallback.key.combineKey(for: request, path: path, into: &keyed) else { continue }
                }
            }
            let cost = request.costOverride ?? Self.cost(rule.cost, request: request)
            let tierValue = rule.tierPart.flatMap { KeyBuilder.value(of: $0, request: request, path: path) }
            let limits = rule.limits(tierValue: tierValue)
            // A tier without rate limits (a rule with `concurrency` and limits for some tiers only).
            if limits.isEmpty { continue }
            var refusedLimit: String?
            if let tooSmall = limits.first(where: { Int64($0.limit.count) < cost }) {
                refusedLimit = tooSmall.limit.text
                refusedEnforced = refusedEnforced || rule.isEnforced
            }
            let penaltyKey = rule.penaltyKey(keyed)
            let clusterTag = self.needsClusterTags ? rule.clusterTag(keyed) : 0
            let firstPosition = prepared.positions.count
            for limit in limits {
                let key = rule.storageKey(keyed, limit: limit.limit)
                if let existing = prepared.batch.index(of: key) {
                    prepared.positions.append(existing)
                    continue
                }
                var item = StoreItem(
                    key: key,
                    algorithm: rule.algorithm,
                    limit: limit.parameters,
                    cost: refusedLimit == nil ? cost : 0,
                    mode: rule.countWhen == nil && refusedLimit == nil ? .consume : .check,
                    group: rule.index,
                    isEnforced: rule.isEnforced,
                    // A look for headers never starts a block (a gcra look can be "late" even at cost 0).
                    penaltyKey: refusedLimit == nil ? penaltyKey : nil,
                    penaltyNanoseconds: rule.penaltyNanoseconds
                )
                item.clusterTag = clusterTag
                prepared.batch.append(item)
                prepared.positions.append(prepared.batch.items.count - 1)
            }
            prepared.entries.append(
                Entry(
                    rule: rule.index,
                    kind: .counted(limits: limits, firstPosition: firstPosition, refusedLimit: refusedLimit),
                    keyed: keyed
                )
            )
        }
        if refusedEnforced {
            // Refused whatever the counters say: look at them for the headers, take nothing (all or nothing).
            prepared.batch.checkOnly()
        }
    }

    /// The units a request takes (SPEC §2 `cost`).
    ///
    /// A cost header's value, without surrounding whitespace (RFC 9110 §5.5), is an integer when it is ASCII digits
    /// with an optional leading `+` or `-` (what Swift's `Int64(_:)` accepts, and what this read before). An
    /// integer above `max` counts as `max` however many digits it has (an overflow is above `max`, never
    /// `default`); one below 1, absent or not an integer (`1.5`, `0x10`, `1e3`, empty) counts as `default`.
    static func cost<R: RequestAttributes>(_ cost: RuleConfiguration.Cost, request: R) -> Int64 {
        switch cost {
        case .fixed(let units):
            return Int64(max(1, units))
        case .header(let name, let defaultUnits, let maxUnits):
            guard let text = request.trimmedHeader(name) else { return Int64(defaultUnits) }
            switch CostHeader.parse(text) {
            case .integer(let units) where units >= 1: return min(units, Int64(maxUnits))
            case .aboveInt64: return Int64(maxUnits)
            case .integer, .belowInt64, .notAnInteger: return Int64(defaultUnits)
            }
        }
    }

    // MARK: Finishing

    /// Turns the decided batch into the outcome the proxy acts on.
    public func finish(_ prepared: borrowing PreparedDecision, now: LimiterInstant) -> LimitOutcome {
        var outcome = LimitOutcome(decision: .noRule)
        /// The rule of each status, for the header mode of the first.
        var statusRules = SmallArray<2, Int>()
        var refusedForGood: (rule: Int, limit: String)?
        var blocking: (rule: Int, limit: String)?
        var shadowRule: Int?
        var anyCounted = false
        var anyExempt = false
        var longestRetry: Int64 = 0
        var longestDelay: Int64 = 0
        var deferred: [DeferredCharge.Entry] = []

        for entryIndex in 0..<prepared.entries.count {
            let entry = prepared.entries[entryIndex]
            let rule = self.rules[entry.rule]
            switch entry.kind {
            case .exempt:
                anyExempt = true
                outcome.ruleDecisions.append(RuleDecision(rule: rule.name, ruleIndex: entry.rule, decision: .exempt))
            case .refusedForGood(let limit):
                if rule.isEnforced {
                    if refusedForGood == nil { refusedForGood = (entry.rule, limit) }
                    outcome.ruleDecisions.append(RuleDecision(rule: rule.name, ruleIndex: entry.rule, decision: .limited))
                } else {
                    if shadowRule == nil { shadowRule = entry.rule }
                    outcome.ruleDecisions.append(RuleDecision(rule: rule.name, ruleIndex: entry.rule, decision: .shadowLimited))
                }
            case .counted(let limits, let firstPosition, let refusedLimit):
                anyCounted = true
                var admitted = true
                var worstRetry: Int64 = -1
                var worstLimit = limits.first?.limit.text ?? ""
                for (offset, limit) in limits.enumerated() {
                    let result = prepared.batch.results[prepared.positions[firstPosition + offset]]
                    outcome.statuses.append(
                        LimitStatus(
                            rule: rule.name,
                            policyName: limit.policyName,
                            policyNameIsPlain: limit.policyNameIsPlain,
                            limit: limit.limit,
                            remaining: Int(clamping: result.remaining),
                            resetSeconds: FixedPoint.ceilSeconds(nanoseconds: result.resetNanoseconds)
                        )
                    )
                    statusRules.append(entry.rule)
                    switch result.verdict {
                    case .admitted:
                        break
                    case .delayed(let wait):
                        if rule.isEnforced { longestDelay = max(longestDelay, wait) }
                    case .denied(let retry):
                        admitted = false
                        if retry > worstRetry {
                            worstRetry = retry
                            worstLimit = limit.limit.text
                        }
                    }
                }
                if let refusedLimit {
                    // Refused for good; the statuses above are the counters as they stand, for the headers.
                    if rule.isEnforced {
                        if refusedForGood == nil { refusedForGood = (entry.rule, refusedLimit) }
                        outcome.ruleDecisions.append(RuleDecision(rule: rule.name, ruleIndex: entry.rule, decision: .limited))
                    } else {
                        if shadowRule == nil { shadowRule = entry.rule }
                        outcome.ruleDecisions.append(RuleDecision(rule: rule.name, ruleIndex: entry.rule, decision: .shadowLimited))
                    }
                    continue
                }
                if rule.isEnforced {
                    outcome.ruleDecisions.append(RuleDecision(rule: rule.name, ruleIndex: entry.rule, decision: admitted ? .admitted : .limited))
                    if !admitted {
                        longestRetry = max(longestRetry, worstRetry)
                        if blocking == nil { blocking = (entry.rule, worstLimit) }
                    }
                } else {
                    outcome.ruleDecisions.append(RuleDecision(rule: rule.name, ruleIndex: entry.rule, decision: admitted ? .admitted : .shadowLimited))
                    if !admitted && shadowRule == nil { shadowRule = entry.rule }
                }
                if let countWhen = rule.countWhen, prepared.batch.isAdmitted, refusedForGood == nil,
                    rule.isEnforced || admitted
                {
                    let charged = limits.indices.map { offset in
                        var item = prepared.batch.items[prepared.positions[firstPosition + offset]]
                        item.mode = .consume
                        return item
                    }
                    deferred.append(DeferredCharge.Entry(statuses: countWhen, items: charged))
                }
            }
        }

        // SPEC §5: the limit with the least remaining quota first (the earliest on a tie), then the others in order.
        if let least = outcome.statuses.indices.min(by: { outcome.statuses[$0].remaining < outcome.statuses[$1].remaining }),
            least > 0
        {
            outcome.statuses.moveToFront(least)
            statusRules.moveToFront(least)
        }
        if let first = statusRules.first {
            outcome.headerMode = self.rules[first].headerMode
        }

        if prepared.batch.storageUnavailable {
            outcome.decision = .limited
            outcome.storageUnavailable = true
            let namedRule = blocking?.rule ?? statusRules.first
            outcome.rule = namedRule.map { self.rules[$0].name }
            outcome.ruleIndex = namedRule
            outcome.keyDigest = Self.keyDigest(of: namedRule, in: prepared, rules: self.rules)
            return outcome
        }
        // The rule the access log names: the refusing one, the shadow one, else the most constrained one.
        var namedRule = statusRules.first
        if let refused = refusedForGood {
            self.setBlocked(&outcome, rule: refused.rule, limit: refused.limit, retryAfter: nil)
            namedRule = refused.rule
        } else if !prepared.batch.isAdmitted, let blocking {
            let retry = FixedPoint.retryAfterSeconds(nanoseconds: longestRetry)
            self.setBlocked(&outcome, rule: blocking.rule, limit: blocking.limit, retryAfter: retry)
            namedRule = blocking.rule
        } else if let shadowRule {
            outcome.decision = .shadowLimited
            outcome.rule = self.rules[shadowRule].name
            outcome.ruleIndex = shadowRule
            namedRule = shadowRule
        } else if anyCounted {
            outcome.decision = .admitted
        } else if anyExempt {
            outcome.decision = .exempt
        }
        if outcome.decision != .limited {
            if longestDelay > 0 { outcome.delay = .nanoseconds(longestDelay) }
            if !deferred.isEmpty { outcome.deferredCharge = DeferredCharge(store: self.store, entries: deferred) }
        }
        outcome.keyDigest = Self.keyDigest(of: namedRule, in: prepared, rules: self.rules)
        return outcome
    }

    /// The key digest of rule `index` in this request, `nil` when it had no key.
    private static func keyDigest(
        of index: Int?,
        in prepared: borrowing PreparedDecision,
        rules: [CompiledRule]
    ) -> StorageKey? {
        guard let index else { return nil }
        for entryIndex in 0..<prepared.entries.count where prepared.entries[entryIndex].rule == index {
            if let keyed = prepared.entries[entryIndex].keyed { return rules[index].keyDigest(keyed) }
        }
        return nil
    }

    private func setBlocked(_ outcome: inout LimitOutcome, rule index: Int, limit: String, retryAfter: Int?) {
        // Read through the compiled rule, field by field: a copy of the whole `RuleConfiguration` costs a retain per
        // reference it holds, on every blocked request.
        let rule = self.rules[index]
        outcome.decision = .limited
        outcome.rule = rule.name
        outcome.ruleIndex = index
        outcome.response = rule.configuration.response
        outcome.retryAfter = retryAfter
        outcome.deniedLimit = limit
        outcome.headerMode = rule.configuration.response.rateLimitHeaders
    }

    /// The compiled rule named `name`.
    func rule(named name: String) -> CompiledRule? {
        self.ruleIndexByName[name].map { self.rules[$0] }
    }
}

/// The integer of a cost header, read without allocating.
enum CostHeader: Equatable {
    case integer(Int64)
    /// A positive integer too large for `Int64`.
    case aboveInt64
    /// A negative integer too small for `Int64`.
    case belowInt64
    case notAnInteger

    /// `[+-]?[0-9]+` in decimal; `text` has no surrounding whitespace.
    static func parse(_ text: Substring) -> CostHeader {
        var digits = text.utf8[...]
        var negative = false
        if let sign = digits.first, sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") {
            negative = sign == UInt8(ascii: "-")
            digits = digits.dropFirst()
        }
        guard !digits.isEmpty else { return .notAnInteger }
        var value: Int64 = 0
        var overflowed = false
        for byte in digits {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return .notAnInteger }
            guard !overflowed else { continue }  // still check that the rest are digits
            let digit = Int64(byte - UInt8(ascii: "0"))
            // Accumulated negatively, so Int64.min fits.
            let (times10, o1) = value.multipliedReportingOverflow(by: 10)
            let (next, o2) = times10.subtractingReportingOverflow(digit)
            if o1 || o2 { overflowed = true } else { value = next }
        }
        if overflowed { return negative ? .belowInt64 : .aboveInt64 }
        if negative { return .integer(value) }
        return value == .min ? .aboveInt64 : .integer(-value)
    }
}
