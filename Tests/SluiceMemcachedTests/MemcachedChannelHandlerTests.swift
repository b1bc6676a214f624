import Logging
import NIOCore
import NIOEmbedded
import Testing

@testable import SluiceMemcached

/// Counts flushes reaching the socket end of the pipeline.
private final class FlushCounter: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer
    var flushes = 0

    func flush(context: ChannelHandlerContext) {
        self.flushes += 1
        context.flush()
    }
}

/// A ``MemcachedConnection`` over an `EmbeddedChannel`: the test plays the server with raw meta-protocol bytes.
/// Synchronous tests only: an `EmbeddedEventLoop` must stay on the thread that made it.
private struct Harness {
    let channel = EmbeddedChannel()
    let counter = FlushCounter()
    let connection: MemcachedConnection
    var loop: EmbeddedEventLoop { self.channel.embeddedEventLoop }

    init(commandTimeout: TimeAmount = .seconds(1)) throws {
        try self.channel.pipeline.syncOperations.addHandlers(
            self.counter,
            MemcachedChannelHandler(commandTimeout: commandTimeout, logger: quietLogger)
        )
        try self.channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 11211)).wait()
        self.connection = try MemcachedConnection(channel: self.channel)
    }

    /// Everything written to the "socket" so far, as text.
    func written() throws -> String {
        var out = ""
        while let part = try self.channel.readOutbound(as: ByteBuffer.self) { out += String(buffer: part) }
        return out
    }

    /// Bytes from the "server"; a decoding error closes the channel, which is what the tests look at.
    func reply(_ wire: String) {
        _ = try? self.channel.writeInbound(ByteBuffer(string: wire))
    }
}

/// The result of a future that must have completed already.
private func result<T>(_ future: EventLoopFuture<T>) -> Result<T, any Error>? {
    var result: Result<T, any Error>?
    future.assumeIsolated().whenComplete { result = $0 }
    return result
}

private func error<T>(_ future: EventLoopFuture<T>) -> MemcachedError? {
    guard case .failure(let error) = result(future) else { return nil }
    return error as? MemcachedError
}

private func reply(_ future: EventLoopFuture<MemcachedMetaReply>) -> MemcachedMetaReply? {
    guard case .success(let reply) = result(future) else { return nil }
    return reply
}

private func isProtocolError(_ error: MemcachedError?) -> Bool {
    if case .protocolError = error { return true }
    return false
}

@Suite struct MemcachedChannelHandlerTests {
    @Test func commandsOfOneTickLeaveInOneWriteWithTheirOwnTokens() throws {
        let harness = try Harness()
        let replies = [
            harness.connection.send(MemcachedCommand(.arithmetic, key: "a", flags: ["N61", "J1", "D1", "v"])),
            harness.connection.send(MemcachedCommand(.get, key: "b", flags: ["v", "c"])),
            harness.connection.send(.noop),
        ]
        #expect(harness.counter.flushes == 0, "nothing flushed before the tick ends")
        harness.loop.run()
        #expect(harness.counter.flushes == 1)
        #expect(try harness.written() == "ma a N61 J1 D1 v O1\r\nmg b v c O2\r\nmn\r\n")
        harness.reply("VA 1 O1\r\n1\r\nEN O2\r\nMN\r\n")
        #expect(reply(replies[0])?.number == 1)
        #expect(reply(replies[1])?.status == .miss)
        #expect(reply(replies[2])?.status == .noop)
        // The next tick's command gets the next token and a write of its own.
        let fourth = harness.connection.send(MemcachedCommand(.delete, key: "a"))
        harness.loop.run()
        #expect(try harness.written() == "md a O3\r\n")
        #expect(harness.counter.flushes == 2)
        harness.reply("HD O3\r\n")
        #expect(reply(fourth)?.status == .done)
        #expect(harness.channel.isActive)
    }

    @Test func repliesSplitByteByByteAreMatched() throws {
        let harness = try Harness()
        let first = harness.connection.send(MemcachedCommand(.get, key: "a", flags: ["v", "c"]))
        let second = harness.connection.send(MemcachedCommand(.get, key: "b", flags: ["v"]))
        harness.loop.run()
        for byte in "VA 3 c77 O1\r\nabc\r\nVA 0 O2\r\n\r\n".utf8 {
            #expect(result(second) == nil)
            harness.reply(String(decoding: [byte], as: UTF8.self))
        }
        #expect(reply(first) == MemcachedMetaReply(status: .value, opaque: 1, cas: 77, value: ByteBuffer(string: "abc")))
        #expect(reply(second) == MemcachedMetaReply(status: .value, opaque: 2, value: ByteBuffer(string: "")))
    }

    /// A reply carrying another command's token: the connection is closed and every command on it fails.
    @Test(arguments: ["HD O2\r\n", "HD\r\n", "MN\r\n", "HD O9\r\n"])
    func anUnexpectedTokenIsADesync(_ wire: String) throws {
        let harness = try Harness()
        let first = harness.connection.send(MemcachedCommand(.get, key: "a", flags: ["v"]))
        let second = harness.connection.send(MemcachedCommand(.get, key: "b", flags: ["v"]))
        harness.loop.run()
        harness.reply(wire)
        harness.loop.run()
        #expect(isProtocolError(error(first)))
        #expect(isProtocolError(error(second)))
        #expect(!harness.channel.isActive)
        // Later commands fail at once.
        let later = harness.connection.send(MemcachedCommand(.get, key: "c"))
        #expect(error(later) == .unavailable("connection closed"))
    }

    @Test func aReplyNobodyWaitsForClosesTheConnection() throws {
        let harness = try Harness()
        harness.reply("HD O1\r\n")
        harness.loop.run()
        #expect(!harness.channel.isActive)
    }

    @Test func anMNMustAnswerAnMN() throws {
        let harness = try Harness()
        let noop = harness.connection.send(.noop)
        harness.loop.run()
        harness.reply("HD O1\r\n")
        #expect(isProtocolError(error(noop)))
        #expect(!harness.channel.isActive)
    }

    @Test func clientErrorFailsTheCommandAndClosesTheConnection() throws {
        let harness = try Harness()
        let first = harness.connection.send(MemcachedCommand(.get, key: "a"))
        let second = harness.connection.send(MemcachedCommand(.get, key: "b"))
        harness.loop.run()
        harness.reply("CLIENT_ERROR bad command line format\r\n")
        harness.loop.run()
        #expect(error(first) == .server("CLIENT_ERROR bad command line format"))
        #expect(error(second) == .unavailable("connection closed after CLIENT_ERROR bad command line format"))
        #expect(!harness.channel.isActive)
    }

    @Test func errorFailsTheCommandAndClosesTheConnection() throws {
        let harness = try Harness()
        let first = harness.connection.send(MemcachedCommand(.get, key: "a"))
        harness.loop.run()
        harness.reply("ERROR\r\n")
        harness.loop.run()
        #expect(error(first) == .server("ERROR"))
        #expect(!harness.channel.isActive)
    }

    @Test func serverErrorFailsOnlyItsCommand() throws {
        let harness = try Harness()
        let first = harness.connection.send(MemcachedCommand(.set, key: "a", value: ByteBuffer(string: "x")))
        let second = harness.connection.send(MemcachedCommand(.get, key: "a"))
        harness.loop.run()
        harness.reply("SERVER_ERROR out of memory storing object\r\nEN O2\r\n")
        #expect(error(first) == .server("SERVER_ERROR out of memory storing object"))
        #expect(reply(second)?.status == .miss)
        #expect(harness.channel.isActive)
    }

    @Test func garbageFailsEverythingPendingAndCloses() throws {
        let harness = try Harness()
        let first = harness.connection.send(MemcachedCommand(.get, key: "a"))
        let second = harness.connection.send(MemcachedCommand(.get, key: "b"))
        harness.loop.run()
        harness.reply("HD O1\r\n<html>")
        harness.loop.run()
        #expect(reply(first)?.status == .done)
        #expect(isProtocolError(error(second)))
        #expect(!harness.channel.isActive)
    }

    @Test func anOversizedValueFailsEverythingPendingAndCloses() throws {
        let harness = try Harness()
        let first = harness.connection.send(MemcachedCommand(.get, key: "a", flags: ["v"]))
        harness.loop.run()
        harness.reply("VA 99999999 O1\r\n")
        harness.loop.run()
        #expect(isProtocolError(error(first)))
        #expect(!harness.channel.isActive)
    }

    @Test func aServerClosingMidReplyFailsWhatWaits() throws {
        let harness = try Harness()
        let first = harness.connection.send(MemcachedCommand(.get, key: "a", flags: ["v"]))
        let second = harness.connection.send(MemcachedCommand(.get, key: "b", flags: ["v"]))
        harness.loop.run()
        harness.reply("VA 10 O1\r\nabc")
        harness.channel.pipeline.fireChannelInactive()
        harness.loop.run()
        #expect(error(first) == .unavailable("connection lost"))
        #expect(error(second) == .unavailable("connection lost"))
    }

    @Test func aTimeoutFailsTheOverdueCommandsAndCloses() throws {
        let harness = try Harness(commandTimeout: .milliseconds(50))
        let first = harness.connection.send(MemcachedCommand(.get, key: "a"))
        harness.loop.run()
        harness.loop.advanceTime(by: .milliseconds(30))
        let second = harness.connection.send(MemcachedCommand(.get, key: "b"))
        harness.loop.advanceTime(by: .milliseconds(25))
        #expect(error(first) == .timeout)
        #expect(error(second) == .unavailable("connection closed after a command timed out"))
        #expect(!harness.channel.isActive)
    }

    @Test func aKeyMemcachedWouldRefuseIsNeverSent() throws {
        let harness = try Harness()
        let bad = harness.connection.send(MemcachedCommand(.get, key: "a b"))
        harness.loop.run()
        guard case .invalidCommand = error(bad) else {
            Issue.record("expected invalidCommand, got \(String(describing: result(bad)))")
            return
        }
        #expect(try harness.written() == "")
        #expect(harness.channel.isActive)
    }
}
