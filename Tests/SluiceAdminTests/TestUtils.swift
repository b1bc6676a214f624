import NIOCore
import NIOHTTP1
import NIOPosix
import SluiceAdmin
import SluiceTestSupport
import SluiceConfig
import SluiceLimiter
import Synchronization
import Testing

/// A request head for driving the limiter.
struct TestRequest: RequestAttributes {
    var method: String = "GET"
    var uri: String = "/"
    var host: String? = "example.com"
    var clientIP: IPAddress = IPAddress("203.0.113.7")!
    var headers: [(String, String)] = []

    func header(_ name: String) -> String? {
        self.headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    func forEachHeaderValue(_ name: String, _ body: (String) -> Bool) {
        for (fieldName, value) in self.headers where fieldName.lowercased() == name.lowercased() {
            guard body(value) else { return }
        }
    }
}

/// The instant every test reads and counts at: 30 s before a minute boundary, so a fresh `fixed_window`
/// counter of `5/minute` resets in exactly 30 s.
let testNow = LimiterInstant.seconds(1_700_000_010)

/// Two rules: `login` (`POST /login`, key `[ip]`, `5/minute`, fixed window) and `api` (`/api/*`, key `[ip, path]`,
/// two limits).
func testConfiguration(adminToken: String? = nil, redisPassword: String? = nil) -> SluiceConfiguration {
    var configuration = SluiceConfiguration(
        sourcePath: "/etc/sluice/sluice.yaml",
        server: ServerConfiguration(admin: ListenAddress(host: "127.0.0.1", port: 0), adminToken: adminToken),
        rules: [
            RuleConfiguration(
                name: "login",
                match: RuleMatch(methods: ["POST"], path: .exact("/login")),
                key: [.ip],
                limits: [RateLimit(count: 5, periodSeconds: 60, text: "5/minute")],
                algorithm: .fixedWindow
            ),
            RuleConfiguration(
                name: "api",
                match: RuleMatch(path: .prefix("/api")),
                key: [.ip, .path],
                limits: [
                    RateLimit(count: 100, periodSeconds: 60, text: "100/minute"),
                    RateLimit(count: 1000, periodSeconds: 3600, text: "1000/hour"),
                ],
                algorithm: .fixedWindow
            ),
        ]
    )
    if let redisPassword {
        configuration.storage.redis = RedisStorageConfiguration(
            url: "redis://:\(redisPassword)@10.0.0.5:6379/2",
            host: "10.0.0.5",
            password: redisPassword,
            database: 2
        )
    }
    return configuration
}

/// A stand-in for the proxy: a configuration, a real limiter, a readiness flag, storage availability and a reload
/// record the test can change, and a tracker of limited keys the test feeds.
final class TestBackend: AdminBackend {
    private struct State {
        var configuration: SluiceConfiguration
        var limiter: RateLimiter?
        var isReady: Bool
        var storageAvailable = true
        var reloadStatus: ReloadStatus? = nil
    }

    private let state: Mutex<State>
    let limitedKeys: LimitedKeyTracker? = LimitedKeyTracker()

    init(configuration: SluiceConfiguration = testConfiguration(), isReady: Bool = true) {
        self.state = Mutex(
            State(
                configuration: configuration,
                limiter: RateLimiter(configuration: configuration, previous: nil),
                isReady: isReady
            )
        )
    }

    var configuration: SluiceConfiguration { self.state.withLock { $0.configuration } }
    var limiter: RateLimiter? { self.state.withLock { $0.limiter } }
    var isReady: Bool {
        get { self.state.withLock { $0.isReady } }
        set { self.state.withLock { $0.isReady = newValue } }
    }
    var storageAvailable: Bool {
        get { self.state.withLock { $0.storageAvailable } }
        set { self.state.withLock { $0.storageAvailable = newValue } }
    }
    var reloadStatus: ReloadStatus? {
        get { self.state.withLock { $0.reloadStatus } }
        set { self.state.withLock { $0.reloadStatus = newValue } }
    }

    /// Swaps in a new snapshot, keeping the counters (as a reload does).
    func reload(_ configuration: SluiceConfiguration) {
        self.state.withLock { state in
            state.limiter = RateLimiter(configuration: configuration, previous: state.limiter)
            state.configuration = configuration
        }
    }
}

/// Runs `body` with an ``AdminServer`` listening on `127.0.0.1:0`, stopping it afterwards; the whole run is
/// bounded so a hang fails the test instead of stalling the suite.
func withAdminServer(
    backend: TestBackend = TestBackend(),
    metrics: SluiceMetrics = SluiceMetrics(),
    _ body: @escaping @Sendable (_ port: Int) async throws -> Void
) async throws {
    try await TestLoadGate.shared { try await withAdminServerUngated(backend: backend, metrics: metrics, body) }
}

private func withAdminServerUngated(
    backend: TestBackend,
    metrics: SluiceMetrics,
    _ body: @escaping @Sendable (_ port: Int) async throws -> Void
) async throws {
    let server = AdminServer(
        backend: backend,
        metrics: metrics,
        group: MultiThreadedEventLoopGroup.singleton,
        clock: { testNow }
    )
    try await server.start(host: "127.0.0.1", port: 0)
    let port = try #require(server.localAddress?.port)
    do {
        try await withTimeout(seconds: 10) { try await body(port) }
    } catch {
        await server.stop()
        throw error
    }
    await server.stop()
}

struct TimeoutError: Error {}

/// Fails with ``TimeoutError`` when `body` takes longer than `seconds`.
func withTimeout<T: Sendable>(seconds: Int, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: .seconds(seconds))
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else { throw TimeoutError() }
        return value
    }
}

/// A response as the test client saw it.
struct TestResponse: Sendable {
    var status: HTTPResponseStatus
    var headers: HTTPHeaders
    var body: String
}

/// A minimal keep-alive HTTP/1.1 client: one connection, requests answered in order.
final class TestHTTPClient: Sendable {
    private let channel: any Channel

    private init(channel: any Channel) {
        self.channel = channel
    }

    static func connect(port: Int) async throws -> TestHTTPClient {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(ResponseCollector())
                }
            }
            .connect(host: "127.0.0.1", port: port)
            .get()
        return TestHTTPClient(channel: channel)
    }

    func request(
        _ method: HTTPMethod,
        _ uri: String,
        headers: [(String, String)] = []
    ) async throws -> TestResponse {
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: uri)
        head.headers.add(name: "Host", value: "127.0.0.1")
        head.headers.add(contentsOf: headers)
        let promise = self.channel.eventLoop.makePromise(of: TestResponse.self)
        self.channel.writeAndFlush(ResponseCollector.Request(head: head, promise: promise), promise: nil)
        return try await promise.futureResult.get()
    }

    func close() async {
        try? await self.channel.close()
    }

    /// Whether the server has closed the connection.
    var isActive: Bool { self.channel.isActive }

    /// Waits until the connection is closed.
    func waitForClose() async throws {
        try await self.channel.closeFuture.get()
    }
}

/// One request on a fresh connection.
func send(
    _ method: HTTPMethod,
    _ uri: String,
    port: Int,
    headers: [(String, String)] = []
) async throws -> TestResponse {
    let client = try await TestHTTPClient.connect(port: port)
    do {
        let response = try await client.request(method, uri, headers: headers)
        await client.close()
        return response
    } catch {
        await client.close()
        throw error
    }
}

/// Sends one request on a fresh connection and expects its status.
func expectStatus(
    _ expected: HTTPResponseStatus,
    _ method: HTTPMethod,
    _ uri: String,
    port: Int,
    headers: [(String, String)] = [],
    sourceLocation: SourceLocation = #_sourceLocation
) async throws {
    let response = try await send(method, uri, port: port, headers: headers)
    #expect(response.status == expected, "\(method) \(uri)", sourceLocation: sourceLocation)
}

/// Writes request heads and completes their promises with the responses, in order.
private final class ResponseCollector: ChannelDuplexHandler {
    struct Request {
        var head: HTTPRequestHead
        var promise: EventLoopPromise<TestResponse>
    }

    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = Request
    typealias OutboundOut = HTTPClientRequestPart

    private var waiting: [EventLoopPromise<TestResponse>] = []
    private var current: TestResponse?

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = self.unwrapOutboundIn(data)
        self.waiting.append(request.promise)
        context.write(self.wrapOutboundOut(.head(request.head)), promise: nil)
        context.write(self.wrapOutboundOut(.end(nil)), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.current = TestResponse(status: head.status, headers: head.headers, body: "")
        case .body(let buffer):
            self.current?.body += String(buffer: buffer)
        case .end:
            guard let response = self.current, !self.waiting.isEmpty else { return }
            self.current = nil
            self.waiting.removeFirst().succeed(response)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        for promise in self.waiting { promise.fail(ChannelError.ioOnClosedChannel) }
        self.waiting.removeAll()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        for promise in self.waiting { promise.fail(error) }
        self.waiting.removeAll()
        context.close(promise: nil)
    }
}
