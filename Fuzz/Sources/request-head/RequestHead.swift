import FuzzSupport
import NIOCore
import SluiceConfig
import SluiceHTTP1
import SluiceLimiter
@testable import SluiceProxy

/// The request-head parser of the request path (``HTTPRequestHeadParser``), and what the proxy does with a head it
/// accepted, on arbitrary bytes read from one client connection.
///
/// Checks, for every message of a pipelined connection (and for the first under small limits):
/// - the head parses to the same result fed all at once, byte by byte and in random splits, with a parser that is
///   fresh and with one reused through `reset()` (as the proxy reuses it);
/// - an accepted head is consistent: offsets inside the head, in order; `Host` where HTTP/1.1 needs it;
/// - its attributes (``RawRequestAttributes``), client IP (``ClientIPResolver``) and normalised path read without
///   trapping; and the head written upstream (``UpstreamRequestHeadWriter``) is itself accepted by the parser with
///   the same method, origin-form target and framing;
/// - the body is skipped by its framing (chunked: ``ChunkedBodyParser``), and the next head is read after it.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRequestHead(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = FuzzInput.bytes(data, size)
    // Small limits, so that inputs of a few hundred bytes reach the size and field-count refusals (431).
    var small = HTTPRequestHeadParser(maxHeadBytes: 128, maxFields: 6)
    let smallWhole = RequestHeadFeeding.parse(input, pieces: [input.count], parser: &small)
    for pieces in FuzzInput.splits(of: input) {
        small.reset()
        let split = RequestHeadFeeding.parse(input, pieces: pieces, parser: &small)
        fuzzCheck(split == smallWhole, "small limits: split \(pieces) gave \(split), whole gave \(smallWhole): \(FuzzInput.escaped(input))")
    }
    if case .head(let head) = smallWhole { fuzzCheck(head.length <= 128 && head.fields.count <= 6, "over the limits: \(head)") }

    var reused = HTTPRequestHeadParser()
    var offset = 0
    // Up to 8 pipelined messages.
    for _ in 0..<8 where offset < input.count {
        let bytes = Array(input[offset...])
        var fresh = HTTPRequestHeadParser()
        let whole = RequestHeadFeeding.parse(bytes, pieces: [bytes.count], parser: &fresh)
        for pieces in FuzzInput.splits(of: bytes) {
            reused.reset()
            let split = RequestHeadFeeding.parse(bytes, pieces: pieces, parser: &reused)
            fuzzCheck(split == whole, "split \(pieces) gave \(split), whole gave \(whole): \(FuzzInput.escaped(bytes))")
        }
        guard case .head(let head) = whole else { return 0 }
        RequestHeadFeeding.checkConsistent(head, bytes)
        guard RequestHeadFeeding.followRequestPath(head, bytes) else { return 0 }

        var next = head.length
        switch head.framing {
        case .none:
            break
        case .length(let length):
            guard length <= bytes.count - next else { return 0 }
            next += length
        case .chunked:
            var body = ChunkedBodyParser()
            let rest = Array(bytes[next...])
            let result = rest.withUnsafeBytes { raw in
                body.parse(raw) { range in
                    fuzzCheck(range.lowerBound >= 0 && range.upperBound <= rest.count, "chunk data \(range) outside the read")
                }
            }
            guard case .end(let end) = result else { return 0 }
            fuzzCheck(end > 0 && end <= rest.count, "chunked body end \(end) outside the read of \(rest.count)")
            next += end
        }
        guard head.isKeepAlive, !head.isUpgrade else { return 0 }
        offset += next
    }
    return 0
}

enum RequestHeadFeeding {
    /// Feeds `bytes` as reads arrive: each piece extends the bytes the parser is given (it keeps no bytes itself).
    static func parse(_ bytes: [UInt8], pieces: [Int], parser: inout HTTPRequestHeadParser) -> HTTPRequestHeadParser.Result {
        var result = HTTPRequestHeadParser.Result.needMoreBytes
        var fed = 0
        for piece in pieces {
            fed = min(bytes.count, fed + piece)
            result = bytes[0..<fed].withUnsafeBytes { parser.parse($0) }
            if case .needMoreBytes = result { continue }
            return result
        }
        return result
    }

    static func checkConsistent(_ head: ParsedRequestHead, _ bytes: [UInt8]) {
        let shown = FuzzInput.escaped(bytes.prefix(head.length))
        fuzzCheck(head.length > 0 && head.length <= bytes.count, "head length \(head.length) of \(bytes.count) bytes")
        fuzzCheck(bytes[head.length - 1] == 0x0A && bytes[head.length - 2] == 0x0D, "head does not end with CRLF: \(shown)")
        fuzzCheck(!head.method.isEmpty && !head.target.isEmpty, "empty method or target: \(shown)")
        fuzzCheck(head.method.upperBound < head.target.lowerBound, "method after target: \(shown)")
        fuzzCheck(head.minorVersion == 0 || head.minorVersion == 1, "version 1.\(head.minorVersion): \(shown)")
        var previous = head.target.upperBound
        for field in head.fields {
            fuzzCheck(!field.name.isEmpty && field.name.lowerBound > previous, "field \(field) out of order: \(shown)")
            fuzzCheck(field.value.lowerBound > field.name.upperBound, "value before name in \(field): \(shown)")
            fuzzCheck(field.value.upperBound <= head.length - 2, "field \(field) past the head: \(shown)")
            previous = field.value.upperBound
        }
        if head.minorVersion == 1 { fuzzCheck(head.hostField != nil, "HTTP/1.1 without Host accepted: \(shown)") }
        if let host = head.hostField {
            let name = head.fields[host].name
            fuzzCheck(bytes[name].count == 4 && bytes[name].allSatisfy { "hostHOST".utf8.contains($0) }, "Host index: \(shown)")
        }
        if case .length(let length) = head.framing { fuzzCheck(length >= 0, "negative length: \(shown)") }
        if head.framing == .chunked { fuzzCheck(head.minorVersion == 1, "chunked HTTP/1.0: \(shown)") }
    }

    /// What the proxy does with an accepted head before forwarding it (ProxyConnectionHandler): its attributes, the
    /// client IP behind trusted proxies, the normalised path, and the head written upstream. `false` when the
    /// proxy answers the request itself (a target it does not forward, CONNECT).
    static func followRequestPath(_ head: ParsedRequestHead, _ bytes: [UInt8]) -> Bool {
        let buffer = ByteBuffer(bytes: bytes[0..<head.length])
        guard let attributes = RawRequestAttributes(head: head, bytes: buffer, clientIP: Self.peer) else { return false }
        for header in [ClientIPHeader.xForwardedFor, .xRealIP, .forwarded] {
            let resolver = ClientIPResolver(trustedProxies: Self.trusted, header: header)
            let values = attributes.headerValues(header.rawValue)
            let ip = resolver.resolve(peer: Self.peer, headerValues: values)
            fuzzCheck(ip == Self.peer || !values.isEmpty, "client IP \(ip) without a \(header.rawValue) field")
        }
        let path = PathNormalizer.normalize(attributes.uri)
        fuzzCheck(PathNormalizer.normalize(String(path)) == path, "normalising \(attributes.uri) twice changed it")
        guard attributes.method != "CONNECT" else { return false }

        var upstream = ByteBuffer()
        bytes.withUnsafeBytes { raw in
            UpstreamRequestHeadWriter.write(head, bytes: raw, settings: Self.settings, into: &upstream)
        }
        let written = Array(upstream.readableBytesView)
        var parser = HTTPRequestHeadParser(maxHeadBytes: Int.max, maxFields: Int.max)
        let reparsed = written.withUnsafeBytes { parser.parse($0) }
        guard case .head(let forwarded) = reparsed else {
            fuzzCheck(false, "the upstream head is refused (\(reparsed)): \(FuzzInput.escaped(written)) from \(FuzzInput.escaped(bytes[0..<head.length]))")
            return false
        }
        fuzzCheck(forwarded.length == written.count, "the upstream head has bytes after its end: \(FuzzInput.escaped(written))")
        fuzzCheck(written[forwarded.method] == bytes[head.method], "the upstream head changed the method: \(FuzzInput.escaped(written))")
        fuzzCheck(forwarded.framing == head.framing, "the upstream head's framing \(forwarded.framing) is not \(head.framing): \(FuzzInput.escaped(written))")
        fuzzCheck(forwarded.minorVersion == 1, "the upstream head is not HTTP/1.1")
        let target = String(decoding: written[forwarded.target], as: UTF8.self)
        fuzzCheck(target == attributes.uri || attributes.uri == "" && target == "/", "upstream target \(target), attributes \(attributes.uri)")
        return true
    }

    static let peer = IPAddress(ipv4: 0x0A00_0001)
    static let trusted = [CIDR("10.0.0.0/8")!, CIDR("::1")!, CIDR("192.168.0.0/16")!]
    static let settings = UpstreamRequestHeadWriter.Settings(
        preserveHost: true,
        upstreamHost: "upstream.example:8080",
        forwardedProto: "http",
        peer: "10.0.0.1"
    )
}
