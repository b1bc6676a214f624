import NIOCore
import SluiceConfig
import SluiceTestSupport
import Testing

/// A stale pooled upstream connection is retried once for idempotent requests (SPEC §3).
@Suite("Stale pooled connections", .timeLimit(.minutes(3)))
struct ProxyRetryTests {
    @Test(arguments: ["GET", "HEAD", "DELETE"])
    func idempotentRequestIsRetriedOnAFreshConnection(method: String) async throws {
        // One loop, so the second request takes the pooled connection /stale left behind.
        try await withProxy({ $0.server.threads = 1 }) { proxy in
            let client = try await proxy.client()
            try await client.send("GET /stale HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(try await client.readResponse().bodyString == "stale")
            #expect(proxy.upstream.connectionsAccepted == 1)
            // The upstream closes the pooled connection when this request arrives on it.
            try await client.send("\(method) /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            let response = try await client.readResponse(isHEAD: method == "HEAD", timeout: .seconds(5))
            #expect(response.status == 200)
            #expect(proxy.upstream.connectionsAccepted == 2)
            #expect(proxy.upstream.requestURIs == ["/stale", "/hello", "/hello"])
            await client.close()
        }
    }

    @Test func retriedOnlyOnce() async throws {
        try await withProxy({ $0.server.threads = 1 }) { proxy in
            let client = try await proxy.client()
            try await client.send("GET /stale HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(try await client.readResponse().bodyString == "stale")
            // Retried on a fresh connection, where /stale itself answers and arms it again.
            try await client.send("GET /stale HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(try await client.readResponse(timeout: .seconds(5)).bodyString == "stale")
            #expect(proxy.upstream.connectionsAccepted == 2)
            await client.close()
        }
    }

    @Test func upstreamClosedIdleConnectionIsNotReused() async throws {
        try await withProxy({ $0.server.threads = 1 }) { proxy in
            let client = try await proxy.client()
            try await client.send("GET /idle-close?ms=20 HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(try await client.readResponse().bodyString == "idle-close")
            // Wait until the upstream has closed it (bounded), then the next request must work.
            try await Task.sleep(for: .milliseconds(100))
            try await client.send("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            let response = try await client.readResponse(timeout: .seconds(5))
            #expect(response.status == 200)
            #expect(response.bodyString == "hello")
            await client.close()
        }
    }
}
