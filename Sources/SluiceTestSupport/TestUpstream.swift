import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// A real HTTP upstream for end-to-end tests, on 127.0.0.1 with a free port.
///
/// Routes (all answer with keep-alive unless the request asks otherwise):
/// - `GET /hello` → `hello`
/// - `* /echo-headers` → the request head as text: first line `METHOD URI`, then `name: value` lines
/// - `POST /upload` → streams the body through SHA-256: `HEX BYTES`
/// - `GET /download?bytes=N` → N bytes of ``TestPattern`` (chunked, written with back-pressure)
/// - `GET /conn` → the id of the connection this request arrived on
/// - `GET /slow?ms=N` → `slow` after N ms (``slowAnswerTimes`` records when each was written)
/// - `GET /chunked` → three chunks, `a`, `bb`, `ccc`
/// - `GET /close` → `bye` then closes (no Content-Length)
/// - `GET /status?code=N` → empty response with that status
/// - `GET /upgrade` → 101, then echoes every byte back (a WebSocket-like tunnel); a read of
///   exactly `quit` closes the connection instead
/// - `POST /slow-upload?ms=N` → reads the body one read per N ms: SHA-256 like /upload
///   (``slowUploadBytesReceived`` counts what it has read so far)
/// - `GET /stale` → `stale`, keep-alive; the NEXT request on that connection is read and then
///   the connection is closed without an answer (an idle connection closed by the upstream
///   just as a proxy reuses it)
/// - `GET /idle-close?ms=N` → `idle-close`, keep-alive, then the connection is closed after N ms
/// - `GET /trailers` → chunked `abc` with trailer `X-Checksum: 42`
/// - `GET /truncated` → declares 100 bytes, sends 5, closes
/// - `GET /no-length` → HTTP/1.1 `bye` delimited by close (no Content-Length, no chunked)
///
/// ``downloadBytesWritten`` counts `/download` bytes the kernel has accepted.
public final class TestUpstream: @unchecked Sendable {
    // @unchecked: every mutable field is behind `lock`.
    public let group: EventLoopGroup
    public private(set) var channel: Channel!
    private let lock = NIOLock()
    private var _connections = 0
    private var _requests: [String] = []
    private var _requestHeads: [HTTPRequestHead] = []
    private var _slowUploadBytes = 0
    private var _downloadBytesWritten = 0
    private var _slowAnswerTimes: [ContinuousClock.Instant] = []
    private var _requestTimes: [ContinuousClock.Instant] = []

    public var port: Int { self.channel.localAddress!.port! }
    public var connectionsAccepted: Int { self.lock.withLock { self._connections } }
    public var requestURIs: [String] { self.lock.withLock { self._requests } }
    /// Every request head received, in order.
    public var requestHeads: [HTTPRequestHead] { self.lock.withLock { self._requestHeads } }
    public var slowUploadBytesReceived: Int { self.lock.withLock { self._slowUploadBytes } }
    public var downloadBytesWritten: Int { self.lock.withLock { self._downloadBytesWritten } }
    /// When each `/slow` answer was written, in order: on a loaded machine its timer can fire well after N ms, and a
    /// timing test tells from this whether the upstream was late.
    public var slowAnswerTimes: [ContinuousClock.Instant] { self.lock.withLock { self._slowAnswerTimes } }
    /// When each request head arrived, in the order of ``requestURIs``.
    public var requestTimes: [ContinuousClock.Instant] { self.lock.withLock { self._requestTimes } }

    func addSlowUploadBytes(_ n: Int) { self.lock.withLock { self._slowUploadBytes += n } }
    func addDownloadBytesWritten(_ n: Int) { self.lock.withLock { self._downloadBytesWritten += n } }
    func recordSlowAnswer() { self.lock.withLock { self._slowAnswerTimes.append(.now) } }

    /// - Parameter tls: when given, the upstream speaks HTTPS with this context (an `https://` target).
    public init(group: EventLoopGroup, tls: NIOSSLContext? = nil) async throws {
        self.group = group
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: false)
            .childChannelInitializer { channel in
                let id = self.lock.withLock { () -> Int in
                    self._connections += 1
                    return self._connections
                }
                return channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls))
                    }
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(UpstreamRouter(connectionID: id, upstream: self))
                }
            }
        self.channel = try await bootstrap.bind(host: "127.0.0.1", port: 0).get()
    }

    func recordRequest(_ head: HTTPRequestHead) {
        self.lock.withLock {
            self._requests.append(head.uri)
            self._requestHeads.append(head)
            self._requestTimes.append(.now)
        }
    }

    public func close() async {
        try? await self.channel.close()
    }
}

/// Deterministic bytes for transfer tests.
public enum TestPattern {
    public static func byte(at offset: Int) -> UInt8 { UInt8(truncatingIfNeeded: offset &* 31 &+ offset >> 8) }

    public static func fill(_ buffer: inout ByteBuffer, from offset: Int, count: Int) {
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { ptr in
            for i in 0..<count { ptr[i] = Self.byte(at: offset + i) }
            return count
        }
    }
}

private final class UpstreamRouter: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let connectionID: Int
    let upstream: TestUpstream
    private var head: HTTPRequestHead?
    private var sha = SHA256()
    private var bodyBytes = 0
    private var upgraded = false
    private var slowReadMs = 0
    private var isSlowUpload = false
    /// Set by /stale: the next request on this connection is answered by closing it.
    private var closeOnNextRequest = false

    init(connectionID: Int, upstream: TestUpstream) {
        self.connectionID = connectionID
        self.upstream = upstream
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            self.sha = SHA256()
            self.bodyBytes = 0
            self.upstream.recordRequest(head)
            if self.closeOnNextRequest {
                context.close(promise: nil)
                return
            }
            self.isSlowUpload = head.uri.hasPrefix("/slow-upload")
            if self.isSlowUpload {
                self.slowReadMs = Int(Self.query(head.uri, "ms") ?? "0") ?? 0
                _ = context.channel.setOption(.autoRead, value: false)
                self.scheduleSlowRead(context: context)
            }
        case .body(var body):
            self.bodyBytes += body.readableBytes
            if self.isSlowUpload { self.upstream.addSlowUploadBytes(body.readableBytes) }
            if let bytes = body.readBytes(length: body.readableBytes) { self.sha.update(bytes) }
        case .end:
            guard let head = self.head, !self.closeOnNextRequest else { return }
            self.respond(context: context, head: head)
        }
    }

    private func scheduleSlowRead(context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: .milliseconds(Int64(self.slowReadMs))) {
            let (this, context) = loopBound.value
            guard context.channel.isActive, this.slowReadMs > 0 else { return }
            context.read()
            this.scheduleSlowRead(context: context)
        }
    }

    static func query(_ uri: String, _ name: String) -> String? {
        guard let q = uri.split(separator: "?", maxSplits: 1).dropFirst().first else { return nil }
        for pair in q.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1)
            if kv.count == 2 && kv[0] == name { return String(kv[1]) }
        }
        return nil
    }

    private func send(_ context: ChannelHandlerContext, _ text: String, status: HTTPResponseStatus = .ok, head: HTTPRequestHead) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Length", value: String(text.utf8.count))
        headers.add(name: "Content-Type", value: "text/plain")
        if !head.isKeepAlive { headers.add(name: "Connection", value: "close") }
        context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        if head.method != .HEAD {
            context.write(self.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: text)))), promise: nil)
        }
        let keepAlive = head.isKeepAlive
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(self.wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
            if !keepAlive { loopBound.value.close(promise: nil) }
        }
    }

    private func respond(context: ChannelHandlerContext, head: HTTPRequestHead) {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        switch path {
        case "/hello":
            self.send(context, "hello", head: head)
        case "/echo-headers":
            var text = "\(head.method.rawValue) \(head.uri)\n"
            for (name, value) in head.headers { text += "\(name.lowercased()): \(value)\n" }
            self.send(context, text, head: head)
        case "/upload", "/slow-upload":
            self.slowReadMs = 0
            _ = context.channel.setOption(.autoRead, value: true)
            self.send(context, "\(self.sha.finalize().hex) \(self.bodyBytes)", head: head)
        case "/stale":
            self.closeOnNextRequest = true
            self.send(context, "stale", head: head)
        case "/idle-close":
            let ms = Int(Self.query(head.uri, "ms") ?? "50") ?? 50
            self.send(context, "idle-close", head: head)
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.eventLoop.scheduleTask(in: .milliseconds(Int64(ms))) {
                loopBound.value.close(promise: nil)
            }
        case "/trailers":
            context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .ok, headers: ["Transfer-Encoding": "chunked", "Trailer": "X-Checksum"]))), promise: nil)
            context.write(self.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: "abc")))), promise: nil)
            context.writeAndFlush(self.wrapOutboundOut(.end(["X-Checksum": "42"])), promise: nil)
        case "/no-length":
            context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: ["Connection": "close"]))), promise: nil)
            context.write(self.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: "bye")))), promise: nil)
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.writeAndFlush(self.wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
                loopBound.value.close(promise: nil)
            }
        case "/truncated":
            context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .ok, headers: ["Content-Length": "100"]))), promise: nil)
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.writeAndFlush(self.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: "short"))))).assumeIsolated().whenComplete { _ in
                loopBound.value.close(promise: nil)
            }
        case "/conn":
            self.send(context, "\(self.connectionID)", head: head)
        case "/slow":
            let ms = Int(Self.query(head.uri, "ms") ?? "100") ?? 100
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            context.eventLoop.scheduleTask(in: .milliseconds(Int64(ms))) {
                let (this, context) = loopBound.value
                this.upstream.recordSlowAnswer()
                this.send(context, "slow", head: head)
            }
        case "/status":
            let code = Int(Self.query(head.uri, "code") ?? "200") ?? 200
            var headers = HTTPHeaders()
            if code != 204 && code != 304 { headers.add(name: "Content-Length", value: "0") }
            context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .init(statusCode: code), headers: headers))), promise: nil)
            context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
        case "/chunked":
            context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .ok, headers: ["Transfer-Encoding": "chunked"]))), promise: nil)
            if head.method != .HEAD {
                for s in ["a", "bb", "ccc"] {
                    context.writeAndFlush(self.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: s)))), promise: nil)
                }
            }
            context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
        case "/close":
            context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_0, status: .ok, headers: ["Connection": "close"]))), promise: nil)
            context.write(self.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: "bye")))), promise: nil)
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.writeAndFlush(self.wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
                loopBound.value.close(promise: nil)
            }
        case "/download":
            let total = Int(Self.query(head.uri, "bytes") ?? "0") ?? 0
            context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .ok, headers: ["Content-Length": String(total)]))), promise: nil)
            self.writeDownload(context: context, offset: 0, total: total)
        case "/upgrade":
            let headers: HTTPHeaders = ["Upgrade": "echo", "Connection": "upgrade"]
            context.writeAndFlush(self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .switchingProtocols, headers: headers))), promise: nil)
            context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
            // Become a byte echo.
            let pipeline = context.pipeline.syncOperations
            if let encoder = try? pipeline.handler(type: HTTPResponseEncoder.self) { _ = pipeline.removeHandler(encoder) }
            if let p = try? pipeline.handler(type: HTTPServerPipelineHandler.self) { _ = pipeline.removeHandler(p) }
            if let e = try? pipeline.handler(type: HTTPServerProtocolErrorHandler.self) { _ = pipeline.removeHandler(e) }
            if let v = try? pipeline.handler(type: NIOHTTPResponseHeadersValidator.self) { _ = pipeline.removeHandler(v) }
            try? pipeline.addHandler(EchoHandler())
            if let decoder = try? pipeline.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self) { _ = pipeline.removeHandler(decoder) }
            _ = pipeline.removeHandler(self)
        default:
            self.send(context, "not found", status: .notFound, head: head)
        }
    }

    private func writeDownload(context: ChannelHandlerContext, offset: Int, total: Int) {
        var offset = offset
        // Write while the channel is writable, then continue when the last write completes.
        while offset < total {
            let n = min(64 * 1024, total - offset)
            var buffer = context.channel.allocator.buffer(capacity: n)
            TestPattern.fill(&buffer, from: offset, count: n)
            offset += n
            let upstream = self.upstream
            if !context.channel.isWritable || offset >= total {
                let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                let next = offset
                context.writeAndFlush(self.wrapOutboundOut(.body(.byteBuffer(buffer)))).assumeIsolated().whenSuccess {
                    upstream.addDownloadBytesWritten(n)
                    let (this, context) = loopBound.value
                    if next >= total {
                        context.writeAndFlush(this.wrapOutboundOut(.end(nil)), promise: nil)
                    } else {
                        this.writeDownload(context: context, offset: next, total: total)
                    }
                }
                return
            }
            context.write(self.wrapOutboundOut(.body(.byteBuffer(buffer)))).assumeIsolated().whenSuccess {
                upstream.addDownloadBytesWritten(n)
            }
        }
        if total == 0 { context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil) }
    }
}

private final class EchoHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // `quit` ends the tunnel from the upstream's side.
        if self.unwrapInboundIn(data).readableBytesView.elementsEqual("quit".utf8) {
            context.close(promise: nil)
            return
        }
        context.writeAndFlush(data, promise: nil)
    }
}
