import SluiceConfig

/// One descriptor of an Envoy `ShouldRateLimit` call (issue 14), as the limiter reads a request.
///
/// Only rules with `match.descriptor` apply to it (``RuleMatcher``). Its key parts are `descriptor:KEY` (the entry's
/// value), `ip` and `ip/N` (the `remote_address` entry Envoy's `remote_address` action sends, read as an address;
/// missing when the descriptor has none or it is not an address) and `const:TEXT`; every HTTP part is missing. Its
/// cost is ``cost`` whatever the rule's `cost` says.
public struct DescriptorRequest: RequestAttributes, Sendable {
    /// The request's `domain`.
    public let domain: String
    /// The descriptor's entries in the order sent.
    public let entries: [Entry]
    /// The units it takes: `hits_addend` (the descriptor's, else the request's), 0 read as 1.
    public let cost: Int64
    private let address: IPAddress?

    public struct Entry: Sendable, Hashable {
        public var key: String
        public var value: String
        public init(key: String, value: String) {
            self.key = key
            self.value = value
        }
    }

    public init(domain: String, entries: [Entry], cost: Int64) {
        self.domain = domain
        self.entries = entries
        self.cost = max(1, cost)
        self.address = entries.first { $0.key == "remote_address" }.flatMap { IPAddress($0.value) }
        self.descriptorKeyCount = Set(entries.map(\.key)).count
    }

    public var method: String { "" }
    public var uri: String { "/" }
    public var host: String? { nil }
    /// `remote_address` read as an address; the unspecified address when there is none (then ``hasClientIP`` is
    /// `false` and nothing reads it).
    public var clientIP: IPAddress { self.address ?? IPAddress(ipv4: 0) }
    public var hasClientIP: Bool { self.address != nil }
    public func header(_ name: String) -> String? { nil }
    public func forEachHeaderValue(_ name: String, _ body: (String) -> Bool) {}
    public var descriptorDomain: String? { self.domain }
    public var costOverride: Int64? { self.cost }

    public func descriptorValue(_ key: String) -> String? {
        self.entries.first { $0.key == key }?.value
    }

    /// How many distinct keys the entries have, counted once when made (each `exact` rule asks).
    public let descriptorKeyCount: Int
}
