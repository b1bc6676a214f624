import NIOCore
import NIOHTTP1
import SluiceConfig

/// `header_read`, `idle`, `upstream_response`, `body_read`, `send` and `tunnel_idle`, on ``LazyDeadline``s.
extension ProxyConnectionHandler {
    // MARK: connection timers

    func startHeadTimer() {
        self.armConnectionTimer(.head, in: self.config.headerReadTimeout)
    }

    func startIdleTimer() {
        self.armConnectionTimer(.idle, in: self.config.idleTimeout)
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
        guard expired, case .idle = self.machine.state, case .head = self.reading else { return }
        switch self.connectionTimerKind {
        case .head:
            if self.headBytesSeen || (self.input?.readableBytes ?? 0) > 0 {
                self.writeRawErrorAndClose(.requestTimeout)
            } else {
                self.closeClient()
            }
        case .idle:
            if !self.headBytesSeen && (self.input?.readableBytes ?? 0) == 0 { self.closeClient() }
        }
    }

    func cancelConnectionTimers() {
        self.connectionTimer.disarm()
    }

    func startResponseTimer() {
        guard !self.responseTimer.isArmed else { return }
        let deadline = self.context.eventLoop.now + self.config.upstreamResponseTimeout
        self.responseTimer.arm(deadline) { self.scheduleTimerTask(at: $0, .response) }
    }

    func responseTimerFired() {
        let expired = self.responseTimer.taskFired(now: self.context.eventLoop.now) {
            self.scheduleTimerTask(at: $0, .response)
        }
        guard expired else { return }
        let action = self.machine.responseTimedOut(isDraining: self.shared.isDraining)
        guard action != .none else { return }
        self.shared.logger.warning(
            "upstream response timeout",
            metadata: ["upstream": "\(self.exchange.target.map { "\($0)" } ?? "-")"]
        )
        self.shared.metrics.upstreamFailed(status: 504)
        self.perform(action, status: .gatewayTimeout, headers: self.exchange.rateLimitFields?.pairs ?? [], body: "upstream timed out\n")
    }

    // MARK: body_read

    /// Arms `body_read` when a read is about to be passed on while a request body is still coming: the
    /// next body bytes must arrive within it. A store, not a scheduled task, per read (``LazyDeadline``).
    func armBodyTimerIfReadingBody() {
        switch self.reading {
        case .lengthBody, .chunkedBody:
            break
        default:
            return
        }
        let deadline = self.context.eventLoop.now + self.config.bodyReadTimeout
        self.bodyTimer.arm(deadline) { self.scheduleTimerTask(at: $0, .body) }
    }

    /// No request-body bytes for `body_read`: 408 when no response has started, otherwise the connection
    /// closes. The upstream connection is closed either way (it is mid-request, never reusable).
    func bodyTimerFired() {
        let expired = self.bodyTimer.taskFired(now: self.context.eventLoop.now) {
            self.scheduleTimerTask(at: $0, .body)
        }
        guard expired else { return }
        switch self.reading {
        case .lengthBody, .chunkedBody:
            break
        default:
            return
        }
        self.shared.logger.debug("request body timeout", metadata: ["peer": "\(self.peerIP)"])
        self.reading = .stopped
        self.input = nil
        self.perform(
            self.machine.bodyTimedOut(),
            status: .requestTimeout,
            headers: self.exchange.rateLimitFields?.pairs ?? [],
            body: "request body timed out\n"
        )
    }

    // MARK: send

    /// Bytes written to the client connection and not yet taken by the kernel.
    ///
    /// An HTTP/2 stream's channel has no such option (asking it traps): the connection's socket is asked, so `send`
    /// measures whether the client takes bytes of its connection at all.
    var clientBufferedBytes: Int {
        let channel = self.clientProtocol == .http2 ? (self.context.channel.parent ?? self.context.channel) : self.context.channel
        return (try? channel.syncOptions?.getOption(.bufferedWritableBytes)) ?? 0
    }

    /// Arms `send`: the client must take some of what waits for it within that time.
    func armSendTimer() {
        self.sendBufferedBytes = self.clientBufferedBytes
        let deadline = self.context.eventLoop.now + self.config.sendTimeout
        self.sendTimer.arm(deadline) { self.scheduleTimerTask(at: $0, .send) }
    }

    /// The client's output went below its low-water mark: it is reading. A closing connection keeps its
    /// timer, which bounds the wait for its last bytes.
    func clientOutputDrained() {
        if case .closed = self.machine.state { return }
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
        if case .closed = self.machine.state { closing = true } else { closing = false }
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

    // MARK: tunnel_idle

    /// Bytes went through the tunnel: the idle deadline moves.
    func tunnelTrafficSeen() {
        let deadline = self.context.eventLoop.now + self.config.tunnelIdleTimeout
        self.tunnelTimer.arm(deadline) { self.scheduleTimerTask(at: $0, .tunnel) }
    }

    func tunnelTimerFired() {
        let expired = self.tunnelTimer.taskFired(now: self.context.eventLoop.now) {
            self.scheduleTimerTask(at: $0, .tunnel)
        }
        if expired { self.closeClient() }
    }

    // MARK: scheduling

    enum TimerKind {
        case connection
        case response
        case body
        case send
        case tunnel
    }

    func scheduleTimerTask(at deadline: NIODeadline, _ kind: TimerKind) -> Scheduled<Void> {
        if self.channelClosed {
            // Armed after the channel closed (an HTTP/2 stream closes as soon as its response's last frame is out,
            // before the handler's own bookkeeping after it): a task would keep this handler alive until it fired.
            let never = self.context.eventLoop.makePromise(of: Void.self)
            never.fail(ChannelError.ioOnClosedChannel)
            return Scheduled(promise: never, cancellationTask: {})
        }
        let loopBoundSelf = NIOLoopBound(self, eventLoop: self.context.eventLoop)
        return self.context.eventLoop.scheduleTask(deadline: deadline) {
            let this = loopBoundSelf.value
            switch kind {
            case .connection: this.connectionTimerFired()
            case .response: this.responseTimerFired()
            case .body: this.bodyTimerFired()
            case .send: this.sendTimerFired()
            case .tunnel: this.tunnelTimerFired()
            }
        }
    }
}
