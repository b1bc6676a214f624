import Logging
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Decides when a listening channel accepts: not while its ``ConnectionCap`` is reached, and not for a moment after
/// a failed accept.
///
/// Sits in the pipeline of a server channel (see ``ListenerGuards``). Consumes the accepted child channels only to
/// count them in the cap (each is passed on unchanged, and counted out when it closes) and the accept errors NIO
/// reports; produces nothing.
///
/// **The cap.** NIO accepts when the server channel is asked to `read()`. While the cap is reached this handler holds
/// that call back, and issues it again once a connection counted by the same cap closes. Connections that arrive
/// meanwhile wait in the kernel's listen backlog: none is accepted and then dropped.
///
/// **The pause after a failed accept.** When `accept` fails with `EMFILE`, `ENFILE`, `ENOBUFS` or `ENOMEM`, the
/// connection stays in the backlog and the listening socket stays readable. NIO 2.101 keeps its read pending and
/// the socket registered after such a failure, so it calls `accept` again at once, forever: one core spins and every
/// other connection on that event loop starves. NIO's `AcceptBackoffHandler` does not help there, since it only
/// delays the *next* `read()` call, which never comes while the failed one is still pending. So this handler turns
/// `autoRead` off (NIO then stops watching the socket), and on again ``ListenerGuards/acceptBackoffMilliseconds``
/// later, or once the cap has room if it is reached by then.
///
/// Pauses and accept errors are logged, rate-limited: a flood writes a line every few seconds, not one per
/// connection.
public final class AcceptGuardHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = Channel
    public typealias InboundOut = Channel
    public typealias OutboundIn = Channel

    private enum State {
        /// Reads pass through: NIO accepts when asked.
        case accepting
        /// A `read()` is held back, registered with the cap, until a counted connection closes.
        case waitingForRoom
        /// `autoRead` is off after a failed accept, until this task turns it on again.
        case backingOff(Scheduled<Void>)
        /// The pause is over but the cap is reached: `autoRead` goes on again once it has room.
        case waitingForRoomAfterBackoff
    }

    private let cap: ConnectionCap
    private let logger: Logger
    /// Names the listener in log lines (`proxy`, `admin`).
    private let role: String
    private var state = State.accepting
    private var context: ChannelHandlerContext?
    private var lastPauseReport: NIODeadline?
    private var lastErrorReport: NIODeadline?
    private var errorsSinceReport = 0

    /// - Parameters:
    ///   - cap: the count this listener shares with the others it is capped with.
    ///   - logger: where pauses and accept errors are reported.
    ///   - role: names the listener in those reports.
    public init(cap: ConnectionCap, logger: Logger, role: String) {
        self.cap = cap
        self.logger = logger
        self.role = role
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        self.stop()
        self.context = nil
    }

    public func channelInactive(context: ChannelHandlerContext) {
        self.stop()
        context.fireChannelInactive()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let child = self.unwrapInboundIn(data)
        let cap = self.cap
        cap.connectionOpened()
        // Completes for every accepted channel, also one whose setup fails: NIO closes that one.
        child.closeFuture.whenComplete { _ in cap.connectionClosed() }
        context.fireChannelRead(data)
    }

    public func read(context: ChannelHandlerContext) {
        guard case .accepting = self.state else {
            // Already held back; or paused, and `autoRead` coming back on reads anyway.
            return
        }
        if self.cap.hasRoom || !self.waitForRoom(context: context) {
            context.read()
            return
        }
        self.state = .waitingForRoom
        self.reportPause()
    }

    public func errorCaught(context: ChannelHandlerContext, error: Error) {
        guard let error = error as? IOError else {
            context.fireErrorCaught(error)
            return
        }
        switch error.errnoCode {
        case EMFILE, ENFILE, ENOBUFS, ENOMEM:
            self.reportAcceptError(error)
            guard case .accepting = self.state else { return }
            self.setAutoRead(false, context: context)
            let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
            let task = context.eventLoop.scheduleTask(in: .milliseconds(ListenerGuards.acceptBackoffMilliseconds)) {
                handler.value.backoffEnded()
            }
            self.state = .backingOff(task)
        default:
            // ECONNABORTED: that client gave up before it was accepted; the next accept is fine. Anything else has
            // closed the listener already.
            self.logger.debug("\(self.role) listener: accept failed", metadata: ["error": "\(error)"])
        }
    }

    // MARK: resuming

    private func backoffEnded() {
        guard case .backingOff = self.state, let context = self.context else { return }
        self.resumeAfterBackoff(context: context)
    }

    private func resumeAfterBackoff(context: ChannelHandlerContext) {
        if self.cap.hasRoom || !self.waitForRoom(context: context) {
            self.state = .accepting
            // NIO reads (accepts) at once when `autoRead` goes on.
            self.setAutoRead(true, context: context)
        } else {
            self.state = .waitingForRoomAfterBackoff
            self.reportPause()
        }
    }

    /// A counted connection closed somewhere (hopped onto this loop).
    private func roomAvailable() {
        guard let context = self.context else { return }
        switch self.state {
        case .waitingForRoom:
            self.state = .accepting
            self.read(context: context)
        case .waitingForRoomAfterBackoff:
            self.resumeAfterBackoff(context: context)
        case .accepting, .backingOff:
            break
        }
    }

    /// Registers with the cap; `false` when there is room after all (nothing registered).
    private func waitForRoom(context: ChannelHandlerContext) -> Bool {
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        return self.cap.waitForRoom(ObjectIdentifier(self)) {
            eventLoop.execute { handler.value.roomAvailable() }
        }
    }

    private func stop() {
        switch self.state {
        case .backingOff(let task):
            task.cancel()
        case .waitingForRoom, .waitingForRoomAfterBackoff:
            self.cap.stopWaiting(ObjectIdentifier(self))
        case .accepting:
            break
        }
        self.state = .accepting
    }

    private func setAutoRead(_ on: Bool, context: ChannelHandlerContext) {
        if let options = context.channel.syncOptions {
            try? options.setOption(.autoRead, value: on)
        } else {
            context.channel.setOption(.autoRead, value: on).whenFailure { _ in }
        }
    }

    // MARK: reports

    private func reportPause() {
        let now = NIODeadline.now()
        if let last = self.lastPauseReport, now - last < .seconds(60) { return }
        self.lastPauseReport = now
        self.logger.notice(
            "\(self.role) listener: \(self.cap.limit) connections open, the most allowed; accepting when one closes"
        )
    }

    private func reportAcceptError(_ error: IOError) {
        self.errorsSinceReport += 1
        let now = NIODeadline.now()
        if let last = self.lastErrorReport, now - last < .seconds(10) { return }
        self.lastErrorReport = now
        self.logger.warning(
            "\(self.role) listener: accept failed, pausing accepts for \(ListenerGuards.acceptBackoffMilliseconds) ms",
            metadata: [
                "error": "\(error)",
                "errors": "\(self.errorsSinceReport)",
                "open_connections": "\(self.cap.openConnections)",
            ]
        )
        self.errorsSinceReport = 0
    }
}
