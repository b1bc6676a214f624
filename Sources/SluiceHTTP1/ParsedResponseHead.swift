/// One parsed response head, as byte offsets into the bytes it was parsed from (no `String` per field).
///
/// Offsets count from the first byte given to ``HTTPResponseHeadParser/parse(_:)``; ``length`` bytes from there are
/// the whole head, its final empty line included, so the body (or the next response, or a tunnel) starts there.
public struct ParsedResponseHead: Sendable, Equatable {
    /// One field line: `name` and `value` (the value without its surrounding whitespace, RFC 9110 §5.5).
    public typealias Field = ParsedRequestHead.Field

    /// How the body is delimited (RFC 9112 §6.3); every ambiguous case is refused by the parser.
    public enum Framing: Sendable, Equatable {
        /// No body: a response to `HEAD`, a 1xx, 204 or 304. The next bytes are the next response (after a 1xx
        /// other than 101, the final response to the same request), or a tunnel after a 101.
        case none
        /// `Content-Length: n`.
        case length(Int)
        /// `Transfer-Encoding` with `chunked` as the last (and only chunked) coding.
        case chunked
        /// The body is every byte until the upstream closes the connection: no `Content-Length` and no
        /// `Transfer-Encoding`, or a `Transfer-Encoding` whose last coding is not `chunked`.
        case untilClose
    }

    /// `HTTP/1.x`: 0 or 1.
    public var minorVersion: Int
    /// The status code, 100 to 599.
    public var status: Int
    /// The three digits of the status code.
    public var statusRange: Range<Int>
    /// The reason phrase as sent, from the byte after the space that follows the code to the line's CR; empty when
    /// there is no reason (and when the space is missing: `HTTP/1.1 204\r\n`, which llhttp takes too).
    public var reason: Range<Int>
    /// The field lines in order.
    public var fields: [Field]
    /// Bytes of the head, leading empty lines and the final empty line included.
    public var length: Int
    public var framing: Framing
    /// `Connection` options that concern the proxy itself.
    public var connectionClose = false
    public var connectionKeepAlive = false
    public var connectionUpgrade = false
    /// The index in ``fields`` of the first `Upgrade` field (the protocol switched to, in a 101).
    public var upgradeField: Int?

    public init(
        minorVersion: Int,
        status: Int,
        statusRange: Range<Int>,
        reason: Range<Int>,
        fields: [Field],
        length: Int,
        framing: Framing
    ) {
        self.minorVersion = minorVersion
        self.status = status
        self.statusRange = statusRange
        self.reason = reason
        self.fields = fields
        self.length = length
        self.framing = framing
    }

    /// A 1xx other than 101: the final response to the same request follows.
    public var isInformational: Bool { self.status >= 100 && self.status < 200 && self.status != 101 }

    /// A 101: the bytes after the head belong to the protocol named by the `Upgrade` field (the parser refuses a
    /// 101 without one).
    public var isSwitchingProtocols: Bool { self.status == 101 }

    /// Whether the upstream keeps the connection open after this response (RFC 9112 §9.3): HTTP/1.1 without
    /// `Connection: close`, or HTTP/1.0 with `Connection: keep-alive`, and a body that does not end at the close.
    /// After a 101 the connection is a tunnel, never reused for HTTP.
    public var isKeepAlive: Bool {
        guard self.framing != .untilClose, !self.isSwitchingProtocols else { return false }
        return self.minorVersion >= 1 ? !self.connectionClose : self.connectionKeepAlive && !self.connectionClose
    }
}
