import SluiceConfig

/// What the limiter may read of a request: the proxy conforms its request head to this.
///
/// The limiter never sees NIO types; a generic function over this protocol is specialised by
/// the compiler, so reading a header costs no existential box and no copy of the head.
///
/// Values are given as the parser delivered them; the limiter itself drops the whitespace around a field value
/// (RFC 9110 §5.5), and the port and one trailing dot of a host (``HostName``), so every implementation reads
/// a request the same way.
public protocol RequestAttributes {
    /// Method as sent, e.g. `GET`.
    var method: String { get }
    /// Request target: origin form (path and query, e.g. `/login?x=1`); an absolute-form target
    /// (`http://host/login`) is read as its path and query.
    var uri: String { get }
    /// The host the request is for (may include a port), `nil` if absent: the `Host` header, or the authority of
    /// an absolute-form target (RFC 9112 §3.2.2), which takes precedence over `Host`.
    var host: String? { get }
    /// The client IP computed per SPEC §4.
    var clientIP: IPAddress { get }
    /// First value of the header, name compared case-insensitively; `nil` if absent.
    func header(_ name: String) -> String?
    /// Calls `body` with the value of every field named `name` (a lower-case name, compared case-insensitively),
    /// one field at a time in the order received, until `body` returns `false`.
    func forEachHeaderValue(_ name: String, _ body: (String) -> Bool)
    /// The claims of the request's verified JWT (issue 15), `nil` when there is none (absent, or a check failed):
    /// then every `jwt:` key part is missing. Defaults to `nil`.
    var verifiedClaims: VerifiedClaims? { get }
    /// The domain of the Envoy rate-limit descriptor this request is (issue 14), `nil` for a proxied HTTP request
    /// (the default). Only rules with `match.descriptor` apply to a request with a domain, and only to those.
    var descriptorDomain: String? { get }
    /// The value of the descriptor's entry `key` (the first, if repeated), `nil` when absent. Defaults to `nil`.
    func descriptorValue(_ key: String) -> String?
    /// How many distinct keys the descriptor's entries have (for `match.descriptor.exact`). Defaults to 0.
    var descriptorKeyCount: Int { get }
    /// Whether ``clientIP`` is known: `false` for a descriptor without a `remote_address` entry, whose `ip` and
    /// `ip/N` key parts are then missing and whose `exempt` lists hold nothing. Defaults to `true`.
    var hasClientIP: Bool { get }
    /// The units the request takes whatever the rule's `cost` says: a descriptor's `hits_addend`. Defaults to `nil`.
    var costOverride: Int64? { get }
}

extension RequestAttributes {
    public var verifiedClaims: VerifiedClaims? { nil }
    public var descriptorDomain: String? { nil }
    public func descriptorValue(_ key: String) -> String? { nil }
    public var descriptorKeyCount: Int { 0 }
    public var hasClientIP: Bool { true }
    public var costOverride: Int64? { nil }

    /// The first value of header `name` without its surrounding whitespace (``FieldValue/trimmed(_:)``), `nil` if
    /// absent; a slice of the value, never a copy.
    @inline(__always)
    func trimmedHeader(_ name: String) -> Substring? {
        self.header(name).map(FieldValue.trimmed)
    }
}

/// Field values as RFC 9110 §5.5 defines them: leading and trailing whitespace (SP, HTAB) is not part of the value.
enum FieldValue {
    /// `value` without leading and trailing SP and HTAB: a slice of `value`, which is all of it when there is
    /// nothing to trim (no copy either way).
    @inline(__always)
    static func trimmed(_ value: String) -> Substring {
        self.trimmed(value[...])
    }

    /// ``trimmed(_:)-(String)`` of a slice.
    static func trimmed(_ value: Substring) -> Substring {
        let utf8 = value.utf8
        var start = utf8.startIndex
        var end = utf8.endIndex
        while start < end, Self.isWhitespace(utf8[start]) { start = utf8.index(after: start) }
        while end > start, Self.isWhitespace(utf8[utf8.index(before: end)]) { end = utf8.index(before: end) }
        return value[start..<end]
    }

    @inline(__always)
    static func isWhitespace(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t")
    }
}
