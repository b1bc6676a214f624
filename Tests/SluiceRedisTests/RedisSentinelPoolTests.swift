import Logging
import NIOCore
import NIOEmbedded
import SluiceTestSupport
import Synchronization
import Testing

@testable import SluiceRedis

/// What Sentinel support adds to the pool and the wire (issue 12), without sentinels: a pool whose server moves, and
/// the `+switch-master` reader.
extension RedisIntegrationTests {
    @Suite struct RedisSentinelPoolTests {
        /// `reconnectAll()` with the endpoint source pointing elsewhere: every slot moves, and a command sent right
        /// after the call waits for the new connection instead of failing.
        ///
        /// The timeouts are hang guards, not part of what is tested: on a loaded CI machine the shared event loops can
        /// stall for seconds (2 s were seen between a test's connect and its first send), and a connect attempt that
        /// outlasts a 1 s timeout counts as trouble, and a 2 s command timeout can fail the waiting commands, although
        /// nothing moved wrongly. So 10 s each, and 20 s for the polls (the suite's time limit, 1 minute, still ends a hang).
        @Test func reconnectAllMovesEverySlotAndCommandsWaitForIt() async throws {
            try await withRedisServer { first in
                try await withRedisServer { second in
                    let target = Mutex(first.endpoint)
                    let troubles = Atomic<Int>(0)
                    let pool = RedisPool(
                        endpoint: first.endpoint,
                        size: 3,
                        group: testGroup,
                        connectTimeout: .seconds(10),
                        commandTimeout: .seconds(10),
                        logger: quietLogger,
                        endpointSource: { loop in loop.makeSucceededFuture(target.withLock { $0 }) },
                        onTrouble: { troubles.add(1, ordering: .relaxed) }
                    )
                    _ = try await pool.send(RedisCommand("SET", "where", "first"), preferring: nil).get()
                    try await eventually(within: .seconds(20), "three connections to the first server") { first.clientCount() == 3 }

                    target.withLock { $0 = second.endpoint }
                    pool.reconnectAll()
                    // Sent in the same instant: each waits for a connection to the second server.
                    let replies = (0..<20).map { _ in pool.send(RedisCommand("INCR", "moved"), preferring: nil) }
                    var values: [Int64] = []
                    for reply in replies { values.append(try await reply.get().int ?? -1) }
                    #expect(values.sorted() == Array(1...20))
                    #expect(second.cli("GET", "moved") == "20")
                    #expect(first.cli("EXISTS", "moved") == "0")
                    try await eventually(within: .seconds(20), "every connection moved") { first.clientCount() == 0 && second.clientCount() == 3 }
                    #expect(troubles.load(ordering: .relaxed) == 0, "a move is not a failure")
                    await pool.close()
                }
            }
        }

        /// A lost connection is reported through `onTrouble` (Sentinel then checks where the primary is).
        @Test func aLostConnectionIsReportedAsTrouble() async throws {
            try await withRedisServer { server in
                let troubles = Atomic<Int>(0)
                let pool = RedisPool(
                    endpoint: server.endpoint,
                    size: 1,
                    group: testGroup,
                    connectTimeout: .seconds(1),
                    commandTimeout: .seconds(2),
                    logger: quietLogger,
                    endpointSource: { loop in loop.makeSucceededFuture(server.endpoint) },
                    onTrouble: { troubles.add(1, ordering: .relaxed) }
                )
                _ = try await pool.send(RedisCommand("PING"), preferring: nil).get()
                #expect(troubles.load(ordering: .relaxed) == 0)
                server.cli("CLIENT", "KILL", "TYPE", "normal")
                try await eventually("the loss is reported") { troubles.load(ordering: .relaxed) >= 1 }
                await pool.close()
            }
        }
    }
}

/// The `+switch-master` reader on an embedded channel.
@Suite struct RedisSentinelSubscriptionTests {
    final class Seen: Sendable {
        let switches = Mutex<[String]>([])
        let subscribed = Atomic<Int>(0)
    }

    static func channel(password: String?) throws -> (EmbeddedChannel, Seen) {
        let seen = Seen()
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers(
            ByteToMessageHandler(RESPDecoder()),
            RedisSentinelSubscriptionHandler(
                password: password,
                onSubscribed: { seen.subscribed.add(1, ordering: .relaxed) },
                onSwitch: { payload in seen.switches.withLock { $0.append(payload) } }
            )
        )
        return (channel, seen)
    }

    @Test func subscribesAndHandsOverSwitchMessages() throws {
        let (channel, seen) = try Self.channel(password: "watch")
        try channel.connect(to: .init(ipAddress: "127.0.0.1", port: 26379)).wait()
        var written = ""
        while let out = try channel.readOutbound(as: ByteBuffer.self) { written += String(buffer: out) }
        #expect(written == "*2\r\n$4\r\nAUTH\r\n$5\r\nwatch\r\n*2\r\n$9\r\nSUBSCRIBE\r\n$14\r\n+switch-master\r\n")

        // Split anywhere: the decoder reassembles.
        let frames = "+OK\r\n*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n"
            + "*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$38\r\nmymaster 127.0.0.1 6379 127.0.0.1 6380\r\n"
        for chunk in frames.utf8.chunks(of: 7) { try channel.writeInbound(ByteBuffer(bytes: chunk)) }
        #expect(seen.subscribed.load(ordering: .relaxed) == 1)
        #expect(seen.switches.withLock { $0 } == ["mymaster 127.0.0.1 6379 127.0.0.1 6380"])
        #expect(channel.isActive)
        let parsed = RedisSentinelSubscriptionHandler.parseSwitch("mymaster 127.0.0.1 6379 127.0.0.1 6380")
        #expect(parsed?.masterName == "mymaster" && parsed?.host == "127.0.0.1" && parsed?.port == 6380)
        #expect(RedisSentinelSubscriptionHandler.parseSwitch("mymaster 127.0.0.1 6379 127.0.0.1") == nil)
        #expect(RedisSentinelSubscriptionHandler.parseSwitch("m a 1 b 70000") == nil)
        _ = try? channel.finish()
    }

    @Test func aRefusedAuthClosesTheConnection() throws {
        let (channel, seen) = try Self.channel(password: "wrong")
        try channel.connect(to: .init(ipAddress: "127.0.0.1", port: 26379)).wait()
        try channel.writeInbound(ByteBuffer(string: "-WRONGPASS invalid username-password pair\r\n"))
        #expect(!channel.isActive)
        #expect(seen.subscribed.load(ordering: .relaxed) == 0)
    }
}

extension Collection {
    /// Consecutive pieces of at most `size` elements.
    fileprivate func chunks(of size: Int) -> [SubSequence] {
        var pieces: [SubSequence] = []
        var start = self.startIndex
        while start != self.endIndex {
            let end = self.index(start, offsetBy: size, limitedBy: self.endIndex) ?? self.endIndex
            pieces.append(self[start..<end])
            start = end
        }
        return pieces
    }
}
