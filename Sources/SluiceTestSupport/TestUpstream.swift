import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// A real HTTP upstream for end-to-end tests, on 127.0.0.1 with a free port.
///
/// Routes (all answer with keep-alive unless the request asks otherwise):
/// - `GET /hello` → `hello`
/// - `* /echo-headers` → the request head as text: first line `METHOD URI`, then `name: value` lines
/// - `POST /upload` → streams the body through SHA-256: `HEX BYTES`
/// - `GET /download?bytes=N` → N bytes of ``TestPattern`` (chunked, written with back-pressure)
/// - `GET /conn` → the id of the connection this request arrived on
/// - `GET /slow?ms=N` → `slow` after N ms
/// - `GET /chunked` → three chunks, `a`, `bb`, `ccc`
/// - `GET /close` → `bye` then closes (no Content-Length)
/// - `GET /status?code=N` → empty response with that status
/// - `GET /upgrade` → 101, then echoes every byte back (a WebSocket-like tunnel)
/// - `POST /slow-upload?ms=N` → reads the body one read per N ms: SHA-256 like /upload
public final class TestUpstream: @unchecked Sendable {
    // @unchecked: every mutable field is behind `lock`.
    public let group: EventLoopGroup
    public private(set) var channel: Channel!
    private let lock = NIOLock()
    private var _connections = 0
    private var _requests: [String] = []

    public var port: Int { self.channel.localAddress!.port! }
    public var connectionsAccepted: Int { self.lock.withLock { self._connections } }
    public var requestURIs: [String] { self.lock.withLock { self._requests } }

    public init(group: EventLoopGroup) async throws {
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
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(UpstreamRouter(connectionID: id, upstream: self))
                }
            }
        self.channel = try await bootstrap.bind(host: "127.0.0.1", port: 0).get()
    }

    func recordRequest(_ uri: String) {
        self.lock.withLock { self._requests.append(uri) }
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
            self.upstream.recordRequest(head.uri)
            if head.uri.hasPrefix("/slow-upload") {
                self.slowReadMs = Int(Self.query(head.uri, "ms") ?? "0") ?? 0
                _ = context.channel.setOption(.autoRead, value: false)
                self.scheduleSlowRead(context: context)
            }
        case .body(var body):
            self.bodyBytes += body.readableBytes
            if let bytes = body.readBytes(length: body.readableBytes) { self.sha.update(bytes) }
        case .end:
            guard let head = self.head else { return }
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
        case "/conn":
            self.send(context, "\(self.connectionID)", head: head)
        case "/slow":
            let ms = Int(Self.query(head.uri, "ms") ?? "100") ?? 100
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            context.eventLoop.scheduleTask(in: .milliseconds(Int64(ms))) {
                let (this, context) = loopBound.value
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
            if !context.channel.isWritable || offset >= total {
                let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                let next = offset
                context.writeAndFlush(self.wrapOutboundOut(.body(.byteBuffer(buffer)))).assumeIsolated().whenSuccess {
                    let (this, context) = loopBound.value
                    if next >= total {
                        context.writeAndFlush(this.wrapOutboundOut(.end(nil)), promise: nil)
                    } else {
                        this.writeDownload(context: context, offset: next, total: total)
                    }
                }
                return
            }
            context.write(self.wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        if total == 0 { context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil) }
    }
}

private final class EchoHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.writeAndFlush(data, promise: nil)
    }
}
