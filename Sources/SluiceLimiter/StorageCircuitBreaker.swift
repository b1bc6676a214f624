import Logging
import Synchronization

/// Stops sending decisions to a shared store (Redis, a memcached server) that keeps failing, so an outage costs
/// requests no latency (issue 5).
///
/// Closed: every decision goes to the store; `failureThreshold` failures in a row open it. Open: decisions go straight
/// to `on_error` until the backoff ends; then one decision is let through as a probe (half open): success closes
/// the breaker, failure opens it again for twice as long (up to `maxBackoff`). One log line per change of state,
/// never one per request.
///
/// Redis has one; memcached one per server (issue 21: a server that is down sends only its own keys to `on_error`).
public final class StorageCircuitBreaker: Sendable {
    private enum State {
        case closed(consecutiveFailures: Int)
        case open(until: LimiterInstant, backoff: Duration)
        case halfOpen(backoff: Duration)
    }

    private let state = Mutex<State>(.closed(consecutiveFailures: 0))
    private let failureThreshold: Int
    private let initialBackoff: Duration
    private let maxBackoff: Duration
    private let logger: Logger
    /// What the log says when the store answers again, and when it is given up on.
    private let recoveredMessage: Logger.Message
    private let unavailableMessage: Logger.Message

    public init(
        failureThreshold: Int = 3,
        initialBackoff: Duration = .milliseconds(500),
        maxBackoff: Duration = .seconds(10),
        logger: Logger,
        recoveredMessage: Logger.Message,
        unavailableMessage: Logger.Message
    ) {
        self.failureThreshold = failureThreshold
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
        self.logger = logger
        self.recoveredMessage = recoveredMessage
        self.unavailableMessage = unavailableMessage
    }

    /// Whether a decision may go to the server now (a probe when the backoff has just ended).
    public func allowsRequest(now: LimiterInstant) -> Bool {
        self.state.withLock { state in
            switch state {
            case .closed:
                return true
            case .open(let until, let backoff):
                guard now >= until else { return false }
                state = .halfOpen(backoff: backoff)
                return true
            case .halfOpen:
                // One probe at a time.
                return false
            }
        }
    }

    /// Whether decisions currently go to the server (for readiness).
    public var isClosed: Bool {
        self.state.withLock { if case .closed = $0 { true } else { false } }
    }

    /// A probe granted by ``allowsRequest(now:)`` was not used (another server of the request refused it): the next
    /// request may probe instead.
    public func probeAbandoned(now: LimiterInstant) {
        self.state.withLock { state in
            if case .halfOpen(let backoff) = state { state = .open(until: now, backoff: backoff) }
        }
    }

    /// The store moved to a server that should answer (a Sentinel failover): an open breaker lets the next request
    /// probe at once instead of waiting out its backoff.
    public func probeSoon() {
        self.state.withLock { state in
            if case .open(_, let backoff) = state {
                state = .open(until: LimiterInstant(nanosecondsSinceEpoch: 0), backoff: backoff)
            }
        }
    }

    public func recordSuccess() {
        let recovered: Bool = self.state.withLock { state in
            let wasDown: Bool
            switch state {
            case .closed: wasDown = false
            case .open, .halfOpen: wasDown = true
            }
            state = .closed(consecutiveFailures: 0)
            return wasDown
        }
        if recovered { self.logger.notice(self.recoveredMessage) }
    }

    public func recordFailure(_ error: any Error, now: LimiterInstant) {
        let opened: Duration? = self.state.withLock { state in
            switch state {
            case .closed(let failures):
                if failures + 1 >= self.failureThreshold {
                    state = .open(until: now.advanced(by: self.initialBackoff), backoff: self.initialBackoff)
                    return self.initialBackoff
                }
                state = .closed(consecutiveFailures: failures + 1)
                return nil
            case .halfOpen(let backoff):
                let next = min(backoff * 2, self.maxBackoff)
                state = .open(until: now.advanced(by: next), backoff: next)
                return nil
            case .open:
                return nil
            }
        }
        if let opened {
            self.logger.error(
                self.unavailableMessage,
                metadata: ["error": "\(error)", "retry_in": "\(opened)"]
            )
        }
    }
}
