import NIOCore
import NIOEmbedded
import Testing

@testable import SluiceProxy

/// ``HTTP2GoAwayCloser``: follows frame boundaries through whatever splits NIOHTTP2's writes have, and closes only
/// after a GOAWAY with an error code.
@Suite("HTTP/2 GOAWAY closer")
struct HTTP2GoAwayCloserTests {
    static func frame(type: UInt8, streamID: UInt8 = 0, _ payload: [UInt8]) -> [UInt8] {
        let length = payload.count
        return [UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF), type, 0, 0, 0, 0, streamID] + payload
    }

    static func goAway(code: UInt8) -> [UInt8] {
        Self.frame(type: 0x7, [0, 0, 0, 5, 0, 0, 0, code] + Array("debug".utf8))
    }

    static func channel() throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(HTTP2GoAwayCloser())
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return channel
    }

    /// Writes `bytes` cut at `cuts`, flushing each piece, until the channel is closed.
    static func write(_ channel: EmbeddedChannel, _ bytes: [UInt8], cuts: [Int]) throws {
        var start = 0
        for end in cuts + [bytes.count] where end > start && channel.isActive {
            try channel.writeAndFlush(ByteBuffer(bytes: bytes[start..<end])).wait()
            start = end
        }
    }

    @Test func gracefulGoAwayAndOtherFramesKeepTheConnection() throws {
        let channel = try Self.channel()
        // A DATA frame whose payload looks like a GOAWAY with an error code: payload, not a frame.
        let lookalike = Self.frame(type: 0x0, streamID: 1, Self.goAway(code: 11))
        let bytes = Self.frame(type: 0x4, [0, 3, 0, 0, 0, 100]) + lookalike + Self.goAway(code: 0)
        try Self.write(channel, bytes, cuts: [4, 9, 20, 30, 31, 50])
        #expect(channel.isActive)
    }

    @Test(arguments: [[], [3], [9, 16], [17], [12, 13, 14, 15, 16, 17]])
    func goAwayWithAnErrorCodeClosesOnceWritten(cuts: [Int]) throws {
        let channel = try Self.channel()
        let bytes = Self.frame(type: 0x6, [1, 2, 3, 4, 5, 6, 7, 8]) + Self.goAway(code: 11)
        let shifted = cuts.map { $0 + 17 }
        try Self.write(channel, bytes, cuts: [17] + shifted)
        #expect(!channel.isActive)
    }
}
