import NIOCore
import NIOHPACK
import SluiceHTTP1

/// Turns the header block that opens an HTTP/2 stream into the bytes of an HTTP/1.1 request head, for the
/// ``ProxyConnectionHandler`` that serves the stream (issue 13).
///
/// The conversion is where a request could be smuggled: a field that HTTP/2 carries as an opaque length-prefixed
/// string becomes a line of text that the HTTP/1.1 parser, and then the upstream, split on CR, LF and `:`. So every
/// field that would change the meaning of the bytes is refused here, before anything is written (RFC 9113 §8.2,
/// §8.2.2, §8.3.1), never passed on for the HTTP/1.1 parser to second-guess:
/// - a name that is empty, not lowercase, or holds anything but token characters (a `:` or a space among them);
/// - a value with NUL, CR, LF or another control character but HTAB, or with whitespace at either end;
/// - the connection-specific fields `Connection`, `Keep-Alive`, `Proxy-Connection`, `Transfer-Encoding`, `Upgrade`,
///   and a `TE` other than `trailers`;
/// - a `Content-Length` that is not digits only, appears twice with different values, or is non-zero on a stream
///   that has already ended (the DATA frames are counted against it by ``HTTP2StreamBridgeHandler``);
/// - pseudo-header fields that are unknown, repeated, after a regular field, or missing (`:method`, `:scheme`,
///   `:path`); a `:path` that is not origin-form (or `*` for OPTIONS) or holds a byte outside visible ASCII; an
///   `:authority` with userinfo or any byte outside host and port characters; a `Host` field that differs from
///   `:authority`, or neither of them.
///
/// What is written: `METHOD PATH HTTP/1.1`, `Host` from `:authority` (or the `Host` field), the other fields in
/// order (several `Cookie` fields joined with `; `, RFC 9113 §8.2.3), and the body's framing: none when the stream
/// ended with its headers, the client's `Content-Length` when it sent one, else `Transfer-Encoding: chunked`
/// (the bridge then writes each DATA frame as one chunk).
struct HTTP2RequestHead {
    /// How the body that follows the head is framed in the HTTP/1.1 bytes.
    enum BodyFraming: Equatable {
        /// No body (the stream ended with its headers).
        case none
        /// `Content-Length: n`: exactly `n` DATA bytes must follow.
        case length(Int)
        /// `Transfer-Encoding: chunked`, written by the bridge.
        case chunked
    }

    /// A refused header block: answered with `status`, never forwarded.
    struct Refusal: Error, Equatable {
        var status: Int
        var reason: String
    }

    /// The HTTP/1.1 head, CRLF CRLF included.
    var bytes: ByteBuffer
    var framing: BodyFraming
    /// `:method`, as sent.
    var method: String

    /// Converts `headers`.
    ///
    /// - Parameters:
    ///   - endStream: the HEADERS frame ended the stream (no body follows).
    ///   - maxHeadBytes: `server.max_header_bytes`: a longer head is refused with 431 (as the HTTP/1.1 parser would).
    static func convert(
        _ headers: HPACKHeaders,
        endStream: Bool,
        maxHeadBytes: Int,
        allocator: ByteBufferAllocator
    ) -> Result<HTTP2RequestHead, Refusal> {
        var method: String?
        var scheme: String?
        var path: String?
        var authority: String?
        var host: String?
        var contentLength: String?
        var cookies: [String] = []
        var regularSeen = false
        var fieldBytes = 0

        func refuse(_ reason: String, _ status: Int = 400) -> Result<HTTP2RequestHead, Refusal> {
            .failure(Refusal(status: status, reason: reason))
        }

        for (name, value, _) in headers {
            fieldBytes += name.utf8.count + value.utf8.count + 4
            if fieldBytes > maxHeadBytes { return refuse("header list larger than max_header_bytes", 431) }
            if name.utf8.first == UInt8(ascii: ":") {
                if regularSeen { return refuse("pseudo-header \(name) after a regular field") }
                switch name {
                case ":method":
                    guard method == nil else { return refuse("two :method fields") }
                    method = value
                case ":scheme":
                    guard scheme == nil else { return refuse("two :scheme fields") }
                    scheme = value
                case ":path":
                    guard path == nil else { return refuse("two :path fields") }
                    path = value
                case ":authority":
                    guard authority == nil else { return refuse("two :authority fields") }
                    authority = value
                default:
                    return refuse("unknown pseudo-header field")
                }
                continue
            }
            regularSeen = true
            guard Self.isLowercaseToken(name) else { return refuse("invalid field name") }
            guard Self.isFieldValue(value) else { return refuse("invalid value in field \(name)") }
            switch name {
            case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
                return refuse("connection-specific field \(name)")
            case "te":
                guard value == "trailers" else { return refuse("te other than trailers") }
            case "host":
                guard host == nil else { return refuse("two host fields") }
                host = value
                continue
            case "content-length":
                guard !value.isEmpty, value.utf8.count <= 18, value.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
                    return refuse("invalid content-length")
                }
                if let previous = contentLength, previous != value { return refuse("two content-length values") }
                contentLength = value
                continue
            case "cookie":
                cookies.append(value)
                continue
            default:
                break
            }
        }

        guard let method else { return refuse("no :method") }
        guard Self.isToken(method) else { return refuse("invalid :method") }
        if method == "CONNECT" { return refuse("CONNECT is not supported", 405) }
        guard let scheme, !scheme.isEmpty, Self.isToken(scheme) else { return refuse("no valid :scheme") }
        guard let path else { return refuse("no :path") }
        guard Self.isOriginPath(path) || (path == "*" && method == "OPTIONS") else { return refuse("invalid :path") }
        if let authority {
            guard Self.isAuthority(authority) else { return refuse("invalid :authority") }
            if let host, host.lowercased() != authority.lowercased() {
                return refuse("host differs from :authority")
            }
        }
        guard let hostValue = authority ?? host else { return refuse("no :authority and no host") }
        guard Self.isAuthority(hostValue) else { return refuse("invalid host") }

        let framing: BodyFraming
        if let contentLength {
            let length = Int(contentLength)!
            if endStream, length != 0 { return refuse("content-length \(length) on a stream without a body") }
            framing = endStream ? .none : .length(length)
        } else {
            framing = endStream ? .none : .chunked
        }

        var buffer = allocator.buffer(capacity: fieldBytes + path.utf8.count + hostValue.utf8.count + 64)
        buffer.writeString(method)
        buffer.writeInteger(UInt8(ascii: " "))
        buffer.writeString(path)
        buffer.writeStaticString(" HTTP/1.1\r\nHost: ")
        buffer.writeString(hostValue)
        buffer.writeStaticString("\r\n")
        for (name, value, _) in headers {
            if name.utf8.first == UInt8(ascii: ":") { continue }
            switch name {
            case "host", "content-length", "cookie": continue
            default: break
            }
            buffer.writeString(name)
            buffer.writeStaticString(": ")
            buffer.writeString(value)
            buffer.writeStaticString("\r\n")
        }
        if !cookies.isEmpty {
            buffer.writeStaticString("cookie: ")
            buffer.writeString(cookies.joined(separator: "; "))
            buffer.writeStaticString("\r\n")
        }
        if let contentLength {
            buffer.writeStaticString("content-length: ")
            buffer.writeString(contentLength)
            buffer.writeStaticString("\r\n")
        } else if framing == .chunked {
            buffer.writeStaticString("transfer-encoding: chunked\r\n")
        }
        buffer.writeStaticString("\r\n")
        if buffer.readableBytes > maxHeadBytes { return refuse("request head larger than max_header_bytes", 431) }
        return .success(HTTP2RequestHead(bytes: buffer, framing: framing, method: method))
    }

    // MARK: character classes (RFC 9110 §5.1, §5.5; RFC 3986 §3.2)

    /// `tchar`: the HTTP/1.1 parser's own class (``HTTPByteClass``), so both front ends accept the same names.
    private static func isTokenByte(_ byte: UInt8) -> Bool {
        HTTPByteClass.isTokenByte(byte)
    }

    static func isToken(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.allSatisfy(Self.isTokenByte)
    }

    /// A field name as HTTP/2 requires it: a token with no uppercase letter (RFC 9113 §8.2.1).
    static func isLowercaseToken(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.allSatisfy { Self.isTokenByte($0) && !($0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z")) }
    }

    /// HTAB, SP, visible ASCII and obs-text, not starting or ending with whitespace (RFC 9113 §8.2.1).
    static func isFieldValue(_ text: String) -> Bool {
        let utf8 = text.utf8
        if let first = utf8.first, first == 0x20 || first == 0x09 { return false }
        if let last = utf8.last, last == 0x20 || last == 0x09 { return false }
        return utf8.allSatisfy { $0 == 0x09 || ($0 >= 0x20 && $0 != 0x7F) }
    }

    /// Origin form: `/` then visible ASCII only (no space, no control, no obs-text: nothing the request line splits on).
    static func isOriginPath(_ text: String) -> Bool {
        guard text.utf8.first == UInt8(ascii: "/") else { return false }
        return text.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }
    }

    /// Host and optional port: the bytes the HTTP/1.1 parser takes in `Host` (``HTTPByteClass``: unreserved,
    /// sub-delims but the comma, `%`, `:`, `[` and `]`); no userinfo. `:authority` becomes the `Host` line.
    static func isAuthority(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.allSatisfy(HTTPByteClass.isHostByte)
    }
}
