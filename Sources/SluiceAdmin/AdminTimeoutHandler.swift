import NIOCore
import NIOHTTP1

/// `server.timeouts.header_read` and `idle` on an admin connection, as on the proxy's (SPEC §3, "Hostile clients").
///
/// Sits between NIO's HTTP server pipeline and ``AdminHTTPHandler``; passes every request and response part on
/// unchanged and only watches them:
/// - A request must arrive whole (head and end) within `header_read` of its first byte, else the connection gets
///   `408 Request Timeout` and is closed. A new connection that has sent nothing by then is closed without an
///   answer.
/// - Between requests, a connection that sends nothing for `idle` is closed.
/// - While a request is answered there is no timer: the router answers promptly (a `/limits` read of a shared
///   store is bounded by the store's own timeout), and the answer is small.
///
/// Timeouts are read when the connection is accepted: a reload applies to new connections.
final class AdminTimeoutHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State {
        /// Waiting for a request head; `headBytesSeen` once part of one has arrived (the decoder holds it).
        case awaitingHead(headBytesSeen: Bool)
        /// The head arrived; waiting for the end of the request.
        case readingRequest
        /// The request is complete; its answer is on its way.
        case answering
        /// Timed out, or the connection went away.
        case closed
    }

    private enum Timer {
        /// `header_read`: the request must be complete by then.
        case head
        /// `idle`: a next request must start by then.
        case idle
    }

    private let headerRead: TimeAmount
    private let idle: TimeAmount
    private var state = State.awaitingHead(headBytesSeen: false)
    private var timer: (kind: Timer, task: Scheduled<Void>)?
    private var context: ChannelHandlerContext?

    init(headerRead: TimeAmount, idle: TimeAmount) {
        self.headerRead = headerRead
        self.idle = idle
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { self.arm(.head) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.disarm()
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        if self.timer == nil { self.arm(.head) }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.disarm()
        self.state = .closed
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head:
            if case .awaitingHead = self.state {
                self.state = .readingRequest
                // The deadline runs from the request's first byte, or from the connection's start.
                if self.timer?.kind != .head { self.arm(.head) }
            }
        case .body:
            break
        case .end:
            if case .readingRequest = self.state {
                self.state = .answering
                self.disarm()
            }
        }
        context.fireChannelRead(data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // Bytes arrived and no head came out of them: a head has begun, and must be complete within header_read.
        if case .awaitingHead(headBytesSeen: false) = self.state {
            self.state = .awaitingHead(headBytesSeen: true)
            if self.timer?.kind != .head { self.arm(.head) }
        }
        context.fireChannelReadComplete()
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = self.unwrapOutboundIn(data), case .answering = self.state {
            self.state = .awaitingHead(headBytesSeen: false)
            self.arm(.idle)
        }
        context.write(data, promise: promise)
    }

    // MARK: timer

    private func arm(_ kind: Timer) {
        guard let context = self.context else { return }
        self.timer?.task.cancel()
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let task = context.eventLoop.scheduleTask(in: kind == .head ? self.headerRead : self.idle) {
            handler.value.timerFired()
        }
        self.timer = (kind, task)
    }

    private func disarm() {
        self.timer?.task.cancel()
        self.timer = nil
    }

    private func timerFired() {
        self.timer = nil
        guard let context = self.context else { return }
        switch self.state {
        case .awaitingHead(headBytesSeen: false):
            self.state = .closed
            context.close(promise: nil)
        case .awaitingHead(headBytesSeen: true), .readingRequest:
            self.state = .closed
            self.writeTimeoutAndClose(context: context)
        case .answering, .closed:
            break
        }
    }

    /// `408` written as bytes in front of the HTTP encoder (no request head may have been decoded to answer),
    /// then a close.
    private func writeTimeoutAndClose(context: ChannelHandlerContext) {
        guard let encoder = try? context.pipeline.syncOperations.context(handlerType: HTTPResponseEncoder.self) else {
            context.close(promise: nil)
            return
        }
        let body = #"{"error":"request head not received in time"}"# + "\n"
        let text =
            "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n"
            + "Connection: close\r\n\r\n" + body
        let loopBoundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        let written = encoder.writeAndFlush(NIOAny(context.channel.allocator.buffer(string: text)))
        written.assumeIsolated().whenComplete { _ in
            loopBoundContext.value.close(promise: nil)
        }
    }
}
