import Logging
import NIOCore
import NIOHTTP2
import SluiceConfig

/// The HTTP/2 side of a client connection (issue 13), added by ``ProxyServer/configureClientPipeline`` after TLS
/// negotiated `h2` through ALPN, or after ``H2CPrefaceHandler`` saw the prior-knowledge preface.
///
/// Connection pipeline: ``HTTP2GoAwayCloser``, `NIOHTTP2Handler` (framing, HPACK, flow control, stream state, and the
/// flood guards below), then `NIOHTTP2ServerConnectionManagementHandler` (graceful shutdown: on
/// ``ChannelShouldQuiesceEvent`` a GOAWAY, a PING round trip, a second GOAWAY with the last stream taken, streams in
/// flight finish, then the close), ``HTTP2InputClosedHandler`` (a client that closed its side: closed once its streams
/// are done), then ``HTTP2ConnectionErrorHandler``. The idle timeout is a periodic check of
/// ``HTTP2StreamActivity`` that sends the same quiescing event. Each stream's channel gets an ``HTTP2StreamBridgeHandler`` and a
/// ``ProxyConnectionHandler``: every stream is one request through the HTTP/1.1 request path.
///
/// Guards, all NIOHTTP2's own with the bounds set in ``connectionConfiguration(_:)`` and ``streamConfiguration()``
/// (counted per connection; NIOHTTP2 sends a GOAWAY with an error code when one is exceeded, and
/// ``HTTP2GoAwayCloser`` closes the connection once it is written):
/// - `SETTINGS_MAX_CONCURRENT_STREAMS` = `server.http2_max_concurrent_streams` (default 100), enforced by NIOHTTP2;
/// - rapid reset (CVE-2023-44487): more than 200 RST_STREAM frames from the client within 30 s;
/// - stream errors: more than 200 within 30 s;
/// - CONTINUATION flood: more than 5 CONTINUATION frames in a row, and a header block (HPACK bytes) over
///   `SETTINGS_MAX_HEADER_LIST_SIZE` (NIOHTTP2 applies the size Sluice offers once the client acknowledges its
///   SETTINGS; before that, its default of 16 KiB);
/// - PING / SETTINGS / PRIORITY floods: more than 200 such frames within 30 s, and at most 10,000 control frames
///   queued for a client that does not read its answers;
/// - empty DATA frames: at most one in a row; "glitches" (suspicious frames of any kind): at most 200.
enum HTTP2ConnectionSetup {
    /// What the HTTP/2 pipeline needs from the configuration, read when the connection is accepted.
    struct Configuration {
        var maxConcurrentStreams: Int
        var maxHeaderBytes: Int
        var idleTimeout: TimeAmount
        var shutdownTimeout: TimeAmount

        init(_ server: ServerConfiguration) {
            self.maxConcurrentStreams = server.http2MaxConcurrentStreams
            self.maxHeaderBytes = server.maxHeaderBytes
            self.idleTimeout = TimeAmount(server.timeouts.idle)
            self.shutdownTimeout = TimeAmount(server.timeouts.shutdown)
        }

        /// The header list size offered: above `max_header_bytes` (HPACK counts 32 bytes more per field), so a
        /// request whose head is too large gets a 431 on its stream rather than a connection error.
        var maxHeaderListSize: Int {
            2 * self.maxHeaderBytes + 32 * 128
        }
    }

    /// NIOHTTP2's connection settings and flood guards. The guards are set here, not left to NIOHTTP2's defaults, so
    /// the bounds docs/behaviour.md §3e promises stay Sluice's own if a NIOHTTP2 release changes its defaults.
    static func connectionConfiguration(_ configuration: Configuration) -> NIOHTTP2Handler.ConnectionConfiguration {
        var connection = NIOHTTP2Handler.ConnectionConfiguration()
        connection.initialSettings = [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: configuration.maxConcurrentStreams),
            HTTP2Setting(parameter: .maxHeaderListSize, value: configuration.maxHeaderListSize),
        ]
        // CONTINUATION flood (CVE-2024-27316): the header list size above bounds the bytes of a header block, this
        // the frames (empty CONTINUATIONs add no bytes).
        connection.maximumSequentialContinuationFrames = 5
        // PING / SETTINGS / PRIORITY floods, and their answers queued for a client that does not read.
        connection.controlFrameRateLimit.maximumCount = 200
        connection.controlFrameRateLimit.windowLength = .seconds(30)
        connection.maximumBufferedControlFrames = 10_000
        connection.maximumSequentialEmptyDataFrames = 1
        connection.maximumConnectionGlitches = 200
        return connection
    }

    /// NIOHTTP2's per-stream settings: flow-control watermarks and the rapid-reset and stream-error guards.
    static func streamConfiguration() -> NIOHTTP2Handler.StreamConfiguration {
        var stream = NIOHTTP2Handler.StreamConfiguration()
        // A stream is unwritable (and its upstream not read) past 64 KiB waiting for the client's flow control.
        stream.outboundBufferSizeHighWatermark = 64 * 1024
        stream.outboundBufferSizeLowWatermark = 32 * 1024
        // Rapid reset (CVE-2023-44487) and stream errors: 200 within 30 s.
        stream.streamResetFrameRateLimit.maximumCount = 200
        stream.streamResetFrameRateLimit.windowLength = .seconds(30)
        stream.streamErrorRateLimit.maximumCount = 200
        stream.streamErrorRateLimit.windowLength = .seconds(30)
        return stream
    }

    /// Adds the HTTP/2 handlers at the end of `pipeline` (the channel is active: NIOHTTP2 sends its SETTINGS now).
    static func configure(
        _ pipeline: ChannelPipeline.SynchronousOperations,
        channel: any Channel,
        configuration: Configuration,
        shared: ProxyShared,
        pool: UpstreamPool,
        overTLS: Bool
    ) throws {
        let management = NIOHTTP2ServerConnectionManagementHandler(
            eventLoop: channel.eventLoop,
            configuration: .init(
                maxIdleTime: nil,
                maxAge: nil,
                maxGraceTime: configuration.shutdownTimeout,
                keepalive: nil
            )
        )
        let connection = Self.connectionConfiguration(configuration)
        let stream = Self.streamConfiguration()
        let maxHeaderBytes = configuration.maxHeaderBytes
        // Streams run on the connection's loop.
        let boundPool = NIOLoopBound(pool, eventLoop: channel.eventLoop)
        // The connection counts once in the open-connections gauge; its streams do not.
        shared.metrics.connectionOpened()
        channel.closeFuture.whenComplete { _ in shared.metrics.connectionClosed() }
        // Idle timeout without a timer per stream: NIOHTTP2's own idle timer is cancelled on every new stream, and a
        // cancel is a linear search of the loop's timer heap (11 % of the CPU of an h2load run). A check every
        // `idle` closes, with the graceful GOAWAY, a connection that had no stream open and no stream opened or
        // closed since the previous check: between one and two `idle` periods after its last stream.
        let activity = NIOLoopBoundBox(HTTP2StreamActivity(), eventLoop: channel.eventLoop)
        let idleCheck = channel.eventLoop.scheduleRepeatedTask(
            initialDelay: configuration.idleTimeout,
            delay: configuration.idleTimeout
        ) { _ in
            if activity.value.isIdleSinceLastCheck() {
                channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
            }
        }
        channel.closeFuture.whenComplete { _ in idleCheck.cancel() }
        try pipeline.addHandler(HTTP2GoAwayCloser())
        _ = try pipeline.configureHTTP2Pipeline(
            mode: .server,
            connectionConfiguration: connection,
            streamConfiguration: stream,
            streamDelegate: management.http2StreamDelegate
        ) { streamChannel in
            activity.value.opened()
            streamChannel.closeFuture.whenComplete { _ in
                if activity.value.closed() { HTTP2InputClosedHandler.closeGracefully(channel) }
            }
            return streamChannel.eventLoop.makeCompletedFuture {
                try streamChannel.pipeline.syncOperations.addHandler(HTTP2StreamBridgeHandler(maxHeadBytes: maxHeaderBytes))
                try streamChannel.pipeline.syncOperations.addHandler(
                    ProxyConnectionHandler(
                        shared: shared,
                        pool: boundPool.value,
                        maxHeaderBytes: maxHeaderBytes,
                        overTLS: overTLS,
                        httpVersion: .http2
                    )
                )
            }
        }
        try pipeline.addHandler(management)
        try pipeline.addHandler(HTTP2InputClosedHandler(activity: activity))
        try pipeline.addHandler(HTTP2ConnectionErrorHandler(logger: shared.logger))
    }
}

/// Streams open on an HTTP/2 connection, whether any opened or closed since the last idle check, and whether the
/// client closed its side (``HTTP2InputClosedHandler``).
struct HTTP2StreamActivity {
    private var open = 0
    private var changed = false
    private var clientInputClosed = false
    private var closing = false

    mutating func opened() {
        self.open += 1
        self.changed = true
    }

    /// A stream closed; returns whether the connection is to be closed now: the client's input had closed and this
    /// was the last stream.
    mutating func closed() -> Bool {
        self.open -= 1
        self.changed = true
        return self.closeIfDone()
    }

    /// The client closed its side; returns whether the connection is to be closed now (no stream open).
    mutating func inputClosed() -> Bool {
        self.clientInputClosed = true
        return self.closeIfDone()
    }

    private mutating func closeIfDone() -> Bool {
        guard self.clientInputClosed, self.open == 0, !self.closing else { return false }
        self.closing = true
        return true
    }

    /// No stream open, none opened or closed since the previous call.
    mutating func isIdleSinceLastCheck() -> Bool {
        defer { self.changed = false }
        return self.open == 0 && !self.changed
    }
}

/// Last in an HTTP/2 connection's pipeline: takes the root stream's frames (NIOHTTP2 has acted on them) and logs
/// errors. NIOHTTP2 reports stream errors and connection errors alike through `errorCaught`; a stream error must not
/// close the connection, so the close after a connection error is left to ``HTTP2GoAwayCloser``.
final class HTTP2ConnectionErrorHandler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame

    private let logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Root-stream frames (SETTINGS, PING, GOAWAY, WINDOW_UPDATE): NIOHTTP2 has acted on them already.
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        self.logger.debug("HTTP/2 error", metadata: ["error": "\(error)"])
        if error is IOError || error is ChannelError {
            context.close(promise: nil)
        }
    }
}

/// Between the socket (or TLS) and `NIOHTTP2Handler`: follows the frames NIOHTTP2 writes and closes the connection
/// once a GOAWAY with an error code is on the wire. That GOAWAY is how NIOHTTP2 ends a connection for a connection
/// error, a tripped flood guard among them (rapid reset, CONTINUATION, PING/SETTINGS floods), and it leaves the
/// close to the pipeline. A graceful GOAWAY (`NO_ERROR`, at shutdown) is left to the management handler.
final class HTTP2GoAwayCloser: ChannelOutboundHandler {
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData

    /// Bytes of the current frame still to skip (its payload), or of its 9-byte header still to read.
    private var payloadRemaining = 0
    private var header: [UInt8] = []
    private var goAwayCode: [UInt8]?
    private var closing = false

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let data = self.unwrapOutboundIn(data)
        var sawErrorGoAway = false
        switch data {
        case .byteBuffer(let buffer):
            buffer.withUnsafeReadableBytes { bytes in
                sawErrorGoAway = self.scan(bytes)
            }
        case .fileRegion(let region):
            // Never written by NIOHTTP2 for Sluice's streams; skipped as payload.
            self.payloadRemaining = max(0, self.payloadRemaining - region.readableBytes)
        }
        guard sawErrorGoAway, !self.closing else {
            context.write(self.wrapOutboundOut(data), promise: promise)
            return
        }
        self.closing = true
        let written = context.eventLoop.makePromise(of: Void.self)
        if let promise { written.futureResult.cascade(to: promise) }
        context.writeAndFlush(self.wrapOutboundOut(data), promise: written)
        let loopBoundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        written.futureResult.whenComplete { _ in loopBoundContext.value.close(promise: nil) }
    }

    /// Follows frame boundaries through `bytes`; returns whether a GOAWAY with a non-zero error code completed.
    private func scan(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var found = false
        var i = 0
        while i < bytes.count {
            if self.payloadRemaining > 0 {
                if var code = self.goAwayCode {
                    // GOAWAY payload: last stream ID (4), error code (4), debug data.
                    let take = min(self.payloadRemaining, bytes.count - i)
                    for j in 0..<take where code.count < 8 { code.append(bytes[i + j]) }
                    self.goAwayCode = code
                    self.payloadRemaining -= take
                    i += take
                    if code.count == 8 {
                        if code[4] != 0 || code[5] != 0 || code[6] != 0 || code[7] != 0 { found = true }
                        if self.payloadRemaining == 0 { self.goAwayCode = nil }
                    }
                    if self.payloadRemaining == 0 { self.goAwayCode = nil }
                    continue
                }
                let take = min(self.payloadRemaining, bytes.count - i)
                self.payloadRemaining -= take
                i += take
                continue
            }
            self.header.append(bytes[i])
            i += 1
            if self.header.count == 9 {
                let length = Int(self.header[0]) << 16 | Int(self.header[1]) << 8 | Int(self.header[2])
                let isGoAway = self.header[3] == 0x7
                self.header.removeAll(keepingCapacity: true)
                self.payloadRemaining = length
                self.goAwayCode = isGoAway && length >= 8 ? [] : nil
            }
        }
        return found
    }
}
