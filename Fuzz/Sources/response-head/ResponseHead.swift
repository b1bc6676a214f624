import FuzzSupport
import SluiceHTTP1

/// The response-head parser (``HTTPResponseHeadParser``) on arbitrary bytes from an upstream.
///
/// Checks, for the response to a `GET` and to a `HEAD`, and for every head of the input as the upstream handler reads
/// them (1xx heads, then the final one):
/// - the same result fed all at once, byte by byte and in random splits, fresh and through `reset(requestIsHEAD:)`;
/// - an accepted head is consistent: status 100–599 from its three digits, offsets in order inside the head, a
///   response to `HEAD` and a 1xx, 204 or 304 without a body, a 101 with `Upgrade`, chunked only in HTTP/1.1.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzResponseHead(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = FuzzInput.bytes(data, size)
    for requestIsHEAD in [false, true] {
        var reused = HTTPResponseHeadParser(requestIsHEAD: requestIsHEAD)
        var offset = 0
        // Informational heads, then the final one (at most 8 heads).
        for _ in 0..<8 where offset < input.count {
            let bytes = Array(input[offset...])
            var fresh = HTTPResponseHeadParser(requestIsHEAD: requestIsHEAD)
            let whole = ResponseHeadFeeding.parse(bytes, pieces: [bytes.count], parser: &fresh)
            for pieces in FuzzInput.splits(of: bytes) {
                reused.reset(requestIsHEAD: requestIsHEAD)
                let split = ResponseHeadFeeding.parse(bytes, pieces: pieces, parser: &reused)
                fuzzCheck(split == whole, "split \(pieces) gave \(split), whole gave \(whole): \(FuzzInput.escaped(bytes))")
            }
            guard case .head(let head) = whole else { break }
            ResponseHeadFeeding.checkConsistent(head, bytes, requestIsHEAD: requestIsHEAD)
            guard head.isInformational else { break }
            offset += head.length
        }
    }
    return 0
}

enum ResponseHeadFeeding {
    /// Feeds `bytes` as reads arrive: each piece extends the bytes the parser is given.
    static func parse(_ bytes: [UInt8], pieces: [Int], parser: inout HTTPResponseHeadParser) -> HTTPResponseHeadParser.Result {
        var result = HTTPResponseHeadParser.Result.needMoreBytes
        var fed = 0
        for piece in pieces {
            fed = min(bytes.count, fed + piece)
            result = bytes[0..<fed].withUnsafeBytes { parser.parse($0) }
            if case .needMoreBytes = result { continue }
            return result
        }
        return result
    }

    static func checkConsistent(_ head: ParsedResponseHead, _ bytes: [UInt8], requestIsHEAD: Bool) {
        let shown = FuzzInput.escaped(bytes.prefix(head.length))
        fuzzCheck(head.length > 0 && head.length <= bytes.count, "head length \(head.length) of \(bytes.count) bytes")
        fuzzCheck(bytes[head.length - 1] == 0x0A && bytes[head.length - 2] == 0x0D, "head does not end with CRLF: \(shown)")
        fuzzCheck((100...599).contains(head.status), "status \(head.status): \(shown)")
        fuzzCheck(head.statusRange.count == 3, "status range \(head.statusRange): \(shown)")
        let digits = bytes[head.statusRange].reduce(0) { $0 * 10 + Int($1) - 0x30 }
        fuzzCheck(digits == head.status, "status \(head.status) from \(FuzzInput.escaped(bytes[head.statusRange])): \(shown)")
        fuzzCheck(head.reason.lowerBound >= head.statusRange.upperBound, "reason before the status: \(shown)")
        var previous = head.reason.upperBound
        for field in head.fields {
            fuzzCheck(!field.name.isEmpty && field.name.lowerBound > previous, "field \(field) out of order: \(shown)")
            fuzzCheck(field.value.lowerBound > field.name.upperBound, "value before name in \(field): \(shown)")
            fuzzCheck(field.value.upperBound <= head.length - 2, "field \(field) past the head: \(shown)")
            previous = field.value.upperBound
        }
        if requestIsHEAD || head.status < 200 || head.status == 204 || head.status == 304 {
            fuzzCheck(head.framing == .none, "a body (\(head.framing)) where there is none: \(shown)")
        }
        if head.status == 101 { fuzzCheck(head.upgradeField != nil, "101 without Upgrade: \(shown)") }
        if head.framing == .chunked { fuzzCheck(head.minorVersion == 1, "chunked HTTP/1.0: \(shown)") }
        if case .length(let length) = head.framing { fuzzCheck(length >= 0, "negative length: \(shown)") }
        if head.framing == .untilClose { fuzzCheck(!head.isKeepAlive, "a body until the close, kept alive: \(shown)") }
    }
}
