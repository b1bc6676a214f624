/// Why a Redis command or connection failed.
///
/// A closed enum on purpose: the store maps each case to a decision of SPEC §8 (`on_error`),
/// and a new case must make that mapping fail to compile rather than fall into a default.
public enum RedisError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The server answered with an error reply, e.g. `NOSCRIPT No matching script...`; the
    /// message as sent (its first word is the error code, see ``code``).
    case server(String)
    /// No reply within the command timeout.
    case timeout
    /// Not connected, connection lost, or the pool cannot connect; the text says why.
    case unavailable(String)
    /// The reply could not be decoded (the connection is closed: the stream cannot be trusted).
    case protocolError(String)

    /// The error code of a server error (`NOSCRIPT`, `WRONGPASS`, `ERR`), `nil` otherwise.
    public var code: Substring? {
        guard case .server(let message) = self else { return nil }
        return message.split(separator: " ", maxSplits: 1).first
    }

    public var description: String {
        switch self {
        case .server(let message):
            return "Redis error reply: \(message)"
        case .timeout:
            return "Redis command timed out"
        case .unavailable(let why):
            return "Redis unavailable: \(why)"
        case .protocolError(let why):
            return "Redis protocol error: \(why)"
        }
    }
}
