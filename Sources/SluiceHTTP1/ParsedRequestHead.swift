/// One parsed request head, as byte offsets into the bytes it was parsed from (no `String` per field).
///
/// Offsets count from the first byte given to ``HTTPRequestHeadParser/parse(_:)``; ``length`` bytes from there are
/// the whole head, its final empty line included, so the body (or the next request) starts at ``length``.
public struct ParsedRequestHead: Sendable, Equatable {
    /// One field line: `name` and `value` (the value without its surrounding whitespace, RFC 9110 §5.5).
    public struct Field: Sendable, Equatable {
        public var name: Range<Int>
        public var value: Range<Int>

        public init(name: Range<Int>, value: Range<Int>) {
            self.name = name
            self.value = value
        }
    }

    /// How the body is delimited (RFC 9112 §6.3); every ambiguous case is refused by the parser.
    public enum Framing: Sendable, Equatable {
        /// No body: the next bytes are the next request.
        case none
        /// `Content-Length: n`.
        case length(Int)
        /// `Transfer-Encoding` with `chunked` as the last (and only chunked) coding.
        case chunked
    }

    /// The method token.
    public var method: Range<Int>
    /// The request target as sent.
    public var target: Range<Int>
    /// `HTTP/1.x`: 0 or 1.
    public var minorVersion: Int
    /// The field lines in order.
    public var fields: [Field]
    /// Bytes of the head, leading empty lines and the final empty line included.
    public var length: Int
    public var framing: Framing
    /// The index in ``fields`` of the (single) `Host` field.
    public var hostField: Int?
    /// `Connection` options that concern the proxy itself.
    public var connectionClose = false
    public var connectionKeepAlive = false
    public var connectionUpgrade = false
    /// An `Upgrade` field is present.
    public var hasUpgrade = false
    /// `Expect: 100-continue`.
    public var expectsContinue = false

    public init(method: Range<Int>, target: Range<Int>, minorVersion: Int, fields: [Field], length: Int, framing: Framing) {
        self.method = method
        self.target = target
        self.minorVersion = minorVersion
        self.fields = fields
        self.length = length
        self.framing = framing
    }

    /// Whether the connection stays open after this exchange as far as the request is concerned (RFC 9112 §9.3).
    public var isKeepAlive: Bool {
        self.minorVersion >= 1 ? !self.connectionClose : self.connectionKeepAlive && !self.connectionClose
    }

    /// An upgrade request: `Upgrade` present and named by `Connection` (RFC 9110 §7.8).
    public var isUpgrade: Bool { self.hasUpgrade && self.connectionUpgrade }
}

/// Why a head was refused, and the status it is answered with.
public enum HTTPHeadError: Error, Sendable, Equatable {
    /// 400: the head breaks RFC 9112 syntax or is ambiguous.
    case malformed(Reason)
    /// 431: the head is larger than the limit, or has too many fields.
    case tooLarge
    /// 505: a well-formed version other than HTTP/1.0 and HTTP/1.1.
    case versionNotSupported

    public enum Reason: String, Sendable {
        case requestLine = "malformed request line"
        case method = "unknown method"
        case target = "malformed request target"
        case version = "malformed HTTP version"
        case bareLineFeed = "line feed without carriage return"
        case bareCarriageReturn = "carriage return without line feed"
        case fieldName = "malformed field name"
        case whitespaceBeforeColon = "whitespace between field name and colon"
        case obsoleteLineFolding = "obsolete line folding"
        case fieldValue = "control character in field value"
        case contentLength = "malformed Content-Length"
        case repeatedContentLength = "more than one Content-Length"
        case lengthAndTransferEncoding = "both Content-Length and Transfer-Encoding"
        case transferEncoding = "Transfer-Encoding without chunked as the final coding"
        case transferEncodingInHTTP10 = "Transfer-Encoding in an HTTP/1.0 request"
        case contentOnConnect = "a CONNECT request with content (Transfer-Encoding or a non-zero Content-Length)"
        case missingHost = "no Host"
        case repeatedHost = "more than one Host"
        case host = "malformed Host"
        // Responses (HTTPResponseHeadParser): every refusal there means 502 to the client.
        case statusLine = "malformed status line"
        case statusCode = "status code outside 100-599"
        case reasonPhrase = "control character in reason phrase"
        case transferEncodingInHTTP10Response = "Transfer-Encoding in an HTTP/1.0 response"
        case bodyOnBodilessStatus = "Transfer-Encoding or a non-zero Content-Length on a 1xx or 204 response"
        case switchingWithoutUpgrade = "101 without Upgrade"
    }

    /// The status code the client is answered with when its request head is refused (a refused response head is
    /// answered with 502, whatever the case).
    public var status: Int {
        switch self {
        case .malformed: return 400
        case .tooLarge: return 431
        case .versionNotSupported: return 505
        }
    }
}
