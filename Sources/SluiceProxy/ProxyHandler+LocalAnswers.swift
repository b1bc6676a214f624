import NIOCore
import NIOHTTP1
import SluiceConfig

/// Answers Sluice writes itself (blocked requests, 4xx/5xx) and the ways a client connection ends.
extension ProxyHandler {
    // MARK: local answers

    func answerLocally(
        status: HTTPResponseStatus,
        body: String,
        head: HTTPRequestHead,
        close: Bool,
        headers: [(name: String, value: String)] = []
    ) {
        let requestEnded = false
        let close = close || !head.isKeepAlive || head.isUpgradeRequest
        self.state = .answeredLocally(closeAfter: close, requestEnded: requestEnded)
        self.shared.accessLog.record(
            exchange: GateContext(clientIP: self.peerIP, peerIP: self.peerIP),
            method: head.method,
            uri: head.uri,
            status: Int(status.code),
            upstreamMs: nil,
            bytesIn: 0,
            bytesOut: body.utf8.count
        )
        self.writeLocalResponse(status: status, version: head.version, headers: headers, body: body, close: close)
    }

    /// - Parameter requestEnded: the request already ended (its decision was awaited while it arrived).
    func answerLocally(answer: GateAnswer, head: HTTPRequestHead, context gateContext: GateContext, requestEnded: Bool = false) {
        self.shared.accessLog.record(
            exchange: gateContext,
            method: head.method,
            uri: head.uri,
            status: Int(answer.status.code),
            upstreamMs: nil,
            bytesIn: 0,
            bytesOut: answer.body.utf8.count
        )
        // The body of a request that is not forwarded is read and dropped (like nginx) when it is
        // small and announced; a chunked or large body, or one the client will only send after a
        // `100 Continue`, is not worth reading or waiting for: such connections close.
        let declaredLength = head.headers.first(name: "content-length").flatMap { Int($0) } ?? 0
        let expectsContinue = head.headers.contains(name: "expect")
        let bodyNotWorthReading =
            head.headers.contains(name: "transfer-encoding") || declaredLength > Self.maxDiscardedBodyBytes
            || (declaredLength > 0 && expectsContinue)
        let close = !head.isKeepAlive || (bodyNotWorthReading && !requestEnded) || self.shared.isDraining
            || head.isUpgradeRequest
        self.state = .answeredLocally(closeAfter: close, requestEnded: requestEnded)
        self.writeLocalResponse(
            status: answer.status,
            version: head.version,
            headers: answer.headers,
            body: answer.body,
            close: close
        )
    }

    func writeLocalResponse(
        status: HTTPResponseStatus,
        version: HTTPVersion,
        headers extra: [(name: String, value: String)],
        body: String,
        close: Bool
    ) {
        var headers = HTTPHeaders()
        headers.reserveCapacity(extra.count + 4)
        var buffer = self.context.channel.allocator.buffer(capacity: body.utf8.count)
        buffer.writeString(body)
        var hasContentType = false
        for (name, value) in extra {
            if name.lowercased() == "content-type" { hasContentType = true }
            headers.add(name: name, value: value)
        }
        if !hasContentType { headers.add(name: "Content-Type", value: "text/plain; charset=utf-8") }
        headers.add(name: "Content-Length", value: String(buffer.readableBytes))
        if close {
            if version.minor >= 1 { headers.add(name: "Connection", value: "close") }
        } else if version.minor == 0 {
            headers.add(name: "Connection", value: "keep-alive")
        }
        self.context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: version, status: status, headers: headers))), promise: nil)
        self.context.write(self.wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        // As in finishExchange: settle the state before the end lets the next request in.
        guard case .answeredLocally(let closeAfter, let requestEnded) = self.state else { return }
        if closeAfter || (requestEnded && self.inputClosed) {
            self.state = .closed
            self.writeEndAndClose(nil, linger: !requestEnded && !self.inputClosed)
            return
        }
        if requestEnded {
            self.state = .awaitingHead
            self.startIdleTimer()
        }
        self.context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
        self.resumeClientReading()
    }

    /// The request of a local answer ended: wait for the next request.
    func localResponseMaybeFinished() {
        guard case .answeredLocally(let closeAfter, let requestEnded) = self.state, !closeAfter, requestEnded else {
            return
        }
        if self.inputClosed {
            self.closeAfterPendingWrites()
            return
        }
        self.state = .awaitingHead
        self.startIdleTimer()
        self.resumeClientReading()
    }

    /// Answers a protocol error before any response exists, bypassing the HTTP encoder (the
    /// pipeline has no request to pair the response with), then closes.
    func writeRawErrorAndClose(_ status: HTTPResponseStatus) {
        guard let encoderContext = try? self.context.pipeline.syncOperations.context(handlerType: HTTPResponseEncoder.self) else {
            self.closeClient()
            return
        }
        let body = "\(status.code) \(status.reasonPhrase)\n"
        var buffer = self.context.channel.allocator.buffer(capacity: 128 + body.utf8.count)
        buffer.writeString(
            "HTTP/1.1 \(status.code) \(status.reasonPhrase)\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
        )
        self.state = .closed
        self.armSendTimer()
        let loopBoundContext = NIOLoopBound(self.context!, eventLoop: self.context.eventLoop)
        encoderContext.writeAndFlush(NIOAny(buffer)).assumeIsolated().whenComplete { _ in
            loopBoundContext.value.close(promise: nil)
        }
    }

    /// Closes once everything already written is on the wire: an empty write from the front of
    /// the pipeline completes only after the writes queued before it.
    func closeAfterPendingWrites() {
        self.cancelConnectionTimers()
        self.state = .closed
        self.armSendTimer()
        guard let encoderContext = try? self.context.pipeline.syncOperations.context(handlerType: HTTPResponseEncoder.self) else {
            self.context.close(promise: nil)
            return
        }
        let loopBoundContext = NIOLoopBound(self.context!, eventLoop: self.context.eventLoop)
        encoderContext.writeAndFlush(NIOAny(ByteBuffer())).assumeIsolated().whenComplete { _ in
            loopBoundContext.value.close(promise: nil)
        }
    }

    func closeClient() {
        self.cancelConnectionTimers()
        if case .forwarding(let exchange) = self.state {
            self.abortUpstream(exchange)
        }
        if case .closed = self.state {} else { self.state = .closed }
        self.context.close(promise: nil)
    }
}
