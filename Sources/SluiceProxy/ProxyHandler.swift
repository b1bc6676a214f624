import NIOCore
import NIOHTTP1
import SluiceConfig

/// The client side of the proxy: one per client connection, last in its pipeline.
///
/// Consumes `HTTPServerRequestPart` (one request at a time: `HTTPServerPipelineHandler` in front
/// of it holds pipelined requests back until the previous response has ended, so responses can
/// never be reordered). For each request head it asks the ``RequestGate`` whether to forward;
/// admitted requests stream to an upstream connection of this event loop's pool and the response
/// streams back. Produces `HTTPServerResponsePart`.
///
/// Back-pressure both ways: the client is not read while the upstream connection is missing or
/// not writable, and the upstream is not read while the client is not writable.
///
/// Closes the client connection after a response when the client asked for it, when the
/// response cannot be framed for the client, when a request body was left unread, and on
/// protocol errors (after answering 400/431 when nothing was answered yet).
final class ProxyHandler: ChannelDuplexHandler, RemovableChannelHandler, UpstreamDelegate {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// One request and its response.
    final class Exchange {
        /// The head as it goes to the upstream (rewritten).
        var upstreamHead: HTTPRequestHead
        let clientVersion: HTTPVersion
        let method: HTTPMethod
        let clientKeepAlive: Bool
        let isUpgrade: Bool
        let expectsContinue: Bool
        let target: UpstreamTarget
        /// How the client delimited the body; the upstream head states exactly this (``RequestFraming``).
        let framing: RequestFraming
        let startedAt: NIODeadline
        var upstream: UpstreamConnection?
        /// Request parts that arrived before the upstream connection was ready.
        var buffered: [HTTPClientRequestPart] = []
        var requestEnded = false
        var requestBodyBytes = 0
        var bodyForwarded = false
        var responseHeadSent = false
        var responseEnded = false
        var responseStatus = 0
        var responseBytes = 0
        var keepClientAlive = true
        var upstreamReusable = false
        var retried = false
        /// The current upstream connection came from the pool (it may have gone stale).
        var onReusedConnection = false
        /// The upstream's `101` head, held until its message ends: the tunnel may only replace
        /// the HTTP handlers once the upstream's decoder has delivered the whole 101 message.
        var switchingHead: HTTPResponseHead?
        var extraResponseHeaders: [(name: String, value: String)]
        var responseObserver: (any ResponseStatusObserver)?
        let context: GateContext

        init(
            upstreamHead: HTTPRequestHead,
            clientHead: HTTPRequestHead,
            target: UpstreamTarget,
            framing: RequestFraming,
            extraResponseHeaders: [(name: String, value: String)],
            context: GateContext,
            now: NIODeadline
        ) {
            self.upstreamHead = upstreamHead
            self.clientVersion = clientHead.version
            self.method = clientHead.method
            // After an upgrade request the client's decoder stops parsing (what follows belongs to
            // the new protocol), so a refused upgrade must end the connection.
            self.clientKeepAlive = clientHead.isKeepAlive && !clientHead.isUpgradeRequest
            self.isUpgrade = clientHead.isUpgradeRequest
            self.expectsContinue =
                clientHead.headers.contains(name: "expect")
                && clientHead.headers[canonicalForm: "expect"].contains { $0.lowercased() == "100-continue" }
            self.target = target
            self.framing = framing
            self.extraResponseHeaders = extraResponseHeaders
            self.context = context
            self.startedAt = now
        }

        var isIdempotent: Bool {
            switch self.method {
            case .GET, .HEAD, .OPTIONS, .TRACE, .PUT, .DELETE: return true
            default: return false
            }
        }
    }

    /// Where the connection is in its request/response cycle.
    enum State {
        /// Waiting for the next request head (idle keep-alive, or a head arriving slowly).
        case awaitingHead
        /// A request is being forwarded (its upstream may still be connecting).
        case forwarding(Exchange)
        /// A response was produced locally; the rest of the request body, if any, is discarded.
        case answeredLocally(closeAfter: Bool, requestEnded: Bool)
        /// Switched to a byte tunnel (Upgrade); this handler is being removed.
        case tunnelling
        /// Closing: ignore everything.
        case closed
    }

    /// Largest request body read and dropped after a local answer to keep the connection open.
    static let maxDiscardedBodyBytes = 64 * 1024

    let shared: ProxyShared
    let pool: UpstreamPool
    /// `X-Forwarded-Proto`: `https` when this connection came through a TLS listener. Fixed at accept, so a
    /// reload that turns TLS on or off does not relabel connections already open.
    let forwardedProto: String
    var state: State = .awaitingHead
    var context: ChannelHandlerContext!
    var peerIP = IPAddress(ipv4: 0)
    /// `peerIP` as text, formatted once per connection for `X-Forwarded-For`.
    var peerText = "0.0.0.0"
    var readPending = false
    /// `header_read` (a head is arriving) or `idle` (between requests); see ``ConnectionTimer``.
    var connectionTimer = LazyDeadline()
    var connectionTimerKind = ConnectionTimer.head
    /// `upstream_response` for the exchange in flight.
    var responseTimer = LazyDeadline()
    /// `body_read`: armed whenever a read of a request body is passed on (see ``armBodyTimerIfReadingBody()``).
    var bodyTimer = LazyDeadline()
    /// `send`: armed while the client's output is above its high-water mark, or while a closing answer is
    /// being flushed (see ``armSendTimer()``).
    var sendTimer = LazyDeadline()
    /// Bytes buffered for the client when ``sendTimer`` was last armed.
    var sendBufferedBytes = 0

    enum ConnectionTimer {
        case head
        case idle
    }
    /// Bytes of a next request head have arrived while awaiting it.
    var headBytesSeen = false
    /// The client shut its side down (half-close): no request follows the current one, so the
    /// connection closes once the current response is out (HTTPServerPipelineHandler delivers
    /// this only after every request that arrived before it).
    var inputClosed = false
    /// Request heads received on this connection (``ChunkedFramingError/request`` counts the same way).
    var requestHeadsReceived = 0
    /// A refusal by ``ChunkedFramingGuard`` of a request whose head has not arrived yet (it waits in
    /// HTTPServerPipelineHandler behind the exchange in flight): answered when it does.
    var pendingFramingError: ChunkedFramingError?

    init(shared: ProxyShared, pool: UpstreamPool, overTLS: Bool = false) {
        self.shared = shared
        self.pool = pool
        self.forwardedProto = overTLS ? "https" : "http"
    }

    // MARK: channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.shared.metrics.connectionOpened()
        self.peerIP = IPAddress(context.channel.remoteAddress) ?? IPAddress(ipv4: 0)
        self.peerText = self.peerIP.description
        if context.channel.isActive {
            self.startHeadTimer()
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.shared.metrics.connectionClosed()
    }

    func channelActive(context: ChannelHandlerContext) {
        self.startHeadTimer()
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.connectionTimer.cancel()
        self.responseTimer.cancel()
        self.bodyTimer.cancel()
        self.sendTimer.cancel()
        if case .forwarding(let exchange) = self.state {
            if let upstream = exchange.upstream {
                upstream.handler.delegate = nil
                upstream.channel.close(promise: nil)
            }
        }
        self.state = .closed
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.requestHeadReceived(head)
        case .body(let body):
            self.requestBodyReceived(body)
        case .end(let trailers):
            self.requestEndReceived(trailers)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        switch self.state {
        case .awaitingHead:
            // Bytes of a head arrived (the decoder holds them): from now on the head must complete
            // within header_read, not idle.
            if !self.headBytesSeen {
                self.headBytesSeen = true
                if !(self.connectionTimer.isArmed && self.connectionTimerKind == .head) { self.startHeadTimer() }
            }
        case .forwarding(let exchange):
            if let upstream = exchange.upstream, exchange.bodyForwarded || exchange.requestEnded {
                upstream.channel.flush()
            }
        default:
            break
        }
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            if case .forwarding(let exchange) = self.state {
                exchange.upstream?.handler.resumeReading()
            }
            self.clientOutputDrained()
        } else {
            self.armSendTimer()
        }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event {
            self.inputClosed = true
            switch self.state {
            case .awaitingHead:
                self.closeAfterPendingWrites()
            case .closed:
                // A lingering close: the client has finished sending.
                context.close(promise: nil)
            default:
                break
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if case .closed = self.state {
            // Already closing (possibly behind an answer still being written): a late error, such
            // as the decoder refusing data after its own error, must not cut that answer off.
            return
        }
        if let framingError = error as? ChunkedFramingError {
            self.framingRefused(framingError)
            return
        }
        let status: HTTPResponseStatus
        if let parserError = error as? HTTPParserError {
            status = parserError == .headerOverflow ? .requestHeaderFieldsTooLarge : .badRequest
        } else {
            // I/O and TLS errors (reset by peer, a failed handshake, plain HTTP on a TLS port): nothing to answer.
            self.shared.logger.debug("client connection error", metadata: ["error": "\(error)", "peer": "\(self.peerIP)"])
            self.closeClient()
            return
        }
        self.shared.logger.debug("client protocol error", metadata: ["error": "\(error)", "peer": "\(self.peerIP)"])
        switch self.state {
        case .awaitingHead:
            self.writeRawErrorAndClose(status)
        case .forwarding(let exchange):
            self.abortUpstream(exchange)
            if !exchange.responseHeadSent {
                self.writeRawErrorAndClose(status)
            } else {
                self.closeClient()
            }
        case .answeredLocally, .tunnelling, .closed:
            self.closeClient()
        }
    }

    func read(context: ChannelHandlerContext) {
        if case .forwarding(let exchange) = self.state, !exchange.requestEnded {
            // Never read the client faster than the upstream takes its bytes.
            guard let upstream = exchange.upstream, upstream.channel.isWritable else {
                self.readPending = true
                // Not read, so not late: body_read counts only while the client is read.
                self.bodyTimer.disarm()
                return
            }
        }
        self.armBodyTimerIfReadingBody()
        context.read()
    }

    func resumeClientReading() {
        guard self.readPending else { return }
        self.readPending = false
        self.armBodyTimerIfReadingBody()
        self.context.read()
    }

    // MARK: request

    func requestHeadReceived(_ head: HTTPRequestHead) {
        var head = head  // rewritten below for an absolute-form target
        self.cancelConnectionTimers()
        self.headBytesSeen = false
        self.requestHeadsReceived += 1
        guard case .awaitingHead = self.state else {
            // HTTPServerPipelineHandler guarantees one request at a time.
            self.closeClient()
            return
        }
        if self.answerPendingFramingRefusal(head) { return }
        let config = self.shared.current()

        // A reverse proxy opens no tunnels to arbitrary hosts; the decoder also stops parsing
        // after a CONNECT (what follows would be tunnel bytes), so the connection closes.
        if head.method == .CONNECT {
            self.answerLocally(
                status: .methodNotAllowed,
                body: "CONNECT is not supported\n",
                head: head,
                close: true,
                headers: [("Allow", "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH")]
            )
            return
        }
        // RFC 9112 §3.2: an HTTP/1.1 request has exactly one Host.
        let hostCount = head.headers.count(name: "host")
        // A list in one field (`Host: a, b`) is two Hosts as well.
        let hostIsList = hostCount == 1 && head.headers.first(name: "host")!.utf8.contains(UInt8(ascii: ","))
        if (head.version.major == 1 && head.version.minor >= 1 && hostCount != 1) || hostCount > 1 || hostIsList {
            self.answerLocally(status: .badRequest, body: "bad request: missing or repeated Host\n", head: head, close: true)
            return
        }
        // RFC 9112 §3.2.2: an absolute-form target's authority is the host, whatever `Host` says. From here on
        // the request is its origin form with that `Host`, for the limiter and the upstream alike.
        switch AbsoluteFormTarget.parse(head.uri) {
        case .notAbsolute:
            break
        case .absolute(let authority, let originForm):
            head.uri = originForm
            head.headers.replaceOrAdd(name: "Host", value: String(authority))
        case .invalid:
            self.answerLocally(status: .badRequest, body: "bad request: invalid request target\n", head: head, close: true)
            return
        }
        guard let framing = RequestFraming(head: head) else {
            self.answerLocally(status: .badRequest, body: "bad request: invalid Content-Length\n", head: head, close: true)
            return
        }
        if config.maxBodyBytes > 0, case .length(let length) = framing, length > config.maxBodyBytes {
            self.answerLocally(status: .payloadTooLarge, body: "request body too large\n", head: head, close: true)
            return
        }

        let clientIP = config.clientIP.resolve(
            peer: self.peerIP,
            headerValues: config.clientIP.trustedProxies.isEmpty ? [] : head.headers[config.clientIP.header.rawValue]
        )
        var gateContext = GateContext(clientIP: clientIP, peerIP: self.peerIP)
        let plan: ForwardPlan
        switch config.gate.decide(head: head, context: &gateContext, eventLoop: self.context.eventLoop) {
        case .forward(let forwardPlan):
            plan = forwardPlan
        case .answer(let answer):
            self.answerLocally(answer: answer, head: head, context: gateContext)
            return
        case .later(let decided):
            self.awaitDecision(decided, head: head, framing: framing, context: gateContext, config: config)
            return
        }
        self.forward(head: head, framing: framing, plan: plan, context: gateContext, config: config)
    }

    /// Holds a request whose decision takes a round trip (Redis): the exchange exists without an upstream, so
    /// its body is buffered and the client is not read further (as during a `delay`), until the decision comes.
    private func awaitDecision(
        _ decided: EventLoopFuture<DecidedGate>,
        head: HTTPRequestHead,
        framing: RequestFraming,
        context gateContext: GateContext,
        config: ProxySnapshot
    ) {
        let target = self.pool.nextTarget(of: config.targets)
        let exchange = Exchange(
            upstreamHead: head,
            clientHead: head,
            target: target,
            framing: framing,
            extraResponseHeaders: [],
            context: gateContext,
            now: .now()
        )
        self.state = .forwarding(exchange)
        let loopBoundSelf = NIOLoopBound(self, eventLoop: self.context.eventLoop)
        let loopBoundExchange = NIOLoopBound(exchange, eventLoop: self.context.eventLoop)
        decided.hop(to: self.context.eventLoop).whenComplete { result in
            let this = loopBoundSelf.value
            let waiting = loopBoundExchange.value
            guard case .forwarding(let current) = this.state, current === waiting else { return }
            switch result {
            case .success(let decision):
                switch decision.verdict {
                case .forward(let plan):
                    this.forward(head: head, framing: framing, plan: plan, context: decision.context, config: config)
                case .answer(let answer):
                    this.answerLocally(answer: answer, head: head, context: decision.context, requestEnded: waiting.requestEnded)
                case .later:
                    this.closeClient()
                }
            case .failure:
                this.answerLocally(
                    answer: GateAnswer(status: .serviceUnavailable, headers: [], body: "rate-limit decision failed\n"),
                    head: head,
                    context: gateContext,
                    requestEnded: waiting.requestEnded
                )
            }
        }
    }

    /// Forwards an admitted request: now, or after the plan's `delay`. A request whose decision was awaited
    /// already has an exchange holding the body parts that arrived meanwhile; they go out after the head.
    private func forward(
        head: HTTPRequestHead,
        framing: RequestFraming,
        plan: ForwardPlan,
        context gateContext: GateContext,
        config: ProxySnapshot
    ) {
        var buffered: [HTTPClientRequestPart] = []
        var requestEnded = false
        var requestBodyBytes = 0
        if case .forwarding(let waiting) = self.state {
            buffered = waiting.buffered
            requestEnded = waiting.requestEnded
            requestBodyBytes = waiting.requestBodyBytes
        }
        let target = self.pool.nextTarget(of: config.targets)
        var upstreamHead = head
        self.rewriteForUpstream(&upstreamHead, framing: framing, target: target, config: config)
        let exchange = Exchange(
            upstreamHead: upstreamHead,
            clientHead: head,
            target: target,
            framing: framing,
            extraResponseHeaders: plan.responseHeaders,
            context: gateContext,
            now: .now()
        )
        exchange.responseObserver = plan.responseObserver
        exchange.buffered = buffered
        exchange.requestEnded = requestEnded
        exchange.requestBodyBytes = requestBodyBytes
        self.state = .forwarding(exchange)
        if let delay = plan.delay {
            // Held, not rejected: the client is not read meanwhile (no upstream yet).
            let loopBoundSelf = NIOLoopBound(self, eventLoop: self.context.eventLoop)
            let loopBoundExchange = NIOLoopBound(exchange, eventLoop: self.context.eventLoop)
            self.context.eventLoop.scheduleTask(in: delay) {
                let this = loopBoundSelf.value
                guard case .forwarding(let current) = this.state, current === loopBoundExchange.value else { return }
                this.attachUpstream(current, config: config, allowPooled: true)
            }
            return
        }
        self.attachUpstream(exchange, config: config, allowPooled: true)
    }

    func requestBodyReceived(_ body: ByteBuffer) {
        switch self.state {
        case .forwarding(let exchange):
            exchange.requestBodyBytes += body.readableBytes
            let max = self.shared.current().maxBodyBytes
            if max > 0 && exchange.requestBodyBytes > max {
                self.abortUpstream(exchange)
                if exchange.responseHeadSent {
                    self.closeClient()
                } else {
                    self.state = .answeredLocally(closeAfter: true, requestEnded: false)
                    self.writeLocalResponse(
                        status: .payloadTooLarge,
                        version: exchange.clientVersion,
                        headers: [],
                        body: "request body too large\n",
                        close: true
                    )
                }
                return
            }
            if exchange.expectsContinue && !exchange.bodyForwarded && exchange.upstream == nil {
                // The client sent its body without waiting for 100: fine, it just queues.
            }
            if let upstream = exchange.upstream {
                exchange.bodyForwarded = true
                upstream.channel.write(HTTPClientRequestPart.body(.byteBuffer(body)), promise: nil)
            } else {
                exchange.buffered.append(.body(.byteBuffer(body)))
            }
        case .answeredLocally, .awaitingHead, .tunnelling, .closed:
            // Discarding the body of a request answered locally.
            break
        }
    }

    func requestEndReceived(_ trailers: HTTPHeaders?) {
        self.bodyTimer.disarm()
        switch self.state {
        case .forwarding(let exchange):
            exchange.requestEnded = true
            if let upstream = exchange.upstream {
                upstream.channel.writeAndFlush(HTTPClientRequestPart.end(trailers), promise: nil)
                self.startResponseTimer(exchange)
            } else {
                exchange.buffered.append(.end(trailers))
            }

        case .answeredLocally(let closeAfter, _):
            self.state = .answeredLocally(closeAfter: closeAfter, requestEnded: true)
            self.localResponseMaybeFinished()
        case .awaitingHead, .tunnelling, .closed:
            break
        }
    }

    /// Builds the upstream head in place: hop-by-hop headers out, X-Forwarded-* in (SPEC §3).
    func rewriteForUpstream(_ head: inout HTTPRequestHead, framing: RequestFraming, target: UpstreamTarget, config: ProxySnapshot) {
        Self.rewriteForUpstream(
            &head,
            framing: framing,
            settings: UpstreamRequestHeadWriter.Settings(
                preserveHost: config.preserveHost,
                upstreamHost: target.hostHeader,
                forwardedProto: self.forwardedProto,
                peer: self.peerText
            )
        )
    }

    /// ``rewriteForUpstream(_:framing:target:config:)`` with its settings spelled out (``UpstreamRequestHeadWriter``
    /// does the same on raw bytes; a differential test holds the two together).
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
