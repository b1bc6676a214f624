import NIOCore
import NIOHTTP1
import SluiceConfig

/// Forwarding: the upstream connection of an exchange, the response coming back, the end of
/// an exchange, and the switch to a tunnel.
extension ProxyHandler {
    // MARK: upstream connection

    func attachUpstream(_ exchange: Exchange, config: ProxySnapshot, allowPooled: Bool) {
        if allowPooled, let connection = self.pool.takeIdle(for: exchange.target, tls: config.tls.upstream) {
            self.upstreamAttached(connection, to: exchange)
            return
        }
        let loopBoundSelf = NIOLoopBound(self, eventLoop: self.context.eventLoop)
        let loopBoundExchange = NIOLoopBound(exchange, eventLoop: self.context.eventLoop)
        let connecting = self.pool.connect(
            to: exchange.target,
            timeout: config.upstreamConnectTimeout,
            tls: config.tls.upstream
        )
        connecting.assumeIsolated().whenComplete { result in
            let this = loopBoundSelf.value
            let exchange = loopBoundExchange.value
            switch result {
            case .success(let connection):
                guard case .forwarding(let current) = this.state, current === exchange else {
                    connection.channel.close(promise: nil)
                    return
                }
                this.upstreamAttached(connection, to: exchange)
            case .failure(let error):
                guard case .forwarding(let current) = this.state, current === exchange else { return }
                this.shared.logger.warning(
                    "upstream connect failed",
                    metadata: ["upstream": "\(exchange.target)", "error": "\(error)"]
                )
                this.failExchange(exchange, status: .badGateway, body: "upstream unreachable\n")
            }
        }
    }

    func upstreamAttached(_ connection: UpstreamConnection, to exchange: Exchange) {
        exchange.upstream = connection
        exchange.onReusedConnection = connection.reused
        connection.handler.delegate = self
        if exchange.expectsContinue && !exchange.requestEnded {
            self.context.writeAndFlush(
                self.wrapOutboundOut(.head(HTTPResponseHead(version: exchange.clientVersion, status: .continue))),
                promise: nil
            )
        }
        // A body never leaves unframed, whatever rewrote the head (SPEC §3 "Hostile clients").
        if !exchange.framing.isExplicit(in: exchange.upstreamHead.headers) {
            assertionFailure("upstream head without the request's framing: \(exchange.framing)")
            exchange.framing.apply(to: &exchange.upstreamHead.headers)
        }
        connection.channel.write(HTTPClientRequestPart.head(exchange.upstreamHead), promise: nil)
        let buffered = exchange.buffered
        exchange.buffered.removeAll()
        for part in buffered {
            if case .body = part { exchange.bodyForwarded = true }
            connection.channel.write(part, promise: nil)
        }
        connection.channel.flush()
        if exchange.requestEnded {
            self.startResponseTimer(exchange)
        }
        self.resumeClientReading()
    }

    /// Closes the exchange's upstream connection; it can never be reused mid-message.
    func abortUpstream(_ exchange: Exchange) {
        self.responseTimer.disarm()
        if let upstream = exchange.upstream {
            upstream.handler.delegate = nil
            upstream.channel.close(promise: nil)
            exchange.upstream = nil
        }
    }

    /// The upstream failed before answering: 502/504 to the client.
    func failExchange(_ exchange: Exchange, status: HTTPResponseStatus, body: String) {
        self.abortUpstream(exchange)
        if exchange.responseHeadSent {
            self.closeClient()
            return
        }
        let close = !exchange.requestEnded || !exchange.clientKeepAlive
        self.state = .answeredLocally(closeAfter: close, requestEnded: exchange.requestEnded)
        self.shared.metrics.upstreamFailed(status: Int(status.code))
        self.shared.accessLog.record(
            exchange: exchange.context,
            method: exchange.method,
            uri: exchange.upstreamHead.uri,
            status: Int(status.code),
            upstreamMs: nil,
            bytesIn: exchange.requestBodyBytes,
            bytesOut: 0
        )
        self.writeLocalResponse(
            status: status,
            version: exchange.clientVersion,
            headers: exchange.extraResponseHeaders,
            body: body,
            close: close
        )
    }

    // MARK: UpstreamDelegate

    var upstreamMayRead: Bool {
        self.context.channel.isWritable
    }

    func upstreamReceived(_ part: HTTPClientResponsePart) {
        guard case .forwarding(let exchange) = self.state else { return }
        switch part {
        case .head(let upstreamHead):
            self.responseTimer.disarm()
            if upstreamHead.status == .switchingProtocols {
                exchange.switchingHead = upstreamHead
                return
            }
            exchange.responseHeadSent = true
            exchange.responseStatus = Int(upstreamHead.status.code)
            exchange.responseObserver?.upstreamResponded(status: exchange.responseStatus)
            self.shared.metrics.upstreamResponded(
                status: exchange.responseStatus,
                seconds: Double((NIODeadline.now() - exchange.startedAt).nanoseconds) / 1e9
            )
            exchange.upstreamReusable = upstreamHead.isKeepAlive
            var head = upstreamHead
            head.version = exchange.clientVersion
            HopByHop.strip(&head.headers, keepUpgrade: false)
            for (name, value) in exchange.extraResponseHeaders {
                head.headers.add(name: name, value: value)
            }
            var keepAlive = exchange.clientKeepAlive && !self.shared.isDraining
            let bodyless =
                exchange.method == .HEAD || upstreamHead.status.code == 204 || upstreamHead.status.code == 304
                || upstreamHead.status.code < 200
            if exchange.clientVersion.minor == 0 && !bodyless && !head.headers.contains(name: "content-length") {
                // HTTP/1.0 has no chunked encoding: the body ends when the connection does.
                keepAlive = false
            }
            exchange.keepClientAlive = keepAlive
            if !bodyless && exchange.clientVersion.minor >= 1 && !head.headers.contains(name: "content-length") {
                head.headers.add(name: "Transfer-Encoding", value: "chunked")
            }
            if exchange.clientVersion.minor == 0 {
                if keepAlive { head.headers.add(name: "Connection", value: "keep-alive") }
            } else if !keepAlive {
                head.headers.add(name: "Connection", value: "close")
            }
            self.context.write(self.wrapOutboundOut(.head(head)), promise: nil)
        case .body(let body):
            exchange.responseBytes += body.readableBytes
            self.context.write(self.wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        case .end(let trailers):
            if let switchingHead = exchange.switchingHead {
                self.startTunnel(exchange, responseHead: switchingHead)
                return
            }
            exchange.responseEnded = true
            self.shared.accessLog.record(
                exchange: exchange.context,
                method: exchange.method,
                uri: exchange.upstreamHead.uri,
                status: exchange.responseStatus,
                upstreamMs: Int((NIODeadline.now() - exchange.startedAt).nanoseconds / 1_000_000),
                bytesIn: exchange.requestBodyBytes,
                bytesOut: exchange.responseBytes
            )
            if !exchange.requestEnded {
                // Answered before the request body finished: the rest of it cannot be skipped
                // safely on either connection.
                exchange.keepClientAlive = false
                self.abortUpstream(exchange)
            }
            self.finishExchange(exchange, writingEnd: trailers)
        }
    }

    func upstreamReadComplete() {
        self.context.flush()
    }

    func upstreamWritabilityChanged(isWritable: Bool) {
        if isWritable {
            self.resumeClientReading()
        }
    }

    func upstreamClosed(error: Error?) {
        guard case .forwarding(let exchange) = self.state, exchange.upstream != nil else { return }
        exchange.upstream = nil
        if exchange.responseHeadSent {
            // Truncated response: the client must see the connection end, not a short message.
            self.closeClient()
            return
        }
        // A pooled connection the upstream closed while idle: retry once on a fresh one when
        // replaying the request cannot change its meaning.
        if !exchange.retried && exchange.isIdempotent && !exchange.bodyForwarded && exchange.onReusedConnection {
            exchange.retried = true
            self.responseTimer.disarm()
            if exchange.requestEnded { exchange.buffered.append(.end(nil)) }
            self.attachUpstream(exchange, config: self.shared.current(), allowPooled: false)
            return
        }
        self.shared.logger.warning(
            "upstream closed before responding",
            metadata: ["upstream": "\(exchange.target)", "error": "\(error.map { "\($0)" } ?? "eof")"]
        )
        self.failExchange(exchange, status: .badGateway, body: "upstream closed the connection\n")
    }

    // MARK: finishing

    /// Both the request and the response are complete (or the response is, and the connection closes).
    ///
    /// The state changes BEFORE the response's end is written: writing it lets
    /// `HTTPServerPipelineHandler` deliver the next pipelined request synchronously, which must
    /// find this handler awaiting a head.
    func finishExchange(_ exchange: Exchange, writingEnd trailers: HTTPHeaders?? = .none) {
        self.responseTimer.disarm()
        if let upstream = exchange.upstream {
            exchange.upstream = nil
            if exchange.upstreamReusable {
                self.pool.release(upstream, maxIdle: self.shared.current().maxIdlePerLoop)
            } else {
                upstream.handler.delegate = nil
                upstream.channel.close(promise: nil)
            }
        }
        let keepAlive = exchange.keepClientAlive && !self.inputClosed
        self.state = keepAlive ? .awaitingHead : .closed
        if keepAlive { self.startIdleTimer() }
        if let trailers {
            if keepAlive {
                self.context.writeAndFlush(self.wrapOutboundOut(.end(trailers)), promise: nil)
            } else {
                self.writeEndAndClose(trailers, linger: !exchange.requestEnded && !self.inputClosed)
                return
            }
        }
        if keepAlive {
            self.resumeClientReading()
        } else {
            self.closeClient()
        }
    }

    /// Writes the response's end, then closes once it is flushed.
    ///
    /// - Parameter linger: the client may still be sending a request body we did not read. Closing
    ///   at once would make the kernel answer its data with a reset, which can destroy the response
    ///   before the client reads it. So, like nginx's lingering close, only our side is shut, the
    ///   rest of the upload is read and dropped, and the connection closes when the client is done
    ///   or after ``lingerTimeout``.
    func writeEndAndClose(_ trailers: HTTPHeaders?, linger: Bool = false) {
        self.cancelConnectionTimers()
        self.armSendTimer()
        let loopBoundContext = NIOLoopBound(self.context!, eventLoop: self.context.eventLoop)
        let written = self.context.writeAndFlush(self.wrapOutboundOut(.end(trailers)))
        guard linger else {
            written.assumeIsolated().whenComplete { _ in loopBoundContext.value.close(promise: nil) }
            return
        }
        let timeout = Self.lingerTimeout
        written.assumeIsolated().whenComplete { _ in
            let context = loopBoundContext.value
            context.close(mode: .output, promise: nil)
            context.eventLoop.assumeIsolated().scheduleTask(in: timeout) {
                loopBoundContext.value.close(promise: nil)
            }
        }
    }

    /// How long a closing connection keeps reading off an unread request body.
    static let lingerTimeout = TimeAmount.seconds(2)

    // MARK: upgrade

    /// The upstream accepted an `Upgrade`: relay the 101, then turn both connections into one
    /// byte tunnel.
    func startTunnel(_ exchange: Exchange, responseHead: HTTPResponseHead) {
        guard exchange.isUpgrade, let upstream = exchange.upstream else {
            self.abortUpstream(exchange)
            self.closeClient()
            return
        }
        self.state = .tunnelling
        // This handler leaves the pipeline; the tunnel keeps its own idle timer.
        self.bodyTimer.cancel()
        self.sendTimer.cancel()
        var head = responseHead
        head.version = exchange.clientVersion
        for (name, value) in exchange.extraResponseHeaders {
            head.headers.add(name: name, value: value)
        }
        upstream.handler.delegate = nil
        self.context.write(self.wrapOutboundOut(.head(head)), promise: nil)
        self.context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
        self.shared.accessLog.record(
            exchange: exchange.context,
            method: exchange.method,
            uri: exchange.upstreamHead.uri,
            status: 101,
            upstreamMs: Int((NIODeadline.now() - exchange.startedAt).nanoseconds / 1_000_000),
            bytesIn: 0,
            bytesOut: 0
        )
        do {
            try TunnelHandler.join(
                client: self.context.channel,
                upstream: upstream.channel,
                idleTimeout: self.shared.current().tunnelIdleTimeout
            )
        } catch {
            self.shared.logger.warning("could not start tunnel", metadata: ["error": "\(error)"])
            upstream.channel.close(promise: nil)
            self.context.close(promise: nil)
        }
    }
}
