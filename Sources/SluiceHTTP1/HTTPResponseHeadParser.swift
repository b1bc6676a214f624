/// A strict HTTP/1.1 response-head parser over raw bytes (RFC 9112 §4–§6), one pass, no `String`s: it reads the
/// upstream's responses, so a head it accepts is framed exactly as NIOHTTP1's `HTTPResponseDecoder` (llhttp) frames
/// it, and every ambiguity a response could be split or smuggled through is refused (the proxy answers 502).
///
/// Like ``HTTPRequestHeadParser`` it is a resumable byte-level state machine: feed it every byte received since the
/// head began, as often as bytes arrive; a byte that can never be part of a valid head is refused when it arrives.
/// It shares the field-line rules with requests (CRLF only, no obs-fold, no whitespace before the colon, token
/// names, no control character in values). It is at least as strict as llhttp, which the differential tests check:
/// - the status line is `HTTP/1.0` or `HTTP/1.1`, one SP, three digits (100–599), then SP and a reason phrase of
///   HTAB, SP, visible ASCII and obs-text; like llhttp, an empty reason (`HTTP/1.1 200 \r\n`) and a missing one
///   with its space (`HTTP/1.1 200\r\n`) are taken;
/// - `Content-Length` is digits only and appears once; `Transfer-Encoding` is a list of tokens with `chunked` at
///   most once, never next to a `Content-Length`, never in an HTTP/1.0 response;
/// - a 1xx or 204 carries no `Transfer-Encoding` and no `Content-Length` but 0 (RFC 9110 §8.6, RFC 9112 §6.1);
///   a 101 names its protocol in `Upgrade`;
/// - at most ``maxHeadBytes`` bytes and ``maxFields`` fields.
///
/// Framing (RFC 9112 §6.3): a response to `HEAD` (``requestIsHEAD``), a 1xx, 204 or 304 has no body; otherwise
/// `chunked` as the last coding is chunked, another last coding is a body until the close, a `Content-Length` is a
/// length, and neither is a body until the close. Empty lines before a status line are skipped, and count toward
/// the size limit.
public struct HTTPResponseHeadParser: Sendable {
    /// Largest head accepted.
    public var maxHeadBytes: Int
    /// Most field lines accepted.
    public var maxFields: Int
    /// The request this response answers was `HEAD`: no body, whatever the fields say (RFC 9112 §6.3). Read when
    /// the head completes; ``reset(requestIsHEAD:)`` sets it for the next response.
    public var requestIsHEAD: Bool

    /// What the next byte may be.
    private enum State: Sendable {
        /// Before the status line: its `H`, or an empty line's CR.
        case responseStart
        /// After an empty line's CR before the status line.
        case leadingLF
        /// `HTTP/1.x`: how many of its 8 bytes have been read.
        case version(Int)
        /// The SP after the version.
        case versionSP
        /// A digit of the status code: how many have been read.
        case status(Int)
        /// After the code: SP before the reason, or CR.
        case statusEnd
        case reason
        case statusLineLF
        /// The field lines and the final empty line, read by ``fieldLines``.
        case fields
    }

    private var state = State.responseStart
    /// Bytes already examined.
    private var position = 0
    private var head = Self.emptyHead
    private var fieldLines = HTTPFieldLineParser()
    private var contentLength: Int? = nil
    private var transferEncoding = false
    private var chunkedSeen = false
    private var chunkedLast = false
    private var connection = HTTPFieldSemantics.ConnectionOptions()

    private static let emptyHead = ParsedResponseHead(
        minorVersion: 1,
        status: 0,
        statusRange: 0..<0,
        reason: 0..<0,
        fields: [],
        length: 0,
        framing: .untilClose
    )

    public enum Result: Sendable, Equatable {
        /// The head is not complete yet; call again with more bytes.
        case needMoreBytes
        case head(ParsedResponseHead)
        /// The upstream's response is unusable: the client is answered with 502.
        case error(HTTPHeadError)
    }

    public init(maxHeadBytes: Int = 16384, maxFields: Int = 128, requestIsHEAD: Bool = false) {
        self.maxHeadBytes = maxHeadBytes
        self.maxFields = maxFields
        self.requestIsHEAD = requestIsHEAD
    }

    /// Forgets the head in progress (call before the next head, with bytes counted from its first byte). After a
    /// 1xx other than 101, the final response answers the same request: pass the same `requestIsHEAD`.
    public mutating func reset(requestIsHEAD: Bool) {
        self.requestIsHEAD = requestIsHEAD
        self.state = .responseStart
        self.position = 0
        // The field list keeps its storage: once the previous head's copies are gone (the caller resets before the
        // next response), no allocation per response.
        var fields = self.head.fields
        self.head = Self.emptyHead
        fields.removeAll(keepingCapacity: true)
        self.head.fields = fields
        self.fieldLines.reset()
        self.contentLength = nil
        self.transferEncoding = false
        self.chunkedSeen = false
        self.chunkedLast = false
        self.connection = HTTPFieldSemantics.ConnectionOptions()
    }

    /// Examines the bytes of `bytes` not seen yet (`bytes` holds every byte since the head began).
    ///
    /// After `.head` or `.error`, call ``reset(requestIsHEAD:)`` before the next head.
    public mutating func parse(_ bytes: UnsafeRawBufferPointer) -> Result {
        let limit = min(bytes.count, self.maxHeadBytes)
        var i = self.position
        defer { self.position = i }
        while i < limit {
            let byte = bytes[i]
            switch self.state {
            case .responseStart:
                if byte == 0x0D {
                    self.state = .leadingLF
                } else {
                    self.state = .version(0)
                    continue  // the same byte, as the version's first
                }
            case .leadingLF:
                guard byte == 0x0A else { return .error(.malformed(.bareCarriageReturn)) }
                self.state = .responseStart
            case .version(let read):
                // "HTTP/" DIGIT "." DIGIT
                switch read {
                case 0...4:
                    guard byte == Self.versionPrefix[read] else {
                        return .error(.malformed(byte == 0x0A ? .bareLineFeed : .statusLine))
                    }
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
                self.state = read == 7 ? .versionSP : .version(read + 1)
            case .versionSP:
                guard byte == 0x20 else { return .error(.malformed(.statusLine)) }
                self.state = .status(0)
            case .status(let read):
                guard byte >= 0x30, byte <= 0x39 else { return .error(.malformed(.statusLine)) }
                self.head.status = (read == 0 ? 0 : self.head.status * 10) + Int(byte - 0x30)
                if read == 2 {
                    guard self.head.status >= 100, self.head.status <= 599 else {
                        return .error(.malformed(.statusCode))
                    }
                    self.head.statusRange = i - 2..<i + 1
                    self.state = .statusEnd
                } else {
                    self.state = .status(read + 1)
                }
            case .statusEnd:
                if byte == 0x20 {
                    self.head.reason = i + 1..<i + 1
                    self.state = .reason
                } else if byte == 0x0D {
                    self.head.reason = i..<i
                    self.state = .statusLineLF
                } else {
                    return .error(.malformed(byte == 0x0A ? .bareLineFeed : .statusLine))
                }
            case .reason:
                while i < limit {
                    let b = bytes[i]
                    if b == 0x0D { break }
                    guard HTTPByteClass.is(b, HTTPByteClass.fieldValue) else {
                        return .error(.malformed(b == 0x0A ? .bareLineFeed : .reasonPhrase))
                    }
                    i += 1
                }
                guard i < limit else { continue }
                self.head.reason = self.head.reason.lowerBound..<i
                self.state = .statusLineLF
            case .statusLineLF:
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
        let index = self.fieldLines.fields.count - 1
        let field = self.fieldLines.fields[index]
        let value = field.value
        switch HTTPFieldSemantics.knownField(bytes, field.name) {
        case .contentLength:
            // llhttp refuses a second Content-Length even when equal (so does Sluice).
            guard self.contentLength == nil else { return .malformed(.repeatedContentLength) }
            // llhttp takes spaces and tabs around the digits; Sluice takes spaces only.
            guard let length = HTTPFieldSemantics.decimal(bytes, value), !self.fieldLines.valueHasTab else {
                return .malformed(.contentLength)
            }
            self.contentLength = length
        case .transferEncoding:
            // A tab anywhere is refused: llhttp reads `chunked<HTAB>` as another coding (a body until the close).
            guard !self.fieldLines.valueHasTab else { return .malformed(.transferEncoding) }
            self.transferEncoding = true
            // Fields combine into one list (RFC 9110 §5.3): the last coding of the last field is the final one.
            let coding = HTTPFieldSemantics.lastCoding(bytes, value)
            switch coding {
            case .invalid, .empty:
                return .malformed(.transferEncoding)
            case .chunkedLast, .chunkedNotLast:
                // `chunked` twice (RFC 9112 §6.1: a sender MUST NOT apply it more than once).
                guard !self.chunkedSeen else { return .malformed(.transferEncoding) }
                self.chunkedSeen = true
                self.chunkedLast = coding == .chunkedLast
            case .other:
                self.chunkedLast = false
            }
        case .connection:
            if self.fieldLines.valueHasTab {
                // llhttp does not read `keep-alive<HTAB>` as keep-alive: with a tab only `close` counts (the
                // connection is then never kept where NIO would close it).
                var options = HTTPFieldSemantics.ConnectionOptions()
                HTTPFieldSemantics.readConnectionOptions(bytes, value, into: &options)
                self.connection.close = self.connection.close || options.close
            } else {
                HTTPFieldSemantics.readConnectionOptions(bytes, value, into: &self.connection)
            }
        case .upgrade:
            if self.head.upgradeField == nil { self.head.upgradeField = index }
        case .host, .expect, .other:
            break
        }
        return nil
    }

    /// The framing rules, once the whole head is there.
    private mutating func headCompleted(length: Int) -> Result {
        var head = self.head
        head.length = length
        let status = head.status
        if self.transferEncoding {
            // llhttp refuses both; RFC 9112 §6.3 would let Transfer-Encoding win, which is how responses are split.
            guard self.contentLength == nil else { return .error(.malformed(.lengthAndTransferEncoding)) }
            // RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
            guard head.minorVersion == 1 else { return .error(.malformed(.transferEncodingInHTTP10Response)) }
        }
        if status < 200 || status == 204 {
            // RFC 9112 §6.1 and RFC 9110 §8.6: a server MUST NOT send these; llhttp and NIO ignore them, a peer that
            // reads them as a body would desynchronise from Sluice.
            if self.transferEncoding || (self.contentLength ?? 0) != 0 {
                return .error(.malformed(.bodyOnBodilessStatus))
            }
        }
        if status == 101 && head.upgradeField == nil { return .error(.malformed(.switchingWithoutUpgrade)) }

        if self.requestIsHEAD || status < 200 || status == 204 || status == 304 {
            head.framing = .none
        } else if self.transferEncoding {
            head.framing = self.chunkedLast ? .chunked : .untilClose
        } else if let contentLength = self.contentLength {
            head.framing = .length(contentLength)
        } else {
            head.framing = .untilClose
        }
        head.connectionClose = self.connection.close
        head.connectionKeepAlive = self.connection.keepAlive
        head.connectionUpgrade = self.connection.upgrade
        head.fields = self.fieldLines.fields
        return .head(head)
    }
}
