import Logging
import NIOCore
import NIOEmbedded
import SluiceAdmin
import SluiceConfig
import Testing

@testable import SluiceProxy

/// ``ChunkedFramingGuard`` on an `EmbeddedChannel`: what it passes on, and what it does on a refusal.
@Suite("ChunkedFramingGuard on EmbeddedChannel")
struct ChunkedFramingGuardTests {
    private func makeChannel(maxBodyBytes: Int = 0) throws -> EmbeddedChannel {
        var configuration = SluiceConfiguration()
        configuration.server.maxBodyBytes = maxBodyBytes
        let shared = ProxyShared(
            snapshot: ProxySnapshot(configuration: configuration, gate: OpenGate()),
            logger: Logger(label: "guard"),
            accessLog: AccessLog(.off),
            metrics: SluiceMetrics()
        )
        return EmbeddedChannel(handler: ChunkedFramingGuard(shared: shared, maxHeaderBytes: 1024))
    }

    private static let chunkedHead = "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"

    @Test func passesTheSameBufferOn() throws {
        let channel = try self.makeChannel()
        let buffer = ByteBuffer(string: Self.chunkedHead + "3;a=b\r\nabc\r\n0\r\nX: y\r\n\r\n")
        try channel.writeInbound(buffer)
        let forwarded = try #require(try channel.readInbound(as: ByteBuffer.self))
        #expect(forwarded == buffer)
        // Not a copy: the same bytes in memory.
        let original = buffer.withUnsafeReadableBytes { $0.baseAddress }
        #expect(forwarded.withUnsafeReadableBytes { $0.baseAddress } == original)
        #expect(try channel.finish().isClean)
    }

    @Test func refusalPassesOnTheBytesBeforeItThenFiresItsErrorAndDropsTheRest() throws {
        let channel = try self.makeChannel()
        let accepted = "GET / HTTP/1.1\r\nHost: t\r\n\r\n" + Self.chunkedHead + "1;" + String(repeating: "e", count: 4094)
        #expect(throws: ChunkedFramingError(violation: .chunkLineTooLong, request: 2)) {
            try channel.writeInbound(ByteBuffer(string: accepted + "e\r\na\r\n0\r\n\r\n"))
        }
        let forwarded = try #require(try channel.readInbound(as: ByteBuffer.self))
        #expect(String(buffer: forwarded) == accepted)
        // Nothing more reaches the decoder, and no second error is fired.
        try channel.writeInbound(ByteBuffer(string: "GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"))
        #expect(try channel.readInbound(as: ByteBuffer.self) == nil)
        _ = try? channel.finish()
    }

    @Test func statusOfEachRefusal() throws {
        #expect(ChunkedFramingError(violation: .chunkLineTooLong, request: 1).status == .badRequest)
        #expect(ChunkedFramingError(violation: .tooManyExtensionBytes, request: 1).status == .badRequest)
        #expect(ChunkedFramingError(violation: .bodyTooLarge, request: 1).status == .payloadTooLarge)
        #expect(ChunkedFramingError(violation: .trailersTooLarge, request: 1).status == .requestHeaderFieldsTooLarge)
    }

    @Test func maxBodyBytesIsReadWhenAChunkedHeadEnds() throws {
        let channel = try self.makeChannel(maxBodyBytes: 10)
        #expect(throws: ChunkedFramingError(violation: .bodyTooLarge, request: 1)) {
            try channel.writeInbound(ByteBuffer(string: Self.chunkedHead + "8;abcd\r\n12345678\r\n0\r\n\r\n"))
        }
        _ = try? channel.finish()
    }

    @Test func upgradedStreamPassesThroughUnscanned() throws {
        let channel = try self.makeChannel()
        try channel.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n"))
        let tunnel = ByteBuffer(string: Self.chunkedHead + "1;" + String(repeating: "e", count: 10_000) + "\r\n")
        try channel.writeInbound(tunnel)
        _ = try channel.readInbound(as: ByteBuffer.self)
        #expect(try channel.readInbound(as: ByteBuffer.self) == tunnel)
        #expect(try channel.finish().isClean)
    }
}
