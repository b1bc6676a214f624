/// The validated, immutable model of a Sluice YAML file (SPEC §2).
///
/// Built by ``ConfigLoader`` from a file; every value here has already been checked, so the
/// proxy and the limiter never see an invalid setting. All types are plain `Sendable` values:
/// a snapshot is shared by every event loop and swapped whole on reload.
public struct SluiceConfiguration: Sendable {
    /// Path of the file this snapshot was read from.
    public var sourcePath: String
    public var version: Int
    public var server: ServerConfiguration
    public var upstream: UpstreamConfiguration
    public var storage: StorageConfiguration
    /// The global blocked response; each rule carries its merged copy in ``RuleConfiguration/response``.
    public var response: ResponseConfiguration
    public var rules: [RuleConfiguration]
    /// The `jwt:` section (issue 15); `nil` without one (then no rule may use a `jwt:` key part).
    public var jwt: JWTConfiguration? = nil
    /// What `sluice check` prints on standard error without making the file invalid (the caveats of memcached
    /// storage), in file order. Defaults to none.
    public var warnings: [ConfigError] = []

    public init(
        sourcePath: String = "",
        version: Int = 1,
        server: ServerConfiguration = .init(),
        upstream: UpstreamConfiguration = .init(),
        storage: StorageConfiguration = .init(),
        response: ResponseConfiguration = .init(),
        rules: [RuleConfiguration] = []
    ) {
        self.sourcePath = sourcePath
        self.version = version
        self.server = server
        self.upstream = upstream
        self.storage = storage
        self.response = response
        self.rules = rules
    }
}

/// A `host:port` listener address. IPv6 hosts are written `[::1]:8080` in YAML and kept without brackets here.
public struct ListenAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public var description: String { self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)" }
}

public struct TLSFiles: Sendable, Hashable {
    public var cert: String
    public var key: String
    public init(cert: String, key: String) {
        self.cert = cert
        self.key = key
    }
}

/// `server:` (SPEC §2). Defaults match the spec's example file.
public struct ServerConfiguration: Sendable {
    public var listen: [ListenAddress]
    public var tls: TLSFiles?
    public var admin: ListenAddress?
    /// `nil` or empty: the admin listener is open.
    public var adminToken: String?
    /// Event loops; `nil` = `auto` (one per core).
    public var threads: Int?
    /// Defaults to 16384.
    public var maxHeaderBytes: Int
    /// 0 = unlimited. Defaults to 0.
    public var maxBodyBytes: Int
    public var timeouts: Timeouts
    public var trustedProxies: [CIDR]
    public var clientIPHeader: ClientIPHeader
    public var accessLog: AccessLog
    /// The most client connections the proxy's listeners hold open at once; `nil` (the default) is
    /// ``defaultMaxConnections``, 80 % of the open-file limit. See ``effectiveMaxConnections``.
    public var maxConnections: Int?
    /// The most connections the admin listener holds open at once. Defaults to 64.
    public var adminMaxConnections: Int
    /// HTTP/2 on TLS listeners: ALPN offers `h2, http/1.1` (issue 13). Defaults to `true`.
    public var http2: Bool = true
    /// Prior-knowledge cleartext HTTP/2 on plain listeners (a connection that opens with the HTTP/2 preface).
    /// Defaults to `false`.
    public var h2c: Bool = false
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` offered to HTTP/2 clients. Defaults to 100.
    public var http2MaxConcurrentStreams: Int = 100
    /// `grpc_rls` (issue 14): where Envoy's rate-limit service (`ShouldRateLimit` over gRPC) listens; `nil` (the
    /// default): it does not.
    public var grpcRLS: GRPCRateLimitServiceConfiguration? = nil

    public init(
        listen: [ListenAddress] = [ListenAddress(host: "127.0.0.1", port: 8080)],
        tls: TLSFiles? = nil,
        admin: ListenAddress? = nil,
        adminToken: String? = nil,
        threads: Int? = nil,
        maxHeaderBytes: Int = 16384,
        maxBodyBytes: Int = 0,
        timeouts: Timeouts = .init(),
        trustedProxies: [CIDR] = [],
        clientIPHeader: ClientIPHeader = .xForwardedFor,
        accessLog: AccessLog = .stdout,
        maxConnections: Int? = nil,
        adminMaxConnections: Int = 64
    ) {
        self.listen = listen
        self.tls = tls
        self.admin = admin
        self.adminToken = adminToken
        self.threads = threads
        self.maxHeaderBytes = maxHeaderBytes
        self.maxBodyBytes = maxBodyBytes
        self.timeouts = timeouts
        self.trustedProxies = trustedProxies
        self.clientIPHeader = clientIPHeader
        self.accessLog = accessLog
        self.maxConnections = maxConnections
        self.adminMaxConnections = adminMaxConnections
    }

    public struct Timeouts: Sendable, Hashable {
        /// Defaults to 10s.
        public var headerRead: Duration
        /// Defaults to 60s.
        public var idle: Duration
        /// Defaults to 2s.
        public var upstreamConnect: Duration
        /// Defaults to 30s.
        public var upstreamResponse: Duration
        /// Defaults to 15s.
        public var shutdown: Duration
        /// Longest wait for the next bytes of a request body once its head has arrived. Defaults to 60s.
        public var bodyRead: Duration
        /// Longest time a client may take none of the response bytes waiting for it. Defaults to 60s.
        public var send: Duration
        /// Longest time an upgraded connection (WebSocket) may carry no byte either way. Defaults to 1h.
        public var tunnelIdle: Duration

        public init(
            headerRead: Duration = .seconds(10),
            idle: Duration = .seconds(60),
            upstreamConnect: Duration = .seconds(2),
            upstreamResponse: Duration = .seconds(30),
            shutdown: Duration = .seconds(15),
            bodyRead: Duration = .seconds(60),
            send: Duration = .seconds(60),
            tunnelIdle: Duration = .seconds(3600)
        ) {
            self.headerRead = headerRead
            self.idle = idle
            self.upstreamConnect = upstreamConnect
            self.upstreamResponse = upstreamResponse
            self.shutdown = shutdown
            self.bodyRead = bodyRead
            self.send = send
            self.tunnelIdle = tunnelIdle
        }
    }
}

public enum ClientIPHeader: String, Sendable, Hashable {
    case xForwardedFor = "X-Forwarded-For"
    case xRealIP = "X-Real-IP"
    case forwarded = "Forwarded"
}

public enum AccessLog: Sendable, Hashable {
    case stdout
    case off
    case file(String)
}

/// `upstream:` (SPEC §2).
public struct UpstreamConfiguration: Sendable {
    /// `url` becomes one target; `targets` are used round robin.
    public var targets: [UpstreamTarget]
    /// Defaults to `true`.
    public var preserveHost: Bool
    /// Defaults to 64.
    public var maxIdlePerLoop: Int
    public var tls: UpstreamTLS
    /// `adaptive_concurrency` (issue 22): one limit on the requests in flight to this upstream that follows its
    /// latency; `nil` (the default): none.
    public var adaptiveConcurrency: AdaptiveConcurrencyConfiguration?

    public init(
        targets: [UpstreamTarget] = [UpstreamTarget(scheme: .http, host: "127.0.0.1", port: 3000)],
        preserveHost: Bool = true,
        maxIdlePerLoop: Int = 64,
        tls: UpstreamTLS = .init(),
        adaptiveConcurrency: AdaptiveConcurrencyConfiguration? = nil
    ) {
        self.targets = targets
        self.preserveHost = preserveHost
        self.maxIdlePerLoop = maxIdlePerLoop
        self.tls = tls
        self.adaptiveConcurrency = adaptiveConcurrency
    }
}

/// `upstream.adaptive_concurrency` (issue 22): the gradient controller's settings. The defaults are Envoy's adaptive
/// concurrency filter's, except ``min`` (Envoy's `min_concurrency` is 3).
public struct AdaptiveConcurrencyConfiguration: Sendable, Hashable {
    /// The limit while the minimum latency is measured, and the lowest it goes. Defaults to 8.
    public var min: Int
    /// The highest the limit goes. Defaults to 1000.
    public var max: Int
    /// How often the limit is recomputed (Envoy's `concurrency_update_interval`). Defaults to 100ms.
    public var sampleInterval: Duration
    /// How often the minimum latency is measured again (Envoy's `min_rtt_calc_params.interval`). Defaults to 60s.
    public var minRTTInterval: Duration
    /// Up to this fraction of ``minRTTInterval`` is added at random to each wait for a re-measurement. Defaults to
    /// 0.15 (15%).
    public var jitter: Double
    /// Completed requests that make one measurement of the minimum latency (`request_count`). Defaults to 50.
    public var minRTTSamples: Int
    /// How far above the minimum a latency may be and still count as unloaded. Defaults to 0.25 (25%).
    public var buffer: Double
    /// Which percentile of an interval's latencies stands for it (`sample_aggregate_percentile`). Defaults to 0.5.
    public var percentile: Double
    /// `Retry-After` of a refusal, rounded up to whole seconds (at least 1). Defaults to 1s.
    public var retryAfter: Duration

    public init(
        min: Int = 8,
        max: Int = 1000,
        sampleInterval: Duration = .milliseconds(100),
        minRTTInterval: Duration = .seconds(60),
        jitter: Double = 0.15,
        minRTTSamples: Int = 50,
        buffer: Double = 0.25,
        percentile: Double = 0.5,
        retryAfter: Duration = .seconds(1)
    ) {
        self.min = min
        self.max = max
        self.sampleInterval = sampleInterval
        self.minRTTInterval = minRTTInterval
        self.jitter = jitter
        self.minRTTSamples = minRTTSamples
        self.buffer = buffer
        self.percentile = percentile
        self.retryAfter = retryAfter
    }

    /// ``retryAfter`` in whole seconds, rounded up, at least 1.
    public var retryAfterSeconds: Int {
        let (seconds, attoseconds) = self.retryAfter.components
        return Swift.max(1, Int(seconds) + (attoseconds > 0 ? 1 : 0))
    }
}

public struct UpstreamTarget: Sendable, Hashable, CustomStringConvertible {
    public enum Scheme: String, Sendable, Hashable {
        case http
        case https
    }

    public var scheme: Scheme { didSet { self.hostHeader = Self.hostHeader(self.scheme, self.host, self.port) } }
    /// Host name or IP literal, IPv6 without brackets.
    public var host: String { didSet { self.hostHeader = Self.hostHeader(self.scheme, self.host, self.port) } }
    public var port: Int { didSet { self.hostHeader = Self.hostHeader(self.scheme, self.host, self.port) } }
    /// The value for a `Host` header that names this target; made once, not per request.
    public private(set) var hostHeader: String

    public init(scheme: Scheme, host: String, port: Int) {
        self.scheme = scheme
        self.host = host
        self.port = port
        self.hostHeader = Self.hostHeader(scheme, host, port)
    }

    private static func hostHeader(_ scheme: Scheme, _ host: String, _ port: Int) -> String {
        let h = host.utf8.contains(UInt8(ascii: ":")) ? "[\(host)]" : host
        let defaultPort = scheme == .http ? 80 : 443
        return port == defaultPort ? h : "\(h):\(port)"
    }

    public var description: String { "\(self.scheme.rawValue)://\(self.hostHeader)" }
}

public struct UpstreamTLS: Sendable, Hashable {
    /// Defaults to `true`.
    public var verify: Bool
    public var ca: String?
    public init(verify: Bool = true, ca: String? = nil) {
        self.verify = verify
        self.ca = ca
    }
}

/// `storage:` (SPEC §2, §8).
public struct StorageConfiguration: Sendable {
    public enum Kind: String, Sendable, Hashable {
        case memory
        case redis
        case memcached
    }

    public var kind: Kind
    /// Memory store: bound on tracked keys, LRU evicted. Defaults to 1,000,000.
    public var maxKeys: Int
    /// Set when `kind == .redis`.
    public var redis: RedisStorageConfiguration?
    /// Set when `kind == .memcached`.
    public var memcached: MemcachedStorageConfiguration?

    public init(
        kind: Kind = .memory,
        maxKeys: Int = 1_000_000,
        redis: RedisStorageConfiguration? = nil,
        memcached: MemcachedStorageConfiguration? = nil
    ) {
        self.kind = kind
        self.maxKeys = maxKeys
        self.redis = redis
        self.memcached = memcached
    }
}

/// How the Redis of `storage.url` is deployed.
public enum RedisDeployment: Sendable, Hashable {
    /// One server at `host:port` (`redis://`, `rediss://`).
    case single
    /// A primary found through Sentinel (`redis+sentinel://`): the sentinels are asked for the primary of
    /// `masterName`, and the store follows it across failovers (docs/behaviour.md, "Redis Sentinel").
    case sentinel(sentinels: [RedisSeed], masterName: String)
    /// A Redis Cluster (`redis+cluster://`, `rediss+cluster://`): the topology is read from the seeds.
    case cluster(seeds: [RedisSeed])
}

public struct RedisStorageConfiguration: Sendable, Hashable {
    public enum OnError: String, Sendable, Hashable {
        case allow
        case deny
        case local
    }

    /// The URL as written (with the password); never log it, use ``redactedURL``.
    public var url: String
    public var useTLS: Bool
    public var host: String
    public var port: Int
    public var username: String?
    public var password: String?
    public var database: Int
    /// One server, a primary found through Sentinel (then `host`/`port` name the first sentinel until the primary is
    /// known), or a Redis Cluster (then `host`/`port` name the first seed). Defaults to `.single`.
    public var deployment: RedisDeployment
    /// Sent with `AUTH` to the sentinels (`storage.sentinel_password`); `nil` sends none. The URL's password is the
    /// primary's only. Defaults to `nil`.
    public var sentinelPassword: String?
    /// Defaults to 4.
    public var poolSize: Int
    /// Defaults to 50ms.
    public var timeout: Duration
    /// Defaults to `"sluice:"`.
    public var keyPrefix: String
    /// Defaults to `.local`.
    public var onError: OnError
    /// Defaults to 1.
    public var instances: Int
    /// How long a concurrency slot's lease lives in Redis unless renewed (issue 22); renewed every third of it while
    /// its request runs, so the slots of an instance that died come back within one. Defaults to 30s.
    public var leaseTTL: Duration

    public init(
        url: String,
        useTLS: Bool = false,
        host: String = "127.0.0.1",
        port: Int = 6379,
        username: String? = nil,
        password: String? = nil,
        database: Int = 0,
        deployment: RedisDeployment = .single,
        sentinelPassword: String? = nil,
        poolSize: Int = 4,
        timeout: Duration = .milliseconds(50),
        keyPrefix: String = "sluice:",
        onError: OnError = .local,
        instances: Int = 1,
        leaseTTL: Duration = .seconds(30)
    ) {
        self.leaseTTL = leaseTTL
        self.url = url
        self.useTLS = useTLS
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
        self.deployment = deployment
        self.sentinelPassword = sentinelPassword
        self.poolSize = poolSize
        self.timeout = timeout
        self.keyPrefix = keyPrefix
        self.onError = onError
        self.instances = instances
    }

    public var redactedURL: String {
        if case .sentinel(let sentinels, let masterName) = self.deployment {
            let list = sentinels.map(\.description).joined(separator: ",")
            return "redis+sentinel://\(self.password == nil ? "" : ":***@")\(list)/\(masterName)/\(self.database)"
        }
        if case .cluster(let seeds) = self.deployment {
            let hosts = seeds.map { $0.host.contains(":") ? "[\($0.host)]:\($0.port)" : "\($0.host):\($0.port)" }
            return "\(self.useTLS ? "rediss" : "redis")+cluster://\(self.password == nil ? "" : ":***@")"
                + hosts.joined(separator: ",")
        }
        return "\(self.useTLS ? "rediss" : "redis")://\(self.password == nil ? "" : ":***@")\(self.host):\(self.port)/\(self.database)"
    }
}

/// What a blocked request gets (SPEC §2 `response:`, §5).
public struct ResponseConfiguration: Sendable, Hashable {
    public enum RateLimitHeaders: String, Sendable, Hashable {
        case draft
        case legacy
        case both
        case none
    }

    /// Defaults to 429.
    public var status: Int
    /// Defaults to `application/json`.
    public var contentType: String
    /// Defaults to `{"error":"rate_limited","rule":"{rule}","retry_after":{retry_after}}`.
    public var body: BodyTemplate
    /// Extra headers on blocked responses, in file order.
    public var headers: [HeaderField]
    /// Defaults to `.draft`.
    public var rateLimitHeaders: RateLimitHeaders

    public init(
        status: Int = 429,
        contentType: String = "application/json",
        body: BodyTemplate = BodyTemplate.defaultBody,
        headers: [HeaderField] = [],
        rateLimitHeaders: RateLimitHeaders = .draft
    ) {
        self.status = status
        self.contentType = contentType
        self.body = body
        self.headers = headers
        self.rateLimitHeaders = rateLimitHeaders
    }
}

public struct HeaderField: Sendable, Hashable {
    public var name: String
    public var value: String
    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}

/// A response body with `{rule}`, `{retry_after}` and `{limit}` placeholders, parsed once at load.
public struct BodyTemplate: Sendable, Hashable {
    public enum Part: Sendable, Hashable {
        case literal(String)
        case rule
        case retryAfter
        case limit
    }

    public var parts: [Part]
    /// The template as written in the file.
    public var source: String

    public init(parts: [Part], source: String) {
        self.parts = parts
        self.source = source
    }

    public static let defaultBody = BodyTemplate(
        parts: [
            .literal(#"{"error":"rate_limited","rule":""#), .rule, .literal(#"","retry_after":"#), .retryAfter,
            .literal("}"),
        ],
        source: #"{"error":"rate_limited","rule":"{rule}","retry_after":{retry_after}}"#
    )

    /// Fills in the placeholders.
    public func render(rule: String, retryAfter: Int?, limit: String) -> String {
        var out = ""
        for part in self.parts {
            switch part {
            case .literal(let s): out += s
            case .rule: out += rule
            case .retryAfter: out += retryAfter.map(String.init) ?? "0"
            case .limit: out += limit
            }
        }
        return out
    }
}

/// One entry of `rules:` with every option resolved (SPEC §2).
public struct RuleConfiguration: Sendable {
    public enum Mode: String, Sendable, Hashable {
        case enforce
        case shadow
    }

    public enum OnMissingKey: Sendable, Hashable {
        case skip
        case deny
        case fallback([KeyPart])
    }

    public enum Cost: Sendable, Hashable {
        case fixed(Int)
        /// `name` is lower-cased.
        case header(name: String, default: Int, max: Int)
    }

    /// `[a-z0-9_-]+`, unique in the file.
    public var name: String
    public var match: RuleMatch
    public var key: [KeyPart]
    public var limits: [RateLimit]
    /// Defaults to `.slidingWindow`.
    public var algorithm: Algorithm
    /// gcra / token_bucket only. Defaults to 0.
    public var burst: Int
    /// Defaults to `.fixed(1)`.
    public var cost: Cost
    public var mode: Mode
    public var onMissingKey: OnMissingKey
    public var exempt: [CIDR]
    /// `.zero` = no penalty box.
    public var blockFor: Duration
    /// `nil` = the rule counts alone.
    public var shared: String?
    /// gcra only; `.zero` = reject instead of holding.
    public var delay: Duration
    public var countWhen: StatusSet?
    public var tiers: Tiers?
    /// The global `response` with this rule's overrides applied.
    public var response: ResponseConfiguration
    /// `concurrency:` (issue 22): how many requests of one key may be in flight at once; `nil` = no cap.
    /// A rule with `concurrency` may have no `limits` (then ``limits`` is empty).
    public var concurrency: ConcurrencyConfiguration? = nil

    public init(
        name: String,
        match: RuleMatch = .init(),
        key: [KeyPart] = [.ip],
        limits: [RateLimit],
        algorithm: Algorithm = .slidingWindow,
        burst: Int = 0,
        cost: Cost = .fixed(1),
        mode: Mode = .enforce,
        onMissingKey: OnMissingKey = .skip,
        exempt: [CIDR] = [],
        blockFor: Duration = .zero,
        shared: String? = nil,
        delay: Duration = .zero,
        countWhen: StatusSet? = nil,
        tiers: Tiers? = nil,
        response: ResponseConfiguration = .init()
    ) {
        self.name = name
        self.match = match
        self.key = key
        self.limits = limits
        self.algorithm = algorithm
        self.burst = burst
        self.cost = cost
        self.mode = mode
        self.onMissingKey = onMissingKey
        self.exempt = exempt
        self.blockFor = blockFor
        self.shared = shared
        self.delay = delay
        self.countWhen = countWhen
        self.tiers = tiers
        self.response = response
    }
}

/// `match:` of a rule; every field given must hold.
public struct RuleMatch: Sendable, Hashable {
    /// Upper-cased; `nil` = any method.
    public var methods: [String]?
    public var path: PathPattern?
    /// Lower-cased, without port.
    public var host: String?
    /// Header name lower-cased; value `nil` means "present" (`*` in YAML).
    public var headers: [HeaderCondition]
    /// `match.jwt`: claims of the verified token (issue 15); a value `nil` means "present" (`*` in YAML).
    public var claims: [ClaimCondition] = []
    /// `match.descriptor` (issue 14): the rule applies to the descriptors of Envoy's rate-limit service that meet it,
    /// and never to a proxied request; `nil` (the default): the rule applies to proxied requests only.
    public var descriptor: DescriptorCondition? = nil

    public init(methods: [String]? = nil, path: PathPattern? = nil, host: String? = nil, headers: [HeaderCondition] = []) {
        self.methods = methods
        self.path = path
        self.host = host
        self.headers = headers
    }

    /// One `match.jwt` entry: the claim at ``path`` (dotted, `org.id`) equals ``value``, or, for a list claim,
    /// contains it.
    public struct ClaimCondition: Sendable, Hashable {
        public var path: String
        public var value: String?
        public init(path: String, value: String?) {
            self.path = path
            self.value = value
        }
    }

    public struct HeaderCondition: Sendable, Hashable {
        public var name: String
        public var value: String?
        public init(name: String, value: String?) {
            self.name = name
            self.value = value
        }
    }
}

/// A `match.path` value (SPEC §2 "Paths").
public enum PathPattern: Sendable, Hashable {
    /// `/login`
    case exact(String)
    /// `/api/*` stored as `/api`: matches `/api`, `/api/` and below, not `/apix`.
    case prefix(String)
    /// `/users/*/orders`: `nil` segments match any one segment.
    case glob([String?])
    /// `~^/v[0-9]+/` stored without the `~`; known to compile.
    case regex(String)
}

/// One key part (SPEC §2 "Keys").
public enum KeyPart: Sendable, Hashable, CustomStringConvertible {
    case ip
    /// `ip/N`: the first N bits.
    case ipPrefix(Int)
    /// Name lower-cased.
    case header(String)
    case query(String)
    case cookie(String)
    case path
    case method
    case host
    case const(String)
    /// `jwt:CLAIM`: a claim of the request's verified token (issue 15), a dotted path for nested claims (`org.id`).
    case jwt(String)
    /// `descriptor:KEY`: the value of the entry `KEY` of an Envoy rate-limit descriptor (issue 14); only in rules
    /// with `match.descriptor`. Case is kept.
    case descriptor(String)

    public var description: String {
        switch self {
        case .ip: "ip"
        case .ipPrefix(let n): "ip/\(n)"
        case .header(let n): "header:\(n)"
        case .query(let n): "query:\(n)"
        case .cookie(let n): "cookie:\(n)"
        case .path: "path"
        case .method: "method"
        case .host: "host"
        case .const(let t): "const:\(t)"
        case .jwt(let path): "jwt:\(path)"
        case .descriptor(let key): "descriptor:\(key)"
        }
    }
}

/// One parsed limit string item, e.g. `5/minute` or `1000 per 5 minutes`.
public struct RateLimit: Sendable, Hashable, CustomStringConvertible {
    public var count: Int
    /// The period in whole seconds (> 0).
    public var periodSeconds: Int
    /// As written in the file, trimmed, e.g. `5/minute`.
    public var text: String

    public init(count: Int, periodSeconds: Int, text: String) {
        self.count = count
        self.periodSeconds = periodSeconds
        self.text = text
    }

    public var description: String { self.text }
}

public enum Algorithm: String, Sendable, Hashable {
    case fixedWindow = "fixed_window"
    case slidingWindow = "sliding_window"
    case movingWindow = "moving_window"
    case tokenBucket = "token_bucket"
    case gcra
}

/// `count_when.status`: exact codes and classes such as `4xx`.
public struct StatusSet: Sendable, Hashable {
    public var codes: Set<Int>
    /// Hundreds digit of each `Nxx` entry.
    public var classes: Set<Int>

    public init(codes: Set<Int> = [], classes: Set<Int> = []) {
        self.codes = codes
        self.classes = classes
    }

    public func contains(_ status: Int) -> Bool {
        self.codes.contains(status) || self.classes.contains(status / 100)
    }
}

/// `tiers:` — limits chosen by a key part's value.
public struct Tiers: Sendable, Hashable {
    public var by: KeyPart
    public var values: [String: [RateLimit]]
    /// `nil`: an unlisted value uses the rule's `limits`.
    public var defaultLimits: [RateLimit]?
    /// `concurrency.max` by value, for the values whose mapping form gives one (issue 22); any other value uses
    /// ``defaultConcurrencyMax``, else the rule's `concurrency.max` (as ``values`` and ``defaultLimits`` do for limits).
    public var concurrencyMax: [String: Int] = [:]
    /// The `default` tier's `concurrency.max`; `nil`: an unlisted value uses the rule's.
    public var defaultConcurrencyMax: Int? = nil

    public init(by: KeyPart, values: [String: [RateLimit]], defaultLimits: [RateLimit]?) {
        self.by = by
        self.values = values
        self.defaultLimits = defaultLimits
    }
}

/// A rule's `concurrency:` (issue 22): at most ``max`` requests of one key in flight at once, from admission until
/// the exchange is over; optionally a short FIFO queue instead of an instant refusal.
public struct ConcurrencyConfiguration: Sendable, Hashable {
    /// Requests of one key in flight at once (a tier may choose another, ``Tiers/concurrencyMax``).
    public var max: Int
    /// `nil`: a request over the cap is refused at once.
    public var queue: Queue?
    /// `Retry-After` of a refusal, rounded up to whole seconds (at least 1). Defaults to 1s.
    public var retryAfter: Duration

    public struct Queue: Sendable, Hashable {
        /// Requests of one key that may wait at once; one more is refused at once (`queue_full`).
        public var size: Int
        /// The longest a request waits for a slot (`queue_timeout`). Defaults to 1s.
        public var timeout: Duration

        public init(size: Int, timeout: Duration = .seconds(1)) {
            self.size = size
            self.timeout = timeout
        }
    }

    public init(max: Int, queue: Queue? = nil, retryAfter: Duration = .seconds(1)) {
        self.max = max
        self.queue = queue
        self.retryAfter = retryAfter
    }

    /// ``retryAfter`` in whole seconds, rounded up, at least 1.
    public var retryAfterSeconds: Int {
        let (seconds, attoseconds) = self.retryAfter.components
        return Swift.max(1, Int(seconds) + (attoseconds > 0 ? 1 : 0))
    }
}
