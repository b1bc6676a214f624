import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import SluiceConfig
import SluiceTestSupport
import Testing

/// Issue 18, items 2 and 7: a client that does not read, or stops sending halfway, cannot make
/// Sluice queue answers without bound or hold a connection (and its upstream connection) forever.
@Suite("Security regression: slow and unread connections", .serialized, .timeLimit(.minutes(2)))
struct SecurityRegressionConnectionTests {
    /// Requests to `/a` and `/b` without `X-Api-Key` are refused by Sluice itself, with 429 and 503.
    static func twoRefusingRules(_ config: inout SluiceConfiguration) {
        config.server.threads = 1
        config.rules = ["a", "b"].map { name in
            RuleConfiguration(
                name: name,
                match: RuleMatch(path: .exact("/\(name)")),
                key: [.header("x-api-key")],
                limits: [RateLimit(count: 100, periodSeconds: 3600, text: "100/hour")],
                onMissingKey: .deny,
                response: ResponseConfiguration(status: name == "a" ? 429 : 503)
            )
        }
    }

    // MARK: item 2

    /// Issue 18 item 2: pipelined requests that Sluice answers itself are not read (so not answered)
    /// while the client reads none of the answers; once it reads, every answer arrives, in order.
    @Test func unreadLocalAnswersStopTheReadingOfTheirRequests() async throws {
        // Loads the machine: never beside the timing tests (TestLoadGate).
        try await TestLoadGate.exclusive { try await self.unreadLocalAnswersStopTheReadingOfTheirRequestsGated() }
    }

    func unreadLocalAnswersStopTheReadingOfTheirRequestsGated() async throws {
        try await withProxy(Self.twoRefusingRules) { proxy in
            let requests = 60_000
            let client = try await PipeliningClient.connect(port: proxy.port, requests: requests)
            defer { Task { await client.close() } }
            client.startWriting()
            // Sluice answers until the answers it has queued exceed its bound; after that it stops
            // reading, so the count of answered requests stops growing.
            var answered = 0
            var stableSince = ContinuousClock.now
            let deadline = ContinuousClock.now + .seconds(60)
            while ContinuousClock.now - stableSince < .seconds(1) && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(100))
                let totals = proxy.server.metrics.totals().requests
                let now = (totals["a"]?.limited ?? 0) + (totals["b"]?.limited ?? 0)
                if now != answered {
                    answered = now
                    stableSince = ContinuousClock.now
                }
                if answered == requests { break }
            }

            #expect(client.answersReceived == 0)
            // What the kernel buffers between the two ends (a few MiB on loopback; the client's receive
            // buffer is set small) plus Sluice's own bound: far below the 60,000 answers (over 8 MiB)
            // that would otherwise be queued.
            let answerBytes = PipeliningClient.localAnswerBytes
            #expect(
                answered * answerBytes < 6 * 1024 * 1024,
                "\(answered) answers of at least \(answerBytes) B queued for a client that reads nothing"
            )

            client.startReading()
            try await eventually(within: .seconds(60), "every answer read") {
                client.answersReceived == requests || client.failure != nil
            }
            #expect(client.failure == nil, "\(client.failure ?? "")")
            #expect(client.answersReceived == requests)
        }
    }

    /// `sluice_open_connections`, as `/metrics` shows it.
    static func openConnections(_ proxy: ProxyHarness) -> Int? {
        let line = proxy.server.metrics.exposition().split(separator: "\n").first { $0.hasPrefix("sluice_open_connections ") }
        return line.flatMap { Double($0.split(separator: " ").last ?? "") }.map { Int($0) }
    }

    // MARK: item 7

    /// Issue 18 item 7, `send`, for answers Sluice writes itself: the client that pipelines requests and reads
    /// none of the answers is closed once `send` passes.
    @Test func unreadLocalAnswersAreClosedAfterSend() async throws {
        try await withProxy({ config in
            Self.twoRefusingRules(&config)
            config.server.timeouts.send = .seconds(1)
        }) { proxy in
            let requests = 60_000
            let client = try await PipeliningClient.connect(port: proxy.port, requests: requests)
            defer { Task { await client.close() } }
            client.startWriting()
            try await eventually("Sluice has the connection") { Self.openConnections(proxy) == 1 }
            // Sluice stops answering once the answers are blocked (item 2), then closes after `send`.
            try await eventually(within: .seconds(30), "Sluice closes the connection") { Self.openConnections(proxy) == 0 }
            // What was sent before the close arrives, then the end: far from every answer.
            client.startReading()
            try await eventually(within: .seconds(10), "the client sees the close") { !client.channel.isActive }
            #expect(client.answersReceived < requests)
            try await proxy.expectStillServing()
        }
    }

    /// Runs `body` with a proxy (one event loop, so one upstream pool) in front of an ``ObservedUpstream``.
    static func withObservedProxy(
        _ configure: @escaping (inout SluiceConfiguration) -> Void,
        _ body: (ProxyHarness, ObservedUpstream) async throws -> Void
    ) async throws {
        let upstream = try await ObservedUpstream.start()
        do {
            try await withProxy({ config in
                config.server.threads = 1
                config.upstream.targets = [UpstreamTarget(scheme: .http, host: "127.0.0.1", port: upstream.port)]
                configure(&config)
            }) { proxy in
                try await body(proxy, upstream)
            }
        } catch {
            await upstream.close()
            throw error
        }
        await upstream.close()
    }

    /// Issue 18 item 7, `body_read`: an upload that stalls after its head gets 408 once `body_read` passes with no
    /// body bytes; the upstream connection it was streaming to is closed, never reused for the next request.
    @Test func stalledUploadGets408AndItsUpstreamConnectionIsClosed() async throws {
        try await Self.withObservedProxy({ $0.server.timeouts.bodyRead = .seconds(1) }) { proxy, upstream in
            let client = try await proxy.client()
            let start = ContinuousClock.now
            try await client.send("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n0123456789")
            let response = try await client.readResponse(timeout: .seconds(8))
            let elapsed = ContinuousClock.now - start
            #expect(response.status == 408)
            #expect(response.header("connection") == "close")
            #expect(elapsed >= .seconds(1) && elapsed < .seconds(4), "\(elapsed)")
            _ = try await client.waitForClose(timeout: .seconds(5))
            await client.close()
            let uploadConnection = try #require(upstream.connection(of: "/upload"))
            try await eventually("the upload's upstream connection is closed") { upstream.isClosed(uploadConnection) }
            // The next request gets a connection of its own.
            let next = try await proxy.get("/conn")
            #expect(next.status == 200)
            #expect(next.bodyString != "\(uploadConnection)")
        }
    }

    /// Issue 18 item 7, `body_read`: while Sluice itself holds the upload back (its upstream takes nothing for
    /// longer than `body_read`), the client is not timed out: only time spent waiting for the client counts.
    @Test func uploadHeldBackBySluiceIsNotTimedOut() async throws {
        try await Self.withObservedProxy({ $0.server.timeouts.bodyRead = .milliseconds(300) }) { proxy, upstream in
            let total = 24 * 1024 * 1024
            let client = try await proxy.streamingClient()
            try await client.send(
                HTTPRequestHead(version: .http1_1, method: .POST, uri: "/pause-upload", headers: ["Host": "t", "Content-Length": "\(total)"]),
                bodyBytes: total
            )
            let response = try await withTimeout(.seconds(20), "the upload's answer") { try await client.response() }
            #expect(response.head.status == .ok)
            #expect(response.smallBody == "\(total)")
        }
    }

    /// Issue 18 item 7, `body_read`: once the upstream has started its response, a stalled upload can no longer
    /// be answered with a 408: the connection is closed (and the upstream's with it).
    @Test func stalledUploadAfterTheResponseStartedIsClosed() async throws {
        try await Self.withObservedProxy({ $0.server.timeouts.bodyRead = .seconds(1) }) { proxy, upstream in
            let client = try await proxy.client()
            let start = ContinuousClock.now
            try await client.send("POST /early HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n0123456789")
            let received = String(decoding: try await client.waitForClose(timeout: .seconds(8)), as: UTF8.self)
            let elapsed = ContinuousClock.now - start
            #expect(received.hasPrefix("HTTP/1.1 200"))
            #expect(received.contains("early"))
            #expect(!received.contains("408"))
            #expect(elapsed >= .seconds(1) && elapsed < .seconds(4), "\(elapsed)")
            await client.close()
            let connection = try #require(upstream.connection(of: "/early"))
            try await eventually("the upstream connection is closed") { upstream.isClosed(connection) }
        }
    }

    /// Issue 18 item 7, `send`: a client that stops reading a large response is closed once `send` passes
    /// without it taking any bytes, and the upstream connection is closed too (not pooled, not left open).
    @Test func clientThatStopsReadingIsClosedAfterSend() async throws {
        try await Self.withObservedProxy({ $0.server.timeouts.send = .seconds(1) }) { proxy, upstream in
            let total = 256 * 1024 * 1024
            let client = try await proxy.streamingClient(autoRead: false)
            try await client.send(HTTPRequestHead(version: .http1_1, method: .GET, uri: "/download?bytes=\(total)", headers: ["Host": "t"]))
            try await eventually("the download started") { upstream.connection(of: "/download?bytes=\(total)") != nil }
            let connection = try #require(upstream.connection(of: "/download?bytes=\(total)"))
            // Within `send` after the buffers between them filled up (well before 256 MiB went anywhere).
            try await eventually(within: .seconds(10), "the upstream connection is closed") { upstream.isClosed(connection) }
            #expect(upstream.downloadBytesWritten < total / 2)
            // The client finds its connection closed once it reads, before the end of the body.
            client.startReading()
            try await eventually(within: .seconds(10), "the client sees the close") { !client.channel.isActive }
            #expect(client.bodyBytesReceived < total)
            let next = try await proxy.get("/conn")
            #expect(next.status == 200)
            #expect(next.bodyString != "\(connection)")
        }
    }

    /// Issue 18 item 7, `send`: a reader that pauses, but never for `send`, is not closed.
    @Test func pausingReaderIsNotClosedBySend() async throws {
        try await Self.withObservedProxy({ $0.server.timeouts.send = .seconds(2) }) { proxy, upstream in
            let total = 64 * 1024 * 1024
            let client = try await proxy.streamingClient(autoRead: false)
            try await client.send(HTTPRequestHead(version: .http1_1, method: .GET, uri: "/download?bytes=\(total)", headers: ["Host": "t"]))
            // Reads for 50 ms, then pauses for 400 ms: the proxy's output is blocked during the pauses.
            for _ in 0..<6 {
                try await Task.sleep(for: .milliseconds(400))
                try await client.channel.setOption(.autoRead, value: true).get()
                try await Task.sleep(for: .milliseconds(50))
                try await client.channel.setOption(.autoRead, value: false).get()
            }
            #expect(client.bodyBytesReceived < total, "the pauses did not block the download")
            client.startReading()
            let response = try await withTimeout(.seconds(30), "the download") { try await client.response() }
            #expect(response.bodyBytes == total)
        }
    }

    /// Issue 18 item 7, `tunnel_idle`: an upgraded connection that carries no byte either way for `tunnel_idle` is
    /// closed; one that keeps talking is not.
    @Test func idleTunnelIsClosedActiveOneIsNot() async throws {
        try await withProxy({ $0.server.timeouts.tunnelIdle = .seconds(1) }) { proxy in
            let upgrade = "GET /upgrade HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"
            let idle = try await proxy.client()
            let active = try await proxy.client()
            try await idle.send(upgrade)
            #expect(try await idle.readResponse().status == 101)
            let start = ContinuousClock.now
            try await active.send(upgrade)
            #expect(try await active.readResponse().status == 101)
            // Both ways count: the client speaks, the upstream echoes. 2.5 s in all, never 1 s quiet.
            for i in 0..<25 {
                try await Task.sleep(for: .milliseconds(100))
                try await active.send("p\(i % 10)")
                #expect(try await active.readBytes(count: 2, timeout: .seconds(2)) == Array("p\(i % 10)".utf8))
            }
            #expect(ContinuousClock.now - start >= .milliseconds(2500))
            #expect(idle.isClosed)
            #expect(!active.isClosed)
            let idleRest = try await idle.waitForClose(timeout: .seconds(1))
            #expect(idleRest.isEmpty)
            // Now silent: closed in its turn.
            let silentFrom = ContinuousClock.now
            _ = try await active.waitForClose(timeout: .seconds(5))
            #expect(ContinuousClock.now - silentFrom >= .milliseconds(900))
            await idle.close()
            await active.close()
        }
    }
}

/// An HTTP/1.1 upstream that records which connection each request came on and which connections have closed.
///
/// Routes: `/early` answers `200` with a first chunk `early` as soon as the head arrives, and ends the response
/// when the request ends; `/download?bytes=N` streams N bytes with back-pressure; `/pause-upload` reads nothing
/// for 1.5 s after its head, then reads its body and answers its length; anything else answers the id of its
/// connection once the request has ended.
final class ObservedUpstream: Sendable {
    struct State {
        var accepted = 0
        var closed: Set<Int> = []
        var requests: [(connection: Int, uri: String)] = []
        var downloadBytesWritten = 0
    }

    let channel: Channel
    let state: NIOLockedValueBox<State>

    static func start() async throws -> ObservedUpstream {
        let state = NIOLockedValueBox(State())
        let channel = try await ServerBootstrap(group: ProxyHarness.group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                let id = state.withLockedValue { state in
                    state.accepted += 1
                    return state.accepted
                }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(ObservedRouter(id: id, state: state))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return ObservedUpstream(channel: channel, state: state)
    }

    private init(channel: Channel, state: NIOLockedValueBox<State>) {
        self.channel = channel
        self.state = state
    }

    var port: Int { self.channel.localAddress!.port! }
    var downloadBytesWritten: Int { self.state.withLockedValue { $0.downloadBytesWritten } }

    /// The connection the first request for `uri` came on.
    func connection(of uri: String) -> Int? {
        self.state.withLockedValue { state in state.requests.first { $0.uri == uri }?.connection }
    }

    func isClosed(_ connection: Int) -> Bool {
        self.state.withLockedValue { $0.closed.contains(connection) }
    }

    func close() async {
        try? await self.channel.close()
    }
}

private final class ObservedRouter: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let id: Int
    let state: NIOLockedValueBox<ObservedUpstream.State>
    private var uri = ""
    private var downloadRemaining = 0
    private var downloadOffset = 0
    private var bodyBytes = 0

    init(id: Int, state: NIOLockedValueBox<ObservedUpstream.State>) {
        self.id = id
        self.state = state
    }

    func channelInactive(context: ChannelHandlerContext) {
        let id = self.id
        self.state.withLockedValue { _ = $0.closed.insert(id) }
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.uri = head.uri
            self.bodyBytes = 0
            let id = self.id
            self.state.withLockedValue { $0.requests.append((id, head.uri)) }
            if head.uri == "/pause-upload" {
                let channel = context.channel
                _ = channel.setOption(.autoRead, value: false)
                channel.eventLoop.scheduleTask(in: .milliseconds(1500)) {
                    channel.setOption(.autoRead, value: true).whenComplete { _ in }
                    channel.read()
                }
            } else if head.uri == "/early" {
                context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: ["Transfer-Encoding": "chunked"]))), promise: nil)
                context.writeAndFlush(self.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: "early")))), promise: nil)
            } else if head.uri.hasPrefix("/download?bytes=") {
                self.downloadRemaining = Int(head.uri.dropFirst("/download?bytes=".count)) ?? 0
                self.downloadOffset = 0
                context.write(
                    self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: ["Content-Length": "\(self.downloadRemaining)"]))),
                    promise: nil
                )
                self.pumpDownload(context: context)
            }
        case .body(let body):
            self.bodyBytes += body.readableBytes
        case .end:
            if self.uri == "/early" {
                context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
            } else if !self.uri.hasPrefix("/download") {
                let body = self.uri == "/pause-upload" ? "\(self.bodyBytes)" : "\(self.id)"
                context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: ["Content-Length": "\(body.utf8.count)"]))), promise: nil)
                context.write(self.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
                context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
            }
        }
    }

    /// Writes the download while the connection takes it.
    private func pumpDownload(context: ChannelHandlerContext) {
        while self.downloadRemaining > 0 && context.channel.isWritable {
            let n = min(64 * 1024, self.downloadRemaining)
            var buffer = context.channel.allocator.buffer(capacity: n)
            TestPattern.fill(&buffer, from: self.downloadOffset, count: n)
            self.downloadOffset += n
            self.downloadRemaining -= n
            let state = self.state
            context.write(self.wrapOutboundOut(.body(.byteBuffer(buffer)))).whenSuccess {
                state.withLockedValue { $0.downloadBytesWritten += n }
            }
            if self.downloadRemaining == 0 {
                context.write(self.wrapOutboundOut(.end(nil)), promise: nil)
            }
        }
        context.flush()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable && self.downloadRemaining > 0 { self.pumpDownload(context: context) }
        context.fireChannelWritabilityChanged()
    }
}

/// A client that pipelines `requests` requests as fast as the connection takes them and reads nothing
/// until ``startReading()``; it then checks every answer in order: request `i` goes to `/a` (429) or `/b`
/// (503) in a pseudo-random pattern, so a lost, repeated or reordered answer shows.
final class PipeliningClient: Sendable {
    /// Size of one answer of ``SecurityRegressionConnectionTests/twoRefusingRules(_:)``, an estimate on the
    /// low side (status line, Content-Type, Content-Length and a short body).
    static let localAnswerBytes = 140

    let channel: Channel
    private let driver: NIOLoopBound<PipelineDriver>
    private let results: NIOLockedValueBox<(answers: Int, failure: String?)>

    static func connect(port: Int, requests: Int) async throws -> PipeliningClient {
        let results = NIOLockedValueBox<(answers: Int, failure: String?)>((0, nil))
        let channel = try await ClientBootstrap(group: ProxyHarness.group)
            .channelOption(.autoRead, value: false)
            // Small and fixed (no autotuning): what the kernel can hold of the answers stays small.
            .channelOption(.socketOption(.so_rcvbuf), value: 64 * 1024)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        PipelineDriver(requests: requests, results: results)
                    )
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        let driver = try await channel.eventLoop.submit {
            NIOLoopBound(try channel.pipeline.syncOperations.handler(type: PipelineDriver.self), eventLoop: channel.eventLoop)
        }.get()
        return PipeliningClient(channel: channel, driver: driver, results: results)
    }

    private init(channel: Channel, driver: NIOLoopBound<PipelineDriver>, results: NIOLockedValueBox<(answers: Int, failure: String?)>) {
        self.channel = channel
        self.driver = driver
        self.results = results
    }

    var answersReceived: Int { self.results.withLockedValue { $0.answers } }
    var failure: String? { self.results.withLockedValue { $0.failure } }
    var requestsWritten: Int {
        get async throws {
            let driver = self.driver
            return try await self.channel.eventLoop.submit { driver.value.written }.get()
        }
    }

    func startWriting() {
        let driver = self.driver
        self.channel.eventLoop.execute { driver.value.pump() }
    }

    func startReading() {
        self.channel.setOption(.autoRead, value: true).whenComplete { _ in }
    }

    func close() async {
        try? await self.channel.close()
    }
}

private final class PipelineDriver: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let requests: Int
    let results: NIOLockedValueBox<(answers: Int, failure: String?)>
    private var context: ChannelHandlerContext?
    private(set) var written = 0
    private var received = ByteBuffer()
    private var answers = 0
    private var failed = false

    init(requests: Int, results: NIOLockedValueBox<(answers: Int, failure: String?)>) {
        self.requests = requests
        self.results = results
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    /// Whether request `index` goes to `/b` (a fixed pseudo-random pattern).
    func isB(_ index: Int) -> Bool { (UInt64(index) &* 0x9E37_79B9_7F4A_7C15) >> 63 == 1 }

    /// Writes blocks of requests while the channel is writable.
    func pump() {
        guard let context = self.context else { return }
        while self.written < self.requests && context.channel.isWritable {
            var block = context.channel.allocator.buffer(capacity: 64 * 1024)
            let end = min(self.requests, self.written + 1000)
            for index in self.written..<end {
                block.writeString(self.isB(index) ? "GET /b HTTP/1.1\r\nHost: t\r\n\r\n" : "GET /a HTTP/1.1\r\nHost: t\r\n\r\n")
            }
            self.written = end
            context.writeAndFlush(self.wrapOutboundOut(block), promise: nil)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { self.pump() }
        context.fireChannelWritabilityChanged()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = self.unwrapInboundIn(data)
        self.received.writeBuffer(&buffer)
        // Only the answers to our requests (a connection left idle afterwards may get a 408 of its own).
        while !self.failed, self.answers < self.requests, let status = self.nextResponseStatus() {
            let index = self.answers
            let expected = self.isB(index) ? 503 : 429
            if status != expected {
                self.fail("answer \(index): expected \(expected), got \(status)")
            }
            self.answers += 1
        }
        self.received.discardReadBytes()
        let answers = self.answers
        self.results.withLockedValue { $0.answers = answers }
    }

    private func fail(_ message: String) {
        self.failed = true
        self.results.withLockedValue { if $0.failure == nil { $0.failure = message } }
    }

    /// Removes one complete response (Content-Length framed) from `received`; returns its status.
    private func nextResponseStatus() -> Int? {
        let view = self.received.readableBytesView
        guard let headEnd = view.firstRange(of: Array("\r\n\r\n".utf8)) else { return nil }
        let head = String(decoding: view[view.startIndex..<headEnd.lowerBound], as: UTF8.self)
        let lines = head.split(separator: "\r\n")
        guard let statusLine = lines.first, statusLine.split(separator: " ").count >= 2,
            let status = Int(statusLine.split(separator: " ")[1])
        else {
            self.fail("unparsable response head: \(head.prefix(80))")
            return nil
        }
        let lengthLine = lines.first { $0.lowercased().hasPrefix("content-length:") }
        guard let lengthLine, let length = Int(String(lengthLine.dropFirst("content-length:".count).filter { $0 != " " })) else {
            self.fail("response without Content-Length: \(head.prefix(200))")
            return nil
        }
        let bodyStart = headEnd.upperBound
        guard view.endIndex - bodyStart >= length else { return nil }
        self.received.moveReaderIndex(forwardBy: bodyStart + length - view.startIndex)
        return status
    }
}
