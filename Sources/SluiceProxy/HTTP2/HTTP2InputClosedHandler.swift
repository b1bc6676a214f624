import NIOCore
import NIOHTTP2

/// Closes an HTTP/2 connection whose client has closed its side (a TCP FIN on h2c, a TLS `close_notify`) once no
/// stream is left open.
///
/// Client connections allow half-closure (an HTTP/1.1 client may send its request and shut its side down), so the
/// end of the client's input arrives as `ChannelEvent.inputClosed` rather than as a close, and neither NIOHTTP2 nor
/// its connection management handler acts on it. Without this handler such a connection stayed open until the idle
/// check and the graceful-shutdown grace time had passed, and a TLS client waiting for Sluice's `close_notify` (NIOSSL
/// waits 5 s) waited for nothing.
///
/// Consumes nothing: frames and events pass through. The open streams are ``HTTP2StreamActivity``'s count, kept by
/// ``HTTP2ConnectionSetup``, which calls ``closeGracefully(_:)`` when the last stream closes after the input did.
/// Streams in flight still get their responses; then a GOAWAY with `NO_ERROR` is written, and the connection is closed
/// once it is, so the end of the last response, written before it, is not cut off.
final class HTTP2InputClosedHandler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame
    typealias InboundOut = HTTP2Frame

    private let activity: NIOLoopBoundBox<HTTP2StreamActivity>

    init(activity: NIOLoopBoundBox<HTTP2StreamActivity>) {
        self.activity = activity
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(data)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event, self.activity.value.inputClosed() {
            Self.closeGracefully(context.channel)
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// Writes a GOAWAY (`NO_ERROR`) and closes `channel` once it is written, on the next tick: a stream's channel
    /// closes while NIOHTTP2 handles the write of its last frame, before that frame is flushed.
    static func closeGracefully(_ channel: any Channel) {
        channel.eventLoop.execute {
            let goAway = HTTP2Frame(streamID: .rootStream, payload: .goAway(lastStreamID: .maxID, errorCode: .noError, opaqueData: nil))
            channel.writeAndFlush(goAway).whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
