/// Why a memcached command or connection failed.
///
/// A closed enum on purpose, like ``RedisError``'s: the store maps each case to `on_error`, and a new case must make
/// that mapping fail to compile rather than fall into a default.
public enum MemcachedError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The server answered `CLIENT_ERROR ...`, `SERVER_ERROR ...` or `ERROR`; the line as sent.
    case server(String)
    /// No reply within the command timeout.
    case timeout
    /// Not connected, connection lost, or the pool cannot connect; the text says why.
    case unavailable(String)
    /// The reply could not be decoded, or answered another command than the one waiting (a desync): the connection
    /// is closed, the stream cannot be trusted.
    case protocolError(String)
    /// A command this client refuses to send (a key memcached would not take); nothing was sent.
    case invalidCommand(String)

    public var description: String {
        switch self {
        case .server(let line): "memcached error reply: \(line)"
        case .timeout: "memcached command timed out"
        case .unavailable(let why): "memcached unavailable: \(why)"
        case .protocolError(let why): "memcached protocol error: \(why)"
        case .invalidCommand(let why): "invalid memcached command: \(why)"
        }
    }
}
