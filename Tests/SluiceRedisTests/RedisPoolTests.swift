import NIOCore
import NIOPosix
import Logging
import SluiceRedis
import SluiceTestSupport
import Testing

extension RedisServer {
    func pool(
        size: Int = 4,
        group: any EventLoopGroup = testGroup,
        commandTimeout: TimeAmount = .seconds(2),
        logger: Logger = quietLogger
    ) -> RedisPool {
        RedisPool(
            endpoint: self.endpoint,
            size: size,
            group: group,
            connectTimeout: .seconds(1),
            commandTimeout: commandTimeout,
            logger: logger
        )
    }
}

extension RedisIntegrationTests {
    /// The pool against a real `redis-server`.
    @Suite struct RedisPoolTests {
        @Test func tenThousandConcurrentIncrsAreEachAnsweredOnce() async throws {
            try await withRedisServer(password: "pw") { server in
                let pool = server.pool(size: 4)
                let replies = try await withThrowingTaskGroup(of: [Int64].self) { group in
                    for task in 0..<50 {
                        group.addTask {
                            // Half the tasks ask for a loop, half let the pool choose; all 200 commands
                            // of a task are in flight at once, spread round robin over the connections
                            // (so in order per connection, not per task).
                            let loop: (any EventLoop)? = task.isMultiple(of: 2) ? testGroup.next() : nil
                            let futures = (0..<200).map { _ in pool.send(RedisCommand("INCR", "counter"), preferring: loop) }
                            var values: [Int64] = []
                            for future in futures {
                                if let loop { #expect(future.eventLoop === loop) }
                                values.append(try #require(try await future.get().int))
                            }
                            return values
                        }
                    }
                    return try await group.reduce(into: []) { $0 += $1 }
                }
                #expect(replies.count == 10_000)
                #expect(Set(replies) == Set(1...10_000))
                #expect(try await pool.send(RedisCommand("GET", "counter"), preferring: nil).get().int == 10_000)
                #expect(pool.isConnected)
                await pool.close()
            }
        }

        @Test func aPoolOfTwoOpensTwoConnectionsLazily() async throws {
            try await withRedisServer { server in
                let pool = server.pool(size: 2)
                #expect(server.clientCount() == 0, "nothing opened before first use")
                #expect(!pool.isConnected)
                let futures = (0..<500).map { _ in pool.send(RedisCommand("PING"), preferring: testGroup.next()) }
                for future in futures { #expect(try await future.get() == .simpleString("PONG")) }
                try await eventually("both connections up") { server.clientCount() == 2 }
                for _ in 0..<200 { _ = try await pool.send(RedisCommand("PING"), preferring: nil).get() }
                #expect(server.clientCount() == 2)
                await pool.close()
                try await eventually("connections closed") { server.clientCount() == 0 }
                guard case .unavailable = await failure(of: pool.send(RedisCommand("PING"), preferring: nil)) else {
                    Issue.record("a closed pool still sends")
                    return
                }
            }
        }

        @Test func aPreferredLoopGetsItsOwnConnections() async throws {
            // A group of its own, so `next()` spreads the 4 slots evenly over its 2 loops.
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
            try await withRedisServer { server in
                let pool = server.pool(size: 4, group: group)
                _ = try await pool.send(RedisCommand("PING"), preferring: nil).get()
                try await eventually("all connections up") { server.clientCount() == 4 }
                // Each connection has its own CLIENT ID: the ids seen from one loop are that loop's two.
                var idsByLoop: [Set<Int64>] = []
                for loop in group.makeIterator() {
                    var ids: Set<Int64> = []
                    for _ in 0..<20 {
                        let reply = pool.send(RedisCommand("CLIENT", "ID"), preferring: loop)
                        #expect(reply.eventLoop === loop)
                        ids.insert(try #require(try await reply.get().int))
                    }
                    idsByLoop.append(ids)
                }
                #expect(idsByLoop.map(\.count) == [2, 2], "round robin over the loop's own connections")
                #expect(idsByLoop[0].isDisjoint(with: idsByLoop[1]))
                await pool.close()
            }
            try await group.shutdownGracefully()
        }

        @Test func aStoppedServerFailsFastAndARestartedOneIsReconnected() async throws {
            let log = LogRecorder()
            try await withRedisServer { server in
                let pool = server.pool(size: 2, commandTimeout: .milliseconds(500), logger: log.logger())
                #expect(try await pool.send(RedisCommand("SET", "k", "v"), preferring: nil).get() == .simpleString("OK"))
                try await eventually("both up") { server.clientCount() == 2 }
                #expect(pool.isConnected)

                await server.stop()
                // Within the timeout, whatever state the pool is in: lost, or not noticed yet.
                let start = ContinuousClock.now
                guard case .unavailable = await failure(of: pool.send(RedisCommand("GET", "k"), preferring: nil)) else {
                    Issue.record("a command to a stopped server did not fail with .unavailable")
                    return
                }
                #expect(ContinuousClock.now - start < .milliseconds(1000), "within the timeout, with room for a loaded machine")
                try await eventually("isConnected turns false") { !pool.isConnected }
                // Nothing up: fail fast, never waiting for a reconnect or a timeout. Checked on the
                // loop itself: the future returned is already failed when `send` returns.
                let loop = testGroup.next()
                let failedAtOnce = try await loop.submit {
                    (0..<100).allSatisfy { _ in
                        var error: RedisError?
                        pool.send(RedisCommand("PING"), preferring: loop).assumeIsolated().whenFailure { error = $0 as? RedisError }
                        guard case .unavailable = error else { return false }
                        return true
                    }
                }.get()
                #expect(failedAtOnce)

                try await server.restart()
                try await eventually(within: .seconds(5), "reconnected by itself") { pool.isConnected }
                #expect(try await pool.send(RedisCommand("PING"), preferring: nil).get() == .simpleString("PONG"))
                try await eventually(within: .seconds(5), "both reconnected") {
                    log.messages.filter { $0.contains("re-established") }.count == 2
                }
                #expect(server.clientCount() == 2)
                await pool.close()
            }
            // One line per state change of each connection; none per command or failed retry.
            #expect(log.messages.sorted() == [
                "info Redis connection re-established", "info Redis connection re-established",
                "info Redis connection up", "info Redis connection up",
                "warning Redis connection lost; reconnecting in the background",
                "warning Redis connection lost; reconnecting in the background",
            ])
        }

        @Test func aTimedOutConnectionIsReplaced() async throws {
            try await withRedisServer { server in
                let pool = server.pool(size: 1, commandTimeout: .milliseconds(200))
                #expect(try await pool.send(RedisCommand("PING"), preferring: nil).get() == .simpleString("PONG"))
                #expect(server.cli("CLIENT", "PAUSE", "400") == "OK")
                #expect(await failure(of: pool.send(RedisCommand("PING"), preferring: nil)) == .timeout)
                try await eventually(within: .seconds(5), "replaced") {
                    (try? await pool.send(RedisCommand("PING"), preferring: nil).get()) == .simpleString("PONG")
                }
                await pool.close()
            }
        }

        @Test func noServerAtAllFailsWithoutHanging() async throws {
            let pool = RedisPool(
                endpoint: RedisEndpoint(host: "127.0.0.1", port: try closedPort()),
                size: 2,
                group: testGroup,
                connectTimeout: .seconds(1),
                commandTimeout: .seconds(1),
                logger: quietLogger
            )
            // The first commands wait for the first attempts only; later ones fail at once.
            for _ in 0..<3 {
                guard case .unavailable = await failure(of: pool.send(RedisCommand("PING"), preferring: nil)) else {
                    Issue.record("did not fail with .unavailable")
                    break
                }
            }
            #expect(!pool.isConnected)
            await pool.close()
        }
    }
}
