import NIOCore
import NIOSSL
import NIOTLS

/// Holds back a new `https://` upstream connection until its TLS handshake is done, so that a failed handshake
/// or certificate check counts as a failed connect (`502`, logged with the reason) instead of surfacing later
/// as a connection closed under a request, and a handshake that stalls fails after `upstream_connect`.
///
/// Sits right behind `NIOSSLClientHandler`. Consumes nothing: events pass through. Removes itself once the
/// handshake completed, so a pooled connection carries no trace of it.
final class UpstreamTLSHandshakeHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    /// Succeeds when the handshake (verification included) completed; fails with its error otherwise.
    var handshakeDone: EventLoopFuture<Void> { self.promise.futureResult }

    private let promise: EventLoopPromise<Void>
    private let timeout: TimeAmount
    private var timer: Scheduled<Void>?
    private var completed = false

    init(eventLoop: EventLoop, timeout: TimeAmount) {
        self.promise = eventLoop.makePromise(of: Void.self)
        self.timeout = timeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let loopBoundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        self.timer = context.eventLoop.assumeIsolated().scheduleTask(in: self.timeout) { [self] in
            self.fail(UpstreamTLSError.handshakeTimedOut)
            loopBoundContext.value.close(promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        // Removed without a verdict: the channel went away before it was ever connected.
        self.fail(UpstreamTLSError.closedDuringHandshake)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        context.fireUserInboundEventTriggered(event)
        if case TLSUserEvent.handshakeCompleted = event {
            self.complete(.success(()))
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        self.fail(error)
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.fail(UpstreamTLSError.closedDuringHandshake)
        context.fireChannelInactive()
    }

    private func fail(_ error: Error) {
        self.complete(.failure(error))
    }

    private func complete(_ result: Result<Void, Error>) {
        guard !self.completed else { return }
        self.completed = true
        self.timer?.cancel()
        self.timer = nil
        self.promise.completeWith(result)
    }
}

/// Why an `https://` upstream connection did not get through its handshake, besides the TLS errors themselves.
enum UpstreamTLSError: Error, CustomStringConvertible {
    case handshakeTimedOut
    case closedDuringHandshake
    case noContext

    var description: String {
        switch self {
        case .handshakeTimedOut: "TLS handshake timed out"
        case .closedDuringHandshake: "connection closed during the TLS handshake"
        case .noContext: "no TLS settings for an https:// target in the running configuration"
        }
    }
}
