import Logging
import NIOCore
import NIOEmbedded
import Testing

@testable import SluiceRedis

/// ``RedisPoolState/reconnectAll()`` without sockets (issue 12: a Sentinel failover moves the pool): what each slot
/// does, that commands wait for the new server instead of failing, and that a stale attempt is not used.
@Suite struct RedisPoolStateMoveTests {
    /// Attempts the state is told of, failed at the end of a test (a promise left pending traps). One test's own,
    /// used on its thread only.
    final class Attempts {
        private var promises: [EventLoopPromise<RedisConnection>] = []

        /// A connect attempt that never completes by itself.
        func make(_ loop: EmbeddedEventLoop) -> EventLoopFuture<RedisConnection> {
            let promise = loop.makePromise(of: RedisConnection.self)
            self.promises.append(promise)
            return promise.futureResult
        }

        func failAll() {
            for promise in self.promises { promise.fail(RedisError.unavailable("test over")) }
            self.promises = []
        }
    }

    /// A live connection over an embedded channel (the state only looks at `isActive`).
    static func connection(on channel: EmbeddedChannel) throws -> RedisConnection {
        try channel.pipeline.syncOperations.addHandlers(
            ByteToMessageHandler(RESPDecoder()),
            RedisChannelHandler(commandTimeout: .seconds(1), logger: quietLogger)
        )
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 6379)).wait()
        return try RedisConnection(channel: channel)
    }

    @Test func everySlotMovesAndCommandsWaitMeanwhile() throws {
        let loop = EmbeddedEventLoop()
        let attempts = Attempts()
        var state = RedisPoolState()
        let waiter = { RedisPoolState.Waiter(command: RedisCommand("PING"), promise: loop.makePromise()) }
        // Three slots: the first command creates them and waits for their first attempts.
        guard case .wait(let first, let start) = state.route(preferring: nil, size: 3, group: loop, makeWaiter: waiter) else {
            Issue.record("the first command should wait")
            return
        }
        #expect(start == [0, 1, 2])
        let channels = [EmbeddedChannel(loop: loop), EmbeddedChannel(loop: loop)]
        let old = try Self.connection(on: channels[0])
        for slot in 0..<3 { state.attemptStarted(slot: slot, attempts.make(loop)) }
        guard case .up(_, let released) = state.connected(slot: 0, old) else {
            Issue.record("slot 0 should be up")
            return
        }
        #expect(released.count == 1)
        released[0].promise.succeed(.simpleString("PONG"))
        #expect(try first.wait() == .simpleString("PONG"))
        // Slot 1 failed and waits for its retry; slot 2 is still connecting.
        let failed = state.attemptFailed(slot: 1)
        #expect(failed != nil)
        let retry = loop.scheduleTask(in: .seconds(1)) {}
        let backingOff = state.backingOff(slot: 1, retry)
        #expect(backingOff)

        let moving = state.reconnectAll()
        #expect(moving.connections.map { $0 === old } == [true])
        #expect(moving.retries.count == 1)
        #expect(moving.connectNow == [0, 1])

        // Until a new connection is up, commands wait (the old one is no longer picked).
        guard case .wait(let pending, let none) = state.route(preferring: nil, size: 3, group: loop, makeWaiter: waiter) else {
            Issue.record("a command during the move should wait")
            return
        }
        #expect(none.isEmpty)
        // The old connection's close is not a loss to reconnect: the slot is already moving.
        let lost = state.lost(slot: 0, old)
        #expect(!lost)
        // Slot 2's attempt predates the move: its connection is not used, the slot connects again.
        let stale = try Self.connection(on: channels[1])
        guard case .again = state.connected(slot: 2, stale) else {
            Issue.record("a stale attempt should be made again")
            return
        }
        // A retry scheduled late finds slot 1 connecting already: it is to be cancelled.
        state.attemptStarted(slot: 1, attempts.make(loop))
        let lateRetry = state.backingOff(slot: 1, loop.scheduleTask(in: .seconds(1)) {})
        #expect(!lateRetry)

        // The first new connection releases the waiting command.
        let newChannel = EmbeddedChannel(loop: loop)
        let new = try Self.connection(on: newChannel)
        guard case .up(let reconnected, let waiting) = state.connected(slot: 1, new) else {
            Issue.record("slot 1 should be up on the new server")
            return
        }
        #expect(!reconnected, "slot 1 had never been up: logged as up, not re-established")
        #expect(waiting.count == 1)
        waiting[0].promise.succeed(.simpleString("PONG"))
        #expect(try pending.wait() == .simpleString("PONG"))
        guard case .connection(let picked) = state.route(preferring: nil, size: 3, group: loop, makeWaiter: waiter) else {
            Issue.record("the new connection should be picked")
            return
        }
        #expect(picked === new)
        _ = state.close()
        attempts.failAll()
        for channel in channels + [newChannel] { _ = try? channel.finish() }
    }

    @Test func waitersFailWhenNoSlotReachesTheNewServer() throws {
        let loop = EmbeddedEventLoop()
        let attempts = Attempts()
        var state = RedisPoolState()
        let waiter = { RedisPoolState.Waiter(command: RedisCommand("PING"), promise: loop.makePromise()) }
        _ = state.route(preferring: nil, size: 2, group: loop, makeWaiter: waiter)
        let channel = EmbeddedChannel(loop: loop)
        let old = try Self.connection(on: channel)
        state.attemptStarted(slot: 0, attempts.make(loop))
        state.attemptStarted(slot: 1, attempts.make(loop))
        if case .up(_, let released) = state.connected(slot: 0, old) {
            for waiter in released { waiter.promise.succeed(.null) }
        }
        _ = state.connected(slot: 1, old)

        _ = state.reconnectAll()
        guard case .wait = state.route(preferring: nil, size: 2, group: loop, makeWaiter: waiter) else {
            Issue.record("a command during the move should wait")
            return
        }
        let firstFailure = state.attemptFailed(slot: 0)
        #expect(firstFailure?.waiters.isEmpty == true)
        // The last slot fails too: the waiters are handed back to be failed (on_error decides them).
        let lastFailure = state.attemptFailed(slot: 1)
        #expect(lastFailure?.waiters.count == 1)
        for waiter in lastFailure?.waiters ?? [] { waiter.promise.fail(RedisError.unavailable("test")) }
        guard case .fail = state.route(preferring: nil, size: 2, group: loop, makeWaiter: waiter) else {
            Issue.record("with no connection and no move under way, a command fails at once")
            return
        }
        _ = state.close()
        attempts.failAll()
        _ = try? channel.finish()
    }
}
