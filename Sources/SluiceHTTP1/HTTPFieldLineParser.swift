/// The field section of a head (RFC 9112 §5): field lines up to the final empty line, as offsets.
///
/// Shared by ``HTTPRequestHeadParser`` and ``HTTPResponseHeadParser``: a resumable byte-level state machine that
/// stops after each complete field line so that its parser can judge the field (framing, `Host`, `Connection`), and
/// at the end of the final empty line. The syntax is the same for requests and responses, at least as strict as
/// llhttp: CRLF line ends only (bare LF and bare CR refused), no obsolete line folding, no whitespace before the
/// colon, field names are tokens, values have no control character but HTAB (obs-text allowed, as in llhttp).
struct HTTPFieldLineParser: Sendable {
    private enum State: Sendable {
        /// The first byte of a field line, or the CR of the final empty line.
        case lineStart
        case name
        case valueLeadingWhitespace
        case value
        case lineLF
        case finalLF
    }

    enum Step: Sendable, Equatable {
        /// Every byte up to the limit was examined.
        case needMoreBytes
        /// A field line ended with its LF: it is the last of ``fields``.
        case field
        /// The final empty line ended: the head is this many bytes long.
        case end(Int)
        case error(HTTPHeadError)
    }

    private var state = State.lineStart
    /// The field lines so far; the value of the last one is final only once ``Step/field`` reported it.
    var fields: [ParsedRequestHead.Field] = []
    private var nameStart = 0
    private var valueStart = 0
    private var valueEnd = 0
    /// The value of the last field line had a HTAB (around it or inside it).
    private(set) var valueHasTab = false

    init() {
        self.fields.reserveCapacity(16)
    }

    mutating func reset() {
        self.state = .lineStart
        self.fields.removeAll(keepingCapacity: true)
        self.valueHasTab = false
    }

    /// Examines bytes from `i` up to `limit`, and returns after a complete field line, after the final empty line,
    /// at an error, or at `limit`. `i` is left on the next byte to examine.
    @inline(__always)
    mutating func scan(_ bytes: UnsafeRawBufferPointer, _ i: inout Int, limit: Int, maxFields: Int) -> Step {
        while i < limit {
            let byte = bytes[i]
            switch self.state {
            case .lineStart:
                if byte == 0x0D {
                    self.state = .finalLF
                } else if HTTPByteClass.is(byte, HTTPByteClass.token) {
                    self.nameStart = i
                    self.state = .name
                } else if byte == 0x20 || byte == 0x09 {
                    return .error(.malformed(.obsoleteLineFolding))
                } else {
                    return .error(.malformed(byte == 0x0A ? .bareLineFeed : .fieldName))
                }
            case .name:
                while i < limit, HTTPByteClass.is(bytes[i], HTTPByteClass.token) { i += 1 }
                guard i < limit else { return .needMoreBytes }
                let end = bytes[i]
                guard end == 0x3A else {
                    return .error(.malformed(end == 0x20 || end == 0x09 ? .whitespaceBeforeColon : .fieldName))
                }
                guard self.fields.count < maxFields else { return .error(.tooLarge) }
                self.fields.append(ParsedRequestHead.Field(name: self.nameStart..<i, value: i + 1..<i + 1))
                self.valueHasTab = false
                self.state = .valueLeadingWhitespace
            case .valueLeadingWhitespace:
                if byte == 0x20 || byte == 0x09 {
                    if byte == 0x09 { self.valueHasTab = true }
                } else {
                    self.valueStart = i
                    self.valueEnd = i
                    self.state = .value
                    continue  // the same byte, as part of the value
                }
            case .value:
                while i < limit {
                    let b = bytes[i]
                    if b == 0x0D { break }
                    guard HTTPByteClass.is(b, HTTPByteClass.fieldValue) else {
                        return .error(.malformed(b == 0x0A ? .bareLineFeed : .fieldValue))
                    }
                    if b == 0x09 {
                        self.valueHasTab = true
                    } else if b != 0x20 {
                        self.valueEnd = i + 1
                    }
                    i += 1
                }
                guard i < limit else { return .needMoreBytes }
                self.fields[self.fields.count - 1].value = self.valueStart..<self.valueEnd
                self.state = .lineLF
            case .lineLF:
                guard byte == 0x0A else { return .error(.malformed(.bareCarriageReturn)) }
                i += 1
                self.state = .lineStart
                return .field
            case .finalLF:
                guard byte == 0x0A else { return .error(.malformed(.bareCarriageReturn)) }
                i += 1
                return .end(i)
            }
            i += 1
        }
        return .needMoreBytes
    }
}

/// What the head parsers read in field values, over offsets (RFC 9110 §5–§7, RFC 9112 §6).
enum HTTPFieldSemantics {
    enum KnownField {
        case contentLength, transferEncoding, host, connection, upgrade, expect, other
    }

    /// The fields the parsers act on, recognised by length first (most fields fail there).
    @inline(__always)
    static func knownField(_ bytes: UnsafeRawBufferPointer, _ name: Range<Int>) -> KnownField {
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
    static func decimal(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Int? {
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

    enum LastCoding {
        /// `chunked` is the last coding (and appears once).
        case chunkedLast
        /// The last coding is another one; `chunked` does not appear.
        case other
        /// `chunked` appears, followed by another coding.
        case chunkedNotLast
        /// An empty value.
        case empty
        /// An empty element, an element that is not a token, or `chunked` twice.
        case invalid
    }

    /// The last coding of a `Transfer-Encoding` list (RFC 9112 §6.1); an empty element (`chunked,`, which llhttp
    /// refuses in requests), an element that is not a token or `chunked` twice is invalid.
    static func lastCoding(_ bytes: UnsafeRawBufferPointer, _ value: Range<Int>) -> LastCoding {
        if value.isEmpty { return .empty }
        var result = LastCoding.empty
        var i = value.lowerBound
        while true {
            let elementStart = i
            while i < value.upperBound, bytes[i] != 0x2C { i += 1 }
            var trimmedStart = elementStart
            var trimmedEnd = i
            while trimmedStart < trimmedEnd, bytes[trimmedStart] == 0x20 || bytes[trimmedStart] == 0x09 {
                trimmedStart += 1
            }
            while trimmedEnd > trimmedStart, bytes[trimmedEnd - 1] == 0x20 || bytes[trimmedEnd - 1] == 0x09 {
                trimmedEnd -= 1
            }
            let element = trimmedStart..<trimmedEnd
            if element.isEmpty { return .invalid }
            if Self.equalsLowercased(bytes, element, "chunked") {
                if result == .chunkedLast || result == .chunkedNotLast { return .invalid }
                result = .chunkedLast
            } else {
                for j in element where !HTTPByteClass.is(bytes[j], HTTPByteClass.token) { return .invalid }
                if result != .chunkedLast && result != .chunkedNotLast {
                    result = .other
                } else {
                    result = .chunkedNotLast
                }
            }
            if i == value.upperBound { return result }
            i += 1  // the comma
        }
    }

    struct ConnectionOptions: Sendable, Equatable {
        var close = false
        var keepAlive = false
        var upgrade = false
    }

    /// Reads `close`, `keep-alive` and `upgrade` among the comma-separated options of a `Connection` value.
    static func readConnectionOptions(
        _ bytes: UnsafeRawBufferPointer,
        _ value: Range<Int>,
        into options: inout ConnectionOptions
    ) {
        HTTPBytes.forEachListElement(bytes, value) { token in
            if Self.equalsLowercased(bytes, token, "close") {
                options.close = true
            } else if Self.equalsLowercased(bytes, token, "keep-alive") {
                options.keepAlive = true
            } else if Self.equalsLowercased(bytes, token, "upgrade") {
                options.upgrade = true
            }
        }
    }

    /// ASCII case-insensitive comparison with a lower-case literal.
    @inline(__always)
    static func equalsLowercased(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ literal: StaticString) -> Bool
    {
        HTTPBytes.equalsLowercased(bytes, range, literal)
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
