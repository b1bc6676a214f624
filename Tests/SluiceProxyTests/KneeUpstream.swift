import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// A test upstream whose latency grows with its own concurrency (issue 22 item 7): `workers` requests are served at
/// once, each taking `serviceTime`; the others wait in its queue, first come first served. So up to `workers` in
/// flight every request takes `serviceTime`, and beyond that the latency grows linearly with the requests in flight
/// (the knee). It records its peak of requests in flight and each request's latency (arrival to answer).
final class KneeUpstream: Sendable {
    private struct State {
        var inFlight = 0
        var peak = 0
        var busy = 0
        var queue: [@Sendable () -> Void] = []
        var latencies: [Int64] = []
    }

    let workers: Int
    let serviceTime: TimeAmount
    private let state = NIOLockedValueBox(State())
    private let channel: Channel

    init(group: EventLoopGroup, workers: Int, serviceTime: TimeAmount) async throws {
        self.workers = workers
        self.serviceTime = serviceTime
        let box = NIOLockedValueBox<KneeUpstream?>(nil)
        self.channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.backlog, value: 1024)
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
    var peak: Int { self.state.withLockedValue { $0.peak } }
    var inFlight: Int { self.state.withLockedValue { $0.inFlight } }

    /// Forgets the peak and the latencies (between two runs).
    func resetRecords() {
        self.state.withLockedValue { state in
            state.peak = state.inFlight
            state.latencies.removeAll()
        }
    }

    /// The `p` quantile (0...1) of the latencies recorded, in milliseconds; 0 without any.
    func latencyQuantileMs(_ p: Double) -> Double {
        let sorted = self.state.withLockedValue { $0.latencies }.sorted()
        guard !sorted.isEmpty else { return 0 }
        let index = min(sorted.count - 1, Int((Double(sorted.count - 1) * p).rounded(.up)))
        return Double(sorted[index]) / 1e6
    }

    var served: Int { self.state.withLockedValue { $0.latencies.count } }

    func close() async {
        try? await self.channel.close()
    }

    /// A request arrived: it starts at once when a worker is free, else it waits for one.
    fileprivate func arrived(_ start: @escaping @Sendable () -> Void) {
        let startNow = self.state.withLockedValue { state -> Bool in
            state.inFlight += 1
            state.peak = max(state.peak, state.inFlight)
            if state.busy < self.workers {
                state.busy += 1
                return true
            }
            state.queue.append(start)
            return false
        }
        if startNow { start() }
    }

    /// A request was answered after `latency` nanoseconds: its worker takes the next waiting request.
    fileprivate func finished(latency: Int64?) {
        let next = self.state.withLockedValue { state -> (@Sendable () -> Void)? in
            state.inFlight -= 1
            if let latency { state.latencies.append(latency) }
            if state.queue.isEmpty {
                state.busy -= 1
                return nil
            }
            return state.queue.removeFirst()
        }
        next?()
    }

    private final class Handler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart

        let upstream: NIOLockedValueBox<KneeUpstream?>
        /// A request of this connection is in the upstream (queued or served).
        private var pending = false
        private var arrivedAt = NIODeadline.now()

        init(upstream: NIOLockedValueBox<KneeUpstream?>) {
            self.upstream = upstream
        }

        private var owner: KneeUpstream { self.upstream.withLockedValue { $0! } }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard case .end = self.unwrapInboundIn(data) else { return }
            self.pending = true
            self.arrivedAt = .now()
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            let eventLoop = context.eventLoop
            let service = self.owner.serviceTime
            self.owner.arrived {
                // A worker is ours now: serve for `service`, then answer.
                eventLoop.execute {
                    eventLoop.scheduleTask(in: service) {
                        let (this, context) = loopBound.value
                        this.answer(context: context)
                    }
                }
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            // A request whose client left still holds its worker until its service time is over (answer() below).
            context.fireChannelInactive()
        }

        private func answer(context: ChannelHandlerContext) {
            guard self.pending else { return }
            self.pending = false
            let latency = (NIODeadline.now() - self.arrivedAt).nanoseconds
            let active = context.channel.isActive
            self.owner.finished(latency: active ? latency : nil)
            guard active else { return }
            var headers = HTTPHeaders()
            headers.add(name: "Content-Length", value: "2")
            context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
            context.write(self.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: "ok")))), promise: nil)
            context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}
