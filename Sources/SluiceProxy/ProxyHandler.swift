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
    private final class Exchange {
        /// The head as it goes to the upstream (rewritten).
        var upstreamHead: HTTPRequestHead
        let clientVersion: HTTPVersion
        let method: HTTPMethod
        let clientKeepAlive: Bool
        let isUpgrade: Bool
        let expectsContinue: Bool
        let target: UpstreamTarget
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
    private enum State {
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

    private let shared: ProxyShared
    private let pool: UpstreamPool
    private var state: State = .awaitingHead
    private var context: ChannelHandlerContext!
    private var peerIP = IPAddress(ipv4: 0)
    /// `peerIP` as text, formatted once per connection for `X-Forwarded-For`.
    private var peerText = "0.0.0.0"
    private var readPending = false
    /// `header_read` (a head is arriving) or `idle` (between requests); see ``ConnectionTimer``.
    private var connectionTimer = LazyDeadline()
    private var connectionTimerKind = ConnectionTimer.head
    /// `upstream_response` for the exchange in flight.
    private var responseTimer = LazyDeadline()

    private enum ConnectionTimer {
        case head
        case idle
    }
    /// Bytes of a next request head have arrived while awaiting it.
    private var headBytesSeen = false
    /// The client shut its side down (half-close): no request follows the current one, so the
    /// connection closes once the current response is out (HTTPServerPipelineHandler delivers
    /// this only after every request that arrived before it).
    private var inputClosed = false

    init(shared: ProxyShared, pool: UpstreamPool) {
        self.shared = shared
        self.pool = pool
    }

    // MARK: channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.peerIP = IPAddress(context.channel.remoteAddress) ?? IPAddress(ipv4: 0)
        self.peerText = self.peerIP.description
        if context.channel.isActive {
            self.startHeadTimer()
        }
    }

    func channelActive(context: ChannelHandlerContext) {
        self.startHeadTimer()
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.connectionTimer.cancel()
        self.responseTimer.cancel()
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
        if context.channel.isWritable, case .forwarding(let exchange) = self.state {
            exchange.upstream?.handler.resumeReading()
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
        let status: HTTPResponseStatus
        if let parserError = error as? HTTPParserError {
            status = parserError == .headerOverflow ? .requestHeaderFieldsTooLarge : .badRequest
        } else {
            // I/O errors (reset by peer...): nothing to answer.
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
                return
            }
        }
        context.read()
    }

    private func resumeClientReading() {
        guard self.readPending else { return }
        self.readPending = false
        self.context.read()
    }

    // MARK: request

    private func requestHeadReceived(_ head: HTTPRequestHead) {
        self.cancelConnectionTimers()
        self.headBytesSeen = false
        guard case .awaitingHead = self.state else {
            // HTTPServerPipelineHandler guarantees one request at a time.
            self.closeClient()
            return
        }
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
        if config.maxBodyBytes > 0, let length = head.headers.first(name: "content-length").flatMap({ Int($0) }),
            length > config.maxBodyBytes
        {
            self.answerLocally(status: .payloadTooLarge, body: "request body too large\n", head: head, close: true)
            return
        }

        let clientIP = config.clientIP.resolve(
            peer: self.peerIP,
            headerValues: config.clientIP.trustedProxies.isEmpty ? [] : head.headers[config.clientIP.header.rawValue]
        )
        var gateContext = GateContext(clientIP: clientIP, peerIP: self.peerIP)
        let plan: ForwardPlan
        switch config.gate.decide(head: head, context: &gateContext) {
        case .forward(let forwardPlan):
            plan = forwardPlan
        case .answer(let answer):
            self.answerLocally(answer: answer, head: head, context: gateContext)
            return
        }

        let target = self.pool.nextTarget(of: config.targets)
        var upstreamHead = head
        self.rewriteForUpstream(&upstreamHead, target: target, config: config)
        let exchange = Exchange(
            upstreamHead: upstreamHead,
            clientHead: head,
            target: target,
            extraResponseHeaders: plan.responseHeaders,
            context: gateContext,
            now: .now()
        )
        exchange.responseObserver = plan.responseObserver
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

    private func requestBodyReceived(_ body: ByteBuffer) {
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

    private func requestEndReceived(_ trailers: HTTPHeaders?) {
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
    private func rewriteForUpstream(_ head: inout HTTPRequestHead, target: UpstreamTarget, config: ProxySnapshot) {
        let isUpgrade = head.isUpgradeRequest
        let clientHost = head.headers.first(name: "host")
        // The decoder only accepts `chunked` as the final coding (and refuses it next to a
        // Content-Length), so a body is either chunked or has a length; framing is explicit
        // because the encoders run with automatic framing off.
        let chunked = head.headers.contains(name: "transfer-encoding")
        HopByHop.strip(&head.headers, keepUpgrade: isUpgrade)
        if chunked {
            head.headers.add(name: "Transfer-Encoding", value: "chunked")
        }
        // Sluice answers `Expect: 100-continue` itself once the request is admitted (like nginx),
        // so the upstream never waits for a continue that is not coming.
        head.headers.remove(name: "expect")
        if head.headers.contains(name: "x-forwarded-for") {
            let existing = head.headers["x-forwarded-for"].joined(separator: ", ")
            head.headers.replaceOrAdd(name: "X-Forwarded-For", value: existing + ", " + self.peerText)
        } else {
            head.headers.add(name: "X-Forwarded-For", value: self.peerText)
        }
        head.headers.replaceOrAdd(name: "X-Forwarded-Proto", value: config.scheme)
        if let clientHost {
            head.headers.replaceOrAdd(name: "X-Forwarded-Host", value: clientHost)
        }
        if !config.preserveHost || clientHost == nil {
            head.headers.replaceOrAdd(name: "Host", value: target.hostHeader)
        }
        head.version = .http1_1
    }

    // MARK: upstream connection

    private func attachUpstream(_ exchange: Exchange, config: ProxySnapshot, allowPooled: Bool) {
        if allowPooled, let connection = self.pool.takeIdle(for: exchange.target) {
            self.upstreamAttached(connection, to: exchange)
            return
        }
        let loopBoundSelf = NIOLoopBound(self, eventLoop: self.context.eventLoop)
        let loopBoundExchange = NIOLoopBound(exchange, eventLoop: self.context.eventLoop)
        self.pool.connect(to: exchange.target, timeout: config.upstreamConnectTimeout).assumeIsolated().whenComplete {
            result in
            let this = loopBoundSelf.value
            let exchange = loopBoundExchange.value
            switch result {
            case .success(let connection):
                guard case .forwarding(let current) = this.state, current === exchange else {
                    connection.channel.close(promise: nil)
                    return
                }
                this.upstreamAttached(connection, to: exchange)
            case .failure(let error):
                guard case .forwarding(let current) = this.state, current === exchange else { return }
                this.shared.logger.warning(
                    "upstream connect failed",
                    metadata: ["upstream": "\(exchange.target)", "error": "\(error)"]
                )
                this.failExchange(exchange, status: .badGateway, body: "upstream unreachable\n")
            }
        }
    }

    private func upstreamAttached(_ connection: UpstreamConnection, to exchange: Exchange) {
        exchange.upstream = connection
        exchange.onReusedConnection = connection.reused
        connection.handler.delegate = self
        if exchange.expectsContinue && !exchange.requestEnded {
            self.context.writeAndFlush(
                self.wrapOutboundOut(.head(HTTPResponseHead(version: exchange.clientVersion, status: .continue))),
                promise: nil
            )
        }
        connection.channel.write(HTTPClientRequestPart.head(exchange.upstreamHead), promise: nil)
        let buffered = exchange.buffered
        exchange.buffered.removeAll()
        for part in buffered {
            if case .body = part { exchange.bodyForwarded = true }
            connection.channel.write(part, promise: nil)
        }
        connection.channel.flush()
        if exchange.requestEnded {
            self.startResponseTimer(exchange)
        }
        self.resumeClientReading()
    }

    private func startResponseTimer(_ exchange: Exchange) {
        guard !self.responseTimer.isArmed, !exchange.responseHeadSent else { return }
        let deadline = self.context.eventLoop.now + self.shared.current().upstreamResponseTimeout
        self.responseTimer.arm(deadline) { self.scheduleTimerTask(at: $0, response: true) }
    }

    private func responseTimerFired() {
        let expired = self.responseTimer.taskFired(now: self.context.eventLoop.now) {
            self.scheduleTimerTask(at: $0, response: true)
        }
        guard expired, case .forwarding(let exchange) = self.state, !exchange.responseHeadSent else { return }
        self.shared.logger.warning("upstream response timeout", metadata: ["upstream": "\(exchange.target)"])
        self.abortUpstream(exchange)
        self.failExchange(exchange, status: .gatewayTimeout, body: "upstream timed out\n")
    }

    private func scheduleTimerTask(at deadline: NIODeadline, response: Bool) -> Scheduled<Void> {
        let loopBoundSelf = NIOLoopBound(self, eventLoop: self.context.eventLoop)
        return self.context.eventLoop.scheduleTask(deadline: deadline) {
            let this = loopBoundSelf.value
            if response { this.responseTimerFired() } else { this.connectionTimerFired() }
        }
    }

    /// Closes the exchange's upstream connection; it can never be reused mid-message.
    private func abortUpstream(_ exchange: Exchange) {
        self.responseTimer.disarm()
        if let upstream = exchange.upstream {
            upstream.handler.delegate = nil
            upstream.channel.close(promise: nil)
            exchange.upstream = nil
        }
    }

    /// The upstream failed before answering: 502/504 to the client.
    private func failExchange(_ exchange: Exchange, status: HTTPResponseStatus, body: String) {
        self.abortUpstream(exchange)
        if exchange.responseHeadSent {
            self.closeClient()
            return
        }
        let close = !exchange.requestEnded || !exchange.clientKeepAlive
        self.state = .answeredLocally(closeAfter: close, requestEnded: exchange.requestEnded)
        self.shared.accessLog.record(
            exchange: exchange.context,
            method: exchange.method,
            uri: exchange.upstreamHead.uri,
            status: Int(status.code),
            upstreamMs: nil,
            bytesIn: exchange.requestBodyBytes,
            bytesOut: 0
        )
        self.writeLocalResponse(
            status: status,
            version: exchange.clientVersion,
            headers: exchange.extraResponseHeaders,
            body: body,
            close: close
        )
    }

    // MARK: UpstreamDelegate

    var upstreamMayRead: Bool {
        self.context.channel.isWritable
    }

    func upstreamReceived(_ part: HTTPClientResponsePart) {
        guard case .forwarding(let exchange) = self.state else { return }
        switch part {
        case .head(let upstreamHead):
            self.responseTimer.disarm()
            if upstreamHead.status == .switchingProtocols {
                exchange.switchingHead = upstreamHead
                return
            }
            exchange.responseHeadSent = true
            exchange.responseStatus = Int(upstreamHead.status.code)
            exchange.responseObserver?.upstreamResponded(status: exchange.responseStatus)
            exchange.upstreamReusable = upstreamHead.isKeepAlive
            var head = upstreamHead
            head.version = exchange.clientVersion
            HopByHop.strip(&head.headers, keepUpgrade: false)
            for (name, value) in exchange.extraResponseHeaders {
                head.headers.add(name: name, value: value)
            }
            var keepAlive = exchange.clientKeepAlive && !self.shared.isDraining
            let bodyless =
                exchange.method == .HEAD || upstreamHead.status.code == 204 || upstreamHead.status.code == 304
                || upstreamHead.status.code < 200
            if exchange.clientVersion.minor == 0 && !bodyless && !head.headers.contains(name: "content-length") {
                // HTTP/1.0 has no chunked encoding: the body ends when the connection does.
                keepAlive = false
            }
            exchange.keepClientAlive = keepAlive
            if !bodyless && exchange.clientVersion.minor >= 1 && !head.headers.contains(name: "content-length") {
                head.headers.add(name: "Transfer-Encoding", value: "chunked")
            }
            if exchange.clientVersion.minor == 0 {
                if keepAlive { head.headers.add(name: "Connection", value: "keep-alive") }
            } else if !keepAlive {
                head.headers.add(name: "Connection", value: "close")
            }
            self.context.write(self.wrapOutboundOut(.head(head)), promise: nil)
        case .body(let body):
            exchange.responseBytes += body.readableBytes
            self.context.write(self.wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        case .end(let trailers):
            if let switchingHead = exchange.switchingHead {
                self.startTunnel(exchange, responseHead: switchingHead)
                return
            }
            exchange.responseEnded = true
            self.shared.accessLog.record(
                exchange: exchange.context,
                method: exchange.method,
                uri: exchange.upstreamHead.uri,
                status: exchange.responseStatus,
                upstreamMs: Int((NIODeadline.now() - exchange.startedAt).nanoseconds / 1_000_000),
                bytesIn: exchange.requestBodyBytes,
                bytesOut: exchange.responseBytes
            )
            if !exchange.requestEnded {
                // Answered before the request body finished: the rest of it cannot be skipped
                // safely on either connection.
                exchange.keepClientAlive = false
                self.abortUpstream(exchange)
            }
            self.finishExchange(exchange, writingEnd: trailers)
        }
    }

    func upstreamReadComplete() {
        self.context.flush()
    }

    func upstreamWritabilityChanged(isWritable: Bool) {
        if isWritable {
            self.resumeClientReading()
        }
    }

    func upstreamClosed(error: Error?) {
        guard case .forwarding(let exchange) = self.state, exchange.upstream != nil else { return }
        exchange.upstream = nil
        if exchange.responseHeadSent {
            // Truncated response: the client must see the connection end, not a short message.
            self.closeClient()
            return
        }
        // A pooled connection the upstream closed while idle: retry once on a fresh one when
        // replaying the request cannot change its meaning.
        if !exchange.retried && exchange.isIdempotent && !exchange.bodyForwarded && exchange.onReusedConnection {
            exchange.retried = true
            self.responseTimer.disarm()
            if exchange.requestEnded { exchange.buffered.append(.end(nil)) }
            self.attachUpstream(exchange, config: self.shared.current(), allowPooled: false)
            return
        }
        self.shared.logger.warning(
            "upstream closed before responding",
            metadata: ["upstream": "\(exchange.target)", "error": "\(error.map { "\($0)" } ?? "eof")"]
        )
        self.failExchange(exchange, status: .badGateway, body: "upstream closed the connection\n")
    }

    // MARK: finishing

    /// Both the request and the response are complete (or the response is, and the connection closes).
    ///
    /// The state changes BEFORE the response's end is written: writing it lets
    /// `HTTPServerPipelineHandler` deliver the next pipelined request synchronously, which must
    /// find this handler awaiting a head.
    private func finishExchange(_ exchange: Exchange, writingEnd trailers: HTTPHeaders?? = .none) {
        self.responseTimer.disarm()
        if let upstream = exchange.upstream {
            exchange.upstream = nil
            if exchange.upstreamReusable {
                self.pool.release(upstream, maxIdle: self.shared.current().maxIdlePerLoop)
            } else {
                upstream.handler.delegate = nil
                upstream.channel.close(promise: nil)
            }
        }
        let keepAlive = exchange.keepClientAlive && !self.inputClosed
        self.state = keepAlive ? .awaitingHead : .closed
        if keepAlive { self.startIdleTimer() }
        if let trailers {
            if keepAlive {
                self.context.writeAndFlush(self.wrapOutboundOut(.end(trailers)), promise: nil)
            } else {
                self.writeEndAndClose(trailers, linger: !exchange.requestEnded && !self.inputClosed)
                return
            }
        }
        if keepAlive {
            self.resumeClientReading()
        } else {
            self.closeClient()
        }
    }

    /// Writes the response's end, then closes once it is flushed.
    ///
    /// - Parameter linger: the client may still be sending a request body we did not read. Closing
    ///   at once would make the kernel answer its data with a reset, which can destroy the response
    ///   before the client reads it. So, like nginx's lingering close, only our side is shut, the
    ///   rest of the upload is read and dropped, and the connection closes when the client is done
    ///   or after ``lingerTimeout``.
    private func writeEndAndClose(_ trailers: HTTPHeaders?, linger: Bool = false) {
        self.cancelConnectionTimers()
        let loopBoundContext = NIOLoopBound(self.context!, eventLoop: self.context.eventLoop)
        let written = self.context.writeAndFlush(self.wrapOutboundOut(.end(trailers)))
        guard linger else {
            written.assumeIsolated().whenComplete { _ in loopBoundContext.value.close(promise: nil) }
            return
        }
        let timeout = Self.lingerTimeout
        written.assumeIsolated().whenComplete { _ in
            let context = loopBoundContext.value
            context.close(mode: .output, promise: nil)
            context.eventLoop.assumeIsolated().scheduleTask(in: timeout) {
                loopBoundContext.value.close(promise: nil)
            }
        }
    }

    /// How long a closing connection keeps reading off an unread request body.
    static let lingerTimeout = TimeAmount.seconds(2)

    // MARK: local answers

    private func answerLocally(
        status: HTTPResponseStatus,
        body: String,
        head: HTTPRequestHead,
        close: Bool,
        headers: [(name: String, value: String)] = []
    ) {
        let requestEnded = false
        let close = close || !head.isKeepAlive || head.isUpgradeRequest
        self.state = .answeredLocally(closeAfter: close, requestEnded: requestEnded)
        self.shared.accessLog.record(
            exchange: GateContext(clientIP: self.peerIP, peerIP: self.peerIP),
            method: head.method,
            uri: head.uri,
            status: Int(status.code),
            upstreamMs: nil,
            bytesIn: 0,
            bytesOut: body.utf8.count
        )
        self.writeLocalResponse(status: status, version: head.version, headers: headers, body: body, close: close)
    }

    private func answerLocally(answer: GateAnswer, head: HTTPRequestHead, context gateContext: GateContext) {
        self.shared.accessLog.record(
            exchange: gateContext,
            method: head.method,
            uri: head.uri,
            status: Int(answer.status.code),
            upstreamMs: nil,
            bytesIn: 0,
            bytesOut: answer.body.utf8.count
        )
        // The body of a request that is not forwarded is read and dropped (like nginx) when it is
        // small and announced; a chunked or large body, or one the client will only send after a
        // `100 Continue`, is not worth reading or waiting for: such connections close.
        let declaredLength = head.headers.first(name: "content-length").flatMap { Int($0) } ?? 0
        let expectsContinue = head.headers.contains(name: "expect")
        let bodyNotWorthReading =
            head.headers.contains(name: "transfer-encoding") || declaredLength > Self.maxDiscardedBodyBytes
            || (declaredLength > 0 && expectsContinue)
        let close = !head.isKeepAlive || bodyNotWorthReading || self.shared.isDraining || head.isUpgradeRequest
        self.state = .answeredLocally(closeAfter: close, requestEnded: false)
        self.writeLocalResponse(
            status: answer.status,
            version: head.version,
            headers: answer.headers,
            body: answer.body,
            close: close
        )
    }

    private func writeLocalResponse(
        status: HTTPResponseStatus,
        version: HTTPVersion,
        headers extra: [(name: String, value: String)],
        body: String,
        close: Bool
    ) {
        var headers = HTTPHeaders()
        headers.reserveCapacity(extra.count + 4)
        var buffer = self.context.channel.allocator.buffer(capacity: body.utf8.count)
        buffer.writeString(body)
        var hasContentType = false
        for (name, value) in extra {
            if name.lowercased() == "content-type" { hasContentType = true }
            headers.add(name: name, value: value)
        }
        if !hasContentType { headers.add(name: "Content-Type", value: "text/plain; charset=utf-8") }
        headers.add(name: "Content-Length", value: String(buffer.readableBytes))
        if close {
            if version.minor >= 1 { headers.add(name: "Connection", value: "close") }
        } else if version.minor == 0 {
            headers.add(name: "Connection", value: "keep-alive")
        }
        self.context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: version, status: status, headers: headers))), promise: nil)
        self.context.write(self.wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        // As in finishExchange: settle the state before the end lets the next request in.
        guard case .answeredLocally(let closeAfter, let requestEnded) = self.state else { return }
        if closeAfter || (requestEnded && self.inputClosed) {
            self.state = .closed
            self.writeEndAndClose(nil, linger: !requestEnded && !self.inputClosed)
            return
        }
        if requestEnded {
            self.state = .awaitingHead
            self.startIdleTimer()
        }
        self.context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
        self.resumeClientReading()
    }

    /// The request of a local answer ended: wait for the next request.
    private func localResponseMaybeFinished() {
        guard case .answeredLocally(let closeAfter, let requestEnded) = self.state, !closeAfter, requestEnded else {
            return
        }
        if self.inputClosed {
            self.closeAfterPendingWrites()
            return
        }
        self.state = .awaitingHead
        self.startIdleTimer()
        self.resumeClientReading()
    }

    /// Answers a protocol error before any response exists, bypassing the HTTP encoder (the
    /// pipeline has no request to pair the response with), then closes.
    private func writeRawErrorAndClose(_ status: HTTPResponseStatus) {
        guard let encoderContext = try? self.context.pipeline.syncOperations.context(handlerType: HTTPResponseEncoder.self) else {
            self.closeClient()
            return
        }
        let body = "\(status.code) \(status.reasonPhrase)\n"
        var buffer = self.context.channel.allocator.buffer(capacity: 128 + body.utf8.count)
        buffer.writeString(
            "HTTP/1.1 \(status.code) \(status.reasonPhrase)\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
        )
        self.state = .closed
        let loopBoundContext = NIOLoopBound(self.context!, eventLoop: self.context.eventLoop)
        encoderContext.writeAndFlush(NIOAny(buffer)).assumeIsolated().whenComplete { _ in
            loopBoundContext.value.close(promise: nil)
        }
    }

    /// Closes once everything already written is on the wire: an empty write from the front of
    /// the pipeline completes only after the writes queued before it.
    private func closeAfterPendingWrites() {
        self.cancelConnectionTimers()
        self.state = .closed
        guard let encoderContext = try? self.context.pipeline.syncOperations.context(handlerType: HTTPResponseEncoder.self) else {
            self.context.close(promise: nil)
            return
        }
        let loopBoundContext = NIOLoopBound(self.context!, eventLoop: self.context.eventLoop)
        encoderContext.writeAndFlush(NIOAny(ByteBuffer())).assumeIsolated().whenComplete { _ in
            loopBoundContext.value.close(promise: nil)
        }
    }

    private func closeClient() {
        self.cancelConnectionTimers()
        if case .forwarding(let exchange) = self.state {
            self.abortUpstream(exchange)
        }
        if case .closed = self.state {} else { self.state = .closed }
        self.context.close(promise: nil)
    }

    // MARK: connection timers

    private func startHeadTimer() {
        self.armConnectionTimer(.head, in: self.shared.current().headerReadTimeout)
    }

    private func startIdleTimer() {
        self.armConnectionTimer(.idle, in: self.shared.current().idleTimeout)
    }

    private func armConnectionTimer(_ kind: ConnectionTimer, in timeout: TimeAmount) {
        self.connectionTimerKind = kind
        let deadline = self.context.eventLoop.now + timeout
        self.connectionTimer.arm(deadline) { self.scheduleTimerTask(at: $0, response: false) }
    }

    private func connectionTimerFired() {
        let expired = self.connectionTimer.taskFired(now: self.context.eventLoop.now) {
            self.scheduleTimerTask(at: $0, response: false)
        }
        guard expired, case .awaitingHead = self.state else { return }
        switch self.connectionTimerKind {
        case .head:
            if self.headBytesSeen {
                self.writeRawErrorAndClose(.requestTimeout)
            } else {
                self.closeClient()
            }
        case .idle:
            if !self.headBytesSeen { self.closeClient() }
        }
    }

    private func cancelConnectionTimers() {
        self.connectionTimer.disarm()
    }

    // MARK: upgrade

    /// The upstream accepted an `Upgrade`: relay the 101, then turn both connections into one
    /// byte tunnel.
    private func startTunnel(_ exchange: Exchange, responseHead: HTTPResponseHead) {
        guard exchange.isUpgrade, let upstream = exchange.upstream else {
            self.abortUpstream(exchange)
            self.closeClient()
            return
        }
        self.state = .tunnelling
        var head = responseHead
        head.version = exchange.clientVersion
        for (name, value) in exchange.extraResponseHeaders {
            head.headers.add(name: name, value: value)
        }
        upstream.handler.delegate = nil
        self.context.write(self.wrapOutboundOut(.head(head)), promise: nil)
        self.context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
        self.shared.accessLog.record(
            exchange: exchange.context,
            method: exchange.method,
            uri: exchange.upstreamHead.uri,
            status: 101,
            upstreamMs: Int((NIODeadline.now() - exchange.startedAt).nanoseconds / 1_000_000),
            bytesIn: 0,
            bytesOut: 0
        )
        do {
            try TunnelHandler.join(client: self.context.channel, upstream: upstream.channel)
        } catch {
            self.shared.logger.warning("could not start tunnel", metadata: ["error": "\(error)"])
            upstream.channel.close(promise: nil)
            self.context.close(promise: nil)
        }
    }
}


extension HTTPRequestHead {
    /// An `Upgrade` that counts: the header present AND named in `Connection` (RFC 9110 §7.8).
    var isUpgradeRequest: Bool {
        self.headers.contains(name: "upgrade")
            && self.headers[canonicalForm: "connection"].contains { $0.lowercased() == "upgrade" }
    }
}
