/// A strict HTTP/1.1 request-head parser over raw bytes (RFC 9112 §2–§3, §5, §6), one pass, no `String`s.
///
/// Feed it every byte received since the head began, as often as bytes arrive: it remembers how far it has looked
/// for the end of the head, so a head that arrives one byte at a time costs linear time. Once the final empty line
/// is there it parses the head in one pass and decides its framing, refusing every ambiguity a proxy could be
/// smuggled through. It is at least as strict as llhttp (NIOHTTP1's decoder), which the differential tests check:
/// - line ends are CRLF (a bare LF or bare CR is refused), no obsolete line folding, no whitespace before a colon,
///   field names are tokens, values have no control character but HTAB (obs-text is allowed, as in llhttp);
/// - `Content-Length` is digits only and appears once; `Transfer-Encoding` must end with `chunked` (once), never
///   next to a `Content-Length`, never in an HTTP/1.0 request;
/// - HTTP/1.1 needs exactly one `Host`, HTTP/1.0 at most one; a `Host` value is host characters only (no list);
/// - only HTTP/1.0 and HTTP/1.1 (505 for other versions); the target is origin-form, absolute-form (`http://…`),
///   `*` (OPTIONS) or authority-form (CONNECT);
/// - at most ``maxHeadBytes`` bytes and ``maxFields`` fields (431).
///
/// Empty lines before a request line are skipped (RFC 9112 §2.2), and count toward the size limit.
public struct HTTPRequestHeadParser: Sendable {
    /// Largest head accepted (`server.max_header_bytes`).
    public var maxHeadBytes: Int
    /// Most field lines accepted (HAProxy's `tune.http.maxhdr` is 101).
    public var maxFields: Int
    /// Where the search for the end of the head resumes.
    private var scanned = 0
    /// Fields of the last head, kept so the next parse reuses their storage.
    private var fieldStorage: [ParsedRequestHead.Field] = []

    public enum Result: Sendable, Equatable {
        /// The head is not complete yet; call again with more bytes.
        case needMoreBytes
        case head(ParsedRequestHead)
        case error(HTTPHeadError)
    }

    public init(maxHeadBytes: Int = 16384, maxFields: Int = 128) {
        self.maxHeadBytes = maxHeadBytes
        self.maxFields = maxFields
        self.fieldStorage.reserveCapacity(16)
    }

    /// Forgets the head in progress (call before the next head).
    public mutating func reset() {
        self.scanned = 0
    }

    /// Looks at `bytes` (every byte since the head began) for a complete head.
    public mutating func parse(_ bytes: UnsafeRawBufferPointer) -> Result {
        var start = 0
        // Leading empty lines (RFC 9112 §2.2).
        while start + 1 < bytes.count, bytes[start] == 0x0D, bytes[start + 1] == 0x0A { start += 2 }
        if start < bytes.count, bytes[start] == 0x0A { return .error(.malformed(.bareLineFeed)) }
        var index = max(self.scanned, start)
        var end: Int? = nil
        while index < bytes.count {
            let byte = bytes[index]
            if byte == 0x0A {
                guard index > start, bytes[index - 1] == 0x0D else { return .error(.malformed(.bareLineFeed)) }
                if index - start >= 3, bytes[index - 2] == 0x0A, bytes[index - 3] == 0x0D {
                    end = index + 1
                    break
                }
            } else if index > start, bytes[index - 1] == 0x0D {
                return .error(.malformed(.bareCarriageReturn))
            }
            index += 1
        }
        guard let end else {
            // Keep the last byte unexamined when it is a CR: the LF that completes it may come next.
            self.scanned = index
            return bytes.count > self.maxHeadBytes ? .error(.tooLarge) : .needMoreBytes
        }
        self.scanned = 0
        guard end <= self.maxHeadBytes else { return .error(.tooLarge) }
        return self.parseHead(bytes, from: start, end: end)
    }

    // MARK: the head, complete

    private mutating func parseHead(_ bytes: UnsafeRawBufferPointer, from start: Int, end: Int) -> Result {
        // Request line: method SP target SP HTTP/1.x CRLF (RFC 9112 §3).
        var i = start
        while i < end, HTTPByteClass.is(bytes[i], HTTPByteClass.token) { i += 1 }
        guard i > start, bytes[i] == 0x20 else { return .error(.malformed(.requestLine)) }
        let method = start..<i
        guard Self.isKnownMethod(bytes, method) else { return .error(.malformed(.method)) }
        i += 1
        let targetStart = i
        while i < end, HTTPByteClass.is(bytes[i], HTTPByteClass.target) { i += 1 }
        guard i > targetStart, bytes[i] == 0x20 else { return .error(.malformed(.requestLine)) }
        let target = targetStart..<i
        i += 1
        // "HTTP/" DIGIT "." DIGIT CRLF
        guard i + 9 < end, bytes[i] == 0x48, bytes[i + 1] == 0x54, bytes[i + 2] == 0x54, bytes[i + 3] == 0x50,
            bytes[i + 4] == 0x2F, bytes[i + 6] == 0x2E, bytes[i + 8] == 0x0D, bytes[i + 9] == 0x0A
        else { return .error(.malformed(.version)) }
        let major = bytes[i + 5]
        let minor = bytes[i + 7]
        guard major >= 0x30, major <= 0x39, minor >= 0x30, minor <= 0x39 else { return .error(.malformed(.version)) }
        guard major == 0x31, minor == 0x30 || minor == 0x31 else { return .error(.versionNotSupported) }
        let minorVersion = Int(minor - 0x30)
        i += 10
        if let reason = Self.checkTarget(bytes, target, method: method) { return .error(.malformed(reason)) }

        // Field lines until the empty line (RFC 9112 §5).
        self.fieldStorage.removeAll(keepingCapacity: true)
        var head = ParsedRequestHead(
            method: method,
            target: target,
            minorVersion: minorVersion,
            fields: [],
            length: end,
            framing: .none
        )
        var contentLength: Int? = nil
        var transferEncoding = false
        var chunkedLast = false
        var chunkedSeen = false
        var hostCount = 0
        while !(bytes[i] == 0x0D && bytes[i + 1] == 0x0A) {
            if bytes[i] == 0x20 || bytes[i] == 0x09 { return .error(.malformed(.obsoleteLineFolding)) }
            let nameStart = i
            while HTTPByteClass.is(bytes[i], HTTPByteClass.token) { i += 1 }
            guard bytes[i] == 0x3A else {
                let whitespace = bytes[i] == 0x20 || bytes[i] == 0x09
                return .error(.malformed(i > nameStart && whitespace ? .whitespaceBeforeColon : .fieldName))
            }
            guard i > nameStart else { return .error(.malformed(.fieldName)) }
            let name = nameStart..<i
            i += 1
            let afterColon = i
            while bytes[i] == 0x20 || bytes[i] == 0x09 { i += 1 }
            let valueStart = i
            var valueEnd = i
            while bytes[i] != 0x0D {
                let byte = bytes[i]
                guard HTTPByteClass.is(byte, HTTPByteClass.fieldValue) else { return .error(.malformed(.fieldValue)) }
                i += 1
                if byte != 0x20 && byte != 0x09 { valueEnd = i }
            }
            // The end search guaranteed CRLF here.
            let lineEnd = i
            i += 2
            guard self.fieldStorage.count < self.maxFields else { return .error(.tooLarge) }
            let value = valueStart..<valueEnd
            self.fieldStorage.append(ParsedRequestHead.Field(name: name, value: value))

            switch Self.knownField(bytes, name) {
            case .contentLength:
                guard contentLength == nil else { return .error(.malformed(.repeatedContentLength)) }
                // llhttp takes spaces around the digits but not tabs.
                guard let length = Self.decimal(bytes, value),
                    !(afterColon..<lineEnd).contains(where: { bytes[$0] == 0x09 })
                else { return .error(.malformed(.contentLength)) }
                contentLength = length
            case .transferEncoding:
                transferEncoding = true
                let coding = Self.lastCoding(bytes, value)
                // Fields combine into one list (RFC 9110 §5.3): a coding after `chunked`, in this field or a later
                // one, means `chunked` is not last; so does `chunked` twice (RFC 9112 §6.1).
                if coding == .invalid || (chunkedSeen && coding != .empty) {
                    return .error(.malformed(.transferEncoding))
                }
                if coding == .chunkedLast {
                    chunkedSeen = true
                    chunkedLast = true
                }
            case .host:
                hostCount += 1
                head.hostField = self.fieldStorage.count - 1
                for k in value where !HTTPByteClass.is(bytes[k], HTTPByteClass.host) {
                    return .error(.malformed(.host))
                }
            case .connection:
                Self.readConnectionOptions(bytes, value, into: &head)
            case .upgrade:
                head.hasUpgrade = true
            case .expect:
                if Self.equalsLowercased(bytes, value, "100-continue") { head.expectsContinue = true }
            case .other:
                break
            }
        }

        if transferEncoding {
            guard contentLength == nil else { return .error(.malformed(.lengthAndTransferEncoding)) }
            guard minorVersion == 1 else { return .error(.malformed(.transferEncodingInHTTP10)) }
            guard chunkedLast else { return .error(.malformed(.transferEncoding)) }
            head.framing = .chunked
        } else if let contentLength {
            head.framing = .length(contentLength)
        }
        if hostCount > 1 { return .error(.malformed(.repeatedHost)) }
        if hostCount == 0 && minorVersion == 1 { return .error(.malformed(.missingHost)) }
        head.fields = self.fieldStorage
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
        if Self.equals(bytes, method, "CONNECT") {
            // Authority-form: host characters only.
            for i in target where !HTTPByteClass.is(bytes[i], HTTPByteClass.host) { return .target }
            return nil
        }
        if first == UInt8(ascii: "/") { return nil }
        if target.count == 1 && first == UInt8(ascii: "*") {
            return Self.equals(bytes, method, "OPTIONS") ? nil : .target
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
        if Self.equals(bytes, method, "GET") || Self.equals(bytes, method, "POST") { return true }
        for known in Self.methods where Self.equals(bytes, method, known) { return true }
        return false
    }

    private enum KnownField {
        case contentLength, transferEncoding, host, connection, upgrade, expect, other
    }

    /// The fields the parser acts on, recognised by length first (most fields fail there).
    @inline(__always)
    private static func knownField(_ bytes: UnsafeRawBufferPointer, _ name: Range<Int>) -> KnownField {
        switch name.count {
        case 4: return Self.equalsLowercased(bytes, name, "host") ? .host : .other
        case 6: return Self.equalsLowercased(bytes, name, "expect") ? .expect : .other
        case 7: return Self.equalsLowercased(bytes, name, "upgrade") ? .upgrade : .other
        case 10: return Self.equalsLowercased(bytes, name, "connection") ? .connection : .other
        case 14: return Self.equalsLowercased(bytes, name, "content-length") ? .contentLength : .other
        case 17: return Self.equalsLowercased(bytes, name, "transfer-encoding") ? .transferEncoding : .other
        default: return .other
        }
    }

    /// `1*DIGIT` without overflow, or `nil`.
    private static func decimal(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Int? {
        guard !range.isEmpty else { return nil }
        var value = 0
        for i in range {
            let b = bytes[i]
            guard b >= 0x30, b <= 0x39 else { return nil }
            let (times10, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(Int(b - 0x30))
            guard !o1, !o2 else { return nil }
            value = sum
        }
        return value
    }

    private enum LastCoding {
        case chunkedLast, other, empty, invalid
    }

    /// The last coding of a `Transfer-Encoding` list; a `chunked` that is not last, an empty element (`chunked,`,
    /// which llhttp refuses) or an element that is not a token is invalid (RFC 9112 §6.1).
    private static func lastCoding(_ bytes: UnsafeRawBufferPointer, _ value: Range<Int>) -> LastCoding {
        if value.isEmpty { return .empty }
        var result = LastCoding.empty
        var i = value.lowerBound
        while true {
            let elementStart = i
            while i < value.upperBound, bytes[i] != 0x2C { i += 1 }
            var trimmedStart = elementStart
            var trimmedEnd = i
            while trimmedStart < trimmedEnd, bytes[trimmedStart] == 0x20 || bytes[trimmedStart] == 0x09 { trimmedStart += 1 }
            while trimmedEnd > trimmedStart, bytes[trimmedEnd - 1] == 0x20 || bytes[trimmedEnd - 1] == 0x09 { trimmedEnd -= 1 }
            let element = trimmedStart..<trimmedEnd
            if element.isEmpty || result == .chunkedLast { return .invalid }
            if Self.equalsLowercased(bytes, element, "chunked") {
                result = .chunkedLast
            } else {
                for j in element where !HTTPByteClass.is(bytes[j], HTTPByteClass.token) { return .invalid }
                result = .other
            }
            if i == value.upperBound { return result }
            i += 1  // the comma
        }
    }

    /// Reads `close`, `keep-alive` and `upgrade` among the comma-separated options.
    private static func readConnectionOptions(
        _ bytes: UnsafeRawBufferPointer,
        _ value: Range<Int>,
        into head: inout ParsedRequestHead
    ) {
        var i = value.lowerBound
        while i < value.upperBound {
            while i < value.upperBound, bytes[i] == 0x20 || bytes[i] == 0x09 || bytes[i] == 0x2C { i += 1 }
            let tokenStart = i
            while i < value.upperBound, bytes[i] != 0x2C { i += 1 }
            var tokenEnd = i
            while tokenEnd > tokenStart, bytes[tokenEnd - 1] == 0x20 || bytes[tokenEnd - 1] == 0x09 { tokenEnd -= 1 }
            let token = tokenStart..<tokenEnd
            if Self.equalsLowercased(bytes, token, "close") {
                head.connectionClose = true
            } else if Self.equalsLowercased(bytes, token, "keep-alive") {
                head.connectionKeepAlive = true
            } else if Self.equalsLowercased(bytes, token, "upgrade") {
                head.connectionUpgrade = true
            }
        }
    }

    /// ASCII case-insensitive comparison with a lower-case literal.
    @inline(__always)
    static func equalsLowercased(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ literal: StaticString) -> Bool {
        guard range.count == literal.utf8CodeUnitCount else { return false }
        let expected = UnsafeRawBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount)
        var k = 0
        for i in range {
            if HTTPByteClass.lowercased(bytes[i]) != expected[k] { return false }
            k += 1
        }
        return true
    }

    /// Exact comparison with a literal (methods are case-sensitive).
    @inline(__always)
    static func equals(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ literal: StaticString) -> Bool {
        guard range.count == literal.utf8CodeUnitCount else { return false }
        let expected = UnsafeRawBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount)
        var k = 0
        for i in range {
            if bytes[i] != expected[k] { return false }
            k += 1
        }
        return true
    }
}
