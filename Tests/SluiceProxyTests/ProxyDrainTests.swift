import NIOCore
import NIOPosix
import SluiceConfig
import SluiceTestSupport
import Testing

/// Graceful drain (SPEC §1): stop accepting, let in-flight requests finish.
@Suite("Graceful drain", .timeLimit(.minutes(3)))
struct ProxyDrainTests {
    @Test func inFlightRequestCompletesAndNewConnectionsAreRefused() async throws {
        let proxy = try await ProxyHarness { $0.server.timeouts.shutdown = .seconds(5) }
        let client = try await proxy.client()
        try await client.send("GET /slow?ms=400 HTTP/1.1\r\nHost: t\r\n\r\n")
        // The request must be in flight (at the upstream) before the drain starts.
        try await eventually("request reached the upstream") { proxy.upstream.requestURIs.contains("/slow?ms=400") }
        let server = proxy.server
        let stopped = Task { await server.stop() }
        let response = try await client.readResponse(timeout: .seconds(5))
        #expect(response.status == 200)
        #expect(response.bodyString == "slow")
        #expect(response.header("connection")?.lowercased() == "close")
        _ = try await client.waitForClose(timeout: .seconds(5))
        try await withTimeout(.seconds(10), "stop()") { await stopped.value }
        await #expect(throws: (any Error).self) {
            let late = try await RawHTTPClient.connect(port: proxy.port, group: ProxyHarness.group)
            await late.close()
        }
        await proxy.upstream.close()
    }

    @Test func idleConnectionsAreClosedByDrain() async throws {
        let proxy = try await ProxyHarness { $0.server.timeouts.shutdown = .seconds(5) }
        let client = try await proxy.client()
        try await client.send("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        #expect(try await client.readResponse().status == 200)
        let start = ContinuousClock.now
        let server = proxy.server
        try await withTimeout(.seconds(10), "stop()") { await server.stop() }
        // An idle keep-alive connection does not hold the drain up to the shutdown timeout.
        #expect(ContinuousClock.now - start < .seconds(2))
        _ = try await client.waitForClose(timeout: .seconds(2))
        await proxy.upstream.close()
    }

    /// When the shutdown timeout expires, the connections still in flight are closed while the
    /// loops run (closing them after the group stopped used to crash the process).
    @Test
    func drainGivesUpAfterShutdownTimeout() async throws {
        let proxy = try await ProxyHarness { $0.server.timeouts.shutdown = .milliseconds(300) }
        let client = try await proxy.client()
        try await client.send("GET /slow?ms=5000 HTTP/1.1\r\nHost: t\r\n\r\n")
        try await eventually("request reached the upstream") { proxy.upstream.requestURIs.contains("/slow?ms=5000") }
        let start = ContinuousClock.now
        let server = proxy.server
        try await withTimeout(.seconds(10), "stop()") { await server.stop() }
        #expect(ContinuousClock.now - start < .seconds(3))
        await client.close()
        await proxy.upstream.close()
    }
}
