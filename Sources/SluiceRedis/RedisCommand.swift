import NIOCore

/// One Redis command: its name and arguments, each sent as a binary-safe bulk string.
///
/// Commands are always sent as RESP arrays of bulk strings (never inline commands), so an
/// argument may hold any bytes, CR and LF included.
public struct RedisCommand: Sendable {
    /// The command name first, then its arguments.
    public var arguments: [ByteBuffer]
    /// The whole command already in RESP (a hot path writes it into one buffer instead of one per argument);
    /// when set, `arguments` holds only the name, for logs.
    public var encoded: ByteBuffer?

    /// A command from text arguments, e.g. `RedisCommand("SET", key, value)`.
    public init(_ arguments: String...) {
        self.arguments = arguments.map { ByteBuffer(string: $0) }
    }

    /// A command from raw arguments (binary values, prebuilt keys).
    public init(arguments: [ByteBuffer]) {
        self.arguments = arguments
    }

    /// A command written in RESP by the caller (an array of bulk strings); `name` is for logs only.
    public init(name: String, encoded: ByteBuffer) {
        self.arguments = [ByteBuffer(string: name)]
        self.encoded = encoded
    }
}

extension RedisCommand: CustomStringConvertible {
    /// The command name only: arguments may hold secrets (`AUTH`) or large values, so they
    /// never reach a log line.
    public var description: String {
        guard let name = self.arguments.first else { return "(empty command)" }
        return String(buffer: name).uppercased()
    }
}
