import NIOCore
import NIOHTTP1

/// Holds the next request back while the answers to earlier ones are not flushed, so a client that
/// pipelines requests and reads none of the answers cannot make Sluice queue answers without bound
/// (issue 18 item 2; SPEC §3 "Hostile clients").
///
/// Sits between `HTTPServerPipelineHandler` and ``ProxyHandler``; consumes and produces
/// `HTTPServerRequestPart`. Between requests, while the channel is not writable (its unflushed output is
/// above the high-water mark), no read is passed on, so the socket is not read. A request head that
/// arrives then anyway (the rest of a socket read the decoder has already parsed), and everything after it,
/// waits here until the channel is writable again. Once a request is let through, its body flows: an
/// upload and its response may stream at the same time, and ``ProxyHandler`` paces those itself.
///
/// `HTTPServerPipelineHandler` delivers one request at a time and reads nothing while a request is waiting
/// for its response, so what waits here (and there) is at most what one socket read brought in. The same
/// bound holds for answers Sluice writes itself (429, 503, 4xx) and for proxied responses.
final class ClientOutputBackPressureHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// An inbound event waiting behind a held request head.
    private enum HeldEvent {
        case read(NIOAny)
        case inputClosed
        case error(Error)
    }

    /// Events held in arrival order; the first is a request head, held because the channel was not writable.
    private var held = CircularBuffer<HeldEvent>(initialCapacity: 0)
    /// The last part let through ended a request (or none came yet): the next part is a head.
    private var betweenRequests = true
    /// A `read()` was held back; it is passed on once the channel is writable and nothing waits here.
    private var readPending = false
    /// Guards ``release(context:)`` against re-entry: delivering a request can answer it at once, which
    /// makes `HTTPServerPipelineHandler` deliver the next one from inside the delivery.
    private var releasing = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if !self.held.isEmpty {
            self.held.append(.read(data))
            return
        }
        if case .head = self.unwrapInboundIn(data), !context.channel.isWritable {
            self.held.append(.read(data))
            return
        }
        self.deliver(data, context: context)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // With a request held, its read-complete is fired when it is released.
        if self.held.isEmpty {
            context.fireChannelReadComplete()
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if !self.held.isEmpty, let event = event as? ChannelEvent, case .inputClosed = event {
            self.held.append(.inputClosed)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // A parse error of what follows a held request belongs after it; I/O errors end the connection now.
        if !self.held.isEmpty, error is HTTPParserError {
            self.held.append(.error(error))
            return
        }
        context.fireErrorCaught(error)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        context.fireChannelWritabilityChanged()
        if context.channel.isWritable {
            self.release(context: context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.held.removeAll()
        context.fireChannelInactive()
    }

    func read(context: ChannelHandlerContext) {
        if !self.held.isEmpty || (self.betweenRequests && !context.channel.isWritable) {
            self.readPending = true
            return
        }
        context.read()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        // Removed for a tunnel, which starts only while a request is in flight: nothing is held then.
        self.held.removeAll()
        if self.readPending {
            self.readPending = false
            context.read()
        }
    }

    private func deliver(_ data: NIOAny, context: ChannelHandlerContext) {
        switch self.unwrapInboundIn(data) {
        case .head: self.betweenRequests = false
        case .body: break
        case .end: self.betweenRequests = true
        }
        context.fireChannelRead(data)
    }

    /// Lets held events through while the channel is writable (a head waits again if it is not), then
    /// passes on a held read.
    private func release(context: ChannelHandlerContext) {
        guard !self.releasing else { return }
        self.releasing = true
        defer { self.releasing = false }
        var deliveredRead = false
        while let event = self.held.first {
            switch event {
            case .read(let data):
                if case .head = self.unwrapInboundIn(data), !context.channel.isWritable {
                    // Answering the previous request filled the output again.
                    if deliveredRead { context.fireChannelReadComplete() }
                    return
                }
                self.held.removeFirst()
                deliveredRead = true
                self.deliver(data, context: context)
            case .inputClosed:
                self.held.removeFirst()
                // As a socket reports them: the reads' completion first, then the half-close.
                if deliveredRead {
                    deliveredRead = false
                    context.fireChannelReadComplete()
                }
                context.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
            case .error(let error):
                self.held.removeFirst()
                context.fireErrorCaught(error)
            }
        }
        if deliveredRead {
            context.fireChannelReadComplete()
        }
        if self.readPending && self.held.isEmpty && !(self.betweenRequests && !context.channel.isWritable) {
            self.readPending = false
            context.read()
        }
    }
}
