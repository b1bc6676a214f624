import NIOCore
import SluiceLimiter

/// Writes commands as RESP arrays of bulk strings: `*N\r\n` then `$len\r\n<bytes>\r\n` per argument.
///
/// Inline commands are never used: bulk strings are binary-safe and need no escaping. Commands are encoded when they
/// are made (``RedisCommand``), not by a handler in the pipeline; batching many commands into one flush is the job
/// of ``RedisChannelHandler``.
public enum RESPEncoder {
    /// `arguments` as one RESP array of bulk strings.
    public static func encode(_ arguments: [ByteBuffer]) -> ByteBuffer {
        var size = 16
        for argument in arguments { size += argument.readableBytes + 16 }
        var out = ByteBufferAllocator().buffer(capacity: size)
        Self.writeHeader(UInt8(ascii: "*"), arguments.count, into: &out)
        for argument in arguments {
            Self.writeHeader(UInt8(ascii: "$"), argument.readableBytes, into: &out)
            out.writeImmutableBuffer(argument)
            out.writeInteger(UInt16(0x0D0A))
        }
        return out
    }

    /// `<type><decimal>\r\n`, without going through `String` (this runs once per argument).
    static func writeHeader(_ type: UInt8, _ value: Int, into out: inout ByteBuffer) {
        out.writeInteger(type)
        Self.writeDecimal(value, into: &out)
        out.writeInteger(UInt16(0x0D0A))
    }

    /// The digits of a non-negative `value`, most significant first.
    static func writeDecimal(_ value: Int, into out: inout ByteBuffer) {
        if value >= 10 { Self.writeDecimal(value / 10, into: &out) }
        out.writeInteger(UInt8(ascii: "0") + UInt8(value % 10))
    }
}

/// Writes a command as a RESP array of bulk strings straight into one buffer (see ``RedisCommand/init(name:encoded:)``).
struct RESPCommandWriter {
    private(set) var buffer: ByteBuffer

    init(count: Int, capacity: Int) {
        self.buffer = ByteBufferAllocator().buffer(capacity: capacity)
        RESPEncoder.writeHeader(UInt8(ascii: "*"), count, into: &self.buffer)
    }

    mutating func write(_ text: String) {
        var text = text
        text.withUTF8 { bytes in
            RESPEncoder.writeHeader(UInt8(ascii: "$"), bytes.count, into: &self.buffer)
            self.buffer.writeBytes(bytes)
        }
        self.buffer.writeInteger(UInt16(0x0D0A))
    }

    /// A Redis key: `prefix` then the digest in 32 lowercase hex digits (``StorageKey/description``, without
    /// building the string).
    mutating func write(prefix: String, key: StorageKey) {
        var prefix = prefix
        prefix.withUTF8 { bytes in
            RESPEncoder.writeHeader(UInt8(ascii: "$"), bytes.count + 32, into: &self.buffer)
            self.buffer.writeBytes(bytes)
        }
        self.writeHex(key.high)
        self.writeHex(key.low)
        self.buffer.writeInteger(UInt16(0x0D0A))
    }

    /// A Redis Cluster key: `prefix`, `{` the tag in 8 hex digits `}`, then the digest (``RedisKeySlot/key(prefix:tag:key:)``
    /// without building the string): every key with one tag lives in one hash slot.
    mutating func write(prefix: String, tag: UInt32, key: StorageKey) {
        var prefix = prefix
        prefix.withUTF8 { bytes in
            RESPEncoder.writeHeader(UInt8(ascii: "$"), bytes.count + 10 + 32, into: &self.buffer)
            self.buffer.writeBytes(bytes)
        }
        self.buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 10) { out in
            out[0] = UInt8(ascii: "{")
            for index in 0..<8 { out[1 + index] = RedisKeySlot.hexDigit(tag, index) }
            out[9] = UInt8(ascii: "}")
            return 10
        }
        self.writeHex(key.high)
        self.writeHex(key.low)
        self.buffer.writeInteger(UInt16(0x0D0A))
    }

    /// 16 hex digits in one write: this runs for every key of every decision.
    private mutating func writeHex(_ word: UInt64) {
        self.buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 16) { out in
            for index in 0..<16 {
                let nibble = UInt8(truncatingIfNeeded: word >> UInt64(60 - 4 * index)) & 0xF
                out[index] = nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10
            }
            return 16
        }
    }

    /// A bulk string of `values` as little-endian doubles, which the script reads with one `struct.unpack`
    /// (cheaper for Redis and for us than one decimal argument each). Exact for integers up to 2^53.
    mutating func writePacked(_ count: Int, _ values: (_ index: Int) -> Double) {
        RESPEncoder.writeHeader(UInt8(ascii: "$"), 8 * count, into: &self.buffer)
        for index in 0..<count {
            self.buffer.writeInteger(values(index).bitPattern, endianness: .little)
        }
        self.buffer.writeInteger(UInt16(0x0D0A))
    }

    /// An integer argument in decimal (Redis reads numbers from bulk strings).
    mutating func write(_ value: Int64) {
        let magnitude = value.magnitude
        var digits = 1
        var rest = magnitude
        while rest >= 10 {
            rest /= 10
            digits += 1
        }
        RESPEncoder.writeHeader(UInt8(ascii: "$"), digits + (value < 0 ? 1 : 0), into: &self.buffer)
        if value < 0 { self.buffer.writeInteger(UInt8(ascii: "-")) }
        Self.writeDigits(magnitude, into: &self.buffer)
        self.buffer.writeInteger(UInt16(0x0D0A))
    }

    private static func writeDigits(_ value: UInt64, into buffer: inout ByteBuffer) {
        if value >= 10 { Self.writeDigits(value / 10, into: &buffer) }
        buffer.writeInteger(UInt8(ascii: "0") + UInt8(value % 10))
    }
}
