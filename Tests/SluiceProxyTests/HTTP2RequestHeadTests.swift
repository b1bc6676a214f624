import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP2
import SluiceHTTP1
import Testing

@testable import SluiceProxy

/// The h2 → HTTP/1.1 head conversion (issue 13): what it writes, and every field it must refuse rather than turn
/// into bytes an upstream could read as something else.
@Suite("HTTP/2 request head conversion")
struct HTTP2RequestHeadTests {
    static let base: [(String, String)] = [(":method", "GET"), (":scheme", "https"), (":path", "/a?b=c"), (":authority", "example.com")]

    static func convert(
        _ fields: [(String, String)],
        endStream: Bool = true,
        maxHeadBytes: Int = 16384
    ) -> Result<HTTP2RequestHead, HTTP2RequestHead.Refusal> {
        HTTP2RequestHead.convert(HPACKHeaders(fields), endStream: endStream, maxHeadBytes: maxHeadBytes, allocator: ByteBufferAllocator())
    }

    static func status(_ fields: [(String, String)], endStream: Bool = true) -> Int? {
        if case .failure(let refusal) = Self.convert(fields, endStream: endStream) { return refusal.status }
        return nil
    }

    @Test func writesAnOriginFormHeadWithHostFromAuthority() throws {
        let head = try Self.convert(Self.base + [("user-agent", "t"), ("cookie", "a=1"), ("cookie", "b=2")]).get()
        #expect(String(buffer: head.bytes) == "GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nuser-agent: t\r\ncookie: a=1; b=2\r\n\r\n")
        #expect(head.framing == .none)
    }

    @Test func framingFollowsContentLengthOrChunked() throws {
        let post = [(":method", "POST"), (":scheme", "http"), (":path", "/"), (":authority", "h")]
        let withLength = try Self.convert(post + [("content-length", "12")], endStream: false).get()
        #expect(withLength.framing == .length(12))
        #expect(String(buffer: withLength.bytes).hasSuffix("content-length: 12\r\n\r\n"))
        let chunked = try Self.convert(post, endStream: false).get()
        #expect(chunked.framing == .chunked)
        #expect(String(buffer: chunked.bytes).hasSuffix("transfer-encoding: chunked\r\n\r\n"))
        // The converted head parses as exactly one request with that framing.
        var parser = HTTPRequestHeadParser(maxHeadBytes: 16384)
        let result = chunked.bytes.withUnsafeReadableBytes { parser.parse($0) }
        guard case .head(let parsed) = result else {
            Issue.record("not parsed: \(result)")
            return
        }
        #expect(parsed.framing == .chunked)
        #expect(parsed.length == chunked.bytes.readableBytes)
    }

    @Test(
        "fields that would change the meaning of HTTP/1.1 bytes are refused",
        arguments: [
            ("x-a", "1\r\nTransfer-Encoding: chunked"),
            ("x-a", "1\nx-b: 2"),
            ("x-a", "1\rx"),
            ("x-a", "a\u{0}b"),
            ("x-a", "a\u{7F}"),
            ("x-a", " leading"),
            ("x-a", "trailing\t"),
            ("x-a:b", "1"),
            ("x a", "1"),
            ("X-Upper", "1"),
            ("", "1"),
            ("x-a\r\nx-b", "1"),
            ("transfer-encoding", "chunked"),
            ("connection", "close"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("upgrade", "websocket"),
            ("te", "gzip"),
            ("content-length", "1x"),
            ("content-length", "-1"),
            ("content-length", ""),
            ("host", "other.example"),
        ] as [(String, String)]
    )
    func refusedField(_ name: String, _ value: String) {
        #expect(Self.status(Self.base + [(name, value)]) == 400)
    }

    @Test func contentLengthMustAgreeWithItselfAndTheStream() {
        let post = [(":method", "POST"), (":scheme", "http"), (":path", "/"), (":authority", "h")]
        #expect(Self.status(post + [("content-length", "5"), ("content-length", "6")], endStream: false) == 400)
        #expect(Self.status(post + [("content-length", "5")], endStream: true) == 400)
        #expect(Self.status(post + [("content-length", "5"), ("content-length", "5")], endStream: false) == nil)
        #expect(Self.status(post + [("content-length", "0")], endStream: true) == nil)
    }

    @Test(
        "pseudo-header fields are checked",
        arguments: [
            [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "h"), (":method", "POST")],
            [(":method", "GET"), (":scheme", "http"), (":authority", "h")],
            [(":scheme", "http"), (":path", "/"), (":authority", "h")],
            [(":method", "GET"), (":path", "/"), (":authority", "h")],
            [(":method", "GET"), (":scheme", "http"), (":path", "/"), ("x-a", "1"), (":authority", "h")],
            [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "h"), (":protocol", "websocket")],
            [(":method", "GET"), (":scheme", "http"), (":path", "/a b"), (":authority", "h")],
            [(":method", "GET"), (":scheme", "http"), (":path", "/a\r\nX: y"), (":authority", "h")],
            [(":method", "GET"), (":scheme", "http"), (":path", "http://h/"), (":authority", "h")],
            [(":method", "GET"), (":scheme", "http"), (":path", "*"), (":authority", "h")],
            [(":method", "GET / HTTP/1.1\r\n"), (":scheme", "http"), (":path", "/"), (":authority", "h")],
            [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "user@h")],
            [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "h\r\nX: y")],
            [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "h/x")],
            // Two hosts in one: refused as the HTTP/1.1 parser refuses `Host: a, b` (SPEC §3).
            [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "a,b")],
            [(":method", "GET"), (":scheme", "http"), (":path", "/")],
        ] as [[(String, String)]]
    )
    func refusedPseudoHeaders(_ fields: [(String, String)]) {
        #expect(Self.status(fields) == 400)
    }

    @Test func hostAloneServesAsAuthorityAndConnectIsRefused() throws {
        let head = try Self.convert([(":method", "GET"), (":scheme", "http"), (":path", "/"), ("host", "h:8080")]).get()
        #expect(String(buffer: head.bytes).hasPrefix("GET / HTTP/1.1\r\nHost: h:8080\r\n"))
        #expect(Self.status([(":method", "CONNECT"), (":authority", "h:443")]) == 405)
        #expect(Self.status([(":method", "OPTIONS"), (":scheme", "http"), (":path", "*"), (":authority", "h")]) == nil)
    }

    @Test func headOverMaxHeaderBytesIs431() {
        let fields = Self.base + [("x-big", String(repeating: "a", count: 3000))]
        if case .failure(let refusal) = Self.convert(fields, maxHeadBytes: 2048) {
            #expect(refusal.status == 431)
        } else {
            Issue.record("not refused")
        }
    }

    // MARK: the bridge on a stream channel

    /// The bridge in front of a recorder of the bytes it passes on.
    static func bridge() throws -> (EmbeddedChannel, ByteRecorder) {
        let channel = EmbeddedChannel()
        let recorder = ByteRecorder()
        try channel.pipeline.syncOperations.addHandler(HTTP2StreamBridgeHandler(maxHeadBytes: 16384))
        try channel.pipeline.syncOperations.addHandler(recorder)
        return (channel, recorder)
    }

    static func headers(_ fields: [(String, String)], endStream: Bool = false) -> HTTP2Frame.FramePayload {
        .headers(.init(headers: HPACKHeaders(fields), endStream: endStream))
    }

    static func data(_ text: String, endStream: Bool = false) -> HTTP2Frame.FramePayload {
        .data(.init(data: .byteBuffer(ByteBuffer(string: text)), endStream: endStream))
    }

    @Test func dataBeyondContentLengthResetsTheStreamAndIsNeverPassedOn() throws {
        let (channel, recorder) = try Self.bridge()
        let post = [(":method", "POST"), (":scheme", "http"), (":path", "/"), (":authority", "h"), ("content-length", "3")]
        try channel.writeInbound(Self.headers(post))
        try channel.writeInbound(Self.data("abcGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n"))
        #expect(!recorder.text.contains("smuggled"))
        #expect(recorder.text.hasSuffix("content-length: 3\r\n\r\n"))
        #expect(!channel.isActive)
    }

    @Test func dataShortOfContentLengthAtEndStreamResets() throws {
        let (channel, recorder) = try Self.bridge()
        let post = [(":method", "POST"), (":scheme", "http"), (":path", "/"), (":authority", "h"), ("content-length", "10")]
        try channel.writeInbound(Self.headers(post))
        try channel.writeInbound(Self.data("abc", endStream: true))
        #expect(!recorder.text.hasSuffix("abc"))
        #expect(!channel.isActive)
    }

    @Test func bodyWithoutLengthIsChunkedAndEndsWithTheStream() throws {
        let (channel, recorder) = try Self.bridge()
        let post = [(":method", "POST"), (":scheme", "http"), (":path", "/"), (":authority", "h")]
        try channel.writeInbound(Self.headers(post))
        try channel.writeInbound(Self.data("0\r\n\r\nGET /x HTTP/1.1"))
        try channel.writeInbound(Self.data("", endStream: true))
        try channel.writeInbound(Self.data("late"))
        #expect(recorder.text.hasSuffix("transfer-encoding: chunked\r\n\r\n14\r\n0\r\n\r\nGET /x HTTP/1.1\r\n0\r\n\r\n"))
        // As the HTTP/1.1 handler reads it: one body whose data is exactly what the client sent.
        var body = recorder.bytes
        let headEnd = recorder.text.range(of: "\r\n\r\n")!.upperBound.utf16Offset(in: recorder.text)
        body.moveReaderIndex(forwardBy: headEnd)
        var parser = ChunkedBodyParser()
        var data = ""
        let result = body.withUnsafeReadableBytes { raw in
            parser.parse(raw) { range in data += String(decoding: UnsafeRawBufferPointer(rebasing: raw[range]), as: UTF8.self) }
        }
        #expect(result == .end(body.readableBytes))
        #expect(data == "0\r\n\r\nGET /x HTTP/1.1")
    }

    @Test func refusedHeadIsAnsweredOnTheStreamAndNothingIsPassedOn() throws {
        let (channel, recorder) = try Self.bridge()
        try channel.writeInbound(Self.headers(Self.base + [("x-a", "1\r\nx-b: 2")], endStream: true))
        #expect(recorder.text.isEmpty)
        guard case .headers(let answer) = try channel.readOutbound(as: HTTP2Frame.FramePayload.self) else {
            Issue.record("no HEADERS answer")
            return
        }
        #expect(answer.headers.first(name: ":status") == "400")
    }

    @Test func responseBytesBecomeFramesWithoutConnectionFields() throws {
        let (channel, _) = try Self.bridge()
        try channel.writeInbound(Self.headers(Self.base, endStream: true))
        let response = "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nX-Up: 1\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        try channel.writeOutbound(ByteBuffer(string: response))
        var frames: [HTTP2Frame.FramePayload] = []
        while let frame = try channel.readOutbound(as: HTTP2Frame.FramePayload.self) { frames.append(frame) }
        guard case .headers(let head) = frames.first else {
            Issue.record("no HEADERS")
            return
        }
        #expect(head.headers.first(name: ":status") == "200")
        #expect(head.headers.first(name: "x-up") == "1")
        #expect(head.headers.first(name: "connection") == nil)
        #expect(head.headers.first(name: "transfer-encoding") == nil)
        var body = ""
        var ended = false
        for case .data(let data) in frames.dropFirst() {
            if case .byteBuffer(let bytes) = data.data { body += String(buffer: bytes) }
            ended = ended || data.endStream
        }
        #expect(body == "abcde")
        #expect(ended)
    }
}

/// Records the bytes a handler passes on.
final class ByteRecorder: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    var bytes = ByteBuffer()
    var text: String { String(buffer: self.bytes) }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = self.unwrapInboundIn(data)
        self.bytes.writeBuffer(&buffer)
    }
}
