import NIOHTTP1

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
