import Logging
import NIOCore
import NIOEmbedded
import Testing

@testable import SluiceRedis

/// Counts flushes reaching the socket end of the pipeline.
private final class FlushCounter: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer
    var flushes = 0

    func flush(context: ChannelHandlerContext) {
        self.flushes += 1
        context.flush()
    }
}

/// A ``RedisConnection`` over an `EmbeddedChannel`: the test plays the server with raw RESP.
/// Synchronous tests only: an `EmbeddedEventLoop` must stay on the thread that made it.
private struct Harness {
    let channel = EmbeddedChannel()
    let counter = FlushCounter()
    let connection: RedisConnection
    var loop: EmbeddedEventLoop { self.channel.embeddedEventLoop }

    init(commandTimeout: TimeAmount = .seconds(1)) throws {
        try self.channel.pipeline.syncOperations.addHandlers(
            self.counter,
            ByteToMessageHandler(RESPDecoder()),
            RedisChannelHandler(commandTimeout: commandTimeout, logger: quietLogger)
        )
        try self.channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 6379)).wait()
        self.connection = try RedisConnection(channel: self.channel)
    }

    /// Everything written to the "socket" so far, as text.
    func written() throws -> String {
        var out = ""
        while let part = try self.channel.readOutbound(as: ByteBuffer.self) { out += String(buffer: part) }
        return out
    }

    func reply(_ wire: String) throws {
        try self.channel.writeInbound(ByteBuffer(string: wire))
    }
}

/// The result of a future that must have completed already.
private func result<T>(_ future: EventLoopFuture<T>) -> Result<T, any Error>? {
    var result: Result<T, any Error>?
    future.assumeIsolated().whenComplete { result = $0 }
    return result
}

private func error<T>(_ future: EventLoopFuture<T>) -> RedisError? {
    guard case .failure(let error) = result(future) else { return nil }
    return error as? RedisError
}

@Suite struct RedisChannelHandlerTests {
    @Test func commandsOfOneTickLeaveInOneFlush() throws {
        let harness = try Harness()
        let replies = (0..<3).map { harness.connection.send(RedisCommand("ECHO", "\($0)")) }
        #expect(harness.counter.flushes == 0, "nothing flushed before the tick ends")
        harness.loop.run()
        #expect(harness.counter.flushes == 1)
        #expect(try harness.written() == "*2\r\n$4\r\nECHO\r\n$1\r\n0\r\n*2\r\n$4\r\nECHO\r\n$1\r\n1\r\n*2\r\n$4\r\nECHO\r\n$1\r\n2\r\n")
        // The next tick's command gets a flush of its own.
        let fourth = harness.connection.send(RedisCommand("PING"))
        harness.loop.run()
        #expect(harness.counter.flushes == 2)
        try harness.reply("$1\r\n0\r\n$1\r\n1\r\n$1\r\n2\r\n+PONG\r\n")
        #expect(try replies.map { try result($0)?.get() } == ["0", "1", "2"].map { .bulkString(ByteBuffer(string: $0)) })
        #expect(try result(fourth)?.get() == .simpleString("PONG"))
    }

    @Test func repliesAreMatchedInOrderAndErrorRepliesFail() throws {
        let harness = try Harness()
        let first = harness.connection.send(RedisCommand("GET", "a"))
        let second = harness.connection.send(RedisCommand("EVALSHA", "x", "0"))
        let third = harness.connection.send(RedisCommand("INCR", "b"))
        harness.loop.run()
        try harness.reply("$-1\r\n-NOSCRIPT No matching script. Please use EVAL.\r\n:7\r\n")
        #expect(try result(first)?.get() == .bulkString(nil))
        #expect(error(second) == .server("NOSCRIPT No matching script. Please use EVAL."))
        #expect(error(second)?.code == "NOSCRIPT")
        #expect(try result(third)?.get() == .integer(7))
    }

    @Test func repliesSplitAnywhereStillMatch() throws {
        let harness = try Harness()
        let replies = (0..<20).map { harness.connection.send(RedisCommand("INCR", "k\($0)")) }
        harness.loop.run()
        let wire = (1...20).map { ":\($0)\r\n" }.joined()
        for byte in wire.utf8 { try harness.channel.writeInbound(ByteBuffer(bytes: [byte])) }
        #expect(try replies.map { try result($0)?.get() } == (1...20).map { .integer(Int64($0)) })
    }

    @Test func pushMessagesAnswerNoCommand() throws {
        let harness = try Harness()
        let reply = harness.connection.send(RedisCommand("PING"))
        harness.loop.run()
        try harness.reply(">2\r\n+invalidate\r\n*1\r\n$1\r\nk\r\n+PONG\r\n")
        #expect(try result(reply)?.get() == .simpleString("PONG"))
    }

    @Test func aTimeoutFailsOverdueCommandsAndClosesTheConnection() throws {
        let harness = try Harness(commandTimeout: .milliseconds(100))
        let first = harness.connection.send(RedisCommand("PING"))
        harness.loop.advanceTime(by: .milliseconds(60))
        let second = harness.connection.send(RedisCommand("PING"))
        harness.loop.advanceTime(by: .milliseconds(39))
        #expect(result(first) == nil, "not yet due")
        harness.loop.advanceTime(by: .milliseconds(1))
        #expect(error(first) == .timeout)
        // Sent later, not overdue, but its reply could no longer be matched.
        guard case .unavailable = error(second) else {
            Issue.record("second: \(String(describing: result(second)))")
            return
        }
        #expect(!harness.channel.isActive)
        guard case .unavailable = error(harness.connection.send(RedisCommand("PING"))) else {
            Issue.record("a command after the close did not fail at once")
            return
        }
    }

    @Test func answeredCommandsDoNotTimeOut() throws {
        let harness = try Harness(commandTimeout: .milliseconds(100))
        for _ in 0..<5 {
            let reply = harness.connection.send(RedisCommand("PING"))
            harness.loop.advanceTime(by: .milliseconds(80))
            try harness.reply("+PONG\r\n")
            #expect(try result(reply)?.get() == .simpleString("PONG"))
        }
        harness.loop.advanceTime(by: .seconds(1))
        #expect(harness.channel.isActive)
    }

    @Test func connectionLossFailsEveryPendingCommand() throws {
        let harness = try Harness()
        let replies = (0..<3).map { _ in harness.connection.send(RedisCommand("PING")) }
        harness.loop.run()
        try harness.reply("+PONG\r\n")
        harness.channel.pipeline.fireChannelInactive()
        #expect(try result(replies[0])?.get() == .simpleString("PONG"))
        for reply in replies.dropFirst() {
            guard case .unavailable = error(reply) else {
                Issue.record("\(String(describing: result(reply)))")
                continue
            }
        }
    }

    @Test func closingFailsPendingAndLaterCommands() throws {
        let harness = try Harness()
        let pending = harness.connection.send(RedisCommand("PING"))
        harness.loop.run()
        _ = harness.connection.close()
        harness.loop.run()
        guard case .unavailable = error(pending), case .unavailable = error(harness.connection.send(RedisCommand("PING"))) else {
            Issue.record("pending or later command did not fail with .unavailable")
            return
        }
        #expect(!harness.connection.isActive)
        #expect(result(harness.connection.closeFuture) != nil)
    }

    @Test func aMalformedReplyFailsPendingCommandsAndCloses() throws {
        let harness = try Harness()
        let replies = (0..<2).map { _ in harness.connection.send(RedisCommand("PING")) }
        harness.loop.run()
        try harness.reply("?bogus\r\n")
        for reply in replies {
            guard case .protocolError = error(reply) else {
                Issue.record("\(String(describing: result(reply)))")
                continue
            }
        }
        #expect(!harness.channel.isActive)
    }

    @Test func aReplyNobodyAskedForCloses() throws {
        let harness = try Harness()
        try harness.reply("+PONG\r\n")
        #expect(!harness.channel.isActive)
    }
}
