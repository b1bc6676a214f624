import SluiceTestSupport
import Testing

extension RedisIntegrationTests {
    /// The test helper itself: a server that is not stopped would outlive the test run.
    @Suite struct RedisServerTests {
        private struct Boom: Error {}

        @Test func restartsOnTheSamePortAndStopsOnEveryPath() async throws {
            var port = 0
            await #expect(throws: Boom.self) {
                try await withRedisServer(password: "pw") { server in
                    port = server.port
                    #expect(server.cli("SET", "k", "v") == "OK")
                    try await server.restart()
                    #expect(server.port == port)
                    #expect(server.cli("GET", "k") == "", "a restarted server starts empty")
                    #expect(server.cli("PING") == "PONG")
                    throw Boom()
                }
            }
            // Stopped although the body threw: nothing answers on its port any more.
            let probe = try await RedisServer.start()
            defer { Task { await probe.stop() } }
            #expect(probe.cli("-p", String(port), "PING").contains("refused"))
        }
    }
}
