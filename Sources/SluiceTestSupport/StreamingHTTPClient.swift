import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// An HTTP client for large transfers: streams a ``TestPattern`` request body with back-pressure
/// and hashes the response body as it arrives, so neither side is ever held whole in memory.
///
/// Counters (``bodyBytesWritten``, ``bodyBytesReceived``) let tests assert back-pressure: a
/// body write counts once the kernel has accepted it.
public final class StreamingHTTPClient: Sendable {
    public struct Response: Sendable {
        public var head: HTTPResponseHead
        public var bodyBytes: Int
        public var sha256: String
        /// The body itself, kept only up to 64 KiB (for small answers).
        public var smallBody: String
        public var trailers: HTTPHeaders?
    }

    public let channel: Channel
    private let handler: NIOLoopBound<StreamingClientHandler>
    private let counters: Counters

    final class Counters: Sendable {
        let state = NIOLockedValueBox((written: 0, received: 0))
    }

    /// - Parameter autoRead: `false` makes a client that reads nothing until ``startReading()``.
    public static func connect(
        host: String = "127.0.0.1",
        port: Int,
        group: EventLoopGroup,
        autoRead: Bool = true
    ) async throws -> StreamingHTTPClient {
        let counters = Counters()
        let channel = try await ClientBootstrap(group: group)
            .channelOption(.autoRead, value: autoRead)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(StreamingClientHandler(counters: counters))
                }
            }
            .connect(host: host, port: port).get()
        let handler = try await channel.eventLoop.submit {
            NIOLoopBound(try channel.pipeline.syncOperations.handler(type: StreamingClientHandler.self), eventLoop: channel.eventLoop)
        }.get()
        return StreamingHTTPClient(channel: channel, handler: handler, counters: counters)
    }

    private init(channel: Channel, handler: NIOLoopBound<StreamingClientHandler>, counters: Counters) {
        self.channel = channel
        self.handler = handler
        self.counters = counters
    }

    /// Request body bytes the kernel has accepted so far.
    public var bodyBytesWritten: Int { self.counters.state.withLockedValue { $0.written } }
    /// Response body bytes received so far.
    public var bodyBytesReceived: Int { self.counters.state.withLockedValue { $0.received } }

    /// Sends `head` and then `bodyBytes` bytes of ``TestPattern`` (chunked if the head says so),
    /// writing only while the channel is writable. Returns once the request has been written.
    public func send(_ head: HTTPRequestHead, bodyBytes: Int = 0) async throws {
        let handler = self.handler
        try await self.channel.eventLoop.flatSubmit {
            handler.value.send(head, bodyBytes: bodyBytes)
        }.get()
    }

    /// Starts sending in the background; ``send(_:bodyBytes:)`` without waiting.
    public func startSending(_ head: HTTPRequestHead, bodyBytes: Int) {
        let handler = self.handler
        self.channel.eventLoop.execute {
            _ = handler.value.send(head, bodyBytes: bodyBytes)
        }
    }

    /// Waits for the next complete response.
    public func response() async throws -> Response {
        let handler = self.handler
        return try await self.channel.eventLoop.flatSubmit {
            handler.value.nextResponse()
        }.get()
    }

    public func startReading() {
        self.channel.setOption(.autoRead, value: true).whenComplete { _ in }
    }

    public func close() async {
        try? await self.channel.close()
    }
}

public struct ConnectionClosedBeforeResponse: Error {}

private final class StreamingClientHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    private let counters: StreamingHTTPClient.Counters
    private var context: ChannelHandlerContext!
    // Response side.
    private var head: HTTPResponseHead?
    private var sha = SHA256()
    private var received = 0
    private var small: [UInt8] = []
    private var done: [Result<StreamingHTTPClient.Response, Error>] = []
    private var waiters: [EventLoopPromise<StreamingHTTPClient.Response>] = []
    // Request side.
    private var remaining = 0
    private var offset = 0
    private var sendPromise: EventLoopPromise<Void>?

    init(counters: StreamingHTTPClient.Counters) {
        self.counters = counters
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func send(_ head: HTTPRequestHead, bodyBytes: Int) -> EventLoopFuture<Void> {
        let promise = self.context.eventLoop.makePromise(of: Void.self)
        self.sendPromise = promise
        self.remaining = bodyBytes
        self.offset = 0
        self.context.write(self.wrapOutboundOut(.head(head)), promise: nil)
        self.pump()
        return promise.futureResult
    }

    private func pump() {
        guard let promise = self.sendPromise else { return }
        let counters = self.counters
        while self.remaining > 0 && self.context.channel.isWritable {
            let n = min(64 * 1024, self.remaining)
            var buffer = self.context.channel.allocator.buffer(capacity: n)
            TestPattern.fill(&buffer, from: self.offset, count: n)
            self.offset += n
            self.remaining -= n
            self.context.write(self.wrapOutboundOut(.body(.byteBuffer(buffer)))).whenSuccess {
                counters.state.withLockedValue { $0.written += n }
            }
        }
        if self.remaining == 0 {
            self.sendPromise = nil
            self.context.writeAndFlush(self.wrapOutboundOut(.end(nil))).cascade(to: promise)
        } else {
            self.context.flush()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { self.pump() }
        context.fireChannelWritabilityChanged()
    }

    func nextResponse() -> EventLoopFuture<StreamingHTTPClient.Response> {
        if !self.done.isEmpty {
            return self.context.eventLoop.makeCompletedFuture(self.done.removeFirst())
        }
        let promise = self.context.eventLoop.makePromise(of: StreamingHTTPClient.Response.self)
        self.waiters.append(promise)
        return promise.futureResult
    }

    private func complete(_ result: Result<StreamingHTTPClient.Response, Error>) {
        if self.waiters.isEmpty {
            self.done.append(result)
        } else {
            self.waiters.removeFirst().completeWith(result)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            self.sha = SHA256()
            self.received = 0
            self.small = []
        case .body(let buffer):
            let bytes = Array(buffer.readableBytesView)
            self.sha.update(bytes)
            self.received += bytes.count
            if self.small.count < 64 * 1024 { self.small += bytes.prefix(64 * 1024 - self.small.count) }
            let n = bytes.count
            self.counters.state.withLockedValue { $0.received += n }
        case .end(let trailers):
            guard let head = self.head else { return }
            self.head = nil
            self.complete(
                .success(
                    .init(
                        head: head,
                        bodyBytes: self.received,
                        sha256: self.sha.finalize().hex,
                        smallBody: String(decoding: self.small, as: UTF8.self),
                        trailers: trailers
                    )
                )
            )
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.sendPromise?.fail(ConnectionClosedBeforeResponse())
        self.sendPromise = nil
        for w in self.waiters { w.fail(ConnectionClosedBeforeResponse()) }
        self.waiters.removeAll()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        for w in self.waiters { w.fail(error) }
        self.waiters.removeAll()
        context.close(promise: nil)
    }
}

extension TestPattern {
    /// SHA-256 of the first `count` pattern bytes, as hex.
    public static func sha256(count: Int) -> String {
        var sha = SHA256()
        var offset = 0
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while offset < count {
            let n = min(chunk.count, count - offset)
            if n < chunk.count { chunk = [UInt8](repeating: 0, count: n) }
            for i in 0..<n { chunk[i] = Self.byte(at: offset + i) }
            sha.update(chunk)
            offset += n
        }
        return sha.finalize().hex
    }
}
