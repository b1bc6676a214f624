import NIOCore
import NIOHTTP1
import SluiceConfig

/// `header_read`, `idle`, `upstream_response`, `body_read` and `send`, on ``LazyDeadline``s.
extension ProxyHandler {
    // MARK: connection timers

    func startHeadTimer() {
        self.armConnectionTimer(.head, in: self.shared.current().headerReadTimeout)
    }

    func startIdleTimer() {
        self.armConnectionTimer(.idle, in: self.shared.current().idleTimeout)
    }

    func armConnectionTimer(_ kind: ConnectionTimer, in timeout: TimeAmount) {
        self.connectionTimerKind = kind
        let deadline = self.context.eventLoop.now + timeout
        self.connectionTimer.arm(deadline) { self.scheduleTimerTask(at: $0, .connection) }
    }

    func connectionTimerFired() {
        let expired = self.connectionTimer.taskFired(now: self.context.eventLoop.now) {
            self.scheduleTimerTask(at: $0, .connection)
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

    func cancelConnectionTimers() {
        self.connectionTimer.disarm()
    }

    func startResponseTimer(_ exchange: Exchange) {
        guard !self.responseTimer.isArmed, !exchange.responseHeadSent else { return }
        let deadline = self.context.eventLoop.now + self.shared.current().upstreamResponseTimeout
        self.responseTimer.arm(deadline) { self.scheduleTimerTask(at: $0, .response) }
    }

    func responseTimerFired() {
        let expired = self.responseTimer.taskFired(now: self.context.eventLoop.now) {
            self.scheduleTimerTask(at: $0, .response)
        }
        guard expired, case .forwarding(let exchange) = self.state, !exchange.responseHeadSent else { return }
        self.shared.logger.warning("upstream response timeout", metadata: ["upstream": "\(exchange.target)"])
        self.abortUpstream(exchange)
        self.failExchange(exchange, status: .gatewayTimeout, body: "upstream timed out\n")
    }

    // MARK: body_read

    /// Arms `body_read` when a read is about to be passed on while a request body is still coming: the
    /// next body bytes must arrive within it. A store, not a scheduled task, per read (``LazyDeadline``).
    func armBodyTimerIfReadingBody() {
        switch self.state {
        case .forwarding(let exchange) where !exchange.requestEnded:
            break
        case .answeredLocally(_, requestEnded: false):
            break
        default:
            return
        }
        let deadline = self.context.eventLoop.now + self.shared.current().bodyReadTimeout
        self.bodyTimer.arm(deadline) { self.scheduleTimerTask(at: $0, .body) }
    }

    /// No request-body bytes for `body_read`: 408 when no response has started, otherwise the connection
    /// closes. The upstream connection is closed either way (it is mid-request, never reusable).
    func bodyTimerFired() {
        let expired = self.bodyTimer.taskFired(now: self.context.eventLoop.now) {
            self.scheduleTimerTask(at: $0, .body)
        }
        guard expired else { return }
        switch self.state {
        case .forwarding(let exchange) where !exchange.requestEnded:
            self.shared.logger.debug("request body timeout", metadata: ["peer": "\(self.peerIP)"])
            self.abortUpstream(exchange)
            if exchange.responseHeadSent || exchange.switchingHead != nil {
                self.closeClient()
                return
            }
            self.state = .answeredLocally(closeAfter: true, requestEnded: false)
            self.shared.accessLog.record(
                exchange: exchange.context,
                method: exchange.method,
                uri: exchange.upstreamHead.uri,
                status: Int(HTTPResponseStatus.requestTimeout.code),
                upstreamMs: nil,
                bytesIn: exchange.requestBodyBytes,
                bytesOut: 0
            )
            self.writeLocalResponse(
                status: .requestTimeout,
                version: exchange.clientVersion,
                headers: exchange.extraResponseHeaders,
                body: "request body timed out\n",
                close: true
            )
        case .answeredLocally(_, requestEnded: false):
            // Answered already; the rest of the body it was waiting to drop is not coming.
            self.closeClient()
        default:
            break
        }
    }

    // MARK: send

    /// Bytes written to the client connection and not yet taken by the kernel.
    var clientBufferedBytes: Int {
        (try? self.context.channel.syncOptions?.getOption(.bufferedWritableBytes)) ?? 0
    }

    /// Arms `send`: the client must take some of what waits for it within that time.
    func armSendTimer() {
        self.sendBufferedBytes = self.clientBufferedBytes
        let deadline = self.context.eventLoop.now + self.shared.current().sendTimeout
        self.sendTimer.arm(deadline) { self.scheduleTimerTask(at: $0, .send) }
    }

    /// The client's output went below its low-water mark: it is reading. A closing connection keeps its
    /// timer, which bounds the wait for its last bytes.
    func clientOutputDrained() {
        if case .closed = self.state { return }
        self.sendTimer.disarm()
    }

    /// `send` passed while the output was blocked (or a closing answer was unflushed): closes the client
    /// unless it took some bytes meanwhile (then it is slow, not gone, and gets another period, as nginx's
    /// `send_timeout` counts from the last successful write).
    func sendTimerFired() {
        let expired = self.sendTimer.taskFired(now: self.context.eventLoop.now) {
            self.scheduleTimerTask(at: $0, .send)
        }
        guard expired, self.context.channel.isActive else { return }
        let closing: Bool
        if case .closed = self.state { closing = true } else { closing = false }
        guard closing || !self.context.channel.isWritable else { return }
        let buffered = self.clientBufferedBytes
        // All flushed: a closing connection finishes (or lingers) on its own.
        if closing && buffered == 0 { return }
        if buffered < self.sendBufferedBytes {
            self.armSendTimer()
            return
        }
        self.shared.logger.debug("client send timeout", metadata: ["peer": "\(self.peerIP)"])
        self.closeClient()
    }

    // MARK: scheduling

    enum TimerKind {
        case connection
        case response
        case body
        case send
    }

    func scheduleTimerTask(at deadline: NIODeadline, _ kind: TimerKind) -> Scheduled<Void> {
        let loopBoundSelf = NIOLoopBound(self, eventLoop: self.context.eventLoop)
        return self.context.eventLoop.scheduleTask(deadline: deadline) {
            let this = loopBoundSelf.value
            switch kind {
            case .connection: this.connectionTimerFired()
            case .response: this.responseTimerFired()
            case .body: this.bodyTimerFired()
            case .send: this.sendTimerFired()
            }
        }
    }
}
