import Foundation
import NIOCore
import NIOPosix
import SluiceConfig
import SluiceTestSupport
import Testing

@testable import SluiceLimiter
@testable import SluiceMemcached

/// A server that accepts connections and answers every read with `reply` (nothing at all when `nil`): a memcached
/// that hangs, or one that speaks garbage.
private final class FakeServerHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let reply: String?

    init(reply: String?) {
        self.reply = reply
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let reply = self.reply else { return }
        context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(string: reply)), promise: nil)
    }
}

private func withFakeServer(reply: String?, _ body: (Int) async throws -> Void) async throws {
    let channel = try await ServerBootstrap(group: testGroup)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(FakeServerHandler(reply: reply))
            }
        }
        .bind(host: "127.0.0.1", port: 0).get()
    do {
        try await body(try #require(channel.localAddress?.port))
        try await channel.close()
    } catch {
        try? await channel.close()
        throw error
    }
}

/// Several memcached servers (issue 21): keys spread over them, a server down sends only its own keys to `on_error`.
extension MemcachedIntegrationTests { @Suite("memcached servers") struct MemcachedClusterTests {
    static let hour = LimitParameters(count: 3, periodNanoseconds: 3600 * 1_000_000_000)

    /// Keys that the continuum puts on server 0 and on server 1, three of each.
    static func keys(_ store: MemcachedStore) -> [[StorageKey]] {
        var byServer: [[StorageKey]] = [[], []]
        var index = 0
        while byServer.contains(where: { $0.count < 3 }) {
            let key = testKey("spread-\(UUID())-\(index)")
            let server = store.server(for: key)
            if byServer[server].count < 3 { byServer[server].append(key) }
            index += 1
        }
        return byServer
    }

    /// Whether `server` holds the current window counter of `key` (a look with a connection of its own).
    static func holds(_ server: MemcachedServer, _ store: MemcachedStore, _ key: StorageKey) async throws -> Bool {
        let connection = try await MemcachedConnection.connect(
            to: MemcachedServerAddress(host: "127.0.0.1", port: server.port),
            on: testGroup.next(),
            connectTimeout: .seconds(2),
            commandTimeout: .seconds(2),
            logger: quietLogger
        ).get()
        defer { _ = connection.close() }
        let period = Self.hour.periodNanoseconds
        let name = store.keyspace.window(key, windowStart: MemcachedKeyspace.windowStart(.now(), period: period), period: period)
        return try await connection.send(MemcachedCommands.get(name)).get().status == .value
    }

    @Test func keysSpreadAndOnlyADownServersKeysFollowOnError() async throws {
        try await withMemcachedServer { a in
            try await withMemcachedServer { b in
                let configuration = memcachedConfiguration([a, b], onError: .deny, timeout: .milliseconds(200))
                let first = makeStore(configuration)
                let second = makeStore(configuration)
                let keys = Self.keys(first)
                func item(_ key: StorageKey) -> StoreItem {
                    StoreItem(key: key, algorithm: .fixedWindow, limit: Self.hour, cost: 1)
                }

                // Both instances count into one budget per key, and each key lives on its own server only.
                for (server, other) in [(a, b), (b, a)] {
                    for key in keys[server === a ? 0 : 1] {
                        #expect(await decide(first, [item(key)], now: .now()).results[0].remaining == 2)
                        #expect(await decide(second, [item(key)], now: .now()).results[0].remaining == 1)
                        #expect(try await Self.holds(server, first, key))
                        #expect(try await !Self.holds(other, first, key))
                    }
                }

                await b.stop()
                for key in keys[0] {
                    let batch = await decide(second, [item(key)], now: .now())
                    #expect(batch.isAdmitted && !batch.storageUnavailable && batch.results[0].remaining == 0)
                    #expect(!(await decide(first, [item(key)], now: .now())).isAdmitted, "the budget is still shared")
                }
                for key in keys[1] {
                    for store in [first, second] {
                        let start = ContinuousClock.now
                        let batch = await decide(store, [item(key)], now: .now())
                        #expect(!batch.isAdmitted && batch.storageUnavailable, "on_error deny for the down server's keys")
                        #expect(ContinuousClock.now - start < .milliseconds(1200), "timeout + 1 s at most")
                    }
                }
                #expect(first.serverAvailability == [true, false])
                #expect(first.isAvailable, "one server answers: still ready")

                // Back without a restart of the stores (the new b is empty: its keys start over).
                try await b.restart()
                try await eventually(within: .seconds(15), "b's keys are decided in memcached again") {
                    try await Task.sleep(for: .milliseconds(100))
                    let batch = await decide(first, [item(keys[1][0])], now: .now())
                    return !batch.storageUnavailable
                }
                let again = await decide(second, [item(keys[1][1])], now: .now())
                #expect(again.isAdmitted && !again.storageUnavailable && again.results[0].remaining == 2)
                #expect(first.serverAvailability == [true, true])
                await first.close()
                await second.close()
            }
        }
    }

    /// A server that accepts and never answers: every request is answered by `on_error` within timeout + 1 s.
    @Test func aSilentServerCostsAtMostTheTimeout() async throws {
        try await withFakeServer(reply: nil) { port in
            var configuration = MemcachedStorageConfiguration(url: "memcached://127.0.0.1:\(port)")
            configuration.servers = [MemcachedServerAddress(host: "127.0.0.1", port: port)]
            configuration.timeout = .milliseconds(100)
            configuration.onError = .allow
            let store = makeStore(configuration)
            for _ in 0..<5 {
                let start = ContinuousClock.now
                let batch = await decide(store, [StoreItem(key: testKey("silent"), algorithm: .gcra, limit: Self.hour, cost: 1)], now: .now())
                #expect(batch.isAdmitted, "on_error allow")
                #expect(ContinuousClock.now - start < .milliseconds(1100))
            }
            #expect(!store.isAvailable)
            await store.close()
        }
    }

    /// A server that answers garbage: a protocol error, the connection closed, `on_error` decides.
    @Test(arguments: ["garbage\r\n", "HD O999\r\n", "VA 99999999999 O1\r\n"])
    func aServerSpeakingGarbageFollowsOnError(_ reply: String) async throws {
        try await withFakeServer(reply: reply) { port in
            var configuration = MemcachedStorageConfiguration(url: "memcached://127.0.0.1:\(port)")
            configuration.servers = [MemcachedServerAddress(host: "127.0.0.1", port: port)]
            configuration.timeout = .milliseconds(500)
            configuration.onError = .deny
            let store = makeStore(configuration)
            let start = ContinuousClock.now
            let batch = await decide(store, [StoreItem(key: testKey("garbage"), algorithm: .fixedWindow, limit: Self.hour, cost: 1)], now: .now())
            #expect(!batch.isAdmitted && batch.storageUnavailable)
            #expect(ContinuousClock.now - start < .milliseconds(500), "not a timeout: the reply itself is refused")
            await store.close()
        }
    }
} }
