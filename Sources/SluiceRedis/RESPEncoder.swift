import NIOCore

/// Encodes a ``RedisCommand`` as a RESP array of bulk strings: `*N\r\n` then `$len\r\n<bytes>\r\n`
/// per argument.
///
/// Inline commands are never used: bulk strings are binary-safe and need no escaping. The
/// encoder only writes; batching many commands into one flush is the job of
/// ``RedisChannelHandler``.
public struct RESPEncoder: MessageToByteEncoder {
    public typealias OutboundIn = RedisCommand

    public init() {}

    public func encode(data command: RedisCommand, out: inout ByteBuffer) {
        var size = 16
        for argument in command.arguments { size += argument.readableBytes + 16 }
        out.reserveCapacity(minimumWritableBytes: size)
        Self.writeHeader(UInt8(ascii: "*"), command.arguments.count, into: &out)
        for argument in command.arguments {
            Self.writeHeader(UInt8(ascii: "$"), argument.readableBytes, into: &out)
            out.writeImmutableBuffer(argument)
            out.writeInteger(UInt16(0x0D0A))
        }
    }

    /// `<type><decimal>\r\n`, without going through `String` (this runs once per argument).
    private static func writeHeader(_ type: UInt8, _ value: Int, into out: inout ByteBuffer) {
        out.writeInteger(type)
        Self.writeDecimal(value, into: &out)
        out.writeInteger(UInt16(0x0D0A))
    }

    /// The digits of a non-negative `value`, most significant first.
    private static func writeDecimal(_ value: Int, into out: inout ByteBuffer) {
        if value >= 10 { Self.writeDecimal(value / 10, into: &out) }
        out.writeInteger(UInt8(ascii: "0") + UInt8(value % 10))
    }
}
