import NIOCore
import NIOHTTP1

/// What the client side of an exchange hears from its upstream connection.
///
/// Both channels of an exchange live on the same event loop (the upstream connection is
/// opened on the client's loop), so these calls are plain synchronous method calls.
protocol UpstreamDelegate: AnyObject {
    func upstreamReceived(_ part: HTTPClientResponsePart)
    func upstreamReadComplete()
    func upstreamWritabilityChanged(isWritable: Bool)
    func upstreamClosed(error: Error?)
    /// Whether the upstream may be read now; `false` while the client cannot take more bytes.
    var upstreamMayRead: Bool { get }
}

/// The last handler of an upstream connection's pipeline: hands response parts to the exchange
/// that currently owns the connection, and holds reads back while that exchange's client is slow.
///
/// Consumes `HTTPClientResponsePart`, produces `HTTPClientRequestPart`. An idle pooled connection
/// has no delegate; anything it receives then is unexpected and closes it.
final class UpstreamHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    weak var delegate: UpstreamDelegate?
    /// Called once when the channel goes inactive, so the pool forgets the connection.
    var onClose: (() -> Void)?
    private var readPending = false
    private(set) var context: ChannelHandlerContext?

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = self.unwrapInboundIn(data)
        if let delegate = self.delegate {
            delegate.upstreamReceived(part)
        } else {
            // Bytes on an idle connection: the upstream broke the protocol (or is closing); never reuse it.
            context.close(promise: nil)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.delegate?.upstreamReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        self.delegate?.upstreamWritabilityChanged(isWritable: context.channel.isWritable)
    }

    func channelInactive(context: ChannelHandlerContext) {
        let delegate = self.delegate
        self.delegate = nil
        self.onClose?()
        self.onClose = nil
        delegate?.upstreamClosed(error: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        let delegate = self.delegate
        self.delegate = nil
        delegate?.upstreamClosed(error: error)
        context.close(promise: nil)
    }

    func read(context: ChannelHandlerContext) {
        if let delegate = self.delegate, !delegate.upstreamMayRead {
            self.readPending = true
        } else {
            context.read()
        }
    }

    /// Resumes a read held back by ``read(context:)``.
    func resumeReading() {
        guard self.readPending, let context = self.context else { return }
        self.readPending = false
        context.read()
    }
}
