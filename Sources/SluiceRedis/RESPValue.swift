import NIOCore

/// One value of the Redis serialization protocol, RESP2 or RESP3.
///
/// Replies are decoded into this enum whole (``RESPDecoder``), so a caller switches over a
/// plain value and never sees a partial reply. RESP2's two kinds of null (null bulk string,
/// null array) are kept apart from RESP3's `_` null because a caller may need to tell them
/// apart when comparing with `redis-cli` output; the conveniences treat all three as absent.
public enum RESPValue: Sendable, Hashable {
    /// `+OK`: a short text without CR or LF.
    case simpleString(String)
    /// `-ERR ...` or a RESP3 blob error `!`: the message as sent (the error code is its first word).
    case error(String)
    /// `:42`.
    case integer(Int64)
    /// `$5\r\nhello`: binary-safe bytes; `nil` is RESP2's null bulk string `$-1`.
    case bulkString(ByteBuffer?)
    /// `*2\r\n...`; `nil` is RESP2's null array `*-1`.
    case array([RESPValue]?)
    /// RESP3 `_`.
    case null
    /// RESP3 `,1.5` (also `inf`, `-inf`, `nan`).
    case double(Double)
    /// RESP3 `#t` / `#f`.
    case boolean(Bool)
    /// RESP3 `(` followed by the digits as sent (they may not fit any fixed-width integer).
    case bigNumber(String)
    /// RESP3 `=15\r\ntxt:Some string`: the text only; the three-letter format (`txt`, `mkd`)
    /// is a display hint and is dropped.
    case verbatimString(String)
    /// RESP3 `%`: keys and values alternating, in the order sent (keys need not be hashable
    /// strings, and order matters for some commands).
    case map([RESPValue])
    /// RESP3 `~`, in the order sent.
    case set([RESPValue])
    /// RESP3 `>`: out-of-band data (pub/sub, client tracking), never a command's reply.
    case push([RESPValue])
}

extension RESPValue {
    /// The value of an integer reply, or of a string reply holding only a decimal integer
    /// (Redis sends some numbers as strings, e.g. `CONFIG GET`, `GET` of a counter).
    public var int: Int64? {
        switch self {
        case .integer(let value):
            return value
        case .simpleString, .bulkString, .bigNumber:
            return self.string.flatMap { Int64($0) }
        default:
            return nil
        }
    }

    /// The text of a simple, bulk or verbatim string or a big number (bulk bytes read as UTF-8); `nil` for
    /// nulls and for every other type.
    public var string: String? {
        switch self {
        case .simpleString(let text), .verbatimString(let text), .bigNumber(let text):
            return text
        case .bulkString(let bytes?):
            return String(buffer: bytes)
        default:
            return nil
        }
    }

    /// The elements of an array, set or push reply; `nil` for a null array and every other type.
    public var array: [RESPValue]? {
        switch self {
        case .array(let elements?), .set(let elements), .push(let elements):
            return elements
        default:
            return nil
        }
    }

    /// `true` for every kind of null (RESP2 null bulk string and null array, RESP3 `_`).
    public var isNull: Bool {
        switch self {
        case .null, .bulkString(nil), .array(nil):
            return true
        default:
            return false
        }
    }
}
