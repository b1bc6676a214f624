import NIOCore
import NIOHTTP1

/// Relays raw bytes between the two ends of an upgraded connection (WebSocket), with
/// back-pressure: a side is read only while its partner can take more.
///
/// Consumes and produces `ByteBuffer`. When either side closes, the other is closed too. A tunnel that
/// carries no byte either way for `tunnel_idle` is closed.
final class TunnelHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var partner: TunnelHandler?
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    /// `tunnel_idle`; set on the client side only, which keeps the deadline for both sides.
    private var idleTimeout: TimeAmount?
    private var idleDeadline = LazyDeadline()

    /// Replaces the HTTP handlers of both channels by a pair of tunnel handlers.
    ///
    /// Must run on the shared event loop, after the 101 has been written to the client. Bytes
    /// the HTTP decoders had already read past the upgrade are forwarded when they are removed.
    ///
    /// - Parameter idleTimeout: `tunnel_idle`: the tunnel closes once no byte has gone either way for this long.
    static func join(client: Channel, upstream: Channel, idleTimeout: TimeAmount) throws {
        let clientSide = TunnelHandler()
        let upstreamSide = TunnelHandler()
        clientSide.partner = upstreamSide
        upstreamSide.partner = clientSide
        clientSide.idleTimeout = idleTimeout
        let c = client.pipeline.syncOperations
        let u = upstream.pipeline.syncOperations
        try c.addHandler(clientSide)
        try u.addHandler(upstreamSide)
        // Order matters. The encoders and message handlers go first, synchronously. The decoders
        // leave last: their removal is deferred (it runs on the loop's next tick) and they then
        // hand their left-over bytes (data sent right behind the upgrade) to the tunnel, which
        // writes them to the other channel. That write must meet no HTTP handler: the upstream's
        // response decoder observes writes (it expects request parts), so it is removed first,
        // before the client's decoder can forward anything towards it.
        _ = c.removeHandler(try c.handler(type: ProxyHandler.self))
        // Tunnelled bytes are not HTTP: the framing guard (passing through by now) goes too.
        if let framingGuard = try? c.handler(type: ChunkedFramingGuard.self) { _ = c.removeHandler(framingGuard) }
        _ = c.removeHandler(try c.handler(type: HTTPServerPipelineHandler.self))
        _ = c.removeHandler(try c.handler(type: ClientOutputBackPressureHandler.self))
        _ = c.removeHandler(try c.handler(type: HTTPResponseEncoder.self))
        _ = u.removeHandler(try u.handler(type: UpstreamHandler.self))
        _ = u.removeHandler(try u.handler(type: HTTPRequestEncoder.self))
        _ = u.removeHandler(try u.handler(type: ByteToMessageHandler<HTTPResponseDecoder>.self))
        _ = c.removeHandler(try c.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self))
        // Queued behind both removals: left-overs are written by then, but not flushed (they
        // arrive without a channelReadComplete).
        client.eventLoop.assumeIsolated().execute {
            clientSide.context?.flush()
            upstreamSide.context?.flush()
            clientSide.trafficSeen()
            // Reads were held back while the HTTP exchange was in progress.
            client.read()
            upstream.read()
        }
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.idleDeadline.cancel()
        self.context = nil
        self.partner = nil
    }

    /// Bytes went through the tunnel: the idle deadline moves (a store; see ``LazyDeadline``).
    private func trafficSeen() {
        guard self.idleTimeout != nil else {
            self.partner?.trafficSeen()
            return
        }
        guard let timeout = self.idleTimeout, let context = self.context else { return }
        self.idleDeadline.arm(context.eventLoop.now + timeout) { self.scheduleIdleCheck(at: $0, context: context) }
    }

    private func scheduleIdleCheck(at deadline: NIODeadline, context: ChannelHandlerContext) -> Scheduled<Void> {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        return context.eventLoop.scheduleTask(deadline: deadline) {
            let (this, context) = loopBound.value
            let expired = this.idleDeadline.taskFired(now: context.eventLoop.now) {
                this.scheduleIdleCheck(at: $0, context: context)
            }
            // Closing this side closes the other (channelInactive).
            if expired { context.close(promise: nil) }
        }
    }

    private func partnerWrite(_ data: NIOAny) {
        self.context?.write(data, promise: nil)
    }

    private func partnerFlush() {
        self.context?.flush()
    }

    private func partnerClose() {
        self.context?.close(promise: nil)
    }

    private var partnerIsWritable: Bool {
        self.context?.channel.isWritable ?? false
    }

    private func partnerBecameWritable() {
        if self.pendingRead {
            self.pendingRead = false
            self.context?.read()
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.trafficSeen()
        self.partner?.partnerWrite(data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.partner?.partnerFlush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.idleDeadline.cancel()
        self.partner?.partnerClose()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event {
            // Half-close travels through the tunnel as a full close of the other side's output.
            self.partner?.context?.close(mode: .output, promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            self.partner?.partnerBecameWritable()
        }
    }

    func read(context: ChannelHandlerContext) {
        if self.partner?.partnerIsWritable ?? false {
            context.read()
        } else {
            self.pendingRead = true
        }
    }
}
