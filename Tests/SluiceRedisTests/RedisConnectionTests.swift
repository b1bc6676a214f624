import NIOCore
import SluiceRedis
import SluiceTestSupport
import Testing

extension RedisIntegrationTests {
    /// One connection against a real `redis-server`.
    @Suite struct RedisConnectionTests {
        @Test func ping() async throws {
            try await withRedisServer { server in
                let connection = try await server.connect()
                #expect(try await connection.send(RedisCommand("PING")).get() == .simpleString("PONG"))
                #expect(connection.isActive)
                try await connection.close().get()
                #expect(!connection.isActive)
                guard case .unavailable = await failure(of: connection.send(RedisCommand("PING"))) else {
                    Issue.record("a command on a closed connection did not fail with .unavailable")
                    return
                }
            }
        }

        @Test func setAndGetAreBinarySafe() async throws {
            try await withRedisServer { server in
                let connection = try await server.connect()
                let key = ByteBuffer(bytes: [0, 13, 10, 255, 32])
                let value = ByteBuffer(bytes: Array(0...255) + [13, 10] + Array(repeating: 0, count: 100_000))
                #expect(try await connection.send(RedisCommand(arguments: [ByteBuffer(string: "SET"), key, value])).get() == .simpleString("OK"))
                #expect(try await connection.send(RedisCommand(arguments: [ByteBuffer(string: "GET"), key])).get() == .bulkString(value))
                #expect(try await connection.send(RedisCommand("GET", "missing")).get() == .bulkString(nil))
                #expect(await failure(of: connection.send(RedisCommand("NOSUCHCOMMAND")))?.code == "ERR")
                // An error reply does not disturb the commands after it.
                #expect(try await connection.send(RedisCommand(arguments: [ByteBuffer(string: "STRLEN"), key])).get() == .integer(Int64(value.readableBytes)))
                try await connection.close().get()
            }
        }

        @Test func pipelinedRepliesComeBackInOrder() async throws {
            try await withRedisServer { server in
                let connection = try await server.connect()
                // Sent from many threads at once and from the connection's own loop.
                let replies = try await withThrowingTaskGroup(of: [(Int, RESPValue)].self) { group in
                    for task in 0..<8 {
                        group.addTask {
                            let futures = (0..<500).map { i in
                                (task * 500 + i, connection.send(RedisCommand("ECHO", "value-\(task * 500 + i)")))
                            }
                            var replies: [(Int, RESPValue)] = []
                            for (i, future) in futures { replies.append((i, try await future.get())) }
                            return replies
                        }
                    }
                    group.addTask {
                        let futures = try await connection.eventLoop.submit {
                            (4000..<4500).map { i in (i, connection.send(RedisCommand("ECHO", "value-\(i)"))) }
                        }.get()
                        var replies: [(Int, RESPValue)] = []
                        for (i, future) in futures { replies.append((i, try await future.get())) }
                        return replies
                    }
                    return try await group.reduce(into: []) { $0 += $1 }
                }
                #expect(replies.count == 4500)
                for (i, reply) in replies where reply.string != "value-\(i)" {
                    Issue.record("command \(i) got \(reply)")
                    break
                }
                try await connection.close().get()
            }
        }

        @Test func authWithPassword() async throws {
            try await withRedisServer(password: "s3cret pass") { server in
                let connection = try await server.connect()
                #expect(try await connection.send(RedisCommand("PING")).get() == .simpleString("PONG"))
                try await connection.close().get()

                await #expect(throws: RedisError.self) { try await server.connect(password: "wrong") }
                do {
                    _ = try await server.connect(password: "wrong")
                } catch let error as RedisError {
                    #expect(error.code == "WRONGPASS", "\(error)")
                }
                // No password: the connection opens, commands are refused.
                let anonymous = try await server.connect(password: .some(nil))
                #expect(await failure(of: anonymous.send(RedisCommand("PING")))?.code == "NOAUTH")
                try await anonymous.close().get()
            }
        }

        @Test func authWithUsernameAndPassword() async throws {
            try await withRedisServer { server in
                #expect(server.cli("ACL", "SETUSER", "sluice", "on", ">pw-of-sluice", "~*", "+@all") == "OK")
                let connection = try await server.connect(username: "sluice", password: "pw-of-sluice")
                #expect(try await connection.send(RedisCommand("ACL", "WHOAMI")).get().string == "sluice")
                try await connection.close().get()
                do {
                    _ = try await server.connect(username: "sluice", password: "nope")
                    Issue.record("connected with a wrong password")
                } catch let error as RedisError {
                    #expect(error.code == "WRONGPASS", "\(error)")
                }
            }
        }

        @Test func selectsTheDatabase() async throws {
            try await withRedisServer(password: "pw") { server in
                let db3 = try await server.connect(database: 3)
                let db0 = try await server.connect()
                #expect(try await db3.send(RedisCommand("SET", "only-in-3", "yes")).get() == .simpleString("OK"))
                #expect(try await db3.send(RedisCommand("GET", "only-in-3")).get().string == "yes")
                #expect(try await db0.send(RedisCommand("GET", "only-in-3")).get() == .bulkString(nil))
                #expect(server.cli("-n", "3", "GET", "only-in-3") == "yes")
                do {
                    _ = try await server.connect(database: 99)
                    Issue.record("selected a database that does not exist")
                } catch let error as RedisError {
                    #expect(error.code == "ERR", "\(error)")
                }
                try await db3.close().get()
                try await db0.close().get()
            }
        }

        @Test func aCommandWithoutReplyTimesOut() async throws {
            try await withRedisServer { server in
                let connection = try await server.connect(commandTimeout: .milliseconds(200))
                #expect(server.cli("CLIENT", "PAUSE", "1500") == "OK")
                let start = ContinuousClock.now
                let error = await failure(of: connection.send(RedisCommand("PING")))
                let elapsed = ContinuousClock.now - start
                #expect(error == .timeout)
                // About the timeout (with room for a loaded machine), well before the pause ends.
                #expect(elapsed >= .milliseconds(190) && elapsed < .milliseconds(1000), "took \(elapsed)")
                // Replies are matched in order: the connection is closed rather than reused.
                try await connection.closeFuture.get()
                #expect(!connection.isActive)
            }
        }

        @Test func aStoppedServerFailsCommandsWithoutHanging() async throws {
            try await withRedisServer { server in
                let connection = try await server.connect(commandTimeout: .milliseconds(300))
                #expect(try await connection.send(RedisCommand("PING")).get() == .simpleString("PONG"))
                await server.stop()
                let start = ContinuousClock.now
                let error = await failure(of: connection.send(RedisCommand("PING")))
                #expect(ContinuousClock.now - start < .milliseconds(800), "within the timeout, with room for a loaded machine")
                guard case .unavailable = error else {
                    Issue.record("got \(String(describing: error))")
                    return
                }
                try await connection.closeFuture.get()
            }
        }

        @Test func connectingToNothingFails() async throws {
            let port = try closedPort()
            let endpoint = RedisEndpoint(host: "127.0.0.1", port: port)
            do {
                _ = try await RedisConnection.connect(
                    to: endpoint, on: testGroup.next(), connectTimeout: .seconds(1), commandTimeout: .seconds(1), logger: quietLogger
                ).get()
                Issue.record("connected to a closed port")
            } catch let error as RedisError {
                guard case .unavailable = error else {
                    Issue.record("got \(error)")
                    return
                }
            }
            var tls = endpoint
            tls.useTLS = true
            await #expect(throws: RedisError.self) {
                try await RedisConnection.connect(
                    to: tls, on: testGroup.next(), connectTimeout: .seconds(1), commandTimeout: .seconds(1), logger: quietLogger
                ).get()
            }
        }
    }
}
