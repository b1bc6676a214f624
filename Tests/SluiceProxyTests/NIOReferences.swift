import NIOHTTP1
import SluiceConfig
import SluiceLimiter

@testable import SluiceProxy

/// The NIOHTTP1-era upstream rewrite, kept as the reference ``UpstreamRequestHeadWriter`` is checked against
/// (`UpstreamRequestHeadWriterTests`): the request path itself no longer uses NIOHTTP1 (issue 19).
///
/// How a request's body is delimited, read once from the client's head (RFC 9112 §6.3).
///
/// The client decoder has already refused every ambiguous head (both `Content-Length` and `Transfer-Encoding`, a
/// coding list not ending in `chunked`, a malformed or repeated length; SPEC §3), so what is left is one of three
/// cases. The upstream head carries exactly the framing the decoder used to cut the body: header rewriting
/// (hop-by-hop removal, `Connection` options) can never leave a forwarded body unframed, which would let the
/// upstream read it as further requests.
enum RequestFraming: Equatable {
    /// No body (neither field): the next bytes are the next request.
    case none
    /// `Content-Length: n`.
    case length(Int)
    /// `Transfer-Encoding: chunked` (the upstream gets `chunked` alone: the other codings are hop-by-hop).
    case chunked

    /// The framing of a request head the decoder accepted; `nil` when the `Content-Length` is not a plain number
    /// (the decoder refuses those, so this is a second line of defence).
    init?(head: HTTPRequestHead) {
        if head.headers.contains(name: "transfer-encoding") {
            self = .chunked
            return
        }
        // Most requests have neither field: decided without building any list.
        guard head.headers.contains(name: "content-length") else {
            self = .none
            return
        }
        let lengths = head.headers[canonicalForm: "content-length"]
        guard let first = lengths.first else {
            self = .none
            return
        }
        guard let length = Int(first), length >= 0, first.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
            lengths.allSatisfy({ $0 == first })
        else { return nil }
        self = .length(length)
    }

    /// Whether `headers` state exactly this framing and nothing else: the check made where the head is written.
    func isExplicit(in headers: HTTPHeaders) -> Bool {
        let lengthFields = headers.count(name: "content-length")
        let codingFields = headers.count(name: "transfer-encoding")
        switch self {
        case .none:
            return lengthFields == 0 && codingFields == 0
        case .length(let n):
            guard lengthFields == 1, codingFields == 0, let value = headers.first(name: "content-length") else {
                return false
            }
            return Int(value) == n
        case .chunked:
            return lengthFields == 0 && codingFields == 1
                && headers.first(name: "transfer-encoding")?.equalsLowercasedASCII("chunked") == true
        }
    }

    /// Replaces whatever framing fields `headers` has with exactly this framing.
    func apply(to headers: inout HTTPHeaders) {
        headers.remove(name: "content-length")
        headers.remove(name: "transfer-encoding")
        switch self {
        case .none: break
        case .length(let n): headers.add(name: "Content-Length", value: String(n))
        case .chunked: headers.add(name: "Transfer-Encoding", value: "chunked")
        }
    }
}

/// The NIOHTTP1-era rewrite of a request head for the upstream (SPEC §3), on `HTTPHeaders`.
enum NIOUpstreamRewrite {
    /// The rewrite (``UpstreamRequestHeadWriter`` does the same on raw bytes; a differential test holds the two together).
    ///
    /// - Parameter framing: the client head's, read once when it arrived; the encoders run with automatic framing
    ///   off, so the upstream gets exactly this framing (checked again where the head is written, in
    ///   `upstreamAttached`).
    static func rewriteForUpstream(
        _ head: inout HTTPRequestHead,
        framing: RequestFraming,
        settings: UpstreamRequestHeadWriter.Settings
    ) {
        let isUpgrade = head.isUpgradeRequest
        let clientHost = head.headers.first(name: "host")
        HopByHop.strip(&head.headers, keepUpgrade: isUpgrade)
        if !framing.isExplicit(in: head.headers) {
            framing.apply(to: &head.headers)
        }
        // Sluice answers `Expect: 100-continue` itself once the request is admitted (like nginx),
        // so the upstream never waits for a continue that is not coming.
        head.headers.remove(name: "expect")
        if head.headers.contains(name: "x-forwarded-for") {
            let existing = head.headers["x-forwarded-for"].joined(separator: ", ")
            head.headers.replaceOrAdd(name: "X-Forwarded-For", value: existing + ", " + settings.peer)
        } else {
            head.headers.add(name: "X-Forwarded-For", value: settings.peer)
        }
        head.headers.replaceOrAdd(name: "X-Forwarded-Proto", value: settings.forwardedProto)
        if let clientHost {
            head.headers.replaceOrAdd(name: "X-Forwarded-Host", value: clientHost)
        } else {
            // Sluice sets this field; a client's own (an HTTP/1.0 request without Host) never passes.
            head.headers.remove(name: "x-forwarded-host")
        }
        if !settings.preserveHost || clientHost == nil {
            head.headers.replaceOrAdd(name: "Host", value: settings.upstreamHost)
        }
        head.version = .http1_1
    }
}

extension HTTPRequestHead {
    /// An `Upgrade` that counts: the header present AND named in `Connection` (RFC 9110 §7.8).
    var isUpgradeRequest: Bool {
        self.headers.contains(name: "upgrade")
            && self.headers[canonicalForm: "connection"].contains { $0.lowercased() == "upgrade" }
    }
}

// MARK: the NIOHTTP1-era hop-by-hop stripping (the reference ClientResponseHeadWriterTests and the rewrite above use)

extension HopByHop {
    /// Removes hop-by-hop headers, including every header the `Connection` field names except the
    /// ``protectedNames``.
    ///
    /// - Parameter keepUpgrade: keep `Upgrade` and set `Connection: upgrade` (WebSocket tunnels).
    static func strip(_ headers: inout HTTPHeaders, keepUpgrade: Bool) {
        // One scan finds which hop-by-hop names are present; most messages carry none, and the
        // usual upstream response only `Connection: keep-alive`, so `remove` (a scan per name)
        // runs only for names that are there.
        var present: UInt16 = 0
        for (name, _) in headers {
            if let index = Self.hopByHopIndex(name) { present |= 1 << index }
        }
        guard present != 0 else { return }
        var upgrade: [String] = []
        if keepUpgrade {
            upgrade = headers["upgrade"]
        }
        if present & 1 != 0 {  // connection
            for token in headers[canonicalForm: "connection"] {
                let t = token.lowercased()
                if t != "close" && t != "keep-alive" && t != "upgrade" && Self.hopByHopIndex(t) == nil
                    && !Self.isProtected(t)
                {
                    headers.remove(name: t)
                }
            }
        }
        for (index, name) in Self.names.enumerated() where present & (1 << index) != 0 {
            headers.remove(name: name)
        }
        if keepUpgrade && !upgrade.isEmpty {
            for value in upgrade { headers.add(name: "Upgrade", value: value) }
            headers.add(name: "Connection", value: "upgrade")
        }
    }

    /// Whether a `Connection` option naming `lowercasedName` must be ignored (``protectedNames``).
    static func isProtected(_ lowercasedName: String) -> Bool {
        Self.protectedNames.contains(lowercasedName)
    }

    @inline(__always)
    static func isHopByHop(_ name: String) -> Bool {
        self.hopByHopIndex(name) != nil
    }

    /// The index of `name` in ``names``, compared case-insensitively without allocating.
    @inline(__always)
    static func hopByHopIndex(_ name: String) -> Int? {
        // Length filter first: the common headers (host, accept, user-agent...) fail it cheaply.
        switch name.utf8.count {
        case 2, 7, 10, 16, 17, 18, 19:
            for (index, n) in Self.names.enumerated() where name.equalsLowercasedASCII(n) {
                return index
            }
            return nil
        default:
            return nil
        }
    }
}

// MARK: the NIOHTTP1-era request reading (the reference RawRequestAttributesTests holds RawRequestAttributes to)

/// A request head as the limiter sees it; reads headers in place, copies nothing.
///
/// The head is already in origin form with the host of an absolute-form target as its `Host`
/// (``AbsoluteFormTarget``); the limiter trims values and normalises the host itself.
struct HeadAttributes: RequestAttributes {
    let head: HTTPRequestHead
    let clientIP: IPAddress

    var method: String { self.head.method.rawValue }
    var uri: String { self.head.uri }
    var host: String? { self.head.headers.first(name: "host") }

    func header(_ name: String) -> String? {
        self.head.headers.first(name: name)
    }

    func forEachHeaderValue(_ name: String, _ body: (String) -> Bool) {
        for (fieldName, value) in self.head.headers where fieldName.equalsLowercasedASCII(name) {
            guard body(value) else { return }
        }
    }
}


extension String {
    /// ASCII case-insensitive equality against a lower-case literal, without allocating.
    @inline(__always)
    func equalsLowercasedASCII(_ lowercased: String) -> Bool {
        guard self.utf8.count == lowercased.utf8.count else { return false }
        for (a, b) in zip(self.utf8, lowercased.utf8) {
            let folded = (a >= UInt8(ascii: "A") && a <= UInt8(ascii: "Z")) ? a | 0x20 : a
            if folded != b { return false }
        }
        return true
    }
}

extension HTTPHeaders {
    /// How many fields are named `lowercasedName` (not comma-split), without allocating.
    func count(name lowercasedName: String) -> Int {
        var n = 0
        for (name, _) in self where name.equalsLowercasedASCII(lowercasedName) {
            n += 1
        }
        return n
    }
}
