import Logging
import NIOCore
import NIOEmbedded
import SluiceListener
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// ``AcceptGuardHandler`` and ``ConnectionCap`` on embedded channels: the server channel's `read()` (the call that
/// makes NIO accept) is held back at the cap and issued again when a counted connection closes.
@Suite struct AcceptGuardHandlerTests {
    /// Counts the `read()` calls that reach the front of the pipeline (where NIO would accept).
    final class ReadCounter: ChannelOutboundHandler {
        typealias OutboundIn = Never
        var reads = 0
        func read(context: ChannelHandlerContext) {
            self.reads += 1
            context.read()
        }
    }

    /// A listening channel stand-in: a read counter at the front, the guard behind it.
    static func listener(_ cap: ConnectionCap) throws -> (EmbeddedChannel, ReadCounter) {
        let counter = ReadCounter()
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(counter)
        try channel.pipeline.syncOperations.addHandler(
            AcceptGuardHandler(cap: cap, logger: Logger(label: "test"), role: "test")
        )
        return (channel, counter)
    }

    /// An accepted connection arriving on `listener`.
    static func accept(on listener: EmbeddedChannel) throws -> EmbeddedChannel {
        let child = EmbeddedChannel()
        try child.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try listener.writeInbound(child as any Channel)
        _ = try listener.readInbound(as: (any Channel).self)
        return child
    }

    /// Closes an accepted connection and runs its loop, so its close completes.
    static func close(_ child: EmbeddedChannel) throws {
        try child.close().wait()
        child.embeddedEventLoop.run()
    }

    @Test func readIsHeldAtTheCapAndIssuedAgainWhenAConnectionCloses() throws {
        let cap = ConnectionCap(limit: 2)
        let (listener, counter) = try Self.listener(cap)
        listener.read()
        #expect(counter.reads == 1)
        let first = try Self.accept(on: listener)
        listener.read()
        #expect(counter.reads == 2)
        _ = try Self.accept(on: listener)
        #expect(cap.openConnections == 2)

        listener.read()
        listener.read()
        #expect(counter.reads == 2, "no accept while two connections are open")

        try Self.close(first)
        listener.embeddedEventLoop.run()
        #expect(cap.openConnections == 1)
        #expect(counter.reads == 3, "the held read is issued once")
    }

    @Test func oneCapCountsEveryListener() throws {
        let cap = ConnectionCap(limit: 1)
        let (a, readsA) = try Self.listener(cap)
        let (b, readsB) = try Self.listener(cap)
        let child = try Self.accept(on: a)
        a.read()
        b.read()
        #expect(readsA.reads == 0)
        #expect(readsB.reads == 0)
        try Self.close(child)
        a.embeddedEventLoop.run()
        b.embeddedEventLoop.run()
        // Both resume; the next accept on either is checked against the cap again.
        #expect(readsA.reads == 1)
        #expect(readsB.reads == 1)
    }

    @Test func aHigherLimitResumesAtOnceALowerOneClosesNothing() throws {
        let cap = ConnectionCap(limit: 1)
        let (listener, counter) = try Self.listener(cap)
        let child = try Self.accept(on: listener)
        listener.read()
        #expect(counter.reads == 0)
        cap.setLimit(2)
        listener.embeddedEventLoop.run()
        #expect(counter.reads == 1)

        _ = try Self.accept(on: listener)
        cap.setLimit(1)
        #expect(child.isActive)
        #expect(cap.openConnections == 2)
        listener.read()
        #expect(counter.reads == 1)
    }

    @Test func readsArePausedAfterAFailedAccept() throws {
        let cap = ConnectionCap(limit: 10)
        let (listener, counter) = try Self.listener(cap)
        listener.pipeline.fireErrorCaught(IOError(errnoCode: EMFILE, reason: "accept"))
        listener.read()
        #expect(counter.reads == 0, "no accept during the pause")
        listener.embeddedEventLoop.advanceTime(by: .milliseconds(ListenerGuards.acceptBackoffMilliseconds))
        // After the pause NIO reads by itself (`autoRead` back on); reads asked for go through again.
        listener.read()
        #expect(counter.reads == 1)
    }

    @Test func aListenerThatClosesStopsWaiting() throws {
        let cap = ConnectionCap(limit: 1)
        let (listener, counter) = try Self.listener(cap)
        let child = try Self.accept(on: listener)
        listener.read()
        try listener.close().wait()
        try Self.close(child)
        listener.embeddedEventLoop.run()
        #expect(counter.reads == 0)
        #expect(cap.openConnections == 0)
    }
}
