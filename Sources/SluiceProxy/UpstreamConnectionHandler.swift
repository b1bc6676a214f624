import NIOCore
import SluiceHTTP1

/// What the client side of an exchange hears from its upstream connection on the raw-bytes path.
///
/// Both channels of an exchange live on the same event loop (the upstream connection is opened on the client's
/// loop), so these calls are plain synchronous method calls. A callback may call back into the handler
/// (``UpstreamConnectionHandler/expectResponse(toHEAD:)``, `write`, closing the channel, clearing the delegate): the
/// handler stops delivering the rest of a read once that happened.
protocol UpstreamResponseDelegate: AnyObject {
    /// A final response head or a 101. `bytes` holds exactly the head's bytes; `head`'s offsets index
    /// `bytes.readableBytesView` from 0. The delegate says how it wants the body.
    func upstreamResponseHead(_ head: ParsedResponseHead, bytes: ByteBuffer) -> UpstreamBodyDelivery
    /// Body bytes (slices of what was read, never copied): as received (`.asReceived`: for a chunked body the
    /// chunk framing, validated, included) or only the data (`.dataOnly`: chunk framing removed).
    /// After a 101: every byte the upstream sends (tunnel), until it closes.
    func upstreamResponseBody(_ bytes: ByteBuffer)
    /// The response message is complete (for a body delimited by the close: the upstream closed cleanly).
    /// `reusable`: the connection may carry another request (keep-alive, nothing extra was received).
    func upstreamResponseEnd(reusable: Bool)
    func upstreamReadComplete()
    func upstreamWritabilityChanged(isWritable: Bool)
    /// The connection closed or failed before the response ended (error nil = clean EOF); also an invalid
    /// response (then error is an ``UpstreamProtocolError`` carrying the reason), after which the handler closes it.
    func upstreamClosed(error: Error?)
    /// Whether the upstream may be read now; `false` while the client cannot take more bytes.
    var upstreamMayRead: Bool { get }
}

/// How the delegate wants a response body delivered.
enum UpstreamBodyDelivery: Sendable, Equatable {
    /// Every byte of the body as received; a chunked body with its (validated) chunk framing.
    case asReceived
    /// Only the data: a chunked body's framing removed.
    case dataOnly
}

/// An upstream broke HTTP/1.1: the response is unusable and its connection is closed.
struct UpstreamProtocolError: Error, Sendable, Equatable, CustomStringConvertible {
    enum Reason: Sendable, Equatable {
        /// The response head was refused by ``HTTPResponseHeadParser``.
        case head(HTTPHeadError)
        /// The chunked body was refused by ``ChunkedBodyParser``.
        case chunkedBody(ChunkedBodyParser.Failure)
        /// Bytes arrived when no response was expected.
        case unexpectedBytes
    }

    var reason: Reason

    var description: String {
        switch self.reason {
        case .head(.malformed(let reason)): return "invalid upstream response head: \(reason.rawValue)"
        case .head(.tooLarge): return "upstream response head too large"
        case .head(.versionNotSupported): return "upstream response version not supported"
        case .chunkedBody(let failure): return "invalid upstream chunked body: \(failure)"
        case .unexpectedBytes: return "upstream sent bytes when no response was expected"
        }
    }
}

/// The last handler of an upstream connection on the raw-bytes path: reads the responses as bytes, hands their heads
/// and body slices to the exchange that currently owns the connection, writes the request bytes it is given, and
/// holds reads back while that exchange's client is slow.
///
/// Consumes `ByteBuffer` (after TLS, if any), produces `ByteBuffer`. No NIOHTTP1 handler is in the pipeline:
/// - heads are parsed in place by ``HTTPResponseHeadParser`` (bytes are cumulated only when a head is split across
///   reads; at most ``Configuration/maxHeadBytes``);
/// - 1xx responses other than 101 (100, 103) are consumed and dropped: like nginx, Sluice answers
///   `Expect: 100-continue` itself, and forwards no interim response;
/// - a body is counted down (`Content-Length`), validated by ``ChunkedBodyParser`` (chunked), or runs until the
///   upstream closes; the delegate gets slices of the read buffers, never copies;
/// - after a 101 every byte is tunnel bytes, until the upstream closes.
///
/// It closes the connection on an invalid response (head or chunk framing: ``UpstreamResponseDelegate/upstreamClosed(error:)``
/// with an ``UpstreamProtocolError``), on bytes after a complete response (the upstream sent more than one response:
/// the end is reported not reusable), and on bytes while idle (no delegate, or no response expected). When the
/// upstream closes (or half-closes), a body delimited by the close ends (`upstreamResponseEnd(reusable: false)`);
/// otherwise an attached delegate hears `upstreamClosed(error: nil)`: mid-response that is a truncated response;
/// after a response ended it only says the connection is gone (a delegate still attached then may ignore it).
/// ``onClose`` is called first, when the channel goes inactive.
///
/// - note: Every method must be called on the connection's event loop.
final class UpstreamConnectionHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    struct Configuration: Sendable, Equatable {
        /// Largest response head accepted (beyond it the upstream's response is invalid). Defaults to 64 KiB.
        var maxHeadBytes = 64 * 1024
        /// Most field lines in a response head. Defaults to 512 (NIOHTTP1 had no count limit; the head's size bounds it).
        var maxFields = 512
        /// Largest trailer section of a chunked response. Defaults to 64 KiB.
        var maxTrailerBytes = 64 * 1024

        init() {}
    }

    /// What the next bytes are.
    private enum State {
        /// No response expected: any byte is unexpected and closes the connection.
        case idle
        /// A response head (or the final head after 1xx ones).
        case head
        /// A `Content-Length` body: how many bytes are left (> 0).
        case length(Int)
        /// A chunked body, through ``chunkParser``.
        case chunked
        /// A body that ends when the upstream closes.
        case untilClose
        /// The response ended; until the next ``expectResponse(toHEAD:)`` any byte closes the connection.
        case ended
        /// After a 101: every byte is the tunnel's.
        case tunnel
    }

    /// The exchange that owns the connection. Strong, not weak (a weak load per callback is a side-table lookup): the
    /// cycle it makes with the exchange's reference to this connection is broken on every path that ends the
    /// exchange (released to the pool, dropped, or closed: `channelInactive` clears it too).
    var delegate: UpstreamResponseDelegate?
    /// Called once when the channel goes inactive, so the pool forgets the connection.
    var onClose: (() -> Void)?
    private(set) var context: ChannelHandlerContext?
    let configuration: Configuration

    private var state = State.idle
    /// Bumped whenever the state is changed from outside the read loop (``expectResponse(toHEAD:)``) or the
    /// connection closes: a read loop that sees it change after a delegate callback stops.
    private var epoch: UInt = 0
    private var readPending = false
    /// The connection is closing (an error, unexpected bytes): every byte read is dropped.
    private var closing = false
    /// The last ``UpstreamResponseDelegate/upstreamResponseEnd(reusable:)`` said reusable.
    private var endReportedReusable = false
    /// The handler closes the connection after reporting a response not reusable: the close is not reported.
    private var silentClose = false
    /// No more bytes will come: ``inputEnded()`` ran.
    private var inputDone = false
    private var eventLoop: EventLoop?
    private var headParser: HTTPResponseHeadParser
    /// The bytes of a head split across reads (nil while no head is split: heads are parsed in place).
    private var headBytes: ByteBuffer?
    private var chunkParser: ChunkedBodyParser
    private var delivery = UpstreamBodyDelivery.asReceived
    /// The response being read may leave the connection reusable (its head's keep-alive).
    private var keepAlive = false

    init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
        self.headParser = HTTPResponseHeadParser(maxHeadBytes: configuration.maxHeadBytes, maxFields: configuration.maxFields)
        self.chunkParser = ChunkedBodyParser(limits: ChunkedBodyParser.Limits(maxTrailerBytes: configuration.maxTrailerBytes))
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.eventLoop = context.eventLoop
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    // MARK: the client side's calls

    /// Prepares for the response to the request about to be written: call before writing each request.
    ///
    /// - Parameter toHEAD: the request is `HEAD`, so its response has no body whatever its fields say.
    ///
    /// On a connection that can no longer answer (the upstream closed its side), the delegate hears
    /// ``UpstreamResponseDelegate/upstreamClosed(error:)`` on the next event-loop tick, never from inside this call.
    func expectResponse(toHEAD: Bool) {
        self.epoch &+= 1
        self.silentClose = false
        if self.inputDone {
            self.state = .idle
            guard let eventLoop = self.eventLoop else { return }
            let loopBoundSelf = NIOLoopBound(self, eventLoop: eventLoop)
            let epoch = self.epoch
            eventLoop.execute {
                let this = loopBoundSelf.value
                guard this.epoch == epoch else { return }
                this.delegate?.upstreamClosed(error: nil)
            }
            return
        }
        self.state = .head
        self.headParser.reset(requestIsHEAD: toHEAD)
        self.headBytes = nil
        self.keepAlive = false
    }

    /// Writes request bytes (not flushed).
    func write(_ buffer: ByteBuffer) {
        self.context?.write(self.wrapOutboundOut(buffer), promise: nil)
    }

    func flush() {
        self.context?.flush()
    }

    /// Resumes a read held back by ``read(context:)``.
    func resumeReading() {
        guard self.readPending, let context = self.context else { return }
        self.readPending = false
        context.read()
    }

    // MARK: inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = self.unwrapInboundIn(data)
        if self.closing { return }
        guard self.delegate != nil else {
            // Bytes on an idle connection: the upstream broke the protocol (or is closing); never reuse it.
            self.close(context)
            return
        }
        self.process(&buffer, context: context)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.delegate?.upstreamReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        self.delegate?.upstreamWritabilityChanged(isWritable: context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            // The upstream half-closed: no more bytes will come, and the connection is never reused.
            self.inputEnded()
            self.close(context)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        let onClose = self.onClose
        self.onClose = nil
        onClose?()
        self.inputEnded()
        self.delegate = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        self.fail(error, context: context)
    }

    func read(context: ChannelHandlerContext) {
        if let delegate = self.delegate, !delegate.upstreamMayRead {
            self.readPending = true
        } else {
            context.read()
        }
    }

    // MARK: reading responses

    /// Delivers what `buffer` holds, state by state, until it is empty or a delegate callback changed the course.
    private func process(_ buffer: inout ByteBuffer, context: ChannelHandlerContext) {
        let epoch = self.epoch
        while true {
            if self.closing { return }
            switch self.state {
            case .idle, .ended:
                guard buffer.readableBytes == 0 else {
                    if case .idle = self.state {
                        self.fail(UpstreamProtocolError(reason: .unexpectedBytes), context: context)
                    } else {
                        // After a complete response. Reported not reusable when these bytes came in its read: the
                        // delegate knows, and hears nothing more; reported reusable: a delegate still attached hears
                        // the close.
                        self.silentClose = !self.endReportedReusable
                        self.close(context)
                    }
                    return
                }
                return
            case .head:
                guard self.readHead(&buffer, context: context, epoch: epoch) else { return }
            case .length(let remaining):
                guard buffer.readableBytes > 0 else { return }
                let take = min(remaining, buffer.readableBytes)
                let slice = buffer.readSlice(length: take)!
                if take == remaining {
                    self.state = .ended
                } else {
                    self.state = .length(remaining - take)
                }
                self.delegate?.upstreamResponseBody(slice)
                guard self.epoch == epoch else { return }
                if take == remaining {
                    guard self.responseEnded(remaining: buffer.readableBytes, epoch: epoch) else { return }
                }
            case .chunked:
                guard buffer.readableBytes > 0 else { return }
                guard self.readChunked(&buffer, context: context, epoch: epoch) else { return }
            case .untilClose, .tunnel:
                guard buffer.readableBytes > 0 else { return }
                let all = buffer
                buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
                self.delegate?.upstreamResponseBody(all)
                return
            }
        }
    }

    /// Parses a head from `buffer` (in place, or cumulated when split); returns whether to go on with `buffer`.
    private func readHead(_ buffer: inout ByteBuffer, context: ChannelHandlerContext, epoch: UInt) -> Bool {
        guard buffer.readableBytes > 0 || self.headBytes != nil else { return false }
        if var cumulated = self.headBytes {
            self.headBytes = nil
            cumulated.writeBuffer(&buffer)
            buffer = cumulated
        }
        let result = buffer.withUnsafeReadableBytes { self.headParser.parse($0) }
        switch result {
        case .needMoreBytes:
            // Split across reads: keep every byte since the head began (bounded by maxHeadBytes: the parser refuses
            // a longer head).
            if buffer.readableBytes > 0 { self.headBytes = buffer }
            buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
            return false
        case .error(let error):
            self.fail(UpstreamProtocolError(reason: .head(error)), context: context)
            return false
        case .head(let head):
            let headBytes = buffer.readSlice(length: head.length)!
            if head.isInformational {
                // 100, 103: dropped (Sluice answers 100-continue itself); the final head answers the same request.
                self.headParser.reset(requestIsHEAD: self.headParser.requestIsHEAD)
                return true
            }
            // Not reset now: `head` shares the parser's field list, which would be copied. expectResponse(toHEAD:)
            // resets it before the next response, when this head is gone.
            self.keepAlive = head.isKeepAlive
            guard let delegate = self.delegate else {
                self.close(context)
                return false
            }
            let delivery = delegate.upstreamResponseHead(head, bytes: headBytes)
            guard self.epoch == epoch else { return false }
            self.delivery = delivery
            if head.isSwitchingProtocols {
                self.state = .tunnel
                return true
            }
            switch head.framing {
            case .none, .length(0):
                self.state = .ended
                return self.responseEnded(remaining: buffer.readableBytes, epoch: epoch)
            case .length(let length):
                self.state = .length(length)
            case .chunked:
                self.chunkParser = ChunkedBodyParser(limits: self.chunkParser.limits)
                self.state = .chunked
            case .untilClose:
                self.state = .untilClose
            }
            return true
        }
    }

    /// Validates one read's piece of a chunked body and delivers it; returns whether to go on with `buffer`.
    private func readChunked(_ buffer: inout ByteBuffer, context: ChannelHandlerContext, epoch: UInt) -> Bool {
        // A local copy: a delegate callback inside the parse may call back into the handler.
        var parser = self.chunkParser
        let result: ChunkedBodyParser.Result
        if self.delivery == .dataOnly {
            let base = buffer.readerIndex
            let bytes = buffer
            result = bytes.withUnsafeReadableBytes { pointer in
                parser.parse(pointer) { range in
                    guard self.epoch == epoch, let delegate = self.delegate else { return }
                    delegate.upstreamResponseBody(bytes.getSlice(at: base + range.lowerBound, length: range.count)!)
                }
            }
        } else {
            result = buffer.withUnsafeReadableBytes { parser.parse($0) { _ in } }
        }
        guard self.epoch == epoch else { return false }
        self.chunkParser = parser
        switch result {
        case .error(let failure):
            self.fail(UpstreamProtocolError(reason: .chunkedBody(failure)), context: context)
            return false
        case .needMoreBytes:
            let consumed = buffer.readableBytes
            let slice = buffer.readSlice(length: consumed)!
            if self.delivery == .asReceived { self.delegate?.upstreamResponseBody(slice) }
            return false
        case .end(let consumed):
            let slice = buffer.readSlice(length: consumed)!
            self.state = .ended
            if self.delivery == .asReceived, consumed > 0 {
                self.delegate?.upstreamResponseBody(slice)
                guard self.epoch == epoch else { return false }
            }
            return self.responseEnded(remaining: buffer.readableBytes, epoch: epoch)
        }
    }

    /// The response ended with `remaining` bytes left in its read (state already ``State/ended``); returns whether
    /// to go on (with the rest, which then closes the connection).
    private func responseEnded(remaining: Int, epoch: UInt) -> Bool {
        // More bytes than the response: the upstream sent something unasked; never reuse the connection.
        self.endReportedReusable = self.keepAlive && remaining == 0
        self.delegate?.upstreamResponseEnd(reusable: self.endReportedReusable)
        return self.epoch == epoch && remaining > 0
    }

    // MARK: closing

    /// No more bytes will come (EOF, half-close, or the channel went inactive); runs once. A body delimited by the
    /// close ends; otherwise an attached delegate hears that the connection is gone.
    private func inputEnded() {
        guard !self.inputDone else { return }
        self.inputDone = true
        self.closing = true
        self.epoch &+= 1
        if case .untilClose = self.state {
            self.state = .ended
            self.delegate?.upstreamResponseEnd(reusable: false)
            return
        }
        self.state = .idle
        if !self.silentClose { self.delegate?.upstreamClosed(error: nil) }
    }

    /// An invalid response or a failed connection: reported to the delegate (which is then detached), then closed.
    private func fail(_ error: Error, context: ChannelHandlerContext) {
        self.closing = true
        self.epoch &+= 1
        self.state = .idle
        let delegate = self.delegate
        self.delegate = nil
        delegate?.upstreamClosed(error: error)
        context.close(promise: nil)
    }

    /// Closes the connection without reporting now (the response ended, or there is none); a delegate still
    /// attached hears ``UpstreamResponseDelegate/upstreamClosed(error:)`` when the channel goes inactive.
    private func close(_ context: ChannelHandlerContext) {
        self.closing = true
        self.epoch &+= 1
        context.close(promise: nil)
    }
}
