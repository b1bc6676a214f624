import SluiceTestSupport
import Testing

@testable import SluiceProxy

/// A closed connection leaves nothing behind: its handler (and the buffers it holds) is freed. Until this test, every
/// handler and its `ChannelHandlerContext` held each other, so each closed HTTP/1.1 connection kept about 6 KB for the
/// life of the process (22k `Connection: close` requests grew a release build by 136 MB).
@Suite("Connection memory", .timeLimit(.minutes(3)))
struct ProxyConnectionMemoryTests {
    @Test("200 closed connections leave no handler alive")
    func closedConnectionsFreeTheirHandlers() async throws {
        // Alone: the count is process-wide, and other tests' connections would move it.
        try await TestLoadGate.exclusive {
            try await withProxy { proxy in
                let before = ProxyConnectionHandler.live
                for _ in 0..<200 {
                    let client = try await proxy.client()
                    try await client.send("GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                    let response = try await client.readResponse(timeout: .seconds(5))
                    #expect(response.status == 200)
                    _ = try await client.waitForClose(timeout: .seconds(5))
                    await client.close()
                }
                try await eventually(within: .seconds(10), "closed connections' handlers freed") {
                    ProxyConnectionHandler.live <= before
                }
                #expect(ProxyConnectionHandler.live <= before, "\(ProxyConnectionHandler.live - before) handlers of closed connections are still alive")
            }
        }
    }
}
