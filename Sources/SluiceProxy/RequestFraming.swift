import NIOHTTP1

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
