import NIOCore
import NIOHTTP1
import SluiceConfig
import SluiceHTTP1
import SluiceJWT
import SluiceLimiter
import Synchronization

/// The client side of the proxy: one per client connection, last in its pipeline (after TLS, if any). It reads
/// and writes raw `ByteBuffer`s; there is no HTTP decoder or encoder in front of it (issue 19).
///
/// Request heads are parsed in place by ``HTTPRequestHeadParser`` (offsets, no `String` per field), the gate and
/// the limiter read those offsets (``RawRequestAttributes``), the upstream head is written from them
/// (``UpstreamRequestHeadWriter``), and body bytes travel as slices of what was read, their framing checked on
/// the way (`Content-Length` counted down, chunked through ``ChunkedBodyParser``). Responses come back the same
/// way from ``UpstreamConnectionHandler``.
///
/// What happens when (keep-alive, pipelining, local answers, retries, tunnels, timeouts) is decided by
/// ``ProxyConnectionStateMachine``; this class moves the bytes and runs the timers. With concurrency rules, a request
/// takes its slots before the rate limits decide, and the machine returns them when the exchange is over
/// (`ProxyConnectionHandler+Concurrency.swift`; issue 22). With `upstream.adaptive_concurrency`, a request the rules
/// admitted is asked last against the upstream's adaptive limit (`ProxyConnectionHandler+Adaptive.swift`).
///
/// Back-pressure both ways: the client is not read while the upstream connection is missing or not writable,
/// nor while a request waits for its response (bytes of a pipelined request that arrived meanwhile wait, at most
/// one read's worth), nor between requests while the client does not read its answers; the upstream is not read
/// while the client is not writable.
final class ProxyConnectionHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// What the next bytes from the client are.
    enum Reading {
        /// A request head (bytes of one wait in ``input`` while the exchange before it is in flight).
        case head
        /// `remaining` bytes of a `Content-Length` body.
        case lengthBody(remaining: Int)
        /// A chunked body, through ``chunkedParser``.
        case chunkedBody
        /// The request ended; what follows is the next request, read once this one's exchange has ended.
        case afterRequest
        /// Tunnel bytes for the upstream.
        case tunnel
        /// Nothing more is read as HTTP (closing; a lingering close drops what still comes).
        case stopped
    }

    /// Largest request body read and dropped after a local answer to keep the connection open.
    static let maxDiscardedBodyBytes = 64 * 1024
    /// How long a closing connection keeps reading off an unread request body.
    static let lingerTimeout = TimeAmount.seconds(2)

    let shared: ProxyShared
    let pool: UpstreamPool
    /// `X-Forwarded-Proto`: `https` when this connection came through a TLS listener. Fixed at accept.
    let forwardedProto: String
    var context: ChannelHandlerContext!
    /// The running configuration, re-read only after a reload (``ProxySnapshotCache``).
    var snapshotCache: ProxySnapshotCache
    var machine = ProxyConnectionStateMachine()
    var reading = Reading.head
    /// Bytes read and not yet consumed (a head split across reads, or a pipelined request waiting).
    var input: ByteBuffer?
    var headParser: HTTPRequestHeadParser
    /// The parser holds the last head taken; it is reset before the next one.
    var headParserNeedsReset = false
    var chunkedParser = ChunkedBodyParser()
    /// Guards ``processInput()`` against re-entry (an answer written from inside it can end an exchange).
    var processing = false
    var readPending = false
    /// After the answer that ends the connection: reads go on, and are dropped, until the client is done.
    var lingering = false
    var peerIP = IPAddress(ipv4: 0)
    /// `peerIP` as text, formatted once per connection for `X-Forwarded-For`.
    var peerText = "0.0.0.0"

    // The exchange in flight (one at a time).

    /// Counts exchanges, so a late callback (a decision, a connect, a delay) finds out it is stale.
    var exchangeID = 0
    var exchange = ExchangeData()
    /// The response head not written yet, with the small body bytes copied behind it (``writePendingOutput()``).
    var pendingOutput: ByteBuffer?
    /// The storage of the last upstream request head and of the last response head written to the client, taken
    /// again for the next ones (``reusableBuffer(_:capacity:)``): two allocations fewer per request.
    var upstreamHeadStorage: ByteBuffer?
    var responseHeadStorage: ByteBuffer?
    /// Bytes were written to the client since the last flush.
    var clientNeedsFlush = false
    /// The channel went inactive: no timer task is scheduled any more (one would hold this handler until it fired).
    var channelClosed = false

    /// What this handler keeps of the exchange in flight besides what ``machine`` knows.
    struct ExchangeData {
        var parsedHead: ParsedRequestHead?
        /// Exactly the request head's bytes (``parsedHead``'s offsets index them from 0).
        var headBytes = ByteBuffer()
        var method = ""
        var uri = ""
        var isHEAD = false
        var minorVersion = 1
        var target: UpstreamTarget?
        var upstream: UpstreamConnection?
        /// The head as it went to the upstream, kept for a retry.
        var upstreamHead: ByteBuffer?
        /// Body bytes that arrived before the upstream connection was ready.
        var buffered: [ByteBuffer] = []
        /// The rate-limit fields for the response (``ForwardPlan/rateLimitFields``).
        var rateLimitFields: RateLimitFieldValues?
        var responseObserver: (any ResponseStatusObserver)?
        var gateContext = GateContext(clientIP: IPAddress(ipv4: 0), peerIP: IPAddress(ipv4: 0))
        var startedAt = NIODeadline.uptimeNanoseconds(0)
        var requestBodyBytes = 0
        var responseBytes = 0
        var responseStatus = 0
        var responseFraming = ClientResponseFraming.asReceived
        /// The request and its snapshot while it waits in a concurrency queue (issue 22).
        var waiting: (attributes: RawRequestAttributes, config: ProxySnapshot)?
    }

    // Timers (``LazyDeadline``s: arming is a store, not a scheduled task).

    /// `header_read` (a head is arriving) or `idle` (between requests).
    var connectionTimer = LazyDeadline()
    var connectionTimerKind = ConnectionTimer.head
    /// `upstream_response` for the exchange in flight.
    var responseTimer = LazyDeadline()
    /// `body_read`: armed whenever a read of a request body is passed on.
    var bodyTimer = LazyDeadline()
    /// `send`: armed while the client's output is above its high-water mark, or while a closing answer is
    /// being flushed.
    var sendTimer = LazyDeadline()
    /// Bytes buffered for the client when ``sendTimer`` was last armed.
    var sendBufferedBytes = 0
    /// `tunnel_idle`, once the connection is a tunnel.
    var tunnelTimer = LazyDeadline()
    /// Bytes of a next request head have arrived while awaiting it.
    var headBytesSeen = false
    /// A concurrency queue's `timeout` for the request waiting in it (issue 22; the slow path: a scheduled task).
    var queueTimeout: Scheduled<Void>?
    /// With Redis leases: asks the store again while the request waits in the queue (issue 22 item 5).
    var queuePoll: RepeatedTask?
    /// How a slot handed over by another loop reaches this connection (``slotWake``); `nil` until first needed.
    var concurrencyWake: (@Sendable (ConcurrencyWaiter) -> Void)?
    /// The connection's last concurrency admission, reused by its next request once released (no allocation per request).
    var spareAdmission: ConcurrencyAdmission?

    enum ConnectionTimer {
        case head
        case idle
    }

    /// What the client speaks: HTTP/1.x on a connection, or one HTTP/2 stream through ``HTTP2StreamBridgeHandler``.
    enum ClientProtocol {
        case http1
        case http2
    }

    /// Fixed when the handler is made.
    let clientProtocol: ClientProtocol

    /// The access log's `protocol` field.
    var protocolLabel: StaticString {
        switch self.clientProtocol {
        case .http2: return "HTTP/2"
        case .http1: return self.exchange.minorVersion == 0 ? "HTTP/1.0" : "HTTP/1.1"
        }
    }

    /// - Parameter httpVersion: `.http2` when the handler serves one stream of an HTTP/2 connection (its channel is
    ///   the stream's; the connection counts in the open-connections gauge once, not per stream).
    /// Handlers alive now (made and not yet freed): one per open connection or HTTP/2 stream. Two atomic additions per
    /// connection, no more; the tests check that a closed connection's handler is freed (a cycle through its context
    /// once kept every one).
    static var live: Int { Self.liveHandlers.load(ordering: .relaxed) }
    private static let liveHandlers = Atomic<Int>(0)

    deinit {
        Self.liveHandlers.wrappingAdd(-1, ordering: .relaxed)
    }

    init(shared: ProxyShared, pool: UpstreamPool, maxHeaderBytes: Int, overTLS: Bool = false, httpVersion: ClientProtocol = .http1) {
        Self.liveHandlers.wrappingAdd(1, ordering: .relaxed)
        self.clientProtocol = httpVersion
        self.shared = shared
        self.pool = pool
        self.forwardedProto = overTLS ? "https" : "http"
        self.headParser = HTTPRequestHeadParser(maxHeadBytes: maxHeaderBytes)
        self.snapshotCache = ProxySnapshotCache(shared)
    }

    /// The current snapshot (a request keeps the one it started with: it is passed along, not read again).
    var config: ProxySnapshot {
        self.snapshotCache.current(self.shared)
    }

    // MARK: channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if self.clientProtocol == .http1 { self.shared.metrics.connectionOpened() }
        self.peerIP = IPAddress(context.channel.remoteAddress) ?? IPAddress(ipv4: 0)
        self.peerText = self.peerIP.description
        if context.channel.isActive {
            self.startHeadTimer()
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        // Gives back any concurrency slot (channelInactive did already, unless the handler left a live channel), and
        // drops the wake closure, which holds this handler.
        self.machine.close()
        self.cancelQueueTimeout()
        self.concurrencyWake = nil
        self.spareAdmission = nil
        if self.clientProtocol == .http1 { self.shared.metrics.connectionClosed() }
        // The context this handler holds holds it in turn: it must go, or every connection (every stream with
        // HTTP/2) would stay in memory with its buffers, about 6 KB each (measured: 22k closed HTTP/1.1 connections
        // kept 136 MB before this was done for HTTP/1.1 too).
        // Every late callback (an upstream connect, a delay, a decision from Redis) checks the exchange ID first: moved
        // on, none of them reaches for the context.
        self.exchangeID &+= 1
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        self.startHeadTimer()
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.channelClosed = true
        self.cancelQueueTimeout()
        self.connectionTimer.cancel()
        self.responseTimer.cancel()
        self.bodyTimer.cancel()
        self.sendTimer.cancel()
        self.tunnelTimer.cancel()
        self.machine.close()
        self.reading = .stopped
        self.input = nil
        self.dropUpstream()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = self.unwrapInboundIn(data)
        switch self.reading {
        case .stopped:
            return  // closing: dropped
        case .tunnel where self.input == nil:
            self.tunnelTrafficSeen()
            self.exchange.upstream?.handler.write(buffer)
            return
        default:
            break
        }
        if self.input == nil || self.input!.readableBytes == 0 {
            self.input = buffer
        } else {
            self.input!.writeBuffer(&buffer)
        }
        self.processInput()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if let upstream = self.exchange.upstream {
            switch self.reading {
            case .lengthBody, .chunkedBody, .tunnel:
                upstream.handler.flush()
            default:
                break
            }
        }
        // The last handler: nothing after it to tell.
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            self.exchange.upstream?.handler.resumeReading()
            self.clientOutputDrained()
            // Between requests a waiting request is read only while the client takes its answers.
            if case .head = self.reading, self.input != nil { self.processInput() }
            self.resumeClientReading()
        } else {
            self.armSendTimer()
        }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event {
            self.clientInputClosed()
        } else if event is ChannelShouldQuiesceEvent {
            // Graceful shutdown (SPEC §1): an idle connection closes now; one in flight closes after its response
            // (``ProxyShared/isDraining`` is set by then).
            if case .idle = self.machine.state, case .head = self.reading, (self.input?.readableBytes ?? 0) == 0 {
                self.closeAfterPendingWrites()
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// The client shut its sending side.
    private func clientInputClosed() {
        if self.machine.slots?.isWaiting == true {
            // A client that shuts its side while its request waits for a slot is gone (as nginx takes it): it leaves
            // the queue at once.
            self.closeClient()
            return
        }
        switch self.reading {
        case .tunnel:
            // Half-close travels through the tunnel as a close of the other side's output.
            self.exchange.upstream?.channel.close(mode: .output, promise: nil)
            return
        case .lengthBody, .chunkedBody:
            // The body can never complete: it must not reach the upstream as if it had.
            _ = self.machine.inputClosed(requestBytesPending: true)
            self.reading = .stopped
            self.input = nil
            self.requestBodyRefused(status: .badRequest, reason: "the client closed its side mid-body")
            return
        default:
            break
        }
        let pending = (self.input?.readableBytes ?? 0) > 0
        switch self.machine.inputClosed(requestBytesPending: pending) {
        case .closeWhenFlushed:
            self.closeAfterPendingWrites()
        case .close:
            self.context.close(promise: nil)
        case .none:
            if case .head = self.reading, pending, case .idle = self.machine.state {
                // What is left is what was read; a head it does not complete never will.
                self.processInput()
                if case .head = self.reading, self.input != nil, case .idle = self.machine.state {
                    self.closeAfterPendingWrites()
                }
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // I/O and TLS errors (reset by peer, a failed handshake, plain HTTP on a TLS port): nothing to answer.
        self.shared.logger.debug("client connection error", metadata: ["error": "\(error)", "peer": "\(self.peerIP)"])
        self.closeClient()
    }

    func read(context: ChannelHandlerContext) {
        guard self.mayReadClient else {
            self.readPending = true
            // Not read, so not late: body_read counts only while the client is read.
            self.bodyTimer.disarm()
            return
        }
        self.armBodyTimerIfReadingBody()
        context.read()
    }

    /// Whether the client may be read now.
    var mayReadClient: Bool {
        switch self.reading {
        case .head:
            // Between requests, nothing more is read while the answers are not taken (SPEC §3 "Hostile clients").
            return self.context.channel.isWritable
        case .lengthBody, .chunkedBody:
            guard case .exchange(let exchange) = self.machine.state else { return true }  // discarding
            guard case .attached = exchange.upstream, let upstream = self.exchange.upstream else { return false }
            return upstream.channel.isWritable
        case .afterRequest:
            // Read until the next request's first bytes are here (so a close is noticed), then wait.
            return self.input == nil
        case .tunnel:
            return self.exchange.upstream?.channel.isWritable ?? false
        case .stopped:
            return self.lingering
        }
    }

    func resumeClientReading() {
        guard self.readPending, self.mayReadClient else { return }
        self.readPending = false
        self.armBodyTimerIfReadingBody()
        self.context.read()
    }

    /// The exchange ended and the connection stays: the next request is read (one may be waiting in ``input``).
    func readNextRequest() {
        if self.shared.isDraining {
            self.closeAfterPendingWrites()
            return
        }
        self.exchange = ExchangeData()
        self.reading = .head
        self.startIdleTimer()
        self.processInput()
        self.resumeClientReading()
    }

    // MARK: input

    /// Consumes ``input`` as far as the state allows.
    func processInput() {
        guard !self.processing else { return }
        self.processing = true
        defer { self.processing = false }
        while let available = self.input?.readableBytes, available > 0 {
            switch self.reading {
            case .head:
                guard case .idle = self.machine.state else { return }
                guard self.context.channel.isWritable else { return }  // resumed by channelWritabilityChanged
                if !self.parseHead() { return }
            case .lengthBody(let remaining):
                let count = min(remaining, available)
                let slice = self.input!.readSlice(length: count)!
                self.reading = count == remaining ? .afterRequest : .lengthBody(remaining: remaining - count)
                self.requestBodyReceived(slice)
                if count == remaining { self.requestEnded() }
            case .chunkedBody:
                let result = self.input!.withUnsafeReadableBytes { bytes in
                    self.chunkedParser.parse(bytes) { _ in }
                }
                switch result {
                case .needMoreBytes:
                    let slice = self.input!.readSlice(length: available)!
                    self.requestBodyReceived(slice)
                case .end(let offset):
                    let slice = self.input!.readSlice(length: offset)!
                    self.reading = .afterRequest
                    self.requestBodyReceived(slice)
                    self.requestEnded()
                case .error(let failure):
                    self.reading = .stopped
                    self.input = nil
                    self.requestBodyRefused(status: HTTPResponseStatus(statusCode: failure.status), reason: "\(failure)")
                    return
                }
            case .afterRequest:
                return
            case .tunnel:
                let bytes = self.input!
                self.input = nil
                self.tunnelTrafficSeen()
                self.exchange.upstream?.handler.write(bytes)
                self.exchange.upstream?.handler.flush()
            case .stopped:
                self.input = nil
            }
        }
        if self.input?.readableBytes == 0 { self.input = nil }
        if case .head = self.reading, self.input == nil, self.machine.idleAfterInputClosed() {
            self.closeAfterPendingWrites()
        }
    }

    /// Parses the head at the front of ``input``; returns whether a head was taken (the loop goes on).
    private func parseHead() -> Bool {
        if self.headParserNeedsReset {
            // Reset here, not when the head was taken: the exchange's copy of it is gone by now, so the parser reuses
            // its field list's storage.
            self.headParserNeedsReset = false
            self.headParser.reset()
        }
        let result = self.input!.withUnsafeReadableBytes { self.headParser.parse($0) }
        switch result {
        case .needMoreBytes:
            // From now on the head must complete within header_read, not idle.
            if !self.headBytesSeen {
                self.headBytesSeen = true
                if !(self.connectionTimer.isArmed && self.connectionTimerKind == .head) { self.startHeadTimer() }
            }
            return false
        case .error(let error):
            self.headParser.reset()
            self.input = nil
            self.reading = .stopped
            self.shared.logger.debug("client protocol error", metadata: ["error": "\(error)", "peer": "\(self.peerIP)"])
            self.machine.close()
            self.writeRawErrorAndClose(HTTPResponseStatus(statusCode: error.status))
            return false
        case .head(let head):
            let headBytes = self.input!.readSlice(length: head.length)!
            self.headParserNeedsReset = true
            self.requestHeadReceived(head, bytes: headBytes)
            return true
        }
    }

    // MARK: request

    private func requestHeadReceived(_ head: ParsedRequestHead, bytes: ByteBuffer) {
        self.cancelConnectionTimers()
        self.headBytesSeen = false
        self.exchangeID &+= 1
        let config = self.config
        let isHEAD =
            head.method.count == 4
            && bytes.getInteger(at: bytes.readerIndex + head.method.lowerBound, as: UInt32.self) == Self.headWord
        let request = ProxyConnectionStateMachine.Request(
            minorVersion: head.minorVersion,
            keepAlive: head.isKeepAlive,
            isUpgrade: head.isUpgrade,
            expectsContinue: head.expectsContinue,
            isIdempotent: Self.isIdempotent(head, bytes),
            hasBody: head.framing != .none && head.framing != .length(0),
            bodyWorthDiscarding: {
                switch head.framing {
                case .none: return true
                case .length(let length): return length <= Self.maxDiscardedBodyBytes && !head.expectsContinue
                case .chunked: return false
                }
            }()
        )
        guard self.machine.requestHeadReceived(request) else {
            self.closeClient()
            return
        }
        switch head.framing {
        case .none, .length(0):
            self.reading = .afterRequest
        case .length(let length):
            self.reading = .lengthBody(remaining: length)
        case .chunked:
            self.reading = .chunkedBody
            self.chunkedParser = ChunkedBodyParser(
                limits: .init(maxBodyBytes: config.maxBodyBytes, maxTrailerBytes: self.headParser.maxHeadBytes)
            )
        }

        // RFC 9112 §3.2.2: an absolute-form target's authority is the host, whatever `Host` says; the limiter and
        // the upstream read the request in its origin form with that host.
        // `exchange` is fresh: a head is taken only when idle, and every way back to idle goes through
        // readNextRequest(), which resets it.
        self.exchange.minorVersion = head.minorVersion
        guard var attributes = RawRequestAttributes(head: head, bytes: bytes, clientIP: self.peerIP) else {
            self.answer(status: .badRequest, body: "bad request: invalid request target\n", closeRequested: true)
            return
        }
        if !config.clientIP.trustedProxies.isEmpty {
            attributes.clientIP = config.clientIP.resolve(
                peer: self.peerIP,
                headerValues: attributes.headerValues(config.clientIP.header.rawValue)
            )
        }
        // Issue 15: the token is checked once per request, before concurrency and the rate limits read its claims.
        var jwtFailure: JWTFailure?
        if let jwt = config.jwt {
            switch jwt.check(attributes, now: JWTVerifier.now(), cache: self.pool.jwtCache) {
            case .verified(let claims): attributes.verifiedClaims = claims
            case .failed(let failure): jwtFailure = failure
            }
        }
        let clientIP = attributes.clientIP
        self.exchange.parsedHead = head
        self.exchange.headBytes = bytes
        self.exchange.method = attributes.method
        self.exchange.uri = attributes.uri
        self.exchange.isHEAD = isHEAD
        self.exchange.gateContext = GateContext(clientIP: clientIP, peerIP: self.peerIP)
        self.exchange.gateContext.jwt = jwtFailure
        self.exchange.startedAt = .now()

        // A reverse proxy opens no tunnels to arbitrary hosts; what follows a CONNECT would be tunnel bytes, so
        // the connection closes.
        if head.method.count == 7, attributes.method == "CONNECT" {
            self.answer(
                status: .methodNotAllowed,
                headers: [("Allow", "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH")],
                body: "CONNECT is not supported\n",
                closeRequested: true
            )
            return
        }
        if config.maxBodyBytes > 0, case .length(let length) = head.framing, length > config.maxBodyBytes {
            self.answer(status: .payloadTooLarge, body: "request body too large\n", closeRequested: true)
            return
        }

        // Concurrency first (issue 22): its slots are taken all or nothing, then the rate limits decide.
        if let concurrency = config.concurrencyRef,
            let admission = concurrency._withUnsafeGuaranteedRef({ $0.admission(for: attributes, reusing: &self.spareAdmission) })
        {
            self.admit(admission, attributes, config: config)
            return
        }
        self.decide(attributes, config: config)
    }

    /// Asks the gate (the rate limits) and forwards or answers as it says.
    func decide(_ attributes: RawRequestAttributes, config: ProxySnapshot) {
        var gateContext = self.exchange.gateContext
        let verdict: GateVerdict
        if let limiterGate = config.limiterGate {
            let delivery = ConnectionDelivery(
                handler: NIOLoopBound(self, eventLoop: self.context.eventLoop),
                exchangeID: self.exchangeID,
                config: config
            )
            guard let now = limiterGate.decide(attributes, context: &gateContext, delivery: delivery) else {
                // Held, unread, until ``decisionArrived(_:exchangeID:config:)``.
                self.exchange.gateContext = gateContext
                return
            }
            verdict = now
        } else {
            verdict = config.gate.decide(attributes, context: &gateContext, eventLoop: self.context.eventLoop)
        }
        if let admission = self.machine.slots { Self.describeConcurrency(admission, in: &gateContext) }
        self.exchange.gateContext = gateContext
        switch verdict {
        case .forward(let plan):
            self.forward(plan, config: config)
        case .answer(let answer):
            self.answer(answer)
        case .later(let decided):
            self.awaitDecision(decided, config: config)
        }
    }

    /// The decision of a request that took a round trip (Redis, memcached), on this connection's loop: acted on
    /// unless the exchange it was for is over (the client left) or already went on.
    func decisionArrived(_ decision: DecidedGate, exchangeID: Int, config: ProxySnapshot) {
        guard self.exchangeID == exchangeID, case .exchange(let exchange) = self.machine.state, exchange.upstream == .none else {
            return
        }
        self.exchange.gateContext = decision.context
        if let admission = self.machine.slots { Self.describeConcurrency(admission, in: &self.exchange.gateContext) }
        switch decision.verdict {
        case .forward(let plan):
            self.forward(plan, config: config)
        case .answer(let answer):
            self.answer(answer)
        case .later:
            self.closeClient()
        }
    }

    /// `HEAD` as the first four bytes of a head, read as one integer.
    static let headWord: UInt32 = 0x4845_4144

    /// GET, HEAD, OPTIONS, TRACE, PUT, DELETE (RFC 9110 §9.2.2).
    static func isIdempotent(_ head: ParsedRequestHead, _ bytes: ByteBuffer) -> Bool {
        bytes.withUnsafeReadableBytes { raw in
            let m = head.method
            switch m.count {
            case 3: return HTTPBytes.equalsLowercased(raw, m, "get") || HTTPBytes.equalsLowercased(raw, m, "put")
            case 4: return HTTPBytes.equalsLowercased(raw, m, "head")
            case 5: return HTTPBytes.equalsLowercased(raw, m, "trace")
            case 6: return HTTPBytes.equalsLowercased(raw, m, "delete")
            case 7: return HTTPBytes.equalsLowercased(raw, m, "options")
            default: return false
            }
        }
    }

    /// Holds a request whose decision takes a round trip, from a gate that answers with a future: its body is
    /// buffered and the client is not read further (as during a `delay`), until the decision comes.
    private func awaitDecision(_ decided: EventLoopFuture<DecidedGate>, config: ProxySnapshot) {
        let id = self.exchangeID
        let loopBoundSelf = NIOLoopBound(self, eventLoop: self.context.eventLoop)
        decided.hop(to: self.context.eventLoop).assumeIsolated().whenComplete { result in
            let this = loopBoundSelf.value
            switch result {
            case .success(let decision):
                this.decisionArrived(decision, exchangeID: id, config: config)
            case .failure:
                guard this.exchangeID == id, case .exchange(let exchange) = this.machine.state, exchange.upstream == .none else {
                    return
                }
                this.answer(status: .serviceUnavailable, body: "rate-limit decision failed\n", closeRequested: false)
            }
        }
    }

    /// Forwards an admitted request: now, or after the plan's `delay` (held, not rejected; the client is not
    /// read meanwhile, there being no upstream connection yet).
    private func forward(_ plan: ForwardPlan, config: ProxySnapshot) {
        self.exchange.rateLimitFields = plan.rateLimitFields
        self.exchange.responseObserver = plan.responseObserver
        self.exchange.target = self.pool.nextTarget(of: config.targets)
        if let delay = plan.delay {
            let id = self.exchangeID
            let loopBoundSelf = NIOLoopBound(self, eventLoop: self.context.eventLoop)
            self.context.eventLoop.assumeIsolated().scheduleTask(in: delay) {
                let this = loopBoundSelf.value
                guard this.exchangeID == id else { return }
                this.sendUpstream(config: config)
            }
            return
        }
        self.sendUpstream(config: config)
    }

    func requestBodyReceived(_ body: ByteBuffer) {
        self.exchange.requestBodyBytes += body.readableBytes
        switch self.machine.requestBodyReceived() {
        case .forward:
            self.exchange.upstream?.handler.write(body)
        case .buffer:
            self.exchange.buffered.append(body)
        case .discard:
            break
        }
    }

    func requestEnded() {
        self.bodyTimer.disarm()
        switch self.machine.requestEnded() {
        case .flushUpstream:
            self.exchange.upstream?.handler.flush()
            self.startResponseTimer()
        case .buffer, .none:
            break
        case .readNextRequest:
            self.readNextRequest()
        case .closeWhenFlushed:
            self.reading = .stopped
            self.closeAfterPendingWrites()
        }
    }

    /// The body's framing broke (a chunk-size line too long, over `max_body_bytes`, ...): the status if no response
    /// has started, and the connection closes either way; the upstream connection of the cut request is closed.
    func requestBodyRefused(status: HTTPResponseStatus, reason: String) {
        self.shared.logger.debug("client framing refused", metadata: ["error": "\(reason)", "peer": "\(self.peerIP)"])
        let body: String
        switch status.code {
        case 413: body = "request body too large\n"
        case 431: body = "request trailers too large\n"
        default: body = "bad request: invalid chunked body\n"
        }
        self.perform(self.machine.requestBodyRefused(), status: status, headers: [], body: body)
    }
}

/// Hands a decision that took a round trip to its connection, hopping to the connection's loop when the store
/// answered on another. A value: no promise, future or callback is made per request.
struct ConnectionDelivery: GateDecisionDelivery {
    let handler: NIOLoopBound<ProxyConnectionHandler>
    let exchangeID: Int
    let config: ProxySnapshot

    func deliver(_ decided: DecidedGate) {
        let loop = self.handler.eventLoop
        if loop.inEventLoop {
            self.handler.value.decisionArrived(decided, exchangeID: self.exchangeID, config: self.config)
        } else {
            loop.execute { self.handler.value.decisionArrived(decided, exchangeID: self.exchangeID, config: self.config) }
        }
    }
}
