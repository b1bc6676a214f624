import SluiceLimiter

/// The life of one client connection, as a value: events in, actions out (issue 19 item 4).
///
/// ``ProxyConnectionHandler`` owns the bytes, the upstream connection and the timers; it tells this machine what
/// happened and does what the returned action says. The machine decides everything that has a rule: whether the
/// connection stays open after an exchange, when the next pipelined request may start, what a failure is
/// answered with (or whether only a close is left), when a request is retried on a fresh upstream connection,
/// and when the connection becomes a tunnel. It holds no `ChannelHandlerContext`, so it is tested event by
/// event without a socket (`ProxyConnectionStateMachineTests`), the way postgres-nio and async-http-client
/// test theirs.
///
/// One request is in flight at a time: bytes of a pipelined request wait in the handler until the exchange
/// before it has ended, so responses can never be reordered.
///
/// The machine owns the exchange's concurrency slots (issue 22, ``slotsTaken(_:)``) and gives them back the moment its
/// state leaves the exchange: to `idle` (the response ended), `answered` (any local answer: a refusal, 502, 504, 408,
/// ...), or `closed` (the client left, an error, a timeout); a tunnel keeps them until it closes. The release sits in
/// ``state``'s observer, so no transition can skip it, and ``ConcurrencyAdmission/release()`` runs once. The exchange's
/// place under the upstream's adaptive limit (``upstreamAdmitted(_:)``, issue 22 item 7) is released at the same
/// points, and when a tunnel starts; its latency is a sample only when the response ended.
struct ProxyConnectionStateMachine {
    /// What the machine needs to know of a request head.
    struct Request: Equatable {
        var minorVersion: Int
        /// The client's side of keep-alive (RFC 9112 §9.3).
        var keepAlive: Bool
        /// An `Upgrade` named by `Connection`: the bytes after it belong to another protocol unless refused.
        var isUpgrade: Bool
        /// `Expect: 100-continue`.
        var expectsContinue: Bool
        /// Replaying it on a fresh connection cannot change its meaning (RFC 9110 §9.2.2).
        var isIdempotent: Bool
        /// A body follows the head (`Content-Length` > 0 or chunked).
        var hasBody: Bool
        /// The body is small and announced, so after a local answer it is read and dropped to keep the
        /// connection (like nginx); a chunked or large body, or one the client only sends after a
        /// `100 Continue`, is not worth reading or waiting for: such connections close.
        var bodyWorthDiscarding: Bool
    }

    /// Where the exchange's upstream connection is.
    enum Upstream: Equatable {
        /// Not asked for yet (the gate is deciding, or a `delay` holds the request).
        case none
        case connecting
        /// Attached; `reused`: it came from the pool and may have gone stale.
        case attached(reused: Bool)
    }

    enum Response: Equatable {
        case awaitingHead
        /// The head went to the client; `keepAlive`: the connection stays open after it.
        case streaming(keepAlive: Bool)
    }

    /// One request and its response.
    struct Exchange: Equatable {
        var request: Request
        var requestEnded: Bool
        var upstream: Upstream = .none
        /// Body bytes arrived (forwarded, or buffered until the upstream connection is attached).
        var bodyReceived = false
        /// Body bytes went to an upstream connection: the request can no longer be replayed.
        var bodyForwarded = false
        var response: Response = .awaitingHead
        var retried = false

        init(request: Request) {
            self.request = request
            self.requestEnded = !request.hasBody
        }
    }

    enum State: Equatable {
        /// Waiting for the next request head (idle keep-alive, or a head arriving).
        case idle
        /// A request is being decided or forwarded.
        case exchange(Exchange)
        /// A response was produced locally; the rest of the request body, if any, is read and dropped.
        case answered(closeAfter: Bool, requestEnded: Bool)
        /// A byte tunnel after a `101`.
        case tunnel
        /// Closing or closed: nothing more is read as HTTP.
        case closed
    }

    private(set) var state = State.idle {
        didSet {
            guard self.slots != nil || self.upstreamTicket != nil else { return }
            switch self.state {
            case .exchange:
                break
            case .tunnel:
                // A tunnel's life says nothing about the upstream's latency, and it is no request in flight.
                self.upstreamTicket.take()?.release()
            case .idle, .answered, .closed:
                self.slots.take()?.release()
                self.upstreamTicket.take()?.release()
            }
        }
    }
    /// The concurrency slots of the exchange in flight, `nil` when no concurrency rule applies (issue 22).
    private(set) var slots: ConcurrencyAdmission?
    /// The exchange's place under the upstream's adaptive limit (issue 22 item 7), from forwarding until the exchange
    /// is over (released with the slots; a sample only when ``responseEnded(upstreamReusable:)`` was reached);
    /// `nil` without `upstream.adaptive_concurrency` or before forwarding.
    private(set) var upstreamTicket: AdaptiveConcurrencyTicket?
    /// The client shut its side down: no bytes follow the ones already received.
    private(set) var inputClosed = false

    // MARK: actions

    /// What to do after a local answer's bytes are written.
    enum AfterAnswer: Equatable {
        /// Read the next request (keep-alive).
        case readNextRequest
        /// Keep reading and dropping the request's body.
        case discardBody
        /// Close once the answer is flushed; `linger`: the client may still be sending, so shut our side and
        /// drop what it sends for a while first (nginx's lingering close), or its unread data would reset the
        /// connection and destroy the answer.
        case closeWhenFlushed(linger: Bool)
    }

    enum AnswerAction: Equatable {
        /// Close the upstream connection first when `abortUpstream`; write the answer (with `Connection: close`
        /// when `close`), then do `then`.
        case answer(close: Bool, abortUpstream: Bool, then: AfterAnswer)
        /// A response has started already: only a close is left (the client sees a truncated message).
        case closeConnection(abortUpstream: Bool)
        /// Nothing to answer (the connection is closing, or the exchange is no longer current).
        case none
    }

    // MARK: request side

    /// A request head arrived and passed the parser. Returns `false` when none was expected (the connection
    /// must close).
    mutating func requestHeadReceived(_ request: Request) -> Bool {
        guard case .idle = self.state else { return false }
        self.state = .exchange(Exchange(request: request))
        return true
    }

    /// The exchange's concurrency admission (before it takes its first slot): the machine owns it from now on and
    /// releases it when the exchange is over. Returns `false`, having released it, when no exchange is in flight.
    mutating func slotsTaken(_ admission: ConcurrencyAdmission) -> Bool {
        guard case .exchange = self.state, self.slots == nil else {
            admission.release()
            return false
        }
        self.slots = admission
        return true
    }

    /// The exchange was admitted under the upstream's adaptive limit (just before it asks for an upstream connection):
    /// the machine owns `ticket` from now on. Returns `false`, having released it, when no exchange is in flight.
    mutating func upstreamAdmitted(_ ticket: AdaptiveConcurrencyTicket) -> Bool {
        guard case .exchange = self.state, self.upstreamTicket == nil else {
            ticket.release()
            return false
        }
        self.upstreamTicket = ticket
        return true
    }

    /// The request gets a local answer: the gate's (429, 503), a refusal (405, 413, 400), or a failure of the
    /// upstream (502, 504) or of the client (408, 400/413/431 in the body).
    ///
    /// - Parameters:
    ///   - closeRequested: the answer itself ends the connection (a refusal that leaves the stream unreadable).
    ///   - isDraining: Sluice is shutting down gracefully.
    mutating func answerLocally(closeRequested: Bool, isDraining: Bool) -> AnswerAction {
        guard case .exchange(let exchange) = self.state else { return .none }
        let abort = exchange.upstream != .none
        if case .streaming = exchange.response {
            self.state = .closed
            return .closeConnection(abortUpstream: abort)
        }
        let request = exchange.request
        let bodyLeft = !exchange.requestEnded
        // After an upgrade request the stream may already carry the other protocol; a refused upgrade ends it.
        // A body that was partly forwarded, or is not worth reading, cannot be skipped safely.
        let close =
            closeRequested || !request.keepAlive || request.isUpgrade || isDraining
            || (bodyLeft && (!request.bodyWorthDiscarding || exchange.bodyForwarded))
        self.state = .answered(closeAfter: close, requestEnded: exchange.requestEnded)
        return .answer(close: close, abortUpstream: abort, then: self.afterAnswer(close: close, requestEnded: exchange.requestEnded))
    }

    private mutating func afterAnswer(close: Bool, requestEnded: Bool) -> AfterAnswer {
        if close || (requestEnded && self.inputClosed) {
            self.state = .closed
            return .closeWhenFlushed(linger: !requestEnded && !self.inputClosed)
        }
        if requestEnded {
            self.state = .idle
            return .readNextRequest
        }
        return .discardBody
    }

    enum BodyAction: Equatable {
        /// Write it to the upstream connection.
        case forward
        /// Keep it until the upstream connection is attached.
        case buffer
        /// A local answer was given: drop it.
        case discard
    }

    /// Request body bytes arrived.
    mutating func requestBodyReceived() -> BodyAction {
        switch self.state {
        case .exchange(var exchange):
            exchange.bodyReceived = true
            defer { self.state = .exchange(exchange) }
            guard case .attached = exchange.upstream else { return .buffer }
            exchange.bodyForwarded = true
            return .forward
        default:
            return .discard
        }
    }

    enum RequestEndAction: Equatable {
        /// Flush the upstream connection; the response timer starts.
        case flushUpstream
        /// Remember it; it goes out with the buffered body once the upstream connection is attached.
        case buffer
        /// The body of a locally answered request ended: read the next request.
        case readNextRequest
        /// ... or close, the client having shut its side.
        case closeWhenFlushed
        case none
    }

    /// The request's last byte arrived.
    mutating func requestEnded() -> RequestEndAction {
        switch self.state {
        case .exchange(var exchange):
            exchange.requestEnded = true
            self.state = .exchange(exchange)
            if case .attached = exchange.upstream { return .flushUpstream }
            return .buffer
        case .answered(let closeAfter, false):
            if closeAfter {
                self.state = .answered(closeAfter: true, requestEnded: true)
                return .none
            }
            if self.inputClosed {
                self.state = .closed
                return .closeWhenFlushed
            }
            self.state = .idle
            return .readNextRequest
        default:
            return .none
        }
    }

    // MARK: upstream connection

    /// The gate admitted the request (after its `delay`, if any): an upstream connection is wanted.
    /// Returns `false` when the exchange is gone (answered or closed meanwhile).
    mutating func upstreamWanted() -> Bool {
        guard case .exchange(var exchange) = self.state, exchange.upstream == .none else { return false }
        exchange.upstream = .connecting
        self.state = .exchange(exchange)
        return true
    }

    enum AttachAction: Equatable {
        /// Write the upstream head and what was buffered; send `100 Continue` to the client first when
        /// `sendContinue`; `requestEnded`: flush and start the response timer.
        case writeRequest(sendContinue: Bool, requestEnded: Bool)
        /// The exchange is gone: close the new connection.
        case closeUpstream
    }

    mutating func upstreamAttached(reused: Bool) -> AttachAction {
        guard case .exchange(var exchange) = self.state, exchange.upstream == .connecting else { return .closeUpstream }
        exchange.upstream = .attached(reused: reused)
        // A retry replays only a request without body bytes forwarded; its continue was sent the first time.
        let sendContinue = exchange.request.expectsContinue && !exchange.requestEnded && !exchange.retried
        // Buffered body bytes go out now.
        exchange.bodyForwarded = exchange.bodyForwarded || exchange.bodyReceived
        self.state = .exchange(exchange)
        return .writeRequest(sendContinue: sendContinue, requestEnded: exchange.requestEnded)
    }

    enum UpstreamClosedAction: Equatable {
        /// Connect again, without the pool, and replay the request.
        case retry
        /// Answer the client (502), as ``answerLocally(closeRequested:isDraining:)`` says.
        case answer(AnswerAction)
        case none
    }

    /// The upstream connection closed (or failed) before the response ended; `beforeResponse`: no byte of a
    /// response came.
    mutating func upstreamClosed(isDraining: Bool) -> UpstreamClosedAction {
        guard case .exchange(var exchange) = self.state, exchange.upstream != .none else { return .none }
        // A pooled connection the upstream closed while idle: retry once on a fresh one when replaying the
        // request cannot change its meaning.
        if exchange.response == .awaitingHead, !exchange.retried, exchange.request.isIdempotent, !exchange.bodyForwarded,
            exchange.upstream == .attached(reused: true)
        {
            exchange.retried = true
            exchange.upstream = .connecting
            self.state = .exchange(exchange)
            return .retry
        }
        exchange.upstream = .none
        self.state = .exchange(exchange)
        return .answer(self.answerLocally(closeRequested: false, isDraining: isDraining))
    }

    // MARK: response side

    enum ResponseHeadAction: Equatable {
        /// Write the head; `keepAlive` says whether the connection stays open after the response.
        case writeHead(keepAlive: Bool)
        /// A `101` to an upgrade request: write it and turn the connection into a tunnel.
        case switchProtocols
        /// A `101` nobody asked for: close both connections.
        case closeConnection
        case none
    }

    /// The upstream's final response head (or its `101`) arrived.
    mutating func responseHeadReceived(switchingProtocols: Bool, isDraining: Bool) -> ResponseHeadAction {
        guard case .exchange(var exchange) = self.state, exchange.response == .awaitingHead else { return .none }
        if switchingProtocols {
            guard exchange.request.isUpgrade else {
                self.state = .closed
                return .closeConnection
            }
            self.state = .tunnel
            return .switchProtocols
        }
        let keepAlive = exchange.request.keepAlive && !exchange.request.isUpgrade && !isDraining
        self.upstreamTicket?.responded()
        exchange.response = .streaming(keepAlive: keepAlive)
        self.state = .exchange(exchange)
        return .writeHead(keepAlive: keepAlive)
    }

    /// The response cannot be framed for this client but by closing the connection (an HTTP/1.0 client and a
    /// body without `Content-Length`).
    mutating func responseMustClose() {
        guard case .exchange(var exchange) = self.state, case .streaming = exchange.response else { return }
        exchange.response = .streaming(keepAlive: false)
        self.state = .exchange(exchange)
    }

    enum ResponseEndAction: Equatable {
        /// What to do with the upstream connection: give it back to the pool, or close it.
        case finish(releaseUpstream: Bool, then: AfterResponse)
        case none
    }

    enum AfterResponse: Equatable {
        case readNextRequest
        case closeWhenFlushed(linger: Bool)
    }

    /// The response's last byte arrived from the upstream; `upstreamReusable`: it may carry another request.
    mutating func responseEnded(upstreamReusable: Bool) -> ResponseEndAction {
        guard case .exchange(let exchange) = self.state, case .streaming(let keepAlive) = exchange.response else {
            return .none
        }
        // Answered before the request body finished: the rest of it cannot be skipped safely on either connection.
        let release = upstreamReusable && exchange.requestEnded
        // The response was relayed to its end: its latency is a sample of the upstream's (released just below).
        self.upstreamTicket?.completed = true
        if keepAlive && exchange.requestEnded && !self.inputClosed {
            self.state = .idle
            return .finish(releaseUpstream: release, then: .readNextRequest)
        }
        self.state = .closed
        return .finish(releaseUpstream: release, then: .closeWhenFlushed(linger: !exchange.requestEnded && !self.inputClosed))
    }

    // MARK: timers and the client's end

    /// `upstream_response` passed without a response head: 504, unless a response started.
    mutating func responseTimedOut(isDraining: Bool) -> AnswerAction {
        guard case .exchange(let exchange) = self.state, exchange.response == .awaitingHead, exchange.upstream != .none else {
            return .none
        }
        return self.answerLocally(closeRequested: false, isDraining: isDraining)
    }

    /// `body_read` passed without request body bytes: 408 when no response has started (closing), else a close.
    mutating func bodyTimedOut() -> AnswerAction {
        switch self.state {
        case .exchange(let exchange) where !exchange.requestEnded:
            return self.answerLocally(closeRequested: true, isDraining: false)
        case .answered(_, false):
            self.state = .closed
            return .closeConnection(abortUpstream: false)
        default:
            return .none
        }
    }

    /// A refusal of the request's body bytes (a chunk-size line too long, a body over `max_body_bytes`): the
    /// answer when none has started, and the connection closes either way.
    mutating func requestBodyRefused() -> AnswerAction {
        switch self.state {
        case .exchange:
            return self.answerLocally(closeRequested: true, isDraining: false)
        case .answered:
            self.state = .closed
            return .closeConnection(abortUpstream: false)
        default:
            return .none
        }
    }

    enum InputClosedAction: Equatable {
        /// Between requests: close once what was written is flushed.
        case closeWhenFlushed
        /// A lingering close was waiting for this.
        case close
        case none
    }

    /// The client shut its sending side. `requestBytesPending`: bytes of a further request are still waiting
    /// to be read (they are served first).
    mutating func inputClosed(requestBytesPending: Bool) -> InputClosedAction {
        self.inputClosed = true
        switch self.state {
        case .idle where !requestBytesPending:
            self.state = .closed
            return .closeWhenFlushed
        case .closed:
            return .close
        default:
            return .none
        }
    }

    /// Idle with no complete request left after the client shut its side: close.
    mutating func idleAfterInputClosed() -> Bool {
        guard self.inputClosed, case .idle = self.state else { return false }
        self.state = .closed
        return true
    }

    /// The connection is closing for a reason outside the machine (an I/O error, a send timeout, an invalid
    /// request head): nothing more happens.
    mutating func close() {
        self.state = .closed
    }
}
