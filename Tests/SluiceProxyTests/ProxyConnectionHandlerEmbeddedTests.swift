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
@Suite("ProxyConnectionHandler on EmbeddedChannel")
struct ProxyConnectionHandlerEmbeddedTests {
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
            channel: channel,
            shared: shared,
            pool: UpstreamPool(eventLoop: channel.embeddedEventLoop),
            server: configuration.server
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
            _ = try? channel.writeInbound(ByteBuffer(bytes: [byte]))
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
        // More bytes keep arriving after the error.
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
