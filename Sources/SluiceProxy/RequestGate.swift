import NIOCore
import NIOHTTP1
import SluiceConfig
import SluiceJWT
import SluiceLimiter

/// What the proxy knows about a request when it asks the gate, and what the gate tells the log.
struct GateContext: Sendable {
    var clientIP: IPAddress
    var peerIP: IPAddress
    /// The rule that decided (blocked, or the most constrained one), for the access log.
    var rule: String? = nil
    /// `admitted`, `limited`, `shadow_limited`, `exempt` or `none`.
    var decision: String = "none"
    /// The digest of the request's key under `rule` (the log's `key_hash`); `nil` when that rule has no key.
    var keyDigest: StorageKey? = nil
    /// Why the request's JWT gave no claims (the log's `jwt`), `nil` when it was verified or none is looked for.
    var jwt: JWTFailure? = nil

    init(clientIP: IPAddress, peerIP: IPAddress) {
        self.clientIP = clientIP
        self.peerIP = peerIP
    }
}

/// A response the gate produces instead of forwarding (a 429, say).
struct GateAnswer: Sendable {
    enum Content: Sendable {
        case text(headers: [(name: String, value: String)], body: String)
        /// A blocked request's answer, written from the limiter's values (``BlockedAnswer``).
        case blocked(BlockedAnswer)
    }

    var status: HTTPResponseStatus
    var content: Content

    init(status: HTTPResponseStatus, headers: [(name: String, value: String)], body: String) {
        self.status = status
        self.content = .text(headers: headers, body: body)
    }

    init(blocked: BlockedAnswer) {
        self.status = blocked.status
        self.content = .blocked(blocked)
    }

    var headers: [(name: String, value: String)] {
        switch self.content {
        case .text(let headers, _): return headers
        case .blocked(let blocked): return blocked.headerPairs
        }
    }

    var body: String {
        switch self.content {
        case .text(_, let body): return body
        case .blocked(let blocked): return blocked.body
        }
    }
}

/// How an admitted request is forwarded.
struct ForwardPlan: Sendable {
    /// Rate-limit fields added to the upstream's response.
    var rateLimitFields: RateLimitFieldValues? = nil
    /// Hold the request this long before forwarding (gcra `delay`, like nginx `limit_req delay=`).
    var delay: TimeAmount? = nil
    /// Told the upstream's status (`count_when` charges quota only for matching statuses).
    var responseObserver: (any ResponseStatusObserver)? = nil

    static let plain = ForwardPlan()
}

/// Something that wants to know the status the upstream answered with.
protocol ResponseStatusObserver: Sendable {
    func upstreamResponded(status: Int)
}

enum GateVerdict: Sendable {
    /// Forward as the plan says.
    case forward(ForwardPlan)
    /// Do not forward; answer this.
    case answer(GateAnswer)
    /// The decision needs a round trip (Redis): hold the request, unread, until the future (completed on the
    /// connection's event loop) says, with the context for the log.
    case later(EventLoopFuture<DecidedGate>)
}

/// A decision that took a round trip.
struct DecidedGate: Sendable {
    /// `.forward` or `.answer`.
    var verdict: GateVerdict
    var context: GateContext
}

/// The "decide, then forward or answer" step of the request path.
///
/// Called once per request head, on the connection's event loop; must not block.
protocol RequestGate: Sendable {
    func decide<R: RequestAttributes & Sendable>(_ request: R, context: inout GateContext, eventLoop: any EventLoop) -> GateVerdict
}

/// Forwards everything (no rules).
struct OpenGate: RequestGate {
    func decide<R: RequestAttributes & Sendable>(_ request: R, context: inout GateContext, eventLoop: any EventLoop) -> GateVerdict {
        .forward(.plain)
    }
}
