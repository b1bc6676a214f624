import SluiceConfig

/// A rule prepared once per configuration load: matcher, key builders, storage namespaces.
///
/// Storage keys look like `login#8f3a…␟5/60␟12:203.0.113.7|` (`␟` is U+001F):
/// - the **namespace** is the rule's name (or `shared:NAME` for `shared` rules) and a stable 64-bit FNV-1a
///   fingerprint of what gives the counters their meaning: key parts, algorithm, burst and, for rules that are not
///   shared, the whole limit list and tiers. A reload that leaves these unchanged builds the same keys, so the
///   counters carry over (SPEC §6); any change starts the rule afresh. Shared rules leave the limits out so that
///   rules with one `shared` name meet in one budget; each limit still has its own counter (as in Flask-Limiter).
/// - `COUNT/PERIOD` names the limit's counter within the key;
/// - the encoded key (``KeyBuilder``) is length-prefixed, so no value can reach another key or namespace.
/// The penalty box of `block_for` uses `NAMESPACE␟block␟ENCODED`.
struct CompiledRule: Sendable {
    let index: Int
    let configuration: RuleConfiguration
    let matcher: RuleMatcher
    let key: KeyBuilder
    let namespace: String
    /// For `on_missing_key: fallback`: the fallback parts and their own namespace.
    let fallback: (key: KeyBuilder, namespace: String)?
    let penaltyNanoseconds: Int64
    let parameters: [RateLimit: LimitParameters]

    static let separator: Character = "\u{1F}"

    init(index: Int, configuration rule: RuleConfiguration) {
        self.index = index
        self.configuration = rule
        self.matcher = RuleMatcher(rule.match)
        self.key = KeyBuilder(parts: rule.key)
        self.namespace = Self.namespace(rule, parts: rule.key, label: "key")
        if case .fallback(let parts) = rule.onMissingKey {
            self.fallback = (KeyBuilder(parts: parts), Self.namespace(rule, parts: parts, label: "fallback"))
        } else {
            self.fallback = nil
        }
        self.penaltyNanoseconds = rule.blockFor.nanoseconds
        var parameters: [RateLimit: LimitParameters] = [:]
        for limit in Self.allLimits(rule) {
            parameters[limit] = LimitParameters(limit, burst: rule.burst, delay: rule.algorithm == .gcra ? rule.delay : .zero)
        }
        self.parameters = parameters
    }

    var name: String { self.configuration.name }
    var isEnforced: Bool { self.configuration.mode == .enforce }

    /// Every limit the rule can apply: `limits`, then each tier's.
    static func allLimits(_ rule: RuleConfiguration) -> [RateLimit] {
        var all = rule.limits
        if let tiers = rule.tiers {
            for value in tiers.values.keys.sorted() { all += tiers.values[value]! }
            all += tiers.defaultLimits ?? []
        }
        var seen = Set<RateLimit>()
        return all.filter { seen.insert($0).inserted }
    }

    /// The limits for a request whose tier key part has `tierValue` (SPEC §2 `tiers`).
    func limits(tierValue: String?) -> [RateLimit] {
        guard let tiers = self.configuration.tiers else { return self.configuration.limits }
        if let tierValue, let limits = tiers.values[tierValue] { return limits }
        return tiers.defaultLimits ?? self.configuration.limits
    }

    func storageKey(namespace: String, limit: RateLimit, encodedKey: String) -> String {
        var key = namespace
        key.append(Self.separator)
        key += String(limit.count)
        key += "/"
        key += String(limit.periodSeconds)
        key.append(Self.separator)
        key += encodedKey
        return key
    }

    func penaltyKey(namespace: String, encodedKey: String) -> String? {
        guard self.penaltyNanoseconds > 0 else { return nil }
        var key = namespace
        key.append(Self.separator)
        key += "block"
        key.append(Self.separator)
        key += encodedKey
        return key
    }

    /// The policy name of `limit` in headers: the rule's name, or `RULE-WINDOW` when `limits` has several.
    func policyName(_ limit: RateLimit, among limits: [RateLimit]) -> String {
        limits.count > 1 ? "\(self.name)-\(limit.periodSeconds)" : self.name
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
