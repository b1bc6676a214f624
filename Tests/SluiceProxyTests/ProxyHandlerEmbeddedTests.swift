import SluiceAdmin
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import SluiceConfig
import Testing

@testable import SluiceProxy

/// The client pipeline on an `EmbeddedChannel` (swift-nio's NIOHTTP1Tests style): local
/// answers and timers, driven byte by byte and with a virtual clock. Nothing here reaches an
/// upstream.
@Suite("ProxyHandler on EmbeddedChannel")
struct ProxyHandlerEmbeddedTests {
    private func makeChannel(_ configure: (inout SluiceConfiguration) -> Void = { _ in }) throws -> EmbeddedChannel {
        var configuration = SluiceConfiguration()
        configuration.server.accessLog = .off
        configuration.server.timeouts.headerRead = .milliseconds(500)
        configuration.server.timeouts.idle = .seconds(2)
        configure(&configuration)
        var logger = Logger(label: "embedded")
        logger.logLevel = .critical
        let shared = ProxyShared(
            snapshot: ProxySnapshot(configuration: configuration, gate: OpenGate()),
            logger: logger,
            accessLog: AccessLog(.off),
            metrics: SluiceMetrics()
        )
        let channel = EmbeddedChannel()
        try ProxyServer.configureClientPipeline(
            channel.pipeline.syncOperations,
            shared: shared,
            pool: UpstreamPool(eventLoop: channel.embeddedEventLoop),
            maxHeaderBytes: configuration.server.maxHeaderBytes
        )
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40000)).wait()
        return channel
    }

    /// Everything written to the socket so far, as text.
    private func written(_ channel: EmbeddedChannel) throws -> String {
        var text = ""
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) {
            text += String(buffer: buffer)
        }
        return text
    }

    private func feed(_ channel: EmbeddedChannel, _ text: String) throws {
        try channel.writeInbound(ByteBuffer(string: text))
    }

    @Test func parserErrorIsAnswered400ThenClosed() throws {
        let channel = try self.makeChannel()
        // A parse error surfaces as errorCaught; the handler answers it, so nothing is rethrown.
        try? self.feed(channel, "NOT HTTP AT ALL\r\n\r\n")
        let out = try self.written(channel)
        #expect(out.hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
        #expect(out.contains("\r\nConnection: close\r\n"))
        #expect(out.hasSuffix("\r\n\r\n400 Bad Request\n"))
        #expect(!channel.isActive)
    }

    @Test func parserErrorFedByteByByte() throws {
        let channel = try self.makeChannel()
        for byte in "GET / HTTP/1.1\r\nBad Header\r\n\r\n".utf8 {
            try? channel.writeInbound(ByteBuffer(bytes: [byte]))
            if !channel.isActive { break }
        }
        #expect(try self.written(channel).hasPrefix("HTTP/1.1 400 "))
        #expect(!channel.isActive)
    }

    @Test func headerOverflowIsAnswered431() throws {
        let channel = try self.makeChannel { $0.server.maxHeaderBytes = 1024 }
        try? self.feed(channel, "GET / HTTP/1.1\r\nHost: t\r\nX-Big: \(String(repeating: "a", count: 2000))\r\n\r\n")
        let out = try self.written(channel)
        #expect(out.hasPrefix("HTTP/1.1 431 Request Header Fields Too Large\r\n"))
        #expect(!channel.isActive)
    }

    @Test func dataAfterAParserErrorDoesNotLoseTheAnswer() throws {
        let channel = try self.makeChannel()
        // More bytes keep arriving after the error (the decoder is then in its error state).
        try? self.feed(channel, "BROKEN\r\n\r\n")
        try? self.feed(channel, "more garbage\r\n")
        #expect(try self.written(channel).hasPrefix("HTTP/1.1 400 "))
    }

    @Test func missingHostIsAnswered400() throws {
        let channel = try self.makeChannel()
        try self.feed(channel, "GET / HTTP/1.1\r\n\r\n")
        let out = try self.written(channel)
        #expect(out.hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
        #expect(out.lowercased().contains("connection: close"))
        #expect(!channel.isActive)
    }

    @Test func declaredBodyTooLargeIsAnswered413() throws {
        let channel = try self.makeChannel { $0.server.maxBodyBytes = 10 }
        try self.feed(channel, "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\n")
        #expect(try self.written(channel).hasPrefix("HTTP/1.1 413 Payload Too Large\r\n"))
        #expect(!channel.isActive)
    }

    @Test func partialHeadTimesOutWith408() throws {
        let channel = try self.makeChannel()
        try self.feed(channel, "GET /slow")
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(499))
        #expect(try self.written(channel).isEmpty)
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(2))
        #expect(try self.written(channel).hasPrefix("HTTP/1.1 408 Request Timeout\r\n"))
        #expect(!channel.isActive)
    }

    @Test func silentConnectionIsClosedWithoutAnswer() throws {
        let channel = try self.makeChannel()
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(501))
        #expect(try self.written(channel).isEmpty)
        #expect(!channel.isActive)
    }
}

/// `TunnelHandler.join` on two embedded channels sharing one loop.
@Suite("TunnelHandler on EmbeddedChannel")
struct TunnelHandlerEmbeddedTests {
    private func makePair() throws -> (client: EmbeddedChannel, upstream: EmbeddedChannel) {
        let loop = EmbeddedEventLoop()
        var configuration = SluiceConfiguration()
        configuration.server.accessLog = .off
        let shared = ProxyShared(
            snapshot: ProxySnapshot(configuration: configuration, gate: OpenGate()),
            logger: Logger(label: "embedded"),
            accessLog: AccessLog(.off),
            metrics: SluiceMetrics()
        )
        let client = EmbeddedChannel(loop: loop)
        try ProxyServer.configureClientPipeline(
            client.pipeline.syncOperations,
            shared: shared,
            pool: UpstreamPool(eventLoop: loop),
            maxHeaderBytes: 16384
        )
        let upstream = EmbeddedChannel(loop: loop)
        var encoderConfiguration = HTTPRequestEncoder.Configuration()
        encoderConfiguration.automaticallySetFramingHeaders = false
        try upstream.pipeline.syncOperations.addHTTPClientHandlers(
            leftOverBytesStrategy: .forwardBytes,
            enableOutboundHeaderValidation: false,  // as UpstreamPool.connect
            encoderConfiguration: encoderConfiguration
        )
        try upstream.pipeline.syncOperations.addHandler(UpstreamHandler())
        try client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try upstream.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 2)).wait()
        try TunnelHandler.join(client: client, upstream: upstream, idleTimeout: .hours(1))
        loop.run()
        return (client, upstream)
    }

    @Test func bytesFlowBothWays() throws {
        let (client, upstream) = try self.makePair()
        try client.writeInbound(ByteBuffer(string: "to upstream"))
        #expect(try upstream.readOutbound(as: ByteBuffer.self).map { String(buffer: $0) } == "to upstream")
        try upstream.writeInbound(ByteBuffer(string: "to client"))
        #expect(try client.readOutbound(as: ByteBuffer.self).map { String(buffer: $0) } == "to client")
        // No HTTP handler is left on either side.
        #expect((try? client.pipeline.syncOperations.handler(type: ProxyHandler.self)) == nil)
        #expect((try? upstream.pipeline.syncOperations.handler(type: UpstreamHandler.self)) == nil)
        _ = try? client.finish()
        _ = try? upstream.finish()
    }

    @Test func closingOneSideClosesTheOther() throws {
        let (client, upstream) = try self.makePair()
        try client.close().wait()
        #expect(!upstream.isActive)
        _ = try? upstream.finish()
    }

    @Test func closingUpstreamClosesClient() throws {
        let (client, upstream) = try self.makePair()
        try upstream.close().wait()
        #expect(!client.isActive)
        _ = try? client.finish()
    }
}
