import Foundation
import JWTKit
import SluiceConfig
import SluiceLimiter
import Synchronization

/// Checks a request's JWT and gives the claims the rules read (issue 15); made once per configuration load.
///
/// A check runs synchronously on the calling event loop, without a task hop: jwt-kit's `JWTKeyCollection.verify` is
/// `async` (an actor), but the algorithms it holds verify synchronously (`JWTAlgorithm.verify(_:signs:)`), so the
/// verifier asks the collection for them once per load (``prepare()``) and calls them directly. jwt-kit parses the
/// token (`DefaultJWTParser`); the claims (`exp`, `nbf`, `iss`, `aud`) are checked here, with ``clockSkew``.
///
/// Refused always: `alg: none`, and any `alg` no configured key is for. A key is used only for its own algorithm
/// (RS256 for an RS256 PEM, ...), so an HS256 token "signed" with an RSA public key as HMAC secret finds no key
/// (algorithm confusion); with `hs256_secret` set too, it is checked against that secret only, and fails.
///
/// Key choice: a token naming a `kid` is checked with the keys of that `kid` (and of its algorithm); if none has it,
/// with the keys given without a `kid`; if there are none either, ``JWTFailure/unknownKey``. A token without `kid` is
/// checked with every key of its algorithm.
public final class JWTVerifier: Sendable {
    /// Where the token is read from.
    public let token: JWTConfiguration.TokenSource
    private let ring: JWTKeyRing
    private let entries = Mutex<[JWTKeyRing.Entry]?>(nil)
    private let issuers: Set<String>
    private let audiences: Set<String>
    private let skew: Int64
    /// The claim paths the rules read, each with its components (`org.id` → `["org", "id"]`).
    private let paths: [(path: String, components: [String])]
    /// `jwt.cache_size`, for the caches the proxy makes per event loop.
    public let cacheSize: Int
    private let parser = DefaultJWTParser()

    /// Reads and parses the key files (see ``JWTKeyRing``); the keys are usable after ``prepare()``.
    ///
    /// - Throws: every unusable key file, as `FILE:LINE:COLUMN: message` at the line naming it.
    public init(configuration: SluiceConfiguration) throws(ConfigErrorList) {
        let jwt = configuration.jwt ?? JWTConfiguration()
        self.token = jwt.token
        self.ring = try JWTKeyRing(jwt, sourcePath: configuration.sourcePath)
        self.issuers = Set(jwt.issuers)
        self.audiences = Set(jwt.audiences)
        self.skew = Int64(jwt.clockSkew.components.seconds)
        self.paths = configuration.jwtClaimPaths.map { ($0, $0.split(separator: ".").map(String.init)) }
        self.cacheSize = jwt.cacheSize
    }

    /// The verifier of `configuration`, or `nil` when it has no `jwt:` section or no rule reads a claim (then no token
    /// is looked at).
    public static func make(for configuration: SluiceConfiguration) throws(ConfigErrorList) -> JWTVerifier? {
        guard configuration.jwt != nil, !configuration.jwtClaimPaths.isEmpty else { return nil }
        return try JWTVerifier(configuration: configuration)
    }

    /// Builds jwt-kit's algorithms for the keys (async: jwt-kit's key collection is an actor); call it once, before
    /// the verifier serves requests (start, reload). Until then every check fails with ``JWTFailure/keysNotLoaded``.
    public func prepare() async throws(ConfigErrorList) {
        let entries = try await self.ring.algorithms()
        self.entries.withLock { $0 = entries }
    }

    /// The wall clock in Unix seconds, as ``check(_:now:cache:)`` takes it.
    public static func now() -> Int64 {
        Int64(time(nil))
    }

    /// Whether ``prepare()`` has run.
    public var isPrepared: Bool { self.entries.withLock { $0 != nil } }

    // MARK: Requests

    /// The token of `request` where ``token`` says, `nil` when absent or empty.
    public func token<R: RequestAttributes>(in request: R) -> Substring? {
        let value: Substring?
        switch self.token {
        case .bearer:
            guard let field = request.header("authorization") else { return nil }
            value = Self.bearerToken(field[...])
        case .header(let name):
            guard let field = request.header(name) else { return nil }
            let trimmed = Self.trimmed(field[...])
            value = Self.bearerToken(trimmed) ?? trimmed
        case .cookie(let name):
            value = KeyBuilder.value(of: .cookie(name), request: request, path: "").map { $0[...] }
        case .query(let name):
            value = KeyBuilder.value(of: .query(name), request: request, path: "").map { $0[...] }
        }
        guard let value, !value.isEmpty else { return nil }
        return value
    }

    /// Checks the token of `request` at `now` (Unix seconds), through `cache`.
    public func check<R: RequestAttributes>(_ request: R, now: Int64, cache: JWTVerificationCache) -> JWTCheck {
        guard let token = self.token(in: request) else { return .failed(.absent) }
        return self.check(token: token, now: now, cache: cache)
    }

    /// Checks `token` at `now` (Unix seconds): from `cache` when it holds the token, else once, then cached.
    public func check(token: Substring, now: Int64, cache: JWTVerificationCache) -> JWTCheck {
        cache.adopt(self)
        let digest = JWTVerificationCache.digest(token)
        if let cached = cache.lookup(digest, now: now) { return cached }
        let (check, validUntil) = self.verify(token: token, now: now)
        switch check {
        case .verified:
            cache.insert(digest, check, validUntil: validUntil)
        case .failed(let failure) where failure.isPermanent:
            cache.insert(digest, check, validUntil: .max)
        case .failed:
            break
        }
        return check
    }

    /// Checks `token` without a cache: the signature, then the claims. The second value is when a verified token
    /// expires (`exp` + skew, `Int64.max` without `exp`).
    public func verify(token: Substring, now: Int64) -> (JWTCheck, validUntil: Int64) {
        let bytes = Array(token.utf8)
        let parsed: (header: JWTHeader, payload: ClaimSet, signature: Data)
        do {
            parsed = try self.parser.parse(bytes, as: ClaimSet.self)
        } catch {
            return (.failed(.malformed), 0)
        }
        guard let alg = parsed.header.alg else { return (.failed(.malformed), 0) }
        if alg.lowercased() == "none" { return (.failed(.algorithmNone), 0) }
        guard let entries = self.entries.withLock({ $0 }) else { return (.failed(.keysNotLoaded), 0) }
        let ofAlgorithm = entries.filter { $0.name == alg }
        if ofAlgorithm.isEmpty { return (.failed(.algorithmNotAllowed), 0) }
        let candidates: [JWTKeyRing.Entry]
        if let kid = parsed.header.kid {
            let named = ofAlgorithm.filter { $0.kid == kid }
            candidates = named.isEmpty ? ofAlgorithm.filter { $0.kid == nil } : named
            if candidates.isEmpty { return (.failed(.unknownKey), 0) }
        } else {
            candidates = ofAlgorithm
        }
        // The signing input is the token up to its second dot (the parser checked there are exactly two).
        guard let first = bytes.firstIndex(of: UInt8(ascii: ".")),
            let second = bytes[(first + 1)...].firstIndex(of: UInt8(ascii: "."))
        else { return (.failed(.malformed), 0) }
        let signingInput = bytes[..<second]
        let signature = parsed.signature
        guard candidates.contains(where: { (try? $0.algorithm.verify(signature, signs: signingInput)) == true }) else {
            return (.failed(.badSignature), 0)
        }
        return self.checkClaims(parsed.payload.fields, now: now)
    }

    private func checkClaims(_ claims: [String: JWTHeaderField], now: Int64) -> (JWTCheck, validUntil: Int64) {
        var validUntil = Int64.max
        if let exp = claims["exp"] {
            guard let seconds = Self.seconds(exp) else { return (.failed(.malformed), 0) }
            validUntil = seconds.addingReportingOverflow(self.skew).overflow ? .max : seconds + self.skew
            if now > validUntil { return (.failed(.expired), 0) }
        }
        if let nbf = claims["nbf"] {
            guard let seconds = Self.seconds(nbf) else { return (.failed(.malformed), 0) }
            if now.addingReportingOverflow(self.skew).partialValue < seconds { return (.failed(.notYetValid), 0) }
        }
        if !self.issuers.isEmpty {
            guard case .string(let iss)? = claims["iss"], self.issuers.contains(iss) else { return (.failed(.wrongIssuer), 0) }
        }
        if !self.audiences.isEmpty {
            let audiences: [String]
            switch claims["aud"] {
            case .string(let one)?: audiences = [one]
            case .array(let many)?: audiences = many.compactMap(\.asString)
            default: audiences = []
            }
            guard audiences.contains(where: self.audiences.contains) else { return (.failed(.wrongAudience), 0) }
        }
        var values: [String: VerifiedClaims.Value] = [:]
        for (path, components) in self.paths {
            if let value = Self.value(at: components, in: claims) { values[path] = value }
        }
        return (.verified(VerifiedClaims(values: values)), validUntil)
    }

    /// A NumericDate (RFC 7519 §2): whole seconds, fractions rounded down.
    private static func seconds(_ field: JWTHeaderField) -> Int64? {
        switch field {
        case .int(let value): return Int64(value)
        case .decimal(let value):
            guard value.isFinite, abs(value) < 9e15 else { return nil }
            return Int64(value.rounded(.down))
        default: return nil
        }
    }

    private static func value(at components: [String], in claims: [String: JWTHeaderField]) -> VerifiedClaims.Value? {
        guard var field = claims[components[0]] else { return nil }
        for component in components.dropFirst() {
            guard case .object(let object) = field, let next = object[component] else { return nil }
            field = next
        }
        if case .array(let items) = field { return .list(items.compactMap(Self.text)) }
        return Self.text(field).map(VerifiedClaims.Value.text)
    }

    private static func text(_ field: JWTHeaderField) -> String? {
        switch field {
        case .string(let value): value
        case .int(let value): String(value)
        case .decimal(let value): String(value)
        case .bool(let value): value ? "true" : "false"
        case .null, .array, .object: nil
        }
    }

    /// `Bearer TOKEN` (scheme case-insensitive, RFC 6750 §2.1): the token, `nil` for another scheme.
    static func bearerToken(_ field: Substring) -> Substring? {
        let value = Self.trimmed(field)
        let scheme = "bearer "
        guard value.utf8.count > scheme.utf8.count,
            value.utf8.prefix(scheme.utf8.count).elementsEqual(scheme.utf8, by: { ($0 | 0x20) == $1 })
        else { return nil }
        return Self.trimmed(value.dropFirst(scheme.count))
    }

    private static func trimmed(_ value: Substring) -> Substring {
        var value = value
        while let first = value.first, first == " " || first == "\t" { value = value.dropFirst() }
        while let last = value.last, last == " " || last == "\t" { value = value.dropLast() }
        return value
    }
}

/// A token's payload as jwt-kit decodes it: every claim, untyped.
struct ClaimSet: JWTPayload {
    var fields: [String: JWTHeaderField]

    init(from decoder: any Decoder) throws {
        self.fields = try [String: JWTHeaderField](from: decoder)
    }

    func encode(to encoder: any Encoder) throws {
        try self.fields.encode(to: encoder)
    }

    /// Not called: the claims are checked by ``JWTVerifier``.
    func verify(using algorithm: some JWTAlgorithm) async throws {}
}
