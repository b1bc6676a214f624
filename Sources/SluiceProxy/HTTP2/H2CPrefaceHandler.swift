import NIOCore

/// On a plain listener with `server.h2c: true`: tells prior-knowledge HTTP/2 from HTTP/1.1 by the first bytes of the
/// connection (issue 13), then puts the right handlers in its place and replays what it read.
///
/// A connection whose first 24 bytes are the HTTP/2 preface (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`, RFC 9113 §3.4)
/// speaks HTTP/2; one whose bytes stop matching it, usually at the first or second byte, is HTTP/1.1 as without h2c.
/// A client that sends fewer than 24 matching bytes and then nothing is closed after `header_read`, the time an
/// HTTP/1.1 head has too.
final class H2CPrefaceHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    static let preface: [UInt8] = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    /// What the connection speaks.
    enum Decision {
        case http2
        case http1
    }

    private let headerReadTimeout: TimeAmount
    private let configure: (Decision, ChannelPipeline.SynchronousOperations) throws -> Void
    private var buffered: ByteBuffer?
    private var timeout: Scheduled<Void>?

    /// - Parameter configure: adds the handlers for the decision at the end of the pipeline (this handler is last then).
    init(headerReadTimeout: TimeAmount, configure: @escaping (Decision, ChannelPipeline.SynchronousOperations) throws -> Void) {
        self.headerReadTimeout = headerReadTimeout
        self.configure = configure
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let channel = context.channel
        self.timeout = context.eventLoop.scheduleTask(in: self.headerReadTimeout) {
            channel.close(promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.timeout?.cancel()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = self.unwrapInboundIn(data)
        if self.buffered == nil {
            self.buffered = bytes
        } else {
            self.buffered!.writeBuffer(&bytes)
        }
        let seen = self.buffered!.readableBytesView
        let compared = min(seen.count, Self.preface.count)
        let matches = seen.prefix(compared).elementsEqual(Self.preface.prefix(compared))
        if matches && compared < Self.preface.count { return }
        self.decide(context: context, matches ? .http2 : .http1)
    }

    private func decide(context: ChannelHandlerContext, _ decision: Decision) {
        self.timeout?.cancel()
        self.timeout = nil
        do {
            try self.configure(decision, context.pipeline.syncOperations)
        } catch {
            context.close(promise: nil)
            return
        }
        let bytes = self.buffered!
        self.buffered = nil
        context.fireChannelRead(self.wrapInboundOut(bytes))
        context.fireChannelReadComplete()
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event {
            // The client stopped sending before the preface could tell: what it sent is HTTP/1.1's to answer.
            guard self.buffered != nil else {
                context.close(promise: nil)
                return
            }
            self.decide(context: context, .http1)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.timeout?.cancel()
        context.fireChannelInactive()
    }
}
