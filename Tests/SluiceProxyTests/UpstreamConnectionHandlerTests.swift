import NIOCore
import NIOEmbedded
import SluiceHTTP1
import SluiceTestSupport
import Testing

@testable import SluiceProxy

/// The raw-bytes upstream handler on an `EmbeddedChannel`: every response fed all at once, byte by byte and in seeded
/// random splits must give the same events (bodies compared as the concatenation of their slices).
@Suite("UpstreamConnectionHandler")
struct UpstreamConnectionHandlerTests {
    enum Event: Equatable, CustomStringConvertible {
        case head(Int, String)
        case body(String)
        case end(reusable: Bool)
        case closed(String?)

        var description: String {
            switch self {
            case .head(let status, let text): return "head(\(status), \(text.debugDescription))"
            case .body(let text): return "body(\(text.debugDescription))"
            case .end(let reusable): return "end(reusable: \(reusable))"
            case .closed(let error): return "closed(\(error ?? "eof"))"
            }
        }
    }

    final class Recorder: UpstreamResponseDelegate {
        var events: [Event] = []
        var delivery = UpstreamBodyDelivery.asReceived
        var mayRead = true
        var readCompletes = 0
        /// Detach on a reusable end, as a client releasing the connection to the pool does.
        var detachOnReusableEnd = false
        weak var handler: UpstreamConnectionHandler?
        /// A head whose offsets did not index its bytes from 0.
        var badHeadBytes = false

        func upstreamResponseHead(_ head: ParsedResponseHead, bytes: ByteBuffer) -> UpstreamBodyDelivery {
            let view = Array(bytes.readableBytesView)
            if view.count != head.length || String(decoding: view[head.statusRange], as: UTF8.self) != String(head.status) {
                self.badHeadBytes = true
            }
            self.events.append(.head(head.status, String(decoding: view, as: UTF8.self)))
            return self.delivery
        }

        func upstreamResponseBody(_ bytes: ByteBuffer) {
            let text = String(decoding: bytes.readableBytesView, as: UTF8.self)
            if case .body(let before) = self.events.last {
                self.events[self.events.count - 1] = .body(before + text)
            } else {
                self.events.append(.body(text))
            }
        }

        func upstreamResponseEnd(reusable: Bool) {
            self.events.append(.end(reusable: reusable))
            if reusable && self.detachOnReusableEnd { self.handler?.delegate = nil }
        }

        func upstreamReadComplete() { self.readCompletes += 1 }
        func upstreamWritabilityChanged(isWritable: Bool) {}

        func upstreamClosed(error: Error?) {
            self.events.append(.closed(error.map { "\($0)" }))
        }

        var upstreamMayRead: Bool { self.mayRead }
    }

    /// Counts the reads the handler lets through to the channel.
    final class ReadCounter: ChannelOutboundHandler {
        typealias OutboundIn = ByteBuffer
        var reads = 0
        func read(context: ChannelHandlerContext) {
            self.reads += 1
            context.read()
        }
    }

    enum EOF { case none, inactive, inputClosed }

    struct Outcome {
        var events: [Event]
        var active: Bool
        var badHeadBytes: Bool
    }

    struct Setup {
        let channel: EmbeddedChannel
        let handler: UpstreamConnectionHandler
        let recorder: Recorder
        let counter: ReadCounter

        init(expect: Bool = true, toHEAD: Bool = false, delivery: UpstreamBodyDelivery = .asReceived, attach: Bool = true) throws {
            self.channel = EmbeddedChannel()
            self.handler = UpstreamConnectionHandler()
            self.recorder = Recorder()
            self.counter = ReadCounter()
            try self.channel.pipeline.syncOperations.addHandler(self.counter)
            try self.channel.pipeline.syncOperations.addHandler(self.handler)
            try self.channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
            self.recorder.delivery = delivery
            self.recorder.handler = self.handler
            if attach { self.handler.delegate = self.recorder }
            if expect { self.handler.expectResponse(toHEAD: toHEAD) }
        }

        func feed(_ bytes: [UInt8], pieces: [Int]) throws {
            var offset = 0
            for piece in pieces where offset < bytes.count {
                let end = min(bytes.count, offset + piece)
                var buffer = self.channel.allocator.buffer(capacity: end - offset)
                buffer.writeBytes(bytes[offset..<end])
                try self.channel.writeInbound(buffer)
                self.channel.pipeline.fireChannelReadComplete()
                offset = end
            }
        }

        func eof(_ eof: EOF) {
            switch eof {
            case .none: break
            case .inactive: _ = try? self.channel.close().wait()
            case .inputClosed: self.channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
            }
        }

        var outcome: Outcome {
            Outcome(events: self.recorder.events, active: self.channel.isActive, badHeadBytes: self.recorder.badHeadBytes)
        }

        func finish() {
            _ = try? self.channel.finish(acceptAlreadyClosed: true)
        }
    }

    static func run(
        _ input: [UInt8],
        pieces: [Int],
        toHEAD: Bool = false,
        delivery: UpstreamBodyDelivery = .asReceived,
        eof: EOF = .none,
        detach: Bool = false
    ) throws -> Outcome {
        let setup = try Setup(toHEAD: toHEAD, delivery: delivery)
        defer { setup.finish() }
        setup.recorder.detachOnReusableEnd = detach
        try setup.feed(input, pieces: pieces)
        setup.eof(eof)
        return setup.outcome
    }

    static func splits(_ count: Int, _ random: inout SplitMix64) -> [Int] {
        var pieces: [Int] = []
        var left = count
        while left > 0 {
            let piece = 1 + Int(random.next() % UInt64(min(left, 13)))
            pieces.append(piece)
            left -= piece
        }
        return pieces
    }

    /// The piece lists every case is fed with: all at once, byte by byte, and 30 seeded random splits.
    static func allSplits(_ count: Int, seed: UInt64) -> [[Int]] {
        var random = SplitMix64(seed: seed)
        var result: [[Int]] = [[count], Array(repeating: 1, count: count)]
        for _ in 0..<30 { result.append(Self.splits(count, &random)) }
        return result
    }

    /// Feeds `input` every way and expects the same events each time.
    static func check(
        _ input: String,
        toHEAD: Bool = false,
        delivery: UpstreamBodyDelivery = .asReceived,
        eof: EOF = .none,
        expect: [Event],
        active: Bool,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let bytes = Array(input.utf8)
        for pieces in Self.allSplits(bytes.count, seed: UInt64(bytes.count) &* 0x9E37) {
            let outcome = try Self.run(bytes, pieces: pieces, toHEAD: toHEAD, delivery: delivery, eof: eof)
            #expect(outcome.events == expect, "pieces \(pieces)", sourceLocation: sourceLocation)
            #expect(outcome.active == active, "pieces \(pieces)", sourceLocation: sourceLocation)
            #expect(!outcome.badHeadBytes, sourceLocation: sourceLocation)
        }
    }

    // MARK: bodies

    @Test func contentLengthBody() throws {
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\n"
        try Self.check(head + "hello", expect: [.head(200, head), .body("hello"), .end(reusable: true)], active: true)
    }

    @Test func contentLengthZero() throws {
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
        try Self.check(head, expect: [.head(200, head), .end(reusable: true)], active: true)
    }

    static let chunkedHead = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    static let chunkedBody = "5;ext=\"q\"\r\nhello\r\nA\r\n, chunked!\r\n1\r\n \r\n0\r\nX-Trailer: t\r\n\r\n"

    @Test func chunkedBodyAsReceivedReassemblesExactly() throws {
        try Self.check(
            Self.chunkedHead + Self.chunkedBody,
            expect: [.head(200, Self.chunkedHead), .body(Self.chunkedBody), .end(reusable: true)],
            active: true
        )
    }

    @Test func chunkedBodyDataOnly() throws {
        try Self.check(
            Self.chunkedHead + Self.chunkedBody,
            delivery: .dataOnly,
            expect: [.head(200, Self.chunkedHead), .body("hello, chunked! "), .end(reusable: true)],
            active: true
        )
    }

    @Test func untilCloseBodyEndsAtEOF() throws {
        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"
        for eof in [EOF.inactive, .inputClosed] {
            try Self.check(
                head + "until the close",
                eof: eof,
                expect: [.head(200, head), .body("until the close"), .end(reusable: false)],
                active: false
            )
        }
        // Without the EOF the body has not ended.
        try Self.check(head + "until", expect: [.head(200, head), .body("until")], active: true)
    }

    @Test func http10Response() throws {
        let keepAlive = "HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n"
        try Self.check(keepAlive + "hi", expect: [.head(200, keepAlive), .body("hi"), .end(reusable: true)], active: true)
        let plain = "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n"
        try Self.check(plain + "hi", expect: [.head(200, plain), .body("hi"), .end(reusable: false)], active: true)
        let close = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n"
        try Self.check(close + "hi", expect: [.head(200, close), .body("hi"), .end(reusable: false)], active: true)
    }

    // MARK: bodiless responses

    @Test func headResponseWithContentLengthHasNoBody() throws {
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
        try Self.check(head, toHEAD: true, expect: [.head(200, head), .end(reusable: true)], active: true)
    }

    @Test func noContentAndNotModified() throws {
        let noContent = "HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n"
        try Self.check(noContent, expect: [.head(204, noContent), .end(reusable: true)], active: true)
        let notModified = "HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\nETag: \"x\"\r\n\r\n"
        try Self.check(notModified, expect: [.head(304, notModified), .end(reusable: true)], active: true)
    }

    @Test func informationalResponsesAreDropped() throws {
        let final = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
        try Self.check(
            "HTTP/1.1 100 Continue\r\n\r\n" + final + "ok",
            expect: [.head(200, final), .body("ok"), .end(reusable: true)],
            active: true
        )
        try Self.check(
            "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n" + final + "ok",
            expect: [.head(200, final), .body("ok"), .end(reusable: true)],
            active: true
        )
        // The final response to a HEAD request after a 100: still no body.
        let headFinal = "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n"
        try Self.check(
            "HTTP/1.1 100 Continue\r\n\r\n" + headFinal,
            toHEAD: true,
            expect: [.head(200, headFinal), .end(reusable: true)],
            active: true
        )
    }

    // MARK: upgrade

    @Test func switchingProtocolsThenTunnelBytes() throws {
        let head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        let tunnel = "\u{1}frame bytes HTTP/1.1 200 OK\r\n\r\n and more"
        for eof in [EOF.inactive, .inputClosed] {
            try Self.check(head + tunnel, eof: eof, expect: [.head(101, head), .body(tunnel), .closed(nil)], active: false)
        }
        try Self.check(head + tunnel, expect: [.head(101, head), .body(tunnel)], active: true)
    }

    // MARK: unexpected bytes

    @Test func twoResponsesInOneReadAreNotReusable() throws {
        let first = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
        let input = Array((first + "hi" + "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nho").utf8)
        // In one read: the end is reported not reusable, and the connection closes.
        let whole = try Self.run(input, pieces: [input.count], detach: true)
        #expect(whole.events == [.head(200, first), .body("hi"), .end(reusable: false)])
        #expect(!whole.active)
        // In any split the connection closes too (an end that looked reusable is followed by the close).
        for pieces in Self.allSplits(input.count, seed: 7) {
            let outcome = try Self.run(input, pieces: pieces, detach: true)
            #expect(Array(outcome.events.prefix(2)) == [.head(200, first), .body("hi")], "pieces \(pieces)")
            #expect(!outcome.active, "pieces \(pieces)")
        }
        // Still attached after a reusable end: the close is reported (the connection is gone).
        let attached = try Self.run(input, pieces: [first.utf8.count + 2, 5])
        #expect(attached.events == [.head(200, first), .body("hi"), .end(reusable: true), .closed(nil)])
        #expect(!attached.active)
    }

    @Test func bytesOnAnIdleConnectionCloseIt() throws {
        // Pooled: no delegate.
        let pooled = try Setup(expect: false, attach: false)
        defer { pooled.finish() }
        var closedByPool = false
        pooled.handler.onClose = { closedByPool = true }
        try pooled.feed(Array("HTTP/1.1 200 OK\r\n\r\n".utf8), pieces: [5])
        #expect(!pooled.channel.isActive)
        #expect(closedByPool)
        // Attached, but no request written yet.
        let attached = try Setup(expect: false)
        defer { attached.finish() }
        try attached.feed(Array("X".utf8), pieces: [1])
        #expect(attached.recorder.events == [.closed("upstream sent bytes when no response was expected")])
        #expect(!attached.channel.isActive)
        // After a complete response and before the next request.
        let ended = try Setup()
        defer { ended.finish() }
        ended.recorder.detachOnReusableEnd = true
        try ended.feed(Array("HTTP/1.1 204 No Content\r\n\r\n".utf8), pieces: [100])
        #expect(ended.channel.isActive)
        try ended.feed(Array("\r\n".utf8), pieces: [2])
        #expect(!ended.channel.isActive)
        #expect(ended.recorder.events == [.head(204, "HTTP/1.1 204 No Content\r\n\r\n"), .end(reusable: true)])
    }

    // MARK: invalid responses

    /// Feeds `input` every way and expects a protocol error `reason` after `before` (bodies ignored, since how much of
    /// a body precedes the error depends on the split), and the channel closed.
    static func checkRefused(
        _ input: String,
        delivery: UpstreamBodyDelivery = .asReceived,
        before: [Event],
        reason: UpstreamProtocolError.Reason,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let bytes = Array(input.utf8)
        let error = "\(UpstreamProtocolError(reason: reason))"
        for pieces in Self.allSplits(bytes.count, seed: 0xBAD) {
            let outcome = try Self.run(bytes, pieces: pieces, delivery: delivery)
            let events = outcome.events.filter { if case .body = $0 { return false } else { return true } }
            #expect(events == before + [.closed(error)], "pieces \(pieces)", sourceLocation: sourceLocation)
            #expect(!outcome.active, "pieces \(pieces)", sourceLocation: sourceLocation)
        }
    }

    @Test func malformedHeadsAreRefused() throws {
        try Self.checkRefused(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            before: [],
            reason: .head(.malformed(.lengthAndTransferEncoding))
        )
        try Self.checkRefused("HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", before: [], reason: .head(.malformed(.bareLineFeed)))
        try Self.checkRefused("HTTP/2.0 200 OK\r\n\r\n", before: [], reason: .head(.versionNotSupported))
        try Self.checkRefused(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
            before: [],
            reason: .head(.malformed(.repeatedContentLength))
        )
    }

    @Test func oversizedHeadIsRefused() throws {
        let input = "HTTP/1.1 200 OK\r\nX-Big: " + String(repeating: "a", count: 70_000) + "\r\n\r\n"
        let bytes = Array(input.utf8)
        for pieces in [[bytes.count], Array(repeating: 4096, count: bytes.count / 4096 + 1)] {
            let outcome = try Self.run(bytes, pieces: pieces)
            #expect(outcome.events == [.closed("upstream response head too large")])
            #expect(!outcome.active)
        }
    }

    @Test func badChunkIsRefused() throws {
        let head = Self.chunkedHead
        for delivery in [UpstreamBodyDelivery.asReceived, .dataOnly] {
            try Self.checkRefused(
                head + "5\r\nhelloXX\r\n0\r\n\r\n",
                delivery: delivery,
                before: [.head(200, head)],
                reason: .chunkedBody(.malformed)
            )
            try Self.checkRefused(
                head + "10000000000000000\r\n",
                delivery: delivery,
                before: [.head(200, head)],
                reason: .chunkedBody(.malformed)
            )
        }
        // The data before the bad framing is delivered, never the bytes after it.
        let outcome = try Self.run(Array((head + "5\r\nhelloXX").utf8), pieces: [1000], delivery: .dataOnly)
        #expect(outcome.events.contains(.body("hello")))
    }

    // MARK: EOF

    @Test func eofMidResponseIsReported() throws {
        let cases = [
            "",
            "HTTP/1.1 200 OK\r\nContent-Le",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel",
            Self.chunkedHead + "5\r\nhel",
        ]
        for input in cases {
            for eof in [EOF.inactive, .inputClosed] {
                let outcome = try Self.run(Array(input.utf8), pieces: [3, 7, 1000], eof: eof)
                #expect(outcome.events.last == .closed(nil), "\(input.debugDescription)")
                #expect(!outcome.active)
            }
        }
    }

    @Test func requestOnAConnectionTheUpstreamClosedIsAnsweredOnTheNextTick() throws {
        let setup = try Setup(expect: false, attach: false)
        defer { setup.finish() }
        setup.eof(.inputClosed)
        #expect(!setup.channel.isActive)
        setup.handler.delegate = setup.recorder
        setup.handler.expectResponse(toHEAD: false)
        #expect(setup.recorder.events.isEmpty)
        setup.channel.embeddedEventLoop.run()
        #expect(setup.recorder.events == [.closed(nil)])
    }

    // MARK: back-pressure and writes

    @Test func readsWaitWhileTheClientCannotTakeMore() throws {
        let setup = try Setup()
        defer { setup.finish() }
        let before = setup.counter.reads
        setup.channel.read()
        #expect(setup.counter.reads == before + 1)
        setup.recorder.mayRead = false
        setup.channel.read()
        #expect(setup.counter.reads == before + 1)
        setup.handler.resumeReading()
        #expect(setup.counter.reads == before + 2)
        // Nothing pending: resuming issues no read.
        setup.handler.resumeReading()
        #expect(setup.counter.reads == before + 2)
        // Idle (no delegate): reads always go through.
        setup.handler.delegate = nil
        setup.channel.read()
        #expect(setup.counter.reads == before + 3)
    }

    @Test func writesGoOutAsBytes() throws {
        let setup = try Setup()
        defer { setup.finish() }
        var request = setup.channel.allocator.buffer(capacity: 32)
        request.writeString("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        setup.handler.write(request)
        #expect(try setup.channel.readOutbound(as: ByteBuffer.self) == nil)
        setup.handler.flush()
        #expect(try setup.channel.readOutbound(as: ByteBuffer.self) == request)
    }

    @Test func bodySlicesShareTheReadBuffer() throws {
        let setup = try Setup()
        defer { setup.finish() }
        var bases: [UnsafeRawPointer] = []
        final class Capture: UpstreamResponseDelegate {
            var onBody: (ByteBuffer) -> Void = { _ in }
            func upstreamResponseHead(_ head: ParsedResponseHead, bytes: ByteBuffer) -> UpstreamBodyDelivery { .asReceived }
            func upstreamResponseBody(_ bytes: ByteBuffer) { self.onBody(bytes) }
            func upstreamResponseEnd(reusable: Bool) {}
            func upstreamReadComplete() {}
            func upstreamWritabilityChanged(isWritable: Bool) {}
            func upstreamClosed(error: Error?) {}
            var upstreamMayRead: Bool { true }
        }
        let capture = Capture()
        capture.onBody = { bytes in bytes.withUnsafeReadableBytes { bases.append($0.baseAddress!) } }
        setup.handler.delegate = capture
        var read = setup.channel.allocator.buffer(capacity: 64)
        read.writeString("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        let readBase = read.withUnsafeReadableBytes { $0.baseAddress! }
        try setup.channel.writeInbound(read)
        #expect(bases == [readBase + read.readableBytes - 5])
    }
}
