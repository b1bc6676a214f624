import NIOCore
import NIOHTTP1
import SluiceConfig

/// Answers Sluice writes itself (blocked requests, 4xx/5xx) and the ways a client connection ends.
extension ProxyConnectionHandler {
    /// Answers the request in flight locally (the gate's answer, or a refusal before forwarding).
    func answer(
        status: HTTPResponseStatus,
        headers: [(name: String, value: String)] = [],
        body: String,
        closeRequested: Bool
    ) {
        let action = self.machine.answerLocally(closeRequested: closeRequested, isDraining: self.shared.isDraining)
        self.perform(action, status: status, headers: headers, body: body)
    }

    /// Answers with what the gate said (a blocked request's answer is written from the limiter's values).
    func answer(_ gateAnswer: GateAnswer) {
        switch gateAnswer.content {
        case .text(let headers, let body):
            self.answer(status: gateAnswer.status, headers: headers, body: body, closeRequested: false)
        case .blocked(let blocked):
            let action = self.machine.answerLocally(closeRequested: false, isDraining: self.shared.isDraining)
            self.perform(action, status: gateAnswer.status, headers: [], body: "", blocked: blocked)
        }
    }

    /// Does what the state machine said about a local answer.
    ///
    /// - Parameter blocked: write this blocked request's answer instead of `headers` and `body`.
    func perform(
        _ action: ProxyConnectionStateMachine.AnswerAction,
        status: HTTPResponseStatus,
        headers: [(name: String, value: String)],
        body: String,
        blocked: BlockedAnswer? = nil
    ) {
        switch action {
        case .none:
            return
        case .closeConnection(let abortUpstream):
            if abortUpstream { self.dropUpstream() }
            self.closeClient()
        case .answer(let close, let abortUpstream, let then):
            if abortUpstream { self.dropUpstream() }
            self.exchange.buffered.removeAll()
            if self.shared.accessLog.isEnabled {
                self.shared.accessLog.record(
                    exchange: self.exchange.gateContext,
                    method: self.exchange.method,
                    uri: self.exchange.uri,
                    protocol: self.protocolLabel,
                    status: Int(status.code),
                    upstreamMs: nil,
                    bytesIn: self.exchange.requestBodyBytes,
                    bytesOut: blocked?.bodyLength ?? body.utf8.count
                )
            }
            if let blocked {
                var buffer = self.reusableBuffer(&self.responseHeadStorage, capacity: 384)
                blocked.write(minorVersion: self.exchange.minorVersion, close: close, into: &buffer)
                self.context.write(self.wrapOutboundOut(buffer), promise: nil)
                self.keepForReuse(buffer, in: &self.responseHeadStorage)
            } else {
                self.writeLocalResponse(status: status, headers: headers, body: body, close: close)
            }
            switch then {
            case .readNextRequest:
                self.context.flush()
                self.readNextRequest()
            case .discardBody:
                self.context.flush()
                self.resumeClientReading()
            case .closeWhenFlushed(let linger):
                self.reading = .stopped
                self.input = nil
                self.flushAndClose(linger: linger)
            }
        }
    }

    /// Writes a complete response (not flushed).
    func writeLocalResponse(
        status: HTTPResponseStatus,
        headers extra: [(name: String, value: String)],
        body: String,
        close: Bool
    ) {
        let minor = self.exchange.minorVersion
        var buffer = self.context.channel.allocator.buffer(capacity: 160 + body.utf8.count)
        LocalResponseHead.writeStatusLine(status, minorVersion: minor, into: &buffer)
        var hasContentType = false
        for (name, value) in extra {
            if name.utf8.count == 12 && name.lowercased() == "content-type" { hasContentType = true }
            buffer.writeString(name)
            buffer.writeStaticString(": ")
            buffer.writeString(value)
            buffer.writeStaticString("\r\n")
        }
        if !hasContentType { buffer.writeStaticString("Content-Type: text/plain; charset=utf-8\r\n") }
        LocalResponseHead.writeEnd(bodyLength: body.utf8.count, minorVersion: minor, close: close, into: &buffer)
        buffer.writeString(body)
        self.context.write(self.wrapOutboundOut(buffer), promise: nil)
    }

    /// Answers a request head that could not be parsed (400, 431, 505, 408), then closes.
    func writeRawErrorAndClose(_ status: HTTPResponseStatus) {
        let body = "\(status.code) \(status.reasonPhrase)\n"
        var buffer = self.context.channel.allocator.buffer(capacity: 128 + body.utf8.count)
        buffer.writeString(
            "HTTP/1.1 \(status.code) \(status.reasonPhrase)\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
        )
        self.machine.close()
        self.reading = .stopped
        self.input = nil
        self.context.write(self.wrapOutboundOut(buffer), promise: nil)
        self.flushAndClose(linger: false)
    }

    /// Flushes, then closes once everything written is on the wire.
    ///
    /// - Parameter linger: the client may still be sending a request body we did not read. Closing at once would
    ///   make the kernel answer its data with a reset, which can destroy the response before the client reads it.
    ///   So, like nginx's lingering close, only our side is shut, the rest of the upload is read and dropped, and
    ///   the connection closes when the client is done or after ``lingerTimeout``.
    func flushAndClose(linger: Bool) {
        self.writePendingOutput()
        self.cancelConnectionTimers()
        self.bodyTimer.disarm()
        self.dropUpstream()
        self.armSendTimer()
        let loopBoundContext = NIOLoopBound(self.context!, eventLoop: self.context.eventLoop)
        let written = self.context.writeAndFlush(self.wrapOutboundOut(ByteBuffer()))
        guard linger else {
            written.assumeIsolated().whenComplete { _ in loopBoundContext.value.close(promise: nil) }
            return
        }
        self.lingering = true
        let timeout = Self.lingerTimeout
        written.assumeIsolated().whenComplete { _ in
            let context = loopBoundContext.value
            context.close(mode: .output, promise: nil)
            context.eventLoop.assumeIsolated().scheduleTask(in: timeout) {
                loopBoundContext.value.close(promise: nil)
            }
        }
        self.resumeClientReading()
    }

    /// Closes once everything already written is on the wire.
    func closeAfterPendingWrites() {
        self.machine.close()
        self.reading = .stopped
        self.flushAndClose(linger: false)
    }

    /// Closes the client connection now (and the exchange's upstream connection).
    func closeClient() {
        self.cancelConnectionTimers()
        self.machine.close()
        self.reading = .stopped
        self.input = nil
        self.dropUpstream()
        self.context.close(promise: nil)
    }
}
