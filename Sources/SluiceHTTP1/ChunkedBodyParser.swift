/// A strict, incremental parser of a chunked body (RFC 9112 §7.1) that finds the data in the bytes as they arrive.
///
/// Feed it each read's bytes once (unlike the head parser, it keeps no bytes and no offsets across calls): it
/// reports the ranges of chunk data in that read, so the caller forwards slices of the read buffer without copying,
/// and where the body ends (the rest of the read is the next request). It refuses what llhttp refuses (a size that
/// is not hex, whitespace around the size, a missing CRLF after the data, a malformed trailer line, a
/// `Content-Length` or `Transfer-Encoding` trailer field) and a `Connection` trailer field, which llhttp reads as if
/// it were in the head (`close` there ends the connection after a message Sluice read as keep-alive): RFC 9110
/// §6.5.1 keeps such fields out of trailers. It bounds what llhttp does not (SPEC §3 "Hostile clients"; Node
/// CVE-2024-22019, Go CVE-2023-39326):
/// - a chunk-size line (size and extensions) over ``Limits/maxChunkLineBytes`` bytes;
/// - extension bytes beyond the data bytes plus ``Limits/extensionAllowance``;
/// - data plus extension bytes beyond ``Limits/maxBodyBytes`` (413);
/// - a trailer section over ``Limits/maxTrailerBytes`` bytes.
public struct ChunkedBodyParser: Sendable {
    public struct Limits: Sendable, Equatable {
        public var maxChunkLineBytes = 4 * 1024
        public var extensionAllowance = 16 * 1024
        /// `server.max_body_bytes`; 0 is unlimited.
        public var maxBodyBytes = 0
        /// `server.max_header_bytes`.
        public var maxTrailerBytes = 16 * 1024

        public init(maxBodyBytes: Int = 0, maxTrailerBytes: Int = 16 * 1024) {
            self.maxBodyBytes = maxBodyBytes
            self.maxTrailerBytes = maxTrailerBytes
        }
    }

    public enum Failure: Error, Sendable, Equatable {
        /// 400: the bytes break the chunked grammar.
        case malformed
        /// 400: a chunk-size line over the limit.
        case chunkLineTooLong
        /// 400: extension bytes beyond the data bytes plus the allowance.
        case tooManyExtensionBytes
        /// 413: data plus extensions beyond `max_body_bytes`.
        case bodyTooLarge
        /// 431: a trailer section over the limit.
        case trailersTooLarge

        public var status: Int {
            switch self {
            case .bodyTooLarge: return 413
            case .trailersTooLarge: return 431
            default: return 400
            }
        }
    }

    public enum Result: Sendable, Equatable {
        /// Every byte was consumed; the body goes on in the next read.
        case needMoreBytes
        /// The body ended; its last byte is just before this offset (the next request starts there).
        case end(Int)
        case error(Failure)
    }

    private enum State: Sendable {
        /// The first hex digit of a chunk size.
        case sizeStart
        case size
        /// After `;`: an extension name.
        case extensionNameStart
        case extensionName
        /// After `=`: a token or a quoted string.
        case extensionValueStart
        case extensionToken
        case extensionQuoted
        case extensionQuotedEscape
        /// After a quoted value: `;` or CR.
        case extensionAfterValue
        case sizeLF
        case data
        case dataCR
        case dataLF
        /// The first byte of a trailer line, or the CR of the final empty line.
        case trailerLineStart
        case trailerName
        case trailerValue
        case trailerLF
        case finalLF
        case done
    }

    public var limits: Limits
    private var state = State.sizeStart
    private var chunkRemaining: UInt64 = 0
    private var lineBytes = 0
    private var dataBytes = 0
    private var extensionBytes = 0
    private var trailerBytes = 0
    /// The trailer field name read so far, matched against ``refusedTrailerNames`` (no bytes are kept): its length, and
    /// which of those names it is still a prefix of (bit `k` for name `k`).
    private var trailerNameLength = 0
    private var trailerNameCandidates: UInt8 = 0

    public init(limits: Limits = Limits()) {
        self.limits = limits
    }

    /// Data bytes seen so far.
    public var bodyDataBytes: Int { self.dataBytes }

    /// Consumes one read. `data` is called with the range of each piece of chunk data, in order.
    public mutating func parse(_ bytes: UnsafeRawBufferPointer, data: (Range<Int>) -> Void) -> Result {
        var i = 0
        let count = bytes.count
        while i < count {
            let byte = bytes[i]
            switch self.state {
            case .sizeStart:
                guard let digit = Self.hexValue(byte) else { return .error(.malformed) }
                self.chunkRemaining = UInt64(digit)
                self.lineBytes = 1
                self.state = .size
            case .size:
                if let digit = Self.hexValue(byte) {
                    // 16 hex digits hold any UInt64; more is an overflow (llhttp: "Chunk size overflow").
                    guard self.chunkRemaining >> 60 == 0 else { return .error(.malformed) }
                    self.chunkRemaining = self.chunkRemaining << 4 | UInt64(digit)
                    if let failure = self.countLineByte() { return .error(failure) }
                } else if byte == 0x3B {
                    if let failure = self.countExtensionByte() { return .error(failure) }
                    self.state = .extensionNameStart
                } else if byte == 0x0D {
                    self.state = .sizeLF
                } else {
                    return .error(.malformed)
                }
            case .extensionNameStart, .extensionName:
                if HTTPByteClass.is(byte, HTTPByteClass.token) {
                    self.state = .extensionName
                } else if self.state == .extensionName && byte == 0x3D {
                    self.state = .extensionValueStart
                } else if self.state == .extensionName && byte == 0x3B {
                    self.state = .extensionNameStart
                } else if self.state == .extensionName && byte == 0x0D {
                    self.state = .sizeLF
                    break
                } else {
                    return .error(.malformed)
                }
                if let failure = self.countExtensionByte() { return .error(failure) }
            case .extensionValueStart, .extensionToken:
                if HTTPByteClass.is(byte, HTTPByteClass.token) {
                    self.state = .extensionToken
                } else if self.state == .extensionValueStart && byte == 0x22 {
                    self.state = .extensionQuoted
                } else if self.state == .extensionToken && byte == 0x3B {
                    self.state = .extensionNameStart
                } else if self.state == .extensionToken && byte == 0x0D {
                    self.state = .sizeLF
                    break
                } else {
                    return .error(.malformed)
                }
                if let failure = self.countExtensionByte() { return .error(failure) }
            case .extensionQuoted:
                // qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
                if byte == 0x22 {
                    self.state = .extensionAfterValue
                } else if byte == 0x5C {
                    self.state = .extensionQuotedEscape
                } else if !(byte == 0x09 || byte == 0x20 || byte == 0x21 || (byte >= 0x23 && byte <= 0x7E) || byte >= 0x80) {
                    return .error(.malformed)
                }
                if let failure = self.countExtensionByte() { return .error(failure) }
            case .extensionQuotedEscape:
                guard byte == 0x09 || byte == 0x20 || (byte >= 0x21 && byte <= 0x7E) || byte >= 0x80 else {
                    return .error(.malformed)
                }
                self.state = .extensionQuoted
                if let failure = self.countExtensionByte() { return .error(failure) }
            case .extensionAfterValue:
                if byte == 0x3B {
                    self.state = .extensionNameStart
                    if let failure = self.countExtensionByte() { return .error(failure) }
                } else if byte == 0x0D {
                    self.state = .sizeLF
                } else {
                    return .error(.malformed)
                }
            case .sizeLF:
                guard byte == 0x0A else { return .error(.malformed) }
                if self.chunkRemaining == 0 {
                    self.trailerBytes = 0
                    self.state = .trailerLineStart
                } else {
                    if self.limits.maxBodyBytes > 0,
                        self.chunkRemaining > UInt64(max(0, self.limits.maxBodyBytes - self.dataBytes - self.extensionBytes))
                    {
                        return .error(.bodyTooLarge)
                    }
                    self.state = .data
                }
            case .data:
                let take = Int(min(UInt64(count - i), self.chunkRemaining))
                data(i..<i + take)
                self.chunkRemaining -= UInt64(take)
                self.dataBytes += take
                i += take
                if self.chunkRemaining == 0 { self.state = .dataCR }
                continue
            case .dataCR:
                guard byte == 0x0D else { return .error(.malformed) }
                self.state = .dataLF
            case .dataLF:
                guard byte == 0x0A else { return .error(.malformed) }
                self.state = .sizeStart
            case .trailerLineStart:
                if byte == 0x0D {
                    self.state = .finalLF
                } else if HTTPByteClass.is(byte, HTTPByteClass.token) {
                    self.state = .trailerName
                    self.trailerNameLength = 0
                    self.trailerNameCandidates = Self.allRefusedTrailerNames
                    self.matchTrailerName(byte)
                } else {
                    return .error(.malformed)
                }
                if let failure = self.countTrailerByte() { return .error(failure) }
            case .trailerName:
                if byte == 0x3A {
                    // Framing fields and `Connection` in the trailer section (found by the differential fuzz target).
                    if self.trailerNameIsRefused { return .error(.malformed) }
                    self.state = .trailerValue
                } else if !HTTPByteClass.is(byte, HTTPByteClass.token) {
                    return .error(.malformed)
                } else {
                    self.matchTrailerName(byte)
                }
                if let failure = self.countTrailerByte() { return .error(failure) }
            case .trailerValue:
                if byte == 0x0D {
                    self.state = .trailerLF
                } else if !HTTPByteClass.is(byte, HTTPByteClass.fieldValue) {
                    return .error(.malformed)
                }
                if let failure = self.countTrailerByte() { return .error(failure) }
            case .trailerLF:
                guard byte == 0x0A else { return .error(.malformed) }
                self.state = .trailerLineStart
                if let failure = self.countTrailerByte() { return .error(failure) }
            case .finalLF:
                guard byte == 0x0A else { return .error(.malformed) }
                self.state = .done
                return .end(i + 1)
            case .done:
                return .end(i)
            }
            i += 1
        }
        return self.state == .done ? .end(count) : .needMoreBytes
    }

    @inline(__always)
    private mutating func countLineByte() -> Failure? {
        self.lineBytes += 1
        return self.lineBytes > self.limits.maxChunkLineBytes ? .chunkLineTooLong : nil
    }

    @inline(__always)
    private mutating func countExtensionByte() -> Failure? {
        if let failure = self.countLineByte() { return failure }
        self.extensionBytes += 1
        if self.extensionBytes > self.dataBytes + self.limits.extensionAllowance { return .tooManyExtensionBytes }
        if self.limits.maxBodyBytes > 0, self.extensionBytes + self.dataBytes > self.limits.maxBodyBytes {
            return .bodyTooLarge
        }
        return nil
    }

    /// Trailer fields refused: framing (llhttp refuses them in a request's trailers) and `Connection` (llhttp acts on
    /// it there, closing the connection after the message).
    private static let refusedTrailerNames: [[UInt8]] = ["transfer-encoding", "content-length", "connection"]
        .map { Array($0.utf8) }
    private static let allRefusedTrailerNames: UInt8 = 0b111

    /// Extends the trailer name read so far by `byte`.
    @inline(__always)
    private mutating func matchTrailerName(_ byte: UInt8) {
        guard self.trailerNameCandidates != 0 else { return }
        let lowered = HTTPByteClass.lowercased(byte)
        let k = self.trailerNameLength
        for (index, name) in Self.refusedTrailerNames.enumerated() where self.trailerNameCandidates & (1 << index) != 0 {
            if k >= name.count || name[k] != lowered { self.trailerNameCandidates &= ~(1 << index) }
        }
        self.trailerNameLength = k + 1
    }

    /// Whether the complete trailer name read is one of ``refusedTrailerNames``.
    private var trailerNameIsRefused: Bool {
        for (index, name) in Self.refusedTrailerNames.enumerated()
        where self.trailerNameCandidates & (1 << index) != 0 && name.count == self.trailerNameLength {
            return true
        }
        return false
    }

    @inline(__always)
    private mutating func countTrailerByte() -> Failure? {
        self.trailerBytes += 1
        return self.trailerBytes > self.limits.maxTrailerBytes ? .trailersTooLarge : nil
    }

    @inline(__always)
    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case 0x30...0x39: return byte - 0x30
        case 0x41...0x46: return byte - 0x41 + 10
        case 0x61...0x66: return byte - 0x61 + 10
        default: return nil
        }
    }
}
