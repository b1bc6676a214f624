import NIOCore
import NIOHTTP1
import SluiceConfig

/// `header_read`, `idle` and `upstream_response`, on ``LazyDeadline``s.
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
        self.connectionTimer.arm(deadline) { self.scheduleTimerTask(at: $0, response: false) }
    }

    func connectionTimerFired() {
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

    func cancelConnectionTimers() {
        self.connectionTimer.disarm()
    }

    func startResponseTimer(_ exchange: Exchange) {
        guard !self.responseTimer.isArmed, !exchange.responseHeadSent else { return }
        let deadline = self.context.eventLoop.now + self.shared.current().upstreamResponseTimeout
        self.responseTimer.arm(deadline) { self.scheduleTimerTask(at: $0, response: true) }
    }

    func responseTimerFired() {
        let expired = self.responseTimer.taskFired(now: self.context.eventLoop.now) {
            self.scheduleTimerTask(at: $0, response: true)
        }
        guard expired, case .forwarding(let exchange) = self.state, !exchange.responseHeadSent else { return }
        self.shared.logger.warning("upstream response timeout", metadata: ["upstream": "\(exchange.target)"])
        self.abortUpstream(exchange)
        self.failExchange(exchange, status: .gatewayTimeout, body: "upstream timed out\n")
    }

    func scheduleTimerTask(at deadline: NIODeadline, response: Bool) -> Scheduled<Void> {
        let loopBoundSelf = NIOLoopBound(self, eventLoop: self.context.eventLoop)
        return self.context.eventLoop.scheduleTask(deadline: deadline) {
            let this = loopBoundSelf.value
            if response { this.responseTimerFired() } else { this.connectionTimerFired() }
        }
    }
}
