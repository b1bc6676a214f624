#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Follows the framing of a client's HTTP/1.1 request stream byte by byte and bounds what a chunked
/// body may carry besides data (SPEC §3 "Hostile clients"; Node CVE-2024-22019, Go CVE-2023-39326).
///
/// A parser that skips chunk extensions without a bound, as llhttp does when nobody asks for them,
/// reads whatever a client sends for as long as it sends: no byte ever reaches the application, so
/// no body limit or timeout notices. This scanner sees the same bytes first and refuses:
/// - a chunk-size line (size, extensions) longer than ``Limits/maxChunkLineBytes``;
/// - extension bytes beyond the body's data bytes plus ``Limits/extensionAllowance``;
/// - data plus extension bytes beyond the request's `max_body_bytes`, once there are extensions
///   (data alone is counted where it is delivered);
/// - a trailer section longer than ``Limits/maxTrailerBytes``, whitespace included.
///
/// It decides the framing of each request head exactly as llhttp does for requests that llhttp
/// accepts: a `Transfer-Encoding` field with a value makes the body chunked (llhttp refuses a request
/// whose last coding is not `chunked`, but for an upgrade, which then has no body), else
/// `Content-Length` gives the length, else there is no body. Held against llhttp by
/// `ChunkedFramingScannerDifferentialTests`. It never decides anything else: wherever the bytes break
/// the grammar it follows, or
/// llhttp stops parsing HTTP (after `CONNECT`, or after a message that asks for an `Upgrade`), the
/// scanner stops following the stream for good (``isFollowing`` becomes `false`) and accepts every
/// later byte. So it can only ever add a refusal for a stream the decoder would accept, never refuse
/// something the decoder would parse differently. The upgrade test is deliberately wider than
/// llhttp's (any `Upgrade` field, `upgrade` in any `Connection` or `Proxy-Connection` list).
///
/// Pure and incremental: bytes may be split anywhere, the state is a few integers, nothing is
/// allocated, and content bytes (bodies, chunk data, uninteresting header lines) are skipped
/// without looking at each one.
struct ChunkedFramingScanner: Sendable {
    /// The bounds. `maxTrailerBytes` is the server's `max_header_bytes`; the other two are fixed.
    struct Limits: Sendable, Equatable {
        /// Longest chunk-size line, hex digits and extensions, CRLF excluded. Defaults to 4 KiB.
        var maxChunkLineBytes = 4 * 1024
        /// Extension bytes a body may carry beyond its data bytes. Defaults to 16 KiB.
        var extensionAllowance = 16 * 1024
        /// Longest trailer section, every byte of its lines but the final empty one.
        var maxTrailerBytes: Int

        init(maxTrailerBytes: Int) {
            self.maxTrailerBytes = maxTrailerBytes
        }
    }

    /// Why a stream is refused.
    enum Violation: Sendable, Equatable {
        /// A chunk-size line over ``Limits/maxChunkLineBytes``.
        case chunkLineTooLong
        /// Extension bytes beyond the data bytes plus ``Limits/extensionAllowance``.
        case tooManyExtensionBytes
        /// Data plus extension bytes beyond `max_body_bytes`.
        case bodyTooLarge
        /// A trailer section over ``Limits/maxTrailerBytes``.
        case trailersTooLarge
    }

    /// A refusal: where it happened and in which request.
    struct Rejection: Sendable, Equatable {
        var violation: Violation
        /// The refused request, counting request heads on this connection from 1.
        var request: Int
        /// Index, in the bytes of the ``scan(_:maxBodyBytes:)`` call that refused, of the first byte
        /// that must not be passed on; the bytes before it are fine.
        var offset: Int
    }

    enum Verdict: Sendable, Equatable {
        /// Every byte may be passed on.
        case accepted
        /// The stream breaks a bound; feed the scanner nothing more.
        case rejected(Rejection)
    }

    /// Why the scanner stopped following the stream.
    enum StopReason: Sendable, Equatable {
        /// A `CONNECT` head: llhttp parses nothing after it.
        case connect
        /// A message that may be an upgrade has ended: llhttp parses nothing after it.
        case upgrade
        /// The bytes break the grammar followed here; llhttp refuses them too (it is at least as strict).
        case unexpectedByte
    }

    private enum State: UInt8 {
        /// Before a request line: CR and LF are skipped, as llhttp does.
        case messageStart
        /// The method: is it `CONNECT `? (``methodIndex`` bytes matched.)
        case method
        /// The rest of the request line, up to its LF.
        case requestLine
        /// The start of a header line, or of the empty line that ends the head.
        case lineStart
        /// A CR at the start of a line: its LF ends the head.
        case headEndLF
        /// A field name that may be one that frames (``header``, ``nameIndex`` bytes matched).
        case headerName
        /// The value of ``header``.
        case headerValue
        /// The rest of a line that does not matter, up to its LF.
        case skipLine
        /// A `Content-Length` body: ``remaining`` bytes left.
        case identityBody
        /// The first hex digit of a chunk size.
        case chunkSizeFirst
        /// More hex digits, or what ends them.
        case chunkSize
        /// Right after `;` (llhttp's `chunk_extensions`).
        case extensionStart
        case extensionName
        case extensionValue
        case extensionQuoted
        case extensionQuotedPair
        case extensionQuotedDone
        /// The LF of a chunk-size line.
        case chunkSizeLF
        /// Chunk data: ``remaining`` bytes left.
        case chunkData
        case chunkDataCR
        case chunkDataLF
        /// The start of a trailer line, or of the empty line that ends the message.
        case trailerLineStart
        /// A trailer line, up to its LF.
        case trailerLine
        /// A CR at the start of a trailer line: its LF ends the message.
        case trailerEndLF
        /// Not following any more (``stopReason`` says why): every byte is accepted.
        case passingThrough
    }

    /// A field whose value decides framing or upgrade (llhttp's special headers).
    private enum Header: UInt8 {
        case connection
        case contentLength
        case proxyConnection
        case transferEncoding
        case upgrade

        var name: StaticString {
            switch self {
            case .connection: return "connection"
            case .contentLength: return "content-length"
            case .proxyConnection: return "proxy-connection"
            case .transferEncoding: return "transfer-encoding"
            case .upgrade: return "upgrade"
            }
        }
    }

    /// Where a `Content-Length` value is.
    private enum LengthPhase: UInt8 {
        case none
        case leadingSpace
        case digits
        case trailingSpace
        case valid
        /// Empty, repeated, not a number or too large: llhttp refuses the request.
        case invalid
    }

    /// Where a `Transfer-Encoding` value is in llhttp's `header_value_te_*` states: is `chunked` its last coding?
    private enum CodingPhase: UInt8 {
        /// Before the value: whitespace is skipped (a value of nothing else sets nothing in llhttp).
        case leadingSpace
        /// Matching `chunked` (``tokenIndex`` bytes matched).
        case matching
        /// `chunked` and spaces: the value ends chunked here.
        case chunkedLast
        /// Another coding, up to a comma.
        case token
        /// Whitespace after a comma.
        case tokenSpace
        /// A byte llhttp does not take in a coding: the value cannot end chunked.
        case other
    }

    /// Where a `Connection` list element is, looking for `upgrade`.
    private enum TokenPhase: UInt8 {
        case leadingSpace
        case matching
        case trailingSpace
        case other
    }

    let limits: Limits
    private var state = State.messageStart
    private(set) var stopReason: StopReason?

    // The head being read.
    private var methodIndex = 0
    private var isConnect = false
    private var header = Header.connection
    private var nameIndex = 0
    private var hasTransferEncoding = false
    /// llhttp's `F_CHUNKED`: the last `Transfer-Encoding` value ended with `chunked`.
    private var endsChunked = false
    private var codingPhase = CodingPhase.other
    private var lengthPhase = LengthPhase.none
    private var contentLength: UInt64 = 0
    private var hasUpgradeField = false
    private var connectionUpgrade = false
    private var tokenPhase = TokenPhase.leadingSpace
    private var tokenIndex = 0

    // The body being read.
    private var remaining: UInt64 = 0
    private var chunkLineBytes = 0
    private var dataBytes = 0
    private var extensionBytes = 0
    private var trailerBytes = 0
    private var messageMaxBodyBytes = 0

    /// Request heads seen so far.
    private(set) var requests = 0

    init(limits: Limits) {
        self.limits = limits
    }

    /// `false` once the scanner has stopped following the stream (see ``stopReason``).
    var isFollowing: Bool { self.state != .passingThrough }

    /// Scans the next bytes of the stream.
    ///
    /// - Parameters:
    ///   - bytes: the bytes, in order; any split of the stream gives the same verdicts.
    ///   - maxBodyBytes: the `max_body_bytes` (0: unlimited) of a request whose chunked head ends in these
    ///     bytes; called once per such head.
    mutating func scan(_ bytes: UnsafeRawBufferPointer, maxBodyBytes: () -> Int) -> Verdict {
        let count = bytes.count
        var i = 0
        while i < count {
            switch self.state {
            case .passingThrough:
                return .accepted

            case .messageStart:
                let byte = bytes[i]
                if byte == .cr || byte == .lf {
                    i += 1
                    continue
                }
                self.startHead()
                self.state = .method

            case .method:
                let byte = bytes[i]
                let connect: StaticString = "CONNECT "
                if byte == connect.utf8Start[self.methodIndex] {
                    self.methodIndex += 1
                    i += 1
                    if self.methodIndex == connect.utf8CodeUnitCount {
                        self.isConnect = true
                        self.state = .requestLine
                    }
                } else {
                    self.state = .requestLine
                }

            case .requestLine, .skipLine:
                guard let lf = Self.index(of: .lf, in: bytes, from: i) else { return .accepted }
                i = lf + 1
                self.state = .lineStart

            case .lineStart:
                let byte = bytes[i]
                i += 1
                switch byte {
                case .cr:
                    self.state = .headEndLF
                case .lf:
                    // llhttp wants CRLF.
                    self.stop(.unexpectedByte)
                case UInt8(ascii: "c"), UInt8(ascii: "C"):
                    self.startName(.connection)
                case UInt8(ascii: "p"), UInt8(ascii: "P"):
                    self.startName(.proxyConnection)
                case UInt8(ascii: "t"), UInt8(ascii: "T"):
                    self.startName(.transferEncoding)
                case UInt8(ascii: "u"), UInt8(ascii: "U"):
                    self.startName(.upgrade)
                default:
                    self.state = .skipLine
                }

            case .headEndLF:
                guard bytes[i] == .lf else {
                    self.stop(.unexpectedByte)
                    continue
                }
                i += 1
                self.headComplete(maxBodyBytes: maxBodyBytes)

            case .headerName:
                let byte = Self.lowercased(bytes[i])
                i += 1
                let name = self.header.name
                if self.nameIndex < name.utf8CodeUnitCount && byte == name.utf8Start[self.nameIndex] {
                    self.nameIndex += 1
                } else if byte == UInt8(ascii: ":") && self.nameIndex == name.utf8CodeUnitCount {
                    self.startValue()
                } else if self.header == .connection && self.nameIndex == 3 && byte == UInt8(ascii: "t") {
                    // "con" is shared with "content-length".
                    self.header = .contentLength
                    self.nameIndex += 1
                } else {
                    self.state = byte == .lf ? .lineStart : .skipLine
                }

            case .headerValue:
                let byte = bytes[i]
                i += 1
                if byte == .lf {
                    self.endValue()
                    self.state = .lineStart
                } else if byte != .cr {
                    self.valueByte(byte)
                }

            case .identityBody:
                let n = Int(min(self.remaining, UInt64(count - i)))
                i += n
                self.remaining -= UInt64(n)
                if self.remaining == 0 { self.messageComplete() }

            case .chunkSizeFirst:
                guard let digit = Self.hexValue(bytes[i]) else {
                    self.stop(.unexpectedByte)
                    continue
                }
                if let violation = self.countLineByte(extension: false) {
                    return self.reject(violation, at: i)
                }
                self.remaining = UInt64(digit)
                self.state = .chunkSize
                i += 1

            case .chunkSize:
                let byte = bytes[i]
                if byte == .cr {
                    self.state = .chunkSizeLF
                    i += 1
                    continue
                }
                if let digit = Self.hexValue(byte) {
                    guard self.remaining >> 60 == 0 else {
                        // llhttp refuses a size over 64 bits.
                        self.stop(.unexpectedByte)
                        continue
                    }
                    if let violation = self.countLineByte(extension: false) {
                        return self.reject(violation, at: i)
                    }
                    self.remaining = self.remaining << 4 | UInt64(digit)
                    i += 1
                } else if byte == UInt8(ascii: ";") {
                    if let violation = self.countLineByte(extension: true) {
                        return self.reject(violation, at: i)
                    }
                    self.state = .extensionStart
                    i += 1
                } else {
                    // Whitespace after the size is refused by llhttp's strict mode, like any other byte.
                    self.stop(.unexpectedByte)
                }

            case .extensionStart, .extensionName, .extensionValue, .extensionQuoted, .extensionQuotedPair,
                .extensionQuotedDone:
                let byte = bytes[i]
                if byte == .cr && self.extensionLineMayEnd {
                    self.state = .chunkSizeLF
                    i += 1
                    continue
                }
                if let violation = self.countLineByte(extension: true) {
                    return self.reject(violation, at: i)
                }
                self.extensionByte(byte)
                i += 1

            case .chunkSizeLF:
                guard bytes[i] == .lf else {
                    self.stop(.unexpectedByte)
                    continue
                }
                i += 1
                self.chunkLineBytes = 0
                if self.remaining == 0 {
                    self.trailerBytes = 0
                    self.state = .trailerLineStart
                } else {
                    self.state = .chunkData
                }

            case .chunkData:
                var n = Int(min(self.remaining, UInt64(count - i)))
                var violation = false
                if self.extensionBytes > 0 && self.messageMaxBodyBytes > 0 {
                    let allowed = self.messageMaxBodyBytes - self.dataBytes - self.extensionBytes
                    if n > allowed {
                        n = allowed
                        violation = true
                    }
                }
                i += n
                self.remaining -= UInt64(n)
                self.dataBytes += n
                if violation { return self.reject(.bodyTooLarge, at: i) }
                if self.remaining == 0 { self.state = .chunkDataCR }

            case .chunkDataCR:
                guard bytes[i] == .cr else {
                    self.stop(.unexpectedByte)
                    continue
                }
                i += 1
                self.state = .chunkDataLF

            case .chunkDataLF:
                guard bytes[i] == .lf else {
                    self.stop(.unexpectedByte)
                    continue
                }
                i += 1
                self.state = .chunkSizeFirst

            case .trailerLineStart:
                switch bytes[i] {
                case .cr:
                    i += 1
                    self.state = .trailerEndLF
                case .lf:
                    self.stop(.unexpectedByte)
                default:
                    self.state = .trailerLine
                }

            case .trailerLine:
                let lineEnd = Self.index(of: .lf, in: bytes, from: i).map { $0 + 1 }
                let end = lineEnd ?? count
                let allowed = self.limits.maxTrailerBytes - self.trailerBytes
                if end - i > allowed {
                    return self.reject(.trailersTooLarge, at: i + allowed)
                }
                self.trailerBytes += end - i
                i = end
                if lineEnd != nil { self.state = .trailerLineStart }

            case .trailerEndLF:
                guard bytes[i] == .lf else {
                    self.stop(.unexpectedByte)
                    continue
                }
                i += 1
                self.messageComplete()
            }
        }
        return .accepted
    }

    // MARK: heads

    private mutating func startHead() {
        self.methodIndex = 0
        self.isConnect = false
        self.hasTransferEncoding = false
        self.endsChunked = false
        self.lengthPhase = .none
        self.contentLength = 0
        self.hasUpgradeField = false
        self.connectionUpgrade = false
    }

    private mutating func startName(_ header: Header) {
        self.header = header
        self.nameIndex = 1
        self.state = .headerName
    }

    private mutating func startValue() {
        switch self.header {
        case .upgrade:
            // Wider than llhttp, which wants a value.
            self.hasUpgradeField = true
            self.state = .skipLine
            return
        case .contentLength:
            // A second one is refused by llhttp, whatever its value.
            self.lengthPhase = self.lengthPhase == .none ? .leadingSpace : .invalid
        case .connection, .proxyConnection:
            self.tokenPhase = .leadingSpace
            self.tokenIndex = 0
        case .transferEncoding:
            self.codingPhase = .leadingSpace
        }
        self.state = .headerValue
    }

    /// A byte of a `Transfer-Encoding` value, following llhttp's `header_value_te_*` states.
    private mutating func codingByte(_ byte: UInt8) {
        let chunked: StaticString = "chunked"
        switch self.codingPhase {
        case .leadingSpace, .other:
            return
        case .matching:
            // llhttp compares `byte | 0x20`; for the letters of "chunked" that is a case-insensitive match.
            if byte | 0x20 == chunked.utf8Start[self.tokenIndex] {
                self.tokenIndex += 1
                if self.tokenIndex == chunked.utf8CodeUnitCount { self.codingPhase = .chunkedLast }
                return
            }
        case .chunkedLast:
            if byte == .space { return }
            // A comma after `chunked` is refused by llhttp in a request; anything else is another coding.
        case .token:
            break
        case .tokenSpace:
            if byte == .space || byte == .tab { return }
            self.tokenIndex = 0
            self.codingPhase = .matching
            self.codingByte(byte)
            return
        }
        // llhttp's `header_value_te_token`.
        if byte == UInt8(ascii: ",") {
            self.codingPhase = .tokenSpace
        } else if byte == .tab || (byte >= .space && byte != 0x7F) {
            self.codingPhase = .token
        } else {
            self.codingPhase = .other
        }
    }

    /// A byte of the value of ``header`` (not CR or LF).
    private mutating func valueByte(_ byte: UInt8) {
        let isSpace = byte == .space || byte == .tab
        switch self.header {
        case .transferEncoding:
            if self.codingPhase == .leadingSpace {
                if isSpace { return }
                // llhttp sets its Transfer-Encoding flag and forgets an earlier `chunked`.
                self.hasTransferEncoding = true
                self.endsChunked = false
                self.tokenIndex = 0
                self.codingPhase = .matching
            }
            self.codingByte(byte)
        case .contentLength:
            let digit = byte &- UInt8(ascii: "0")
            switch self.lengthPhase {
            case .leadingSpace where isSpace, .trailingSpace where isSpace:
                break
            case .leadingSpace where digit < 10, .digits where digit < 10:
                let (times10, overflow1) = self.contentLength.multipliedReportingOverflow(by: 10)
                let (sum, overflow2) = times10.addingReportingOverflow(UInt64(digit))
                self.contentLength = sum
                self.lengthPhase = overflow1 || overflow2 ? .invalid : .digits
            case .digits where isSpace:
                self.lengthPhase = .trailingSpace
            case .invalid:
                break
            default:
                self.lengthPhase = .invalid
            }
        case .connection, .proxyConnection:
            let upgrade: StaticString = "upgrade"
            if byte == UInt8(ascii: ",") {
                self.endConnectionToken()
                return
            }
            switch self.tokenPhase {
            case .leadingSpace where isSpace, .trailingSpace where isSpace, .other:
                break
            case .leadingSpace, .matching:
                if self.tokenIndex < upgrade.utf8CodeUnitCount
                    && Self.lowercased(byte) == upgrade.utf8Start[self.tokenIndex]
                {
                    self.tokenIndex += 1
                    self.tokenPhase = .matching
                } else if isSpace && self.tokenIndex == upgrade.utf8CodeUnitCount {
                    self.tokenPhase = .trailingSpace
                } else {
                    self.tokenPhase = .other
                }
            case .trailingSpace:
                self.tokenPhase = .other
            }
        case .upgrade:
            break
        }
    }

    private mutating func endConnectionToken() {
        let complete = self.tokenIndex == 7 && (self.tokenPhase == .matching || self.tokenPhase == .trailingSpace)
        if complete { self.connectionUpgrade = true }
        self.tokenPhase = .leadingSpace
        self.tokenIndex = 0
    }

    /// The LF of a value of ``header``.
    private mutating func endValue() {
        switch self.header {
        case .contentLength:
            self.lengthPhase = self.lengthPhase == .digits || self.lengthPhase == .trailingSpace ? .valid : .invalid
        case .connection, .proxyConnection:
            self.endConnectionToken()
        case .transferEncoding:
            if self.codingPhase == .chunkedLast { self.endsChunked = true }
        case .upgrade:
            break
        }
    }

    private mutating func headComplete(maxBodyBytes: () -> Int) {
        self.requests += 1
        if self.isConnect {
            self.stop(.connect)
            return
        }
        // A request llhttp accepts with a Transfer-Encoding is chunked (it refuses a last coding other than
        // `chunked`), except an upgrade: that is checked first, and without `chunked` it has no body.
        if self.hasTransferEncoding && (self.endsChunked || !self.mayUpgrade) {
            self.messageMaxBodyBytes = maxBodyBytes()
            self.dataBytes = 0
            self.extensionBytes = 0
            self.chunkLineBytes = 0
            self.state = .chunkSizeFirst
            return
        }
        switch self.lengthPhase {
        case .none:
            self.messageComplete()
        case .valid:
            self.remaining = self.contentLength
            if self.remaining == 0 {
                self.messageComplete()
            } else {
                self.state = .identityBody
            }
        case .leadingSpace, .digits, .trailingSpace, .invalid:
            self.stop(.unexpectedByte)
        }
    }

    /// Wider than llhttp's upgrade test (which also wants a value in `Upgrade`).
    private var mayUpgrade: Bool { self.hasUpgradeField && self.connectionUpgrade }

    private mutating func messageComplete() {
        if self.mayUpgrade {
            self.stop(.upgrade)
        } else {
            self.state = .messageStart
        }
    }

    private mutating func stop(_ reason: StopReason) {
        self.stopReason = reason
        self.state = .passingThrough
    }

    // MARK: chunk-size lines

    /// Counts one byte of a chunk-size line (not its CRLF); returns the bound it breaks, if any.
    private mutating func countLineByte(extension isExtension: Bool) -> Violation? {
        self.chunkLineBytes += 1
        if self.chunkLineBytes > self.limits.maxChunkLineBytes { return .chunkLineTooLong }
        guard isExtension else { return nil }
        self.extensionBytes += 1
        if self.extensionBytes > self.dataBytes + self.limits.extensionAllowance { return .tooManyExtensionBytes }
        if self.messageMaxBodyBytes > 0 && self.dataBytes + self.extensionBytes > self.messageMaxBodyBytes {
            return .bodyTooLarge
        }
        return nil
    }

    /// Whether a CR ends the chunk-size line in the current extension state (llhttp refuses it right after `;`
    /// and inside a quoted string).
    private var extensionLineMayEnd: Bool {
        switch self.state {
        case .extensionName, .extensionValue, .extensionQuotedDone: return true
        default: return false
        }
    }

    /// One byte of chunk extensions, following llhttp's `chunk_extension_*` states (RFC 9112 §7.1.1).
    private mutating func extensionByte(_ byte: UInt8) {
        switch self.state {
        case .extensionStart:
            if byte == .space || byte == .cr {
                self.stop(.unexpectedByte)
            } else {
                self.state = .extensionName
                self.extensionByte(byte)
            }
        case .extensionName:
            if Self.isToken(byte) {
                return
            } else if byte == UInt8(ascii: "=") {
                self.state = .extensionValue
            } else if byte == UInt8(ascii: ";") {
                self.state = .extensionStart
            } else {
                self.stop(.unexpectedByte)
            }
        case .extensionValue:
            if byte == UInt8(ascii: "\"") {
                self.state = .extensionQuoted
            } else if Self.isToken(byte) {
                return
            } else if byte == UInt8(ascii: ";") {
                self.state = .extensionStart
            } else {
                self.stop(.unexpectedByte)
            }
        case .extensionQuoted:
            if byte == UInt8(ascii: "\"") {
                self.state = .extensionQuotedDone
            } else if byte == UInt8(ascii: "\\") {
                self.state = .extensionQuotedPair
            } else if !(byte == .tab || byte >= .space) {
                self.stop(.unexpectedByte)
            }
        case .extensionQuotedPair:
            if byte == .tab || (byte >= .space && byte != 0x7F) {
                self.state = .extensionQuoted
            } else {
                self.stop(.unexpectedByte)
            }
        case .extensionQuotedDone:
            if byte == UInt8(ascii: ";") {
                self.state = .extensionStart
            } else {
                self.stop(.unexpectedByte)
            }
        default:
            preconditionFailure("not in a chunk extension")
        }
    }

    private mutating func reject(_ violation: Violation, at offset: Int) -> Verdict {
        .rejected(Rejection(violation: violation, request: self.requests, offset: offset))
    }

    // MARK: bytes

    private static func index(of byte: UInt8, in bytes: UnsafeRawBufferPointer, from start: Int) -> Int? {
        guard start < bytes.count, let base = bytes.baseAddress else { return nil }
        guard let found = memchr(base + start, Int32(byte), bytes.count - start) else { return nil }
        return base.distance(to: UnsafeRawPointer(found))
    }

    @inline(__always)
    private static func lowercased(_ byte: UInt8) -> UInt8 {
        byte &- UInt8(ascii: "A") < 26 ? byte | 0x20 : byte
    }

    @inline(__always)
    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte &- UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte &- UInt8(ascii: "a") &+ 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte &- UInt8(ascii: "A") &+ 10
        default: return nil
        }
    }

    /// RFC 9110 `tchar`.
    private static func isToken(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"),
            UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."),
            UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }
}

extension UInt8 {
    fileprivate static let cr = UInt8(ascii: "\r")
    fileprivate static let lf = UInt8(ascii: "\n")
    fileprivate static let space = UInt8(ascii: " ")
    fileprivate static let tab = UInt8(ascii: "\t")
}
