import Foundation
import SluiceConfig

/// A rule's `match:` compiled once per configuration load (SPEC §2 "Paths", `match:`).
///
/// Every condition given must hold. Paths are compared with the normalised path (``PathNormalizer``), hosts
/// case-insensitively without the port and one trailing dot (``HostName``), header values without their
/// surrounding whitespace (RFC 9110 §5.5), methods exactly (HTTP methods are case-sensitive).
///
/// `methods` listing `GET` also matches `HEAD` (SPEC §3 "Hostile clients"; nginx's `limit_except GET` does the
/// same): a HEAD request costs the upstream what a GET costs, so it must not pass a GET-only rule for free.
///
/// Decision where the spec is silent: one trailing `/` is ignored when comparing exact and glob paths, so a limit on
/// `/login` also covers `/login/` (many frameworks route both to the same handler; otherwise that slash is a bypass).
public struct RuleMatcher: Sendable {
    private enum CompiledPath: Sendable {
        case any
        case exact(String)
        case prefix(String)
        case glob([String?])
        case regex(SendableRegex)
    }

    private let methods: [String]?
    private let path: CompiledPath
    private let host: String?
    private let headers: [RuleMatch.HeaderCondition]
    private let claims: [RuleMatch.ClaimCondition]
    private let descriptor: RuleMatch.DescriptorCondition?

    /// Whether evaluating this matcher needs the normalised path.
    public var needsPath: Bool {
        if case .any = self.path { return false }
        return true
    }

    /// Compiles `match`; a regular expression that does not compile (the loader checks it) matches nothing.
    public init(_ match: RuleMatch) {
        if var methods = match.methods, methods.contains("GET"), !methods.contains("HEAD") {
            methods.append("HEAD")
            self.methods = methods
        } else {
            self.methods = match.methods
        }
        // The configured host and values are read as a request's are, so a stray dot or space cannot make a
        // condition that no request meets.
        self.host = match.host.map { HostName.name(of: $0[...]).lowercased() }
        self.headers = match.headers.map { condition in
            RuleMatch.HeaderCondition(name: condition.name, value: condition.value.map { String(FieldValue.trimmed($0)) })
        }
        self.claims = match.claims
        self.descriptor = match.descriptor
        switch match.path {
        case nil: self.path = .any
        case .exact(let p): self.path = .exact(Self.droppingTrailingSlash(p[...]).description)
        case .prefix(let p): self.path = .prefix(p)
        case .glob(let segments):
            var s = segments
            if s.count > 1, s.last == "" { s.removeLast() }
            self.path = .glob(s)
        case .regex(let pattern): self.path = .regex(SendableRegex(pattern))
        }
    }

    /// Whether the request satisfies every condition; `path` is the normalised path.
    public func matches<R: RequestAttributes>(_ request: R, path: Substring) -> Bool {
        // A descriptor of the gRPC rate-limit service (issue 14) meets only `match.descriptor` rules, a proxied
        // request only the others.
        if let descriptor = self.descriptor {
            return Self.matches(descriptor, request)
        } else if request.descriptorDomain != nil {
            return false
        }
        if let methods = self.methods, !methods.contains(request.method) { return false }
        if let host = self.host {
            guard let requestHost = request.host, Self.hostEquals(requestHost, host) else { return false }
        }
        for condition in self.headers {
            guard let value = request.trimmedHeader(condition.name) else { return false }
            if let expected = condition.value, value != expected[...] { return false }
        }
        if !self.claims.isEmpty {
            // A request without verified claims (no token, or a bad one) meets no `match.jwt` condition.
            guard let claims = request.verifiedClaims else { return false }
            for condition in self.claims where !claims.matches(condition.path, condition.value) { return false }
        }
        return self.matchesPath(path)
    }

    /// Whether the normalised path satisfies the path condition (true when there is none).
    public func matchesPath(_ path: Substring) -> Bool {
        switch self.path {
        case .any:
            return true
        case .exact(let expected):
            return Self.droppingTrailingSlash(path) == expected[...]
        case .prefix(let prefix):
            // `/api/*` is `.prefix("/api")`: `/api`, `/api/`, `/api/x`, but not `/apix`.
            guard path.utf8.starts(with: prefix.utf8) else { return false }
            let rest = path.utf8.dropFirst(prefix.utf8.count)
            return rest.isEmpty || rest.first == UInt8(ascii: "/")
        case .glob(let segments):
            var remaining = Self.droppingTrailingSlash(path).utf8.dropFirst()  // leading "/"
            for (index, expected) in segments.enumerated() {
                let end = remaining.firstIndex(of: UInt8(ascii: "/")) ?? remaining.endIndex
                let segment = remaining[remaining.startIndex..<end]
                if let expected {
                    guard segment.elementsEqual(expected.utf8) else { return false }
                } else if segment.isEmpty {
                    return false
                }
                let isLast = index == segments.count - 1
                if isLast { return end == remaining.endIndex }
                guard end < remaining.endIndex else { return false }
                remaining = remaining[remaining.index(after: end)...]
            }
            return segments.isEmpty
        case .regex(let regex):
            return regex.matches(path)
        }
    }

    /// `match.descriptor`: same domain, every entry present with an equal value (`nil`: any), and with `exact` no
    /// other key.
    private static func matches<R: RequestAttributes>(_ condition: RuleMatch.DescriptorCondition, _ request: R) -> Bool {
        guard let domain = request.descriptorDomain, domain == condition.domain else { return false }
        for entry in condition.entries {
            guard let value = request.descriptorValue(entry.key) else { return false }
            if let expected = entry.value, value != expected { return false }
        }
        return !condition.exact || request.descriptorKeyCount == condition.entries.count
    }

    private static func droppingTrailingSlash(_ path: Substring) -> Substring {
        path.utf8.count > 1 && path.utf8.last == UInt8(ascii: "/") ? path.dropLast() : path
    }

    /// Case-insensitive comparison of a `Host` header (``HostName/name(of:)``) with a lower-cased host name.
    static func hostEquals(_ header: String, _ expected: String) -> Bool {
        let name = HostName.name(of: header[...])
        guard name.utf8.count == expected.utf8.count else { return false }
        return zip(name.utf8, expected.utf8).allSatisfy { HostName.lowercase($0) == $1 }
    }
}

/// Helpers for `Host` header values and authorities.
enum HostName {
    /// The host name as matching and keys read it: without surrounding whitespace (RFC 9110 §5.5), without the
    /// port, and without one trailing dot (`api.example.com.` is the fully qualified spelling of
    /// `api.example.com`, as nginx's `ngx_http_validate_host` treats it). Case is kept.
    ///
    /// `API.example.com.:8080` → `API.example.com`; `[::1]:80` → `[::1]`. A slice, no copy.
    static func name(of host: Substring) -> Substring {
        var name = self.withoutPort(FieldValue.trimmed(host))
        if name.utf8.last == UInt8(ascii: ".") { name = name.dropLast() }
        return name
    }

    /// `example.com:8080` → `example.com`; `[::1]:80` → `[::1]`.
    static func withoutPort(_ host: Substring) -> Substring {
        let utf8 = host.utf8
        if utf8.first == UInt8(ascii: "[") {
            if let close = utf8.firstIndex(of: UInt8(ascii: "]")) { return host[...close] }
            return host
        }
        if let colon = utf8.firstIndex(of: UInt8(ascii: ":")) { return host[..<colon] }
        return host
    }

    static func lowercase(_ byte: UInt8) -> UInt8 {
        byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte + 32 : byte
    }

    /// The host name (``name(of:)``) lower-cased: the `host` key part.
    static func normalized(_ host: Substring) -> String {
        String(decoding: self.name(of: host).utf8.map(self.lowercase), as: UTF8.self)
    }
}

/// A compiled regular expression shared by every event loop.
///
/// `@unchecked Sendable` is safe: `NSRegularExpression` is immutable after initialisation and documented as safe to
/// use from several threads at once ("NSRegularExpression is thread safe" in Apple's class reference; the
/// swift-corelibs-foundation implementation wraps an ICU matcher cloned per match call). We only ever call the
/// non-mutating `firstMatch(in:options:range:)`.
struct SendableRegex: @unchecked Sendable {
    private let regex: NSRegularExpression?

    init(_ pattern: String) {
        self.regex = try? NSRegularExpression(pattern: pattern)
    }

    /// Whether the pattern is found anywhere in `text` (anchor with `^`/`$` to match the whole path).
    func matches(_ text: Substring) -> Bool {
        guard let regex = self.regex else { return false }
        let string = String(text)
        let range = NSRange(string.startIndex..<string.endIndex, in: string)
        return regex.firstMatch(in: string, options: [], range: range) != nil
    }
}
