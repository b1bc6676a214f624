import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// A slow upstream for the concurrency tests (issue 22) that records its own peak of requests in flight and the order
/// requests arrived in (their `X-Seq` header).
///
/// Routes:
/// - `GET /slow?ms=N` → `ok` after N ms
/// - `GET /hold` → `ok` once the test calls ``releaseHeld(_:)`` (first held, first answered)
/// - `GET /status?code=N` → that status at once
/// - `GET /reset` → closes the connection without answering
/// - anything else → `ok` at once
final class PeakRecordingUpstream: Sendable {
    private struct State {
        var inFlight = 0
        var peak = 0
        var arrivals: [String] = []
        var held: [@Sendable () -> Void] = []
    }

    private let state = NIOLockedValueBox(State())
    private let channel: Channel

    init(group: EventLoopGroup) async throws {
        let box = NIOLockedValueBox<PeakRecordingUpstream?>(nil)
        self.channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Handler(upstream: box))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        box.withLockedValue { $0 = self }
    }

    var port: Int { self.channel.localAddress!.port! }
    /// The most requests it ever had in flight at once.
    var peak: Int { self.state.withLockedValue { $0.peak } }
    var inFlight: Int { self.state.withLockedValue { $0.inFlight } }
    /// `X-Seq` of every request, in arrival order (`-` without the header).
    var arrivals: [String] { self.state.withLockedValue { $0.arrivals } }
    var heldCount: Int { self.state.withLockedValue { $0.held.count } }

    /// Answers the `count` requests held longest.
    func releaseHeld(_ count: Int = .max) {
        let answers = self.state.withLockedValue { state in
            let taken = Array(state.held.prefix(count))
            state.held.removeFirst(taken.count)
            return taken
        }
        for answer in answers { answer() }
    }

    func close() async {
        self.releaseHeld()
        try? await self.channel.close()
    }

    fileprivate func arrived(_ seq: String) {
        self.state.withLockedValue { state in
            state.inFlight += 1
            state.peak = max(state.peak, state.inFlight)
            state.arrivals.append(seq)
        }
    }

    fileprivate func finished() {
        self.state.withLockedValue { $0.inFlight -= 1 }
    }

    fileprivate func hold(_ answer: @escaping @Sendable () -> Void) {
        self.state.withLockedValue { $0.held.append(answer) }
    }

    private final class Handler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart

        let upstream: NIOLockedValueBox<PeakRecordingUpstream?>
        private var head: HTTPRequestHead?
        private var counted = false

        init(upstream: NIOLockedValueBox<PeakRecordingUpstream?>) {
            self.upstream = upstream
        }

        private var owner: PeakRecordingUpstream { self.upstream.withLockedValue { $0! } }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch self.unwrapInboundIn(data) {
            case .head(let head):
                self.head = head
                self.counted = true
                self.owner.arrived(head.headers.first(name: "X-Seq") ?? "-")
            case .body:
                break
            case .end:
                guard let head = self.head else { return }
                self.route(context: context, head: head)
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            if self.counted {
                self.counted = false
                self.owner.finished()
            }
            context.fireChannelInactive()
        }

        private func route(context: ChannelHandlerContext, head: HTTPRequestHead) {
            let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
            let query = head.uri.split(separator: "?", maxSplits: 1).dropFirst().first.map(String.init) ?? ""
            let number = Int(query.split(separator: "=").last ?? "") ?? 0
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            switch path {
            case "/slow":
                context.eventLoop.scheduleTask(in: .milliseconds(Int64(number))) {
                    let (this, context) = loopBound.value
                    this.answer(context: context, status: .ok)
                }
            case "/hold":
                let eventLoop = context.eventLoop
                self.owner.hold {
                    eventLoop.execute {
                        let (this, context) = loopBound.value
                        this.answer(context: context, status: .ok)
                    }
                }
            case "/status":
                self.answer(context: context, status: HTTPResponseStatus(statusCode: number))
            case "/reset":
                context.close(promise: nil)
            default:
                self.answer(context: context, status: .ok)
            }
        }

        private func answer(context: ChannelHandlerContext, status: HTTPResponseStatus) {
            guard context.channel.isActive, self.counted else { return }
            self.counted = false
            self.owner.finished()
            var headers = HTTPHeaders()
            headers.add(name: "Content-Length", value: "2")
            context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
            context.write(self.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: "ok")))), promise: nil)
            context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}
