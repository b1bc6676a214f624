import NIOConcurrencyHelpers
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import NIOSSL
import SluiceTestSupport

/// An HTTP/2 client on NIOHTTP2 for the tests of issue 13: one connection (h2c prior knowledge, or TLS with ALPN
/// `h2`), any number of concurrent streams on it.
final class HTTP2TestClient: Sendable {
    struct Response: Sendable {
        var status: Int
        var headers: HPACKHeaders
        /// The body (empty when only its digest was kept).
        var body: ByteBuffer
        var bodyBytes: Int
        /// SHA-256 of the body, hex.
        var bodyDigest: String
        var bodyString: String { String(buffer: self.body) }
    }

    /// The stream was reset or the connection closed before the response ended.
    struct StreamFailed: Error {
        var reason: String
    }

    let channel: Channel
    private let multiplexer: NIOLoopBound<NIOHTTP2Handler.StreamMultiplexer>

    private init(channel: Channel, multiplexer: NIOLoopBound<NIOHTTP2Handler.StreamMultiplexer>) {
        self.channel = channel
        self.multiplexer = multiplexer
    }

    /// - Parameter validateHeaders: `false` lets the client send header blocks NIOHTTP2 would refuse (attack tests).
    static func connect(
        port: Int,
        tls: NIOSSLContext? = nil,
        validateHeaders: Bool = true,
        group: EventLoopGroup = ProxyHarness.group
    ) async throws -> HTTP2TestClient {
        let (channel, multiplexer) = try await ClientBootstrap(group: group)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(
                            try NIOSSLClientHandler(context: tls, serverHostname: "localhost")
                        )
                    }
                    var connection = NIOHTTP2Handler.ConnectionConfiguration()
                    connection.targetWindowSize = 1 << 20
                    if !validateHeaders {
                        connection.headerBlockValidation = .disabled
                        connection.contentLengthValidation = .disabled
                    }
                    var stream = NIOHTTP2Handler.StreamConfiguration()
                    stream.targetWindowSize = 1 << 20
                    let multiplexer = try channel.pipeline.syncOperations.configureHTTP2Pipeline(
                        mode: .client,
                        connectionConfiguration: connection,
                        streamConfiguration: stream
                    ) { pushed in
                        pushed.close()
                    }
                    return (channel, NIOLoopBound(multiplexer, eventLoop: channel.eventLoop))
                }
            }
        return HTTP2TestClient(channel: channel, multiplexer: multiplexer)
    }

    /// One request on a new stream.
    ///
    /// - Parameters:
    ///   - keepBody: keep the body bytes in the response (else only their count and digest).
    ///   - body: written as DATA frames of at most 16 KiB; the last one ends the stream.
    func request(
        _ method: String = "GET",
        _ path: String,
        authority: String = "test",
        headers: [(String, String)] = [],
        body: ByteBuffer? = nil,
        keepBody: Bool = true
    ) async throws -> Response {
        let loop = self.channel.eventLoop
        let responsePromise = loop.makePromise(of: Response.self)
        let multiplexer = self.multiplexer
        let streamFuture: EventLoopFuture<Channel> = loop.flatSubmit {
            let created = loop.makePromise(of: Channel.self)
            multiplexer.value.createStreamChannel(promise: created) { stream in
                stream.eventLoop.makeCompletedFuture {
                    try stream.pipeline.syncOperations.addHandler(ResponseCollector(promise: responsePromise, keepBody: keepBody))
                }
            }
            return created.futureResult
        }
        let stream: Channel
        do {
            stream = try await streamFuture.get()
        } catch {
            responsePromise.fail(error)
            throw error
        }
        var fields: HPACKHeaders = [":method": method, ":scheme": "http", ":path": path, ":authority": authority]
        for (name, value) in headers { fields.add(name: name, value: value) }
        let hasBody = body != nil
        try await stream.eventLoop.submit {
            stream.write(HTTP2Frame.FramePayload.headers(.init(headers: fields, endStream: !hasBody)), promise: nil)
            if var body {
                if body.readableBytes == 0 {
                    stream.write(HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(ByteBuffer()), endStream: true)), promise: nil)
                }
                while body.readableBytes > 0 {
                    let slice = body.readSlice(length: min(16384, body.readableBytes))!
                    stream.write(
                        HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(slice), endStream: body.readableBytes == 0)),
                        promise: nil
                    )
                }
            }
            stream.flush()
        }.get()
        return try await responsePromise.futureResult.get()
    }

    /// Opens a stream with `headers` (no END_STREAM) and resets it at once: one round of a rapid-reset attack.
    func openAndReset(_ path: String) async throws {
        let loop = self.channel.eventLoop
        let multiplexer = self.multiplexer
        let stream: Channel = try await loop.flatSubmit {
            let created = loop.makePromise(of: Channel.self)
            multiplexer.value.createStreamChannel(promise: created) { $0.eventLoop.makeSucceededVoidFuture() }
            return created.futureResult
        }.get()
        let fields: HPACKHeaders = [":method": "POST", ":scheme": "http", ":path": path, ":authority": "test"]
        try await stream.eventLoop.submit {
            stream.write(HTTP2Frame.FramePayload.headers(.init(headers: fields)), promise: nil)
            stream.write(HTTP2Frame.FramePayload.rstStream(.cancel), promise: nil)
            stream.flush()
        }.get()
    }

    func close() async {
        try? await self.channel.close()
    }
}

/// Collects one stream's response.
private final class ResponseCollector: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame.FramePayload

    private let promise: EventLoopPromise<HTTP2TestClient.Response>
    private let keepBody: Bool
    private var status = 0
    private var headers = HPACKHeaders()
    private var body = ByteBuffer()
    private var count = 0
    private var digest = SHA256()
    private var done = false

    init(promise: EventLoopPromise<HTTP2TestClient.Response>, keepBody: Bool) {
        self.promise = promise
        self.keepBody = keepBody
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .headers(let frame):
            if let status = frame.headers.first(name: ":status").flatMap(Int.init), status >= 200 || self.status == 0 {
                if status >= 200 {
                    self.status = status
                    self.headers = frame.headers
                }
            }
            if frame.endStream { self.finish() }
        case .data(let frame):
            if case .byteBuffer(var bytes) = frame.data {
                self.count += bytes.readableBytes
                self.digest.update(bytes.getBytes(at: bytes.readerIndex, length: bytes.readableBytes)!)
                if self.keepBody { self.body.writeBuffer(&bytes) }
            }
            if frame.endStream { self.finish() }
        case .rstStream(let code):
            self.fail("reset: \(code)")
        default:
            break
        }
    }

    private func finish() {
        guard !self.done else { return }
        self.done = true
        self.promise.succeed(
            HTTP2TestClient.Response(
                status: self.status,
                headers: self.headers,
                body: self.body,
                bodyBytes: self.count,
                bodyDigest: self.digest.finalize().hex
            )
        )
    }

    private func fail(_ reason: String) {
        guard !self.done else { return }
        self.done = true
        self.promise.fail(HTTP2TestClient.StreamFailed(reason: reason))
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        self.fail("\(error)")
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.fail("stream closed")
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.fail("handler removed")
    }
}
