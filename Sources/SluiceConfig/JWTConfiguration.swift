/// The top-level `jwt:` section (issue 15): where a request's token is, which keys may sign it and which issuers and
/// audiences are accepted. Rules read a verified token's claims through `jwt:CLAIM` key parts and `match.jwt`.
///
/// Sluice does not authenticate: a request whose token is absent or fails a check is forwarded unchanged; only its
/// `jwt:` key parts are missing, so each rule's `on_missing_key` decides.
public struct JWTConfiguration: Sendable, Hashable {
    /// Where the token is read from.
    public enum TokenSource: Sendable, Hashable, CustomStringConvertible {
        /// `Authorization: Bearer TOKEN` (the scheme compared case-insensitively, RFC 6750 §2.1). The default.
        case bearer
        /// The whole (trimmed) value of header `NAME` (lower-cased); a leading `Bearer ` is dropped.
        case header(String)
        case cookie(String)
        case query(String)

        public var description: String {
            switch self {
            case .bearer: "bearer"
            case .header(let name): "header:\(name)"
            case .cookie(let name): "cookie:\(name)"
            case .query(let name): "query:\(name)"
            }
        }
    }

    /// The asymmetric algorithms a PEM public key may be given for.
    public enum KeyAlgorithm: String, Sendable, Hashable, CaseIterable {
        case rs256 = "RS256"
        case rs384 = "RS384"
        case rs512 = "RS512"
        case es256 = "ES256"
        case es384 = "ES384"
        case eddsa = "EdDSA"
    }

    /// A 1-based position in the configuration file, so key-loading errors (read later, by the verifier) carry
    /// `FILE:LINE:COLUMN` like every other error.
    public struct Position: Sendable, Hashable {
        public var line: Int
        public var column: Int

        public init(line: Int, column: Int) {
            self.line = line
            self.column = column
        }
    }

    /// One PEM public key file (`keys:` entry).
    public struct KeyFile: Sendable, Hashable {
        public var algorithm: KeyAlgorithm
        public var path: String
        /// When given, a token must name it in its header's `kid` to be checked with this key.
        public var kid: String?
        /// Where `file:` is written.
        public var position: Position

        public init(algorithm: KeyAlgorithm, path: String, kid: String? = nil, position: Position = .init(line: 1, column: 1)) {
            self.algorithm = algorithm
            self.path = path
            self.kid = kid
            self.position = position
        }
    }

    /// Defaults to ``TokenSource/bearer``.
    public var token: TokenSource
    /// The HS256 shared secret (usually `${ENV}`); at least 32 bytes. Defaults to none.
    public var hs256Secret: String?
    public var hs256SecretPosition: Position
    /// PEM public keys. Defaults to none.
    public var keys: [KeyFile]
    /// A local JWKS file (RFC 7517), read at start and on every reload (SIGHUP). Defaults to none.
    public var jwksFile: String?
    public var jwksFilePosition: Position
    /// Accepted `iss` values; empty: any (or none). Defaults to empty.
    public var issuers: [String]
    /// Accepted `aud` values (a token's `aud` may be one string or a list; one match is enough); empty: any.
    public var audiences: [String]
    /// Tolerance for `exp` and `nbf`. Defaults to 30 seconds.
    public var clockSkew: Duration
    /// Verified tokens kept per event loop (least recently used evicted first). Defaults to 10000.
    public var cacheSize: Int

    public init(
        token: TokenSource = .bearer,
        hs256Secret: String? = nil,
        keys: [KeyFile] = [],
        jwksFile: String? = nil,
        issuers: [String] = [],
        audiences: [String] = [],
        clockSkew: Duration = .seconds(30),
        cacheSize: Int = 10_000
    ) {
        self.token = token
        self.hs256Secret = hs256Secret
        self.hs256SecretPosition = Position(line: 1, column: 1)
        self.keys = keys
        self.jwksFile = jwksFile
        self.jwksFilePosition = Position(line: 1, column: 1)
        self.issuers = issuers
        self.audiences = audiences
        self.clockSkew = clockSkew
        self.cacheSize = cacheSize
    }
}

extension SluiceConfiguration {
    /// Every claim path (`org.id`) a rule reads: key parts, fallback parts, `tiers.by` and `match.jwt`, each once.
    public var jwtClaimPaths: [String] {
        var paths: [String] = []
        func add(_ parts: [KeyPart]) {
            for case .jwt(let path) in parts where !paths.contains(path) { paths.append(path) }
        }
        for rule in self.rules {
            add(rule.key)
            if case .fallback(let parts) = rule.onMissingKey { add(parts) }
            if let by = rule.tiers?.by { add([by]) }
            for condition in rule.match.claims where !paths.contains(condition.path) { paths.append(condition.path) }
        }
        return paths
    }
}
