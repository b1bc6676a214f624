import NIOHTTP1

/// One answer of the admin listener, built by ``AdminRouter`` and written by ``AdminHTTPHandler``.
///
/// A plain value: routing is tested without sockets, and only the handler turns this into response parts.
public struct AdminResponse: Sendable, Equatable {
    public var status: HTTPResponseStatus
    /// Extra headers; `Content-Length` and `Connection` are added by the handler.
    public var headers: [(String, String)]
    public var body: String

    public init(status: HTTPResponseStatus, headers: [(String, String)] = [], body: String = "") {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// The value of header `name` (case-insensitive), `nil` if absent.
    public func header(_ name: String) -> String? {
        self.headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    public static func == (lhs: AdminResponse, rhs: AdminResponse) -> Bool {
        lhs.status == rhs.status && lhs.body == rhs.body
            && lhs.headers.map { "\($0.0)\u{0}\($0.1)" } == rhs.headers.map { "\($0.0)\u{0}\($0.1)" }
    }

    /// `text/plain` with a trailing newline, so `curl` output ends cleanly.
    static func text(_ status: HTTPResponseStatus, _ text: String) -> AdminResponse {
        AdminResponse(status: status, headers: [("Content-Type", "text/plain; charset=utf-8")], body: text + "\n")
    }

    /// `application/json` with a trailing newline.
    static func json(_ status: HTTPResponseStatus, _ value: AdminJSON) -> AdminResponse {
        AdminResponse(status: status, headers: [("Content-Type", "application/json")], body: value.rendered() + "\n")
    }

    /// A JSON error body `{"error": "..."}`.
    static func error(_ status: HTTPResponseStatus, _ message: String) -> AdminResponse {
        .json(status, .object([("error", .string(message))]))
    }
}
