import NIOCore
import NIOHTTP1
import SluiceConfig
import SluiceHTTP1

/// Forwarding: the exchange's upstream connection, the response coming back, and the switch to a tunnel.
extension ProxyConnectionHandler: UpstreamResponseDelegate {
    // MARK: upstream connection

    func connectUpstream(config: ProxySnapshot, allowPooled: Bool) {
        guard let target = self.exchange.target else { return }
        if allowPooled {
            guard self.machine.upstreamWanted() else { return }
            if let connection = self.pool.takeIdle(for: target, tls: config.tls.upstream) {
                self.upstreamAttached(connection, config: config)
                return
            }
        }
        let id = self.exchangeID
        let loopBoundSelf = NIOLoopBound(self, eventLoop: self.context.eventLoop)
        let connecting = self.pool.connect(to: target, timeout: config.upstreamConnectTimeout, tls: config.tls.upstream)
        connecting.assumeIsolated().whenComplete { result in
            let this = loopBoundSelf.value
            switch result {
            case .success(let connection):
                guard this.exchangeID == id else {
                    connection.channel.close(promise: nil)
                    return
                }
                this.upstreamAttached(connection, config: config)
            case .failure(let error):
                guard this.exchangeID == id, case .exchange(let exchange) = this.machine.state,
                    exchange.upstream == .connecting
                else { return }
                this.shared.logger.warning(
                    "upstream connect failed",
                    metadata: ["upstream": "\(target)", "error": "\(error)"]
                )
                this.upstreamFailed(status: .badGateway, body: "upstream unreachable\n")
            }
        }
    }

    private func upstreamAttached(_ connection: UpstreamConnection, config: ProxySnapshot) {
        switch self.machine.upstreamAttached(reused: connection.reused) {
        case .closeUpstream:
            connection.channel.close(promise: nil)
        case .writeRequest(let sendContinue, let requestEnded):
            self.exchange.upstream = connection
            connection.handler.delegate = self
            if sendContinue {
                self.context.writeAndFlush(
                    self.wrapOutboundOut(self.exchange.minorVersion == 0 ? Self.continue10 : Self.continue11),
                    promise: nil
                )
            }
            let head: ByteBuffer
            if let written = self.exchange.upstreamHead {
                head = written
            } else {
                head = self.writeUpstreamHead(config: config)
                self.exchange.upstreamHead = head
            }
            connection.handler.expectResponse(toHEAD: self.exchange.isHEAD)
            connection.handler.write(head)
            if !self.exchange.buffered.isEmpty {
                for part in self.exchange.buffered { connection.handler.write(part) }
                self.exchange.buffered.removeAll()
            }
            connection.handler.flush()
            if requestEnded { self.startResponseTimer() }
            self.resumeClientReading()
            // Bytes of the body may be waiting in `input` (read with the head, before the decision).
            self.processInput()
        }
    }

    static let continue11 = ByteBuffer(staticString: "HTTP/1.1 100 Continue\r\n\r\n")
    static let continue10 = ByteBuffer(staticString: "HTTP/1.0 100 Continue\r\n\r\n")

    /// The upstream head from the client's head bytes (SPEC §3; ``UpstreamRequestHeadWriter``).
    private func writeUpstreamHead(config: ProxySnapshot) -> ByteBuffer {
        let headBytes = self.exchange.headBytes
        var buffer = self.reusableBuffer(&self.upstreamHeadStorage, capacity: headBytes.readableBytes + 160)
        guard let parsed = self.exchange.parsedHead, let target = self.exchange.target else { return buffer }
        let settings = UpstreamRequestHeadWriter.Settings(
            preserveHost: config.preserveHost,
            upstreamHost: target.hostHeader,
            forwardedProto: self.forwardedProto,
            peer: self.peerText
        )
        headBytes.withUnsafeReadableBytes { bytes in
            UpstreamRequestHeadWriter.write(parsed, bytes: bytes, settings: settings, into: &buffer)
        }
        self.keepForReuse(buffer, in: &self.upstreamHeadStorage)
        return buffer
    }

    /// Detaches and closes the exchange's upstream connection (it can never be reused mid-message).
    func dropUpstream() {
        self.responseTimer.disarm()
        if let upstream = self.exchange.upstream {
            upstream.handler.delegate = nil
            upstream.channel.close(promise: nil)
            self.exchange.upstream = nil
        }
    }

    /// The upstream failed before answering: 502/504 to the client, or a close when a response has started.
    func upstreamFailed(status: HTTPResponseStatus, body: String) {
        self.shared.metrics.upstreamFailed(status: Int(status.code))
        let action = self.machine.answerLocally(closeRequested: false, isDraining: self.shared.isDraining)
        self.perform(action, status: status, headers: self.exchange.rateLimitFields?.pairs ?? [], body: body)
    }

    // MARK: UpstreamResponseDelegate

    var upstreamMayRead: Bool {
        self.context.channel.isWritable
    }

    func upstreamResponseHead(_ head: ParsedResponseHead, bytes: ByteBuffer) -> UpstreamBodyDelivery {
        self.responseTimer.disarm()
        switch self.machine.responseHeadReceived(switchingProtocols: head.isSwitchingProtocols, isDraining: self.shared.isDraining) {
        case .none:
            return .asReceived
        case .closeConnection:
            self.closeClient()
            return .asReceived
        case .switchProtocols:
            self.startTunnel(head, bytes: bytes)
            return .asReceived
        case .writeHead(let keepAlive):
            self.exchange.responseStatus = head.status
            self.exchange.responseObserver?.upstreamResponded(status: head.status)
            self.shared.metrics.upstreamResponded(
                status: head.status,
                seconds: Double((NIODeadline.now() - self.exchange.startedAt).nanoseconds) / 1e9
            )
            var out = self.reusableBuffer(&self.responseHeadStorage, capacity: bytes.readableBytes + 256)
            let framing = bytes.withUnsafeReadableBytes { raw in
                ClientResponseHeadWriter.write(
                    head,
                    bytes: raw,
                    clientMinorVersion: self.exchange.minorVersion,
                    keepAlive: keepAlive,
                    into: &out
                ) { buffer in
                    // Read in place: a copy of the values would retain each policy name.
                    self.exchange.rateLimitFields?.write(into: &buffer)
                }
            }
            self.exchange.responseFraming = framing
            if framing.forcesClose { self.machine.responseMustClose() }
            // Held until the body's first bytes or the read's end: a small body then goes out in the same buffer.
            self.pendingOutput = out
            return framing.delivery
        }
    }

    func upstreamResponseBody(_ bytes: ByteBuffer) {
        if case .tunnel = self.machine.state {
            self.tunnelTrafficSeen()
            self.context.write(self.wrapOutboundOut(bytes), promise: nil)
            self.clientNeedsFlush = true
            return
        }
        guard case .exchange = self.machine.state else { return }
        self.exchange.responseBytes += bytes.readableBytes
        if self.pendingOutput != nil, self.exchange.responseFraming != .chunkEncode,
            bytes.readableBytes <= Self.maxBodyBytesCopiedIntoHead
        {
            // A copy of a few bytes costs less than a second write (an iovec, a pending-write entry, a pipeline hop).
            self.pendingOutput!.writeImmutableBuffer(bytes)
            return
        }
        self.writePendingOutput()
        if self.exchange.responseFraming == .chunkEncode {
            guard bytes.readableBytes > 0 else { return }
            var header = self.context.channel.allocator.buffer(capacity: 12)
            ClientResponseHeadWriter.writeChunkHeader(length: bytes.readableBytes, into: &header)
            self.context.write(self.wrapOutboundOut(header), promise: nil)
            self.context.write(self.wrapOutboundOut(bytes), promise: nil)
            self.context.write(self.wrapOutboundOut(Self.crlf), promise: nil)
        } else {
            self.context.write(self.wrapOutboundOut(bytes), promise: nil)
        }
        self.clientNeedsFlush = true
    }

    /// Body bytes up to this size are copied behind the response head rather than written as a buffer of their own.
    static let maxBodyBytesCopiedIntoHead = 2048

    /// Writes the response head held by ``upstreamResponseHead(_:bytes:)`` (with the body bytes copied behind it).
    func writePendingOutput() {
        guard let output = self.pendingOutput else { return }
        self.pendingOutput = nil
        self.context.write(self.wrapOutboundOut(output), promise: nil)
        self.keepForReuse(output, in: &self.responseHeadStorage)
        self.clientNeedsFlush = true
    }

    /// A cleared buffer of at least `capacity` bytes: `slot`'s storage when nothing else holds it any more (NIO lets
    /// go of a buffer once it is written, usually within the flush), else a new one.
    func reusableBuffer(_ slot: inout ByteBuffer?, capacity: Int) -> ByteBuffer {
        guard var buffer = slot.take() else { return self.context.channel.allocator.buffer(capacity: capacity) }
        buffer.clear(minimumCapacity: capacity)
        return buffer
    }

    /// Keeps `buffer`'s storage for ``reusableBuffer(_:capacity:)``, unless it is large (a connection holds at most
    /// ``maxReusedBufferBytes`` per slot between requests).
    func keepForReuse(_ buffer: ByteBuffer, in slot: inout ByteBuffer?) {
        slot = buffer.capacity <= Self.maxReusedBufferBytes ? buffer : nil
    }

    static let maxReusedBufferBytes = 16 * 1024

    static let crlf = ByteBuffer(staticString: "\r\n")
    static let lastChunk = ByteBuffer(staticString: "0\r\n\r\n")

    func upstreamResponseEnd(reusable: Bool) {
        guard case .exchange = self.machine.state else { return }
        self.responseTimer.disarm()
        self.writePendingOutput()
        if self.exchange.responseFraming == .chunkEncode {
            self.context.write(self.wrapOutboundOut(Self.lastChunk), promise: nil)
        }
        if self.shared.accessLog.isEnabled {
            self.shared.accessLog.record(
                exchange: self.exchange.gateContext,
                method: self.exchange.method,
                uri: self.exchange.uri,
                protocol: self.protocolLabel,
                status: self.exchange.responseStatus,
                upstreamMs: Int((NIODeadline.now() - self.exchange.startedAt).nanoseconds / 1_000_000),
                bytesIn: self.exchange.requestBodyBytes,
                bytesOut: self.exchange.responseBytes
            )
        }
        guard case .finish(let release, let then) = self.machine.responseEnded(upstreamReusable: reusable) else { return }
        if let upstream = self.exchange.upstream {
            self.exchange.upstream = nil
            upstream.handler.delegate = nil
            if release {
                self.pool.release(upstream, maxIdle: self.config.maxIdlePerLoop)
            } else {
                upstream.channel.close(promise: nil)
            }
        }
        switch then {
        case .readNextRequest:
            self.clientNeedsFlush = false
            self.context.flush()
            self.readNextRequest()
        case .closeWhenFlushed(let linger):
            self.reading = .stopped
            self.flushAndClose(linger: linger)
        }
    }

    func upstreamReadComplete() {
        self.writePendingOutput()
        if self.clientNeedsFlush {
            self.clientNeedsFlush = false
            self.context.flush()
        }
    }

    func upstreamWritabilityChanged(isWritable: Bool) {
        if isWritable {
            self.resumeClientReading()
        }
    }

    func upstreamClosed(error: Error?) {
        if case .tunnel = self.machine.state {
            self.exchange.upstream = nil
            self.flushAndClose(linger: false)
            return
        }
        guard self.exchange.upstream != nil else { return }
        self.exchange.upstream?.handler.delegate = nil
        self.exchange.upstream = nil
        self.responseTimer.disarm()
        switch self.machine.upstreamClosed(isDraining: self.shared.isDraining) {
        case .none:
            break
        case .retry:
            self.connectUpstream(config: self.config, allowPooled: false)
        case .answer(let action):
            self.shared.logger.warning(
                "upstream closed before responding",
                metadata: [
                    "upstream": "\(self.exchange.target.map { "\($0)" } ?? "-")",
                    "error": "\(error.map { "\($0)" } ?? "eof")",
                ]
            )
            if case .answer = action { self.shared.metrics.upstreamFailed(status: 502) }
            self.perform(action, status: .badGateway, headers: self.exchange.rateLimitFields?.pairs ?? [], body: "upstream closed the connection\n")
        }
    }

    // MARK: upgrade

    /// The upstream accepted an `Upgrade`: relay the 101, then pass bytes both ways untouched.
    private func startTunnel(_ head: ParsedResponseHead, bytes: ByteBuffer) {
        self.bodyTimer.cancel()
        self.sendTimer.cancel()
        var out = self.context.channel.allocator.buffer(capacity: bytes.readableBytes + 256)
        _ = bytes.withUnsafeReadableBytes { raw in
            ClientResponseHeadWriter.write(
                head,
                bytes: raw,
                clientMinorVersion: self.exchange.minorVersion,
                keepAlive: true,
                extraFields: self.exchange.rateLimitFields?.pairs ?? [],
                into: &out
            )
        }
        self.context.writeAndFlush(self.wrapOutboundOut(out), promise: nil)
        self.shared.accessLog.record(
            exchange: self.exchange.gateContext,
            method: self.exchange.method,
            uri: self.exchange.uri,
            protocol: self.protocolLabel,
            status: 101,
            upstreamMs: Int((NIODeadline.now() - self.exchange.startedAt).nanoseconds / 1_000_000),
            bytesIn: 0,
            bytesOut: 0
        )
        self.reading = .tunnel
        self.tunnelTrafficSeen()
        // Bytes the client sent right behind its upgrade request.
        self.processInput()
        self.resumeClientReading()
    }
}
