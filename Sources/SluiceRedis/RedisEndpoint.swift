import SluiceConfig

/// Where a Redis server is and how to log in to it.
public struct RedisEndpoint: Sendable, Hashable {
    public var host: String
    public var port: Int
    /// An ACL user (Redis 6+); `nil` logs in as `default` when a password is set.
    public var username: String?
    /// Sent with `AUTH` before any other command; `nil` sends no `AUTH`.
    public var password: String?
    /// Selected with `SELECT` before any other command when not 0.
    public var database: Int
    /// `rediss://`: TLS through NIOSSL, the server's certificate verified against the system's
    /// trust roots (or ``tlsCAFile``) and its name when `host` is a name. Defaults to `false`.
    public var useTLS: Bool
    /// A PEM file of the certificates to trust instead of the system's (a private CA).
    public var tlsCAFile: String?

    public init(
        host: String = "127.0.0.1",
        port: Int = 6379,
        username: String? = nil,
        password: String? = nil,
        database: Int = 0,
        useTLS: Bool = false,
        tlsCAFile: String? = nil
    ) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
        self.useTLS = useTLS
        self.tlsCAFile = tlsCAFile
    }

    /// The endpoint of the `storage.redis` section.
    public init(_ configuration: RedisStorageConfiguration) {
        self.init(
            host: configuration.host,
            port: configuration.port,
            username: configuration.username,
            password: configuration.password,
            database: configuration.database,
            useTLS: configuration.useTLS
        )
    }
}

extension RedisEndpoint: CustomStringConvertible {
    /// `host:port/db`, never the password: safe for logs.
    public var description: String {
        "\(self.host):\(self.port)/\(self.database)"
    }
}
