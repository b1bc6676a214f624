import NIOCore

/// One Redis command, already in RESP: an array of bulk strings (never an inline command), so an argument may hold
/// any bytes, CR and LF included.
///
/// It is encoded when it is made, into one buffer that ``RedisChannelHandler`` hands to the socket as it is: no
/// encoder handler copies it again on the way out.
public struct RedisCommand: Sendable {
    /// The command name, for logs (never the arguments: they may hold secrets).
    public let name: String
    /// The whole command in RESP.
    public let encoded: ByteBuffer

    /// A command from text arguments, e.g. `RedisCommand("SET", key, value)`.
    public init(_ arguments: String...) {
        self.init(arguments: arguments.map { ByteBuffer(string: $0) })
    }

    /// A command from raw arguments (binary values, prebuilt keys).
    public init(arguments: [ByteBuffer]) {
        self.name = arguments.first.map { String(buffer: $0) } ?? ""
        self.encoded = RESPEncoder.encode(arguments)
    }

    /// A command written in RESP by the caller (see ``RESPCommandWriter``); `name` is for logs only.
    public init(name: String, encoded: ByteBuffer) {
        self.name = name
        self.encoded = encoded
    }
}

extension RedisCommand: CustomStringConvertible {
    /// The command name only: arguments may hold secrets (`AUTH`) or large values, so they
    /// never reach a log line.
    public var description: String {
        self.name.isEmpty ? "(empty command)" : self.name.uppercased()
    }
}
