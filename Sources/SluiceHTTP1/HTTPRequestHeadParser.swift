/// A strict HTTP/1.1 request-head parser over raw bytes (RFC 9112 §2–§3, §5, §6), one pass, no `String`s.
///
/// Feed it every byte received since the head began, as often as bytes arrive: it is a byte-level state machine
/// that resumes where it stopped, so a head arriving one byte at a time costs linear time, and a byte that can
/// never be part of a valid head is refused as soon as it arrives (as llhttp does), not when the head ends. When
/// the final empty line arrives the framing is decided, refusing every ambiguity a proxy could be smuggled
/// through. It is at least as strict as llhttp (NIOHTTP1's decoder), which the differential tests check:
/// - line ends are CRLF (a bare LF or bare CR is refused), no obsolete line folding, no whitespace before a colon,
///   field names are tokens, values have no control character but HTAB (obs-text is allowed, as in llhttp);
/// - `Content-Length` is digits only and appears once; `Transfer-Encoding` must end with `chunked` (once), never
///   next to a `Content-Length`, never in an HTTP/1.0 request;
/// - HTTP/1.1 needs exactly one `Host`, HTTP/1.0 at most one; a `Host` value is host characters only (no list);
/// - only llhttp's methods, HTTP/1.0 and HTTP/1.1 (505 for other versions); the target is origin-form,
///   absolute-form (`http://…`), `*` (OPTIONS) or authority-form (CONNECT);
/// - at most ``maxHeadBytes`` bytes and ``maxFields`` fields (431).
///
/// Empty lines before a request line are skipped (RFC 9112 §2.2), and count toward the size limit.
public struct HTTPRequestHeadParser: Sendable {
    /// Largest head accepted (`server.max_header_bytes`).
    public var maxHeadBytes: Int
    /// Most field lines accepted (HAProxy's `tune.http.maxhdr` is 101).
    public var maxFields: Int

    /// What the next byte may be.
    private enum State: Sendable {
        /// Before the request line: a method character, or an empty line's CR.
        case requestStart
        /// After an empty line's CR before the request line.
        case leadingLF
        case method
        case target
        /// `HTTP/1.x`: how many of its 8 bytes have been read.
        case version(Int)
        case requestLineCR
        case requestLineLF
        /// The field lines and the final empty line, read by ``fieldLines``.
        case fields
    }

    private var state = State.requestStart
    /// Bytes already examined.
    private var position = 0
    /// The head being built, and what the fields said so far.
    private var head = ParsedRequestHead(method: 0..<0, target: 0..<0, minorVersion: 1, fields: [], length: 0, framing: .none)
    private var fieldLines = HTTPFieldLineParser()
    private var tokenStart = 0
    private var contentLength: Int? = nil
    private var transferEncoding = false
    private var chunkedSeen = false
    /// The method is CONNECT: what follows its head is tunnel data to llhttp, never a body.
    private var isConnect = false
    private var hostCount = 0
    private var connection = HTTPFieldSemantics.ConnectionOptions()

    public enum Result: Sendable, Equatable {
        /// The head is not complete yet; call again with more bytes.
        case needMoreBytes
        case head(ParsedRequestHead)
        case error(HTTPHeadError)
    }

    public init(maxHeadBytes: Int = 16384, maxFields: Int = 128) {
        self.maxHeadBytes = maxHeadBytes
        self.maxFields = maxFields
    }

    /// Forgets the head in progress (call before the next head, with bytes counted from its first byte).
    public mutating func reset() {
        self.state = .requestStart
        self.position = 0
        self.fieldLines.reset()
        self.contentLength = nil
        self.transferEncoding = false
        self.chunkedSeen = false
        self.isConnect = false
        self.hostCount = 0
        self.connection = HTTPFieldSemantics.ConnectionOptions()
        // The field list keeps its storage: once the previous head's copies are gone (the proxy resets before the next
        // request), no allocation per request.
        var fields = self.head.fields
        self.head = ParsedRequestHead(method: 0..<0, target: 0..<0, minorVersion: 1, fields: [], length: 0, framing: .none)
        fields.removeAll(keepingCapacity: true)
        self.head.fields = fields
    }

    /// Examines the bytes of `bytes` not seen yet (`bytes` holds every byte since the head began).
    ///
    /// After `.head` or `.error`, call ``reset()`` before the next head.
    public mutating func parse(_ bytes: UnsafeRawBufferPointer) -> Result {
        let limit = min(bytes.count, self.maxHeadBytes)
        var i = self.position
        defer { self.position = i }
        while i < limit {
            let byte = bytes[i]
            switch self.state {
            case .requestStart:
                if byte == 0x0D {
                    self.state = .leadingLF
                } else if HTTPByteClass.is(byte, HTTPByteClass.token) {
                    self.tokenStart = i
                    self.state = .method
                } else {
                    return .error(.malformed(byte == 0x0A ? .bareLineFeed : .requestLine))
                }
            case .leadingLF:
                guard byte == 0x0A else { return .error(.malformed(.bareCarriageReturn)) }
                self.state = .requestStart
            case .method:
                while i < limit, HTTPByteClass.is(bytes[i], HTTPByteClass.token) { i += 1 }
                guard i < limit else { continue }
                guard bytes[i] == 0x20 else { return .error(.malformed(.requestLine)) }
                self.head.method = self.tokenStart..<i
                guard Self.isKnownMethod(bytes, self.head.method) else { return .error(.malformed(.method)) }
                self.isConnect = HTTPFieldSemantics.equals(bytes, self.head.method, "CONNECT")
                self.tokenStart = i + 1
                self.state = .target
            case .target:
                while i < limit, HTTPByteClass.is(bytes[i], HTTPByteClass.target) { i += 1 }
                guard i < limit else { continue }
                guard bytes[i] == 0x20, i > self.tokenStart else {
                    return .error(.malformed(bytes[i] == 0x20 || bytes[i] == 0x0D ? .requestLine : .target))
                }
                self.head.target = self.tokenStart..<i
                if let reason = Self.checkTarget(bytes, self.head.target, method: self.head.method) {
                    return .error(.malformed(reason))
                }
                self.state = .version(0)
            case .version(let read):
                // "HTTP/" DIGIT "." DIGIT
                switch read {
                case 0...4:
                    guard byte == Self.versionPrefix[read] else { return .error(.malformed(.version)) }
                case 5, 7:
                    guard byte >= 0x30, byte <= 0x39 else { return .error(.malformed(.version)) }
                    if read == 5, byte != 0x31 { return .error(.versionNotSupported) }
                    if read == 7 {
                        guard byte == 0x30 || byte == 0x31 else { return .error(.versionNotSupported) }
                        self.head.minorVersion = Int(byte - 0x30)
                    }
                default:
                    guard byte == 0x2E else { return .error(.malformed(.version)) }
                }
                self.state = read == 7 ? .requestLineCR : .version(read + 1)
            case .requestLineCR:
                guard byte == 0x0D else { return .error(.malformed(byte == 0x0A ? .bareLineFeed : .requestLine)) }
                self.state = .requestLineLF
            case .requestLineLF:
                guard byte == 0x0A else { return .error(.malformed(.bareCarriageReturn)) }
                self.state = .fields
            case .fields:
                scanning: while true {
                    switch self.fieldLines.scan(bytes, &i, limit: limit, maxFields: self.maxFields) {
                    case .needMoreBytes:
                        break scanning
                    case .field:
                        if let error = self.fieldCompleted(bytes) { return .error(error) }
                    case .end(let length):
                        return self.headCompleted(length: length)
                    case .error(let error):
                        return .error(error)
                    }
                }
                continue
            }
            i += 1
        }
        return bytes.count >= self.maxHeadBytes ? .error(.tooLarge) : .needMoreBytes
    }

    private static let versionPrefix: [UInt8] = Array("HTTP/".utf8)

    /// The semantic checks of one complete field line (the last in ``fieldLines``).
    private mutating func fieldCompleted(_ bytes: UnsafeRawBufferPointer) -> HTTPHeadError? {
        let field = self.fieldLines.fields[self.fieldLines.fields.count - 1]
        let value = field.value
        switch HTTPFieldSemantics.knownField(bytes, field.name) {
        case .contentLength:
            guard self.contentLength == nil else { return .malformed(.repeatedContentLength) }
            // llhttp takes spaces around the digits but not tabs.
            guard let length = HTTPFieldSemantics.decimal(bytes, value), !self.fieldLines.valueHasTab else {
                return .malformed(.contentLength)
            }
            self.contentLength = length
        case .transferEncoding:
            // A tab anywhere is refused: llhttp reads `chunked<HTAB>` as another coding and refuses the request
            // after handing its head over.
            guard !self.fieldLines.valueHasTab else { return .malformed(.transferEncoding) }
            self.transferEncoding = true
            var coding = HTTPFieldSemantics.lastCoding(bytes, value)
            if coding == .chunkedNotLast { coding = .invalid }
            // Fields combine into one list (RFC 9110 §5.3): a coding after `chunked`, in this field or a later
            // one, means `chunked` is not last; so does `chunked` twice (RFC 9112 §6.1).
            if coding == .invalid || (self.chunkedSeen && coding != .empty) {
                return .malformed(.transferEncoding)
            }
            if coding == .chunkedLast { self.chunkedSeen = true }
        case .host:
            self.hostCount += 1
            guard self.hostCount == 1 else { return .malformed(.repeatedHost) }
            self.head.hostField = self.fieldLines.fields.count - 1
            for k in value where !HTTPByteClass.is(bytes[k], HTTPByteClass.host) { return .malformed(.host) }
        case .connection:
            HTTPFieldSemantics.readConnectionOptions(bytes, value, into: &self.connection)
        case .upgrade:
            self.head.hasUpgrade = true
        case .expect:
            if HTTPFieldSemantics.equalsLowercased(bytes, value, "100-continue") { self.head.expectsContinue = true }
        case .other:
            break
        }
        return nil
    }

    /// The framing and `Host` rules, once the whole head is there.
    private mutating func headCompleted(length: Int) -> Result {
        var head = self.head
        head.length = length
        if self.transferEncoding {
            guard self.contentLength == nil else { return .error(.malformed(.lengthAndTransferEncoding)) }
            guard head.minorVersion == 1 else { return .error(.malformed(.transferEncodingInHTTP10)) }
            guard self.chunkedSeen else { return .error(.malformed(.transferEncoding)) }
            head.framing = .chunked
        } else if let contentLength = self.contentLength {
            head.framing = .length(contentLength)
        }
        // RFC 9110 §9.3.6: a CONNECT request has no content. llhttp takes what follows its head as tunnel bytes
        // whatever the framing fields say, so a body framed here would be read differently by the two.
        if self.isConnect, head.framing != .none, head.framing != .length(0) {
            return .error(.malformed(.contentOnConnect))
        }
        if self.hostCount == 0 && head.minorVersion == 1 { return .error(.malformed(.missingHost)) }
        head.connectionClose = self.connection.close
        head.connectionKeepAlive = self.connection.keepAlive
        head.connectionUpgrade = self.connection.upgrade
        head.fields = self.fieldLines.fields
        return .head(head)
    }

    // MARK: pieces

    /// Origin-form, absolute-form (`scheme://`), `*` for OPTIONS, authority-form for CONNECT (RFC 9112 §3.2).
    private static func checkTarget(
        _ bytes: UnsafeRawBufferPointer,
        _ target: Range<Int>,
        method: Range<Int>
    ) -> HTTPHeadError.Reason? {
        let first = bytes[target.lowerBound]
        if HTTPFieldSemantics.equals(bytes, method, "CONNECT") {
            // Authority-form: host characters only.
            for i in target where !HTTPByteClass.is(bytes[i], HTTPByteClass.host) { return .target }
            return nil
        }
        if first == UInt8(ascii: "/") { return nil }
        if target.count == 1 && first == UInt8(ascii: "*") {
            return HTTPFieldSemantics.equals(bytes, method, "OPTIONS") ? nil : .target
        }
        // Absolute-form: a scheme of letters (llhttp takes no other), "://", then an authority of host characters
        // (no userinfo, no list) up to the path or query.
        var i = target.lowerBound
        while i < target.upperBound, HTTPByteClass.lowercased(bytes[i]) >= 0x61, HTTPByteClass.lowercased(bytes[i]) <= 0x7A {
            i += 1
        }
        guard i > target.lowerBound, i + 3 <= target.upperBound, bytes[i] == 0x3A, bytes[i + 1] == 0x2F,
            bytes[i + 2] == 0x2F
        else { return .target }
        i += 3
        let authorityStart = i
        while i < target.upperBound, bytes[i] != UInt8(ascii: "/"), bytes[i] != UInt8(ascii: "?") {
            guard HTTPByteClass.is(bytes[i], HTTPByteClass.host) else { return .target }
            i += 1
        }
        return i > authorityStart ? nil : .target
    }

    /// llhttp's HTTP methods (`HTTP_METHOD_MAP`): a method llhttp refuses is refused here too.
    static let methods: [StaticString] = [
        "DELETE", "GET", "HEAD", "POST", "PUT", "CONNECT", "OPTIONS", "TRACE", "COPY", "LOCK", "MKCOL", "MOVE",
        "PROPFIND", "PROPPATCH", "SEARCH", "UNLOCK", "BIND", "REBIND", "UNBIND", "ACL", "REPORT", "MKACTIVITY",
        "CHECKOUT", "MERGE", "M-SEARCH", "NOTIFY", "SUBSCRIBE", "UNSUBSCRIBE", "PATCH", "PURGE", "MKCALENDAR", "LINK",
        "UNLINK", "SOURCE", "QUERY",
    ]

    @inline(__always)
    private static func isKnownMethod(_ bytes: UnsafeRawBufferPointer, _ method: Range<Int>) -> Bool {
        // The common ones first.
        if HTTPFieldSemantics.equals(bytes, method, "GET") || HTTPFieldSemantics.equals(bytes, method, "POST") {
            return true
        }
        for known in Self.methods where HTTPFieldSemantics.equals(bytes, method, known) { return true }
        return false
    }
}
