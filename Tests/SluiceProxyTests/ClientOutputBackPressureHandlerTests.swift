import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import SluiceProxy

/// ``ClientOutputBackPressureHandler`` on an `EmbeddedChannel`, between a read counter and a recorder.
@Suite("Client output back-pressure handler")
struct ClientOutputBackPressureHandlerTests {
    /// Counts the `read()` calls that get past the handler (towards the socket).
    final class ReadCounter: ChannelOutboundHandler {
        typealias OutboundIn = Any
        var reads = 0

        func read(context: ChannelHandlerContext) {
            self.reads += 1
            context.read()
        }
    }

    /// Records what reaches the end of the pipeline.
    final class Recorder: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        var events: [String] = []

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch self.unwrapInboundIn(data) {
            case .head(let head): self.events.append("head \(head.uri)")
            case .body: self.events.append("body")
            case .end: self.events.append("end")
            }
        }

        func channelReadComplete(context: ChannelHandlerContext) {
            self.events.append("readComplete")
        }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if let event = event as? ChannelEvent, case .inputClosed = event { self.events.append("inputClosed") }
        }

        func errorCaught(context: ChannelHandlerContext, error: Error) {
            self.events.append("error")
        }
    }

    static func makeChannel() throws -> (EmbeddedChannel, ReadCounter, Recorder) {
        let counter = ReadCounter()
        let recorder = Recorder()
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(counter)
        try channel.pipeline.syncOperations.addHandler(ClientOutputBackPressureHandler())
        try channel.pipeline.syncOperations.addHandler(recorder)
        return (channel, counter, recorder)
    }

    static func head(_ uri: String) -> HTTPServerRequestPart {
        .head(HTTPRequestHead(version: .http1_1, method: .GET, uri: uri))
    }

    static func setWritable(_ channel: EmbeddedChannel, _ writable: Bool) {
        channel.isWritable = writable
        channel.pipeline.fireChannelWritabilityChanged()
    }

    @Test func requestArrivingWhileUnwritableWaitsWithWhatFollowsIt() throws {
        let (channel, _, recorder) = try Self.makeChannel()
        Self.setWritable(channel, false)
        try channel.writeInbound(Self.head("/a"))
        try channel.writeInbound(HTTPServerRequestPart.end(nil))
        channel.pipeline.fireErrorCaught(HTTPParserError.invalidVersion)
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(recorder.events.isEmpty)

        Self.setWritable(channel, true)
        #expect(recorder.events == ["head /a", "end", "error", "readComplete", "inputClosed"])
        _ = try channel.finish()
    }

    @Test func readsWaitBetweenRequestsWhileUnwritable() throws {
        let (channel, counter, recorder) = try Self.makeChannel()
        channel.read()
        #expect(counter.reads == 1)
        Self.setWritable(channel, false)
        channel.read()
        #expect(counter.reads == 1)
        Self.setWritable(channel, true)
        #expect(counter.reads == 2)
        #expect(recorder.events.isEmpty)
        _ = try channel.finish()
    }

    @Test func aRequestLetThroughStreamsItsBodyWhileUnwritable() throws {
        let (channel, counter, recorder) = try Self.makeChannel()
        try channel.writeInbound(Self.head("/upload"))
        Self.setWritable(channel, false)
        channel.read()
        #expect(counter.reads == 1)
        try channel.writeInbound(HTTPServerRequestPart.body(ByteBuffer(string: "x")))
        try channel.writeInbound(HTTPServerRequestPart.end(nil))
        #expect(recorder.events == ["head /upload", "readComplete", "body", "readComplete", "end", "readComplete"])
        // Between requests again: reads wait.
        channel.read()
        #expect(counter.reads == 1)
        _ = try channel.finish()
    }

    @Test func aReleasedRequestThatFillsTheOutputHoldsTheNextOne() throws {
        let (channel, _, recorder) = try Self.makeChannel()
        Self.setWritable(channel, false)
        try channel.writeInbound(Self.head("/a"))
        try channel.writeInbound(HTTPServerRequestPart.end(nil))
        try channel.writeInbound(Self.head("/b"))
        // `/a` is answered (its end was let through) and its answer blocks the output again before `/b`.
        channel.isWritable = true
        let blocker = BlockAfterEnd(channel: channel)
        try channel.pipeline.syncOperations.addHandler(blocker, position: .before(recorder))
        channel.pipeline.fireChannelWritabilityChanged()
        #expect(recorder.events == ["head /a", "end", "readComplete"])
        Self.setWritable(channel, true)
        #expect(recorder.events == ["head /a", "end", "readComplete", "head /b", "readComplete"])
        _ = try channel.finish()
    }

    /// Makes the channel unwritable when a request end passes (as a large answer to it would).
    final class BlockAfterEnd: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias InboundOut = HTTPServerRequestPart
        let channel: EmbeddedChannel

        init(channel: EmbeddedChannel) {
            self.channel = channel
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            if case .end = self.unwrapInboundIn(data) { self.channel.isWritable = false }
            context.fireChannelRead(data)
        }
    }
}
