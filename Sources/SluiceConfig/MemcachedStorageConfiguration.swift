/// `storage.kind: memcached` (issue 21): counters in one or more memcached servers that several Sluice instances
/// share, spoken to with memcached's meta protocol (memcached 1.6 and later).
///
/// The options are Redis's (``RedisStorageConfiguration``) less what memcached has no notion of (password,
/// database, TLS): `pool_size`, `timeout`, `key_prefix`, `on_error` and `instances` mean the same.
public struct MemcachedStorageConfiguration: Sendable, Hashable {
    /// What happens while a server cannot answer; the same three choices as Redis.
    public typealias OnError = RedisStorageConfiguration.OnError

    /// One memcached server of the URL.
    public struct Server: Sendable, Hashable, CustomStringConvertible {
        public var host: String
        public var port: Int

        public init(host: String, port: Int = 11211) {
            self.host = host
            self.port = port
        }

        /// `host:port` (`[v6]:port` for an IPv6 address): the name the ketama continuum hashes, and the `server`
        /// label of the per-server metrics.
        public var description: String {
            self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)"
        }
    }

    /// The URL as written: `memcached://host[:port][,host[:port]...]`. It holds no secret.
    public var url: String
    /// The servers in URL order, at least one; keys are spread over them by a ketama continuum.
    public var servers: [Server]
    /// Connections per server, spread over the event loops; at least one per loop is opened. Defaults to 4.
    public var poolSize: Int
    /// How long a command may wait for its reply. Defaults to 50ms.
    public var timeout: Duration
    /// Put before every key. Defaults to `"sluice:"`.
    public var keyPrefix: String
    /// Defaults to `.local`.
    public var onError: OnError
    /// With `on_error: local`, each instance allows COUNT/instances. Defaults to 1.
    public var instances: Int

    public init(
        url: String,
        servers: [Server] = [Server(host: "127.0.0.1")],
        poolSize: Int = 4,
        timeout: Duration = .milliseconds(50),
        keyPrefix: String = "sluice:",
        onError: OnError = .local,
        instances: Int = 1
    ) {
        self.url = url
        self.servers = servers
        self.poolSize = poolSize
        self.timeout = timeout
        self.keyPrefix = keyPrefix
        self.onError = onError
        self.instances = instances
    }

    /// The longest `key_prefix` memcached storage accepts: memcached keys hold at most 250 bytes, and Sluice appends
    /// 32 hex digits and, for window counters, `:` and a window number.
    public static let maximumKeyPrefixBytes = 200

    /// Where memcached storage is less exact than Redis (docs/behaviour.md); `sluice check` prints each as a warning.
    public static let caveats = [
        "memcached may evict counters under memory pressure before their window ends, and an evicted counter starts "
            + "over with a full budget: give memcached enough memory (-m) and watch its 'evictions' statistic",
        "memcached has no clock Sluice can use: every instance decides with its own clock, so the instances sharing "
            + "memcached must keep their clocks in step (NTP)",
    ]
}
