import NIOCore
import NIOHPACK
import NIOHTTP2

/// Makes one HTTP/2 stream look like an HTTP/1.1 connection carrying one request, to the ``ProxyConnectionHandler``
/// after it on the stream's channel (issue 13), so a stream goes through the very same request path as an HTTP/1.1
/// request: matching, keys, limits, 429 with `Retry-After` and RateLimit fields, concurrency slots, forwarding to
/// the upstream pool, timeouts, the access log and the metrics.
///
/// Inbound it consumes the stream's frame payloads and produces bytes: the request head from
/// ``HTTP2RequestHead`` (which refuses every field that could change the meaning of those bytes), then the body,
/// DATA frame by DATA frame, exactly as the head frames it: with a `Content-Length`, never more than that many bytes
/// (more, or fewer at `END_STREAM`, resets the stream: the bytes after a body would be read as a next request);
/// chunked otherwise, each DATA frame one chunk, `END_STREAM` the last chunk. Request trailers are dropped. Nothing
/// is passed on after the request ended.
///
/// Outbound it consumes the handler's HTTP/1.1 response bytes and produces frames (``HTTP2ResponseFrames``). A
/// close from the handler waits for the frame that ended the response to be written (a stream closed earlier would
/// reset and lose it); a half close is nothing to do once the response has ended.
///
/// A refused head is answered here (400, 405 or 431, with a short text body) and the stream closes; it never
/// reaches the handler.
final class HTTP2StreamBridgeHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = HTTP2Frame.FramePayload

    /// Where the request is.
    private enum Request {
        /// Waits for the HEADERS frame that opens the stream.
        case head
        /// `remaining` bytes of a `Content-Length` body.
        case length(remaining: Int)
        /// A body without `Content-Length`, written as chunks.
        case chunked
        /// Ended (or refused): nothing more is passed on.
        case ended
    }

    private let maxHeadBytes: Int
    private var request = Request.head
    private var response = HTTP2ResponseFrames(requestIsHEAD: false)
    /// Completes when the frame that ended the response is written.
    private var responseEnd: EventLoopFuture<Void>?

    init(maxHeadBytes: Int) {
        self.maxHeadBytes = maxHeadBytes
    }

    // MARK: inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let payload = self.unwrapInboundIn(data)
        switch (self.request, payload) {
        case (.head, .headers(let headers)):
            self.headReceived(context: context, headers)
        case (.length(let remaining), .data(let data)):
            guard case .byteBuffer(let bytes) = data.data else { return self.reset(context: context) }
            let count = bytes.readableBytes
            guard count <= remaining, !data.endStream || count == remaining else {
                // More than the Content-Length (the rest would be read as another request), or fewer at the end.
                return self.reset(context: context)
            }
            self.request = data.endStream ? .ended : .length(remaining: remaining - count)
            if count > 0 { context.fireChannelRead(self.wrapInboundOut(bytes)) }
        case (.length(let remaining), .headers):
            // Trailers end the stream (NIOHTTP2 checks that they carry END_STREAM).
            guard remaining == 0 else { return self.reset(context: context) }
            self.request = .ended
        case (.chunked, .data(let data)):
            guard case .byteBuffer(let bytes) = data.data else { return self.reset(context: context) }
            if bytes.readableBytes > 0 {
                var size = context.channel.allocator.buffer(capacity: 18)
                size.writeString(String(bytes.readableBytes, radix: 16))
                size.writeStaticString("\r\n")
                context.fireChannelRead(self.wrapInboundOut(size))
                context.fireChannelRead(self.wrapInboundOut(bytes))
                context.fireChannelRead(self.wrapInboundOut(ByteBuffer(staticString: "\r\n")))
            }
            if data.endStream { self.lastChunk(context: context) }
        case (.chunked, .headers):
            self.lastChunk(context: context)
        case (.ended, _), (.head, _), (.length, _), (.chunked, _):
            // WINDOW_UPDATE, PRIORITY, RST_STREAM (the channel closes), or anything after the request ended.
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.fireChannelReadComplete()
    }

    private func headReceived(context: ChannelHandlerContext, _ headers: HTTP2Frame.FramePayload.Headers) {
        switch HTTP2RequestHead.convert(
            headers.headers,
            endStream: headers.endStream,
            maxHeadBytes: self.maxHeadBytes,
            allocator: context.channel.allocator
        ) {
        case .failure(let refusal):
            self.request = .ended
            self.refuse(context: context, refusal)
        case .success(let head):
            self.response = HTTP2ResponseFrames(requestIsHEAD: head.method == "HEAD")
            switch head.framing {
            case .none, .length(0): self.request = .ended
            case .length(let length): self.request = .length(remaining: length)
            case .chunked: self.request = .chunked
            }
            context.fireChannelRead(self.wrapInboundOut(head.bytes))
        }
    }

    private func lastChunk(context: ChannelHandlerContext) {
        self.request = .ended
        context.fireChannelRead(self.wrapInboundOut(ByteBuffer(staticString: "0\r\n\r\n")))
    }

    /// A malformed stream once bytes were passed on: the stream is reset, the handler sees the channel close and
    /// drops the upstream connection of the cut request.
    private func reset(context: ChannelHandlerContext) {
        self.request = .ended
        context.close(promise: nil)
    }

    /// Answers a refused head without passing anything on.
    private func refuse(context: ChannelHandlerContext, _ refusal: HTTP2RequestHead.Refusal) {
        let body = "\(refusal.status == 431 ? "request header fields too large" : "bad request"): \(refusal.reason)\n"
        let headers: HPACKHeaders = [
            ":status": String(refusal.status),
            "content-type": "text/plain; charset=utf-8",
            "content-length": String(body.utf8.count),
        ]
        context.write(self.wrapOutboundOut(.headers(.init(headers: headers))), promise: nil)
        let end = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(
            self.wrapOutboundOut(.data(.init(data: .byteBuffer(ByteBuffer(string: body)), endStream: true))),
            promise: end
        )
        self.responseEnd = end.futureResult
        // The request side may still be open (a body follows): closing resets it once the answer is out.
        self.close(context: context, mode: .all, promise: nil)
    }

    // MARK: outbound

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let bytes = self.unwrapOutboundIn(data)
        guard !self.response.hasEnded else {
            promise?.succeed(())
            return
        }
        var last: HTTP2Frame.FramePayload?
        do {
            try self.response.convert(bytes) { payload in
                if let previous = last { context.write(self.wrapOutboundOut(previous), promise: nil) }
                last = payload
            }
        } catch {
            promise?.fail(error)
            context.close(promise: nil)
            return
        }
        guard let last else {
            promise?.succeed(())
            return
        }
        if self.response.hasEnded {
            let end = context.eventLoop.makePromise(of: Void.self)
            if let promise { end.futureResult.cascade(to: promise) }
            self.responseEnd = end.futureResult
            context.write(self.wrapOutboundOut(last), promise: end)
        } else {
            context.write(self.wrapOutboundOut(last), promise: promise)
        }
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if mode == .output {
            // A lingering close after an answer: the stream's side ended with the response.
            if self.response.hasEnded {
                promise?.succeed(())
            } else {
                context.close(mode: .all, promise: promise)
            }
            return
        }
        if let payload = self.response.closePayload() {
            let end = context.eventLoop.makePromise(of: Void.self)
            context.writeAndFlush(self.wrapOutboundOut(payload), promise: end)
            self.responseEnd = end.futureResult
        }
        guard let responseEnd = self.responseEnd else {
            context.close(mode: mode, promise: promise)
            return
        }
        context.flush()
        let loopBoundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        responseEnd.whenComplete { _ in
            let context = loopBoundContext.value
            // Closed already when both sides had ended: nothing left to reset.
            if context.channel.isActive {
                context.close(mode: mode, promise: promise)
            } else {
                promise?.succeed(())
            }
        }
    }
}
