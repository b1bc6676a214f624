import SluiceConfig

/// One limit of a rule as a request applies it: the parsed limit, its step parameters and its policy name.
struct CompiledLimit: Sendable {
    let limit: RateLimit
    let parameters: LimitParameters
    /// The policy name in headers: the rule's name, or `RULE-WINDOW` when its list has several limits (SPEC §5).
    let policyName: String
    /// ``RateLimitHeaders/isPlainString(_:)`` of ``policyName``.
    let policyNameIsPlain: Bool
}

/// A rule prepared once per configuration load: matcher, key builders, storage namespaces, limit lists.
///
/// A storage key (``StorageKey``) digests, in order:
/// - the **namespace**: the rule's name (or `shared:NAME` for `shared` rules) and a stable 64-bit FNV-1a
///   fingerprint of what gives the counters their meaning: key parts, algorithm, burst and, for rules that are not
///   shared, the whole limit list and tiers. A reload that leaves these unchanged builds the same keys, so the
///   counters carry over (SPEC §6); any change starts the rule afresh. Shared rules leave the limits out so that
///   rules with one `shared` name meet in one budget; each limit still has its own counter (as in Flask-Limiter);
/// - the request's key values (``KeyBuilder/combineKey(for:path:into:)``);
/// - `COUNT/PERIOD` of the limit, or a block marker for the `block_for` penalty box.
/// The namespace is absorbed once here (``keyPrefix``); a request only adds its values and the limit.
final class CompiledRule: Sendable {
    let index: Int
    let configuration: RuleConfiguration
    // What a request reads of the configuration, held directly: reading through `configuration` would copy
    // the whole rule (a dozen reference-counted fields) per request.
    let name: String
    let isEnforced: Bool
    let algorithm: Algorithm
    let exempt: [CIDR]
    let onMissingKey: RuleConfiguration.OnMissingKey
    let cost: RuleConfiguration.Cost
    let tierPart: KeyPart?
    let countWhen: StatusSet?
    let headerMode: ResponseConfiguration.RateLimitHeaders
    let matcher: RuleMatcher
    let key: KeyBuilder
    let namespace: String
    /// The hasher after the namespace, keyed by the store's seed.
    let keyPrefix: KeyHasher
    /// For `on_missing_key: fallback`: the fallback parts and their own namespace.
    let fallback: (key: KeyBuilder, keyPrefix: KeyHasher)?
    let penaltyNanoseconds: Int64
    /// `limits`, and each tier's list (SPEC §2 `tiers`).
    let limits: [CompiledLimit]
    let tierLimits: [String: [CompiledLimit]]
    let defaultTierLimits: [CompiledLimit]?
    /// Every limit the rule can apply (`limits`, then the tiers'), each once.
    let allLimits: [CompiledLimit]
    /// `{limit}` of a request refused by `on_missing_key: deny`: the whole list.
    let limitsText: String
    /// The rule has rate limits (`limits`, or a tier's); a rule with only `concurrency` has none and is left to the
    /// ``ConcurrencyLimiter``.
    let hasRateLimits: Bool

    init(index: Int, configuration rule: RuleConfiguration, keySeed: StorageKey) {
        self.index = index
        self.configuration = rule
        self.name = rule.name
        self.isEnforced = rule.mode == .enforce
        self.algorithm = rule.algorithm
        self.exempt = rule.exempt
        self.onMissingKey = rule.onMissingKey
        self.cost = rule.cost
        self.tierPart = rule.tiers?.by
        self.countWhen = rule.countWhen
        self.headerMode = rule.response.rateLimitHeaders
        self.matcher = RuleMatcher(rule.match)
        self.key = KeyBuilder(parts: rule.key)
        self.namespace = Self.namespace(rule, parts: rule.key, label: "key")
        self.keyPrefix = Self.prefix(self.namespace, seed: keySeed)
        if case .fallback(let parts) = rule.onMissingKey {
            let namespace = Self.namespace(rule, parts: parts, label: "fallback")
            self.fallback = (KeyBuilder(parts: parts), Self.prefix(namespace, seed: keySeed))
        } else {
            self.fallback = nil
        }
        self.penaltyNanoseconds = rule.blockFor.nanoseconds
        func compile(_ list: [RateLimit]) -> [CompiledLimit] {
            list.map { limit in
                let policyName = list.count > 1 ? "\(rule.name)-\(limit.periodSeconds)" : rule.name
                return CompiledLimit(
                    limit: limit,
                    parameters: LimitParameters(limit, burst: rule.burst, delay: rule.algorithm == .gcra ? rule.delay : .zero),
                    policyName: policyName,
                    policyNameIsPlain: RateLimitHeaders.isPlainString(policyName)
                )
            }
        }
        self.limits = compile(rule.limits)
        self.tierLimits = rule.tiers.map { tiers in tiers.values.mapValues(compile) } ?? [:]
        self.defaultTierLimits = rule.tiers?.defaultLimits.map(compile)
        var all = self.limits
        for value in self.tierLimits.keys.sorted() { all += self.tierLimits[value]! }
        all += self.defaultTierLimits ?? []
        var seen = Set<RateLimit>()
        self.allLimits = all.filter { seen.insert($0.limit).inserted }
        self.limitsText = rule.limits.map(\.text).joined(separator: ";")
        self.hasRateLimits = !self.allLimits.isEmpty
    }


    /// The limits for a request whose tier key part has `tierValue` (SPEC §2 `tiers`).
    func limits(tierValue: String?) -> [CompiledLimit] {
        guard self.tierPart != nil else { return self.limits }
        if let tierValue, let limits = self.tierLimits[tierValue] { return limits }
        return self.defaultTierLimits ?? self.limits
    }

    /// The counter of `limit` for the key absorbed in `keyed`.
    func storageKey(_ keyed: KeyHasher, limit: RateLimit) -> StorageKey {
        var hasher = keyed
        hasher.combine(1)
        hasher.combine(UInt64(limit.count))
        hasher.combine(UInt64(limit.periodSeconds))
        return hasher.finalize()
    }

    /// The `block_for` penalty box of the key absorbed in `keyed`, `nil` without `block_for`.
    func penaltyKey(_ keyed: KeyHasher) -> StorageKey? {
        guard self.penaltyNanoseconds > 0 else { return nil }
        var hasher = keyed
        hasher.combine(2)
        return hasher.finalize()
    }

    /// The Redis Cluster hash tag of the key absorbed in `keyed` (``StoreItem/clusterTag``): alike for all its limits,
    /// never 0.
    func clusterTag(_ keyed: KeyHasher) -> UInt32 {
        var hasher = keyed
        hasher.combine(4)
        return max(1, UInt32(truncatingIfNeeded: hasher.finalize().high >> 32))
    }

    /// The digest of the key absorbed in `keyed` itself, for logs and the status page (``LimitOutcome/keyDigest``).
    /// Its own marker, so it never equals a counter's or a penalty box's name.
    func keyDigest(_ keyed: KeyHasher) -> StorageKey {
        var hasher = keyed
        hasher.combine(3)
        return hasher.finalize()
    }

    private static func prefix(_ namespace: String, seed: StorageKey) -> KeyHasher {
        var hasher = KeyHasher(seed: seed)
        hasher.combine(lengthPrefixed: namespace)
        return hasher
    }

    private static func namespace(_ rule: RuleConfiguration, parts: [KeyPart], label: String) -> String {
        var descriptor = "\(label)=\(parts.map(\.description).joined(separator: ","));"
        descriptor += "algorithm=\(rule.algorithm.rawValue);burst=\(rule.burst);"
        let owner: String
        if let shared = rule.shared, !shared.isEmpty {
            owner = "shared:\(shared)"
        } else {
            owner = rule.name
            descriptor += "limits=\(rule.limits.map(Self.limitDescriptor).joined(separator: ","));"
            if let tiers = rule.tiers {
                descriptor += "tiers=\(tiers.by.description):"
                for value in tiers.values.keys.sorted() {
                    descriptor += "\(value.utf8.count):\(value)=\(tiers.values[value]!.map(Self.limitDescriptor).joined(separator: ","))|"
                }
                descriptor += "default=\(tiers.defaultLimits.map { $0.map(Self.limitDescriptor).joined(separator: ",") } ?? "-")"
            }
        }
        return "\(owner)#\(Self.fingerprint(descriptor))"
    }

    private static func limitDescriptor(_ limit: RateLimit) -> String {
        "\(limit.count)/\(limit.periodSeconds)"
    }

    /// 64-bit FNV-1a, hex: stable across processes and machines (Redis keys must be).
    static func fingerprint(_ text: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01B3
        }
        let hex = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}
