import NIOCore
import SluiceConfig
import SluiceTestSupport
import Testing

/// Errors are answered with the right status and a short body, never hung (SPEC §3), and the
/// proxy keeps serving other clients afterwards.
@Suite("Error answers", .timeLimit(.minutes(3)))
struct ProxyErrorTests {
    /// Sends `raw` on a fresh connection; expects `status`, a short body and a close.
    private func expectError(
        _ proxy: ProxyHarness,
        _ raw: String,
        status: Int,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let client = try await proxy.client()
        try await client.send(raw)
        let response = try await client.readResponse(timeout: .seconds(5))
        #expect(response.status == status, sourceLocation: sourceLocation)
        #expect(!response.body.isEmpty && response.body.count < 200, sourceLocation: sourceLocation)
        if response.version == "HTTP/1.1" {
            #expect(response.header("connection")?.lowercased() == "close", sourceLocation: sourceLocation)
        }
        _ = try await client.waitForClose(timeout: .seconds(5))
        await client.close()
        try await proxy.expectStillServing(sourceLocation: sourceLocation)
    }

    @Test func malformedRequestLine() async throws {
        try await withProxy { proxy in
            try await self.expectError(proxy, "GET\r\n\r\n", status: 400)
            try await self.expectError(proxy, "GARBAGE / HTTP/9.9\r\nHost: t\r\n\r\n", status: 400)
            try await self.expectError(proxy, "GET /hello HTTP/1.1 extra\r\nHost: t\r\n\r\n", status: 400)
        }
    }

    @Test func http11WithoutHost() async throws {
        try await withProxy { proxy in
            try await self.expectError(proxy, "GET /hello HTTP/1.1\r\n\r\n", status: 400)
            #expect(proxy.upstream.requestURIs == ["/hello"])  // only expectStillServing's request
        }
    }

    @Test func twoHostHeaders() async throws {
        try await withProxy { proxy in
            try await self.expectError(proxy, "GET /hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", status: 400)
            try await self.expectError(proxy, "GET /hello HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", status: 400)
        }
    }

    @Test(arguments: ["abc", "-1", "1 2", "0x10", "+5", ""])
    func badContentLength(value: String) async throws {
        try await withProxy { proxy in
            try await self.expectError(proxy, "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: \(value)\r\n\r\n", status: 400)
            #expect(!proxy.upstream.requestURIs.contains("/upload"))
        }
    }

    @Test func duplicateDifferingContentLength() async throws {
        try await withProxy { proxy in
            try await self.expectError(
                proxy,
                "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde",
                status: 400
            )
            try await self.expectError(
                proxy,
                "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 3, 5\r\n\r\nabcde",
                status: 400
            )
            #expect(!proxy.upstream.requestURIs.contains("/upload"))
        }
    }

    @Test func headTooLarge() async throws {
        try await withProxy({ $0.server.maxHeaderBytes = 4096 }) { proxy in
            let big = String(repeating: "a", count: 5000)
            try await self.expectError(proxy, "GET /hello HTTP/1.1\r\nHost: t\r\nX-Big: \(big)\r\n\r\n", status: 431)
            let many = (0..<300).map { "X-H\($0): 0123456789\r\n" }.joined()
            try await self.expectError(proxy, "GET /hello HTTP/1.1\r\nHost: t\r\n\(many)\r\n", status: 431)
            try await self.expectError(proxy, "GET /\(big) HTTP/1.1\r\nHost: t\r\n\r\n", status: 431)
        }
    }

    @Test func headJustUnderTheLimitPasses() async throws {
        try await withProxy({ $0.server.maxHeaderBytes = 4096 }) { proxy in
            let value = String(repeating: "a", count: 3000)
            let response = try await proxy.get("/hello", headers: ["X-Big: \(value)"])
            #expect(response.status == 200)
        }
    }

    @Test func declaredBodyTooLarge() async throws {
        try await withProxy({ $0.server.maxBodyBytes = 1000 }) { proxy in
            try await self.expectError(proxy, "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n", status: 413)
            #expect(!proxy.upstream.requestURIs.contains("/upload"))
            // At the limit is fine.
            let client = try await proxy.client()
            try await client.send("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n" + String(repeating: "b", count: 1000))
            let ok = try await client.readResponse()
            #expect(ok.status == 200)
            #expect(ok.bodyString.hasSuffix(" 1000"))
            await client.close()
        }
    }

    @Test func chunkedBodyExceedingLimitMidStream() async throws {
        try await withProxy({ $0.server.maxBodyBytes = 100_000 }) { proxy in
            let client = try await proxy.client()
            try await client.send("POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
            let chunk = "4000\r\n" + String(repeating: "c", count: 0x4000) + "\r\n"
            // 8 × 16 KiB = 128 KiB > 100 000; the rest may be refused by a closed socket.
            for _ in 0..<8 { try? await client.send(chunk) }
            let response = try await client.readResponse(timeout: .seconds(5))
            #expect(response.status == 413)
            _ = try await client.waitForClose(timeout: .seconds(5))
            await client.close()
            // The upstream never got a complete (truncated-but-framed) request.
            try await proxy.expectStillServing()
        }
    }

    @Test func upstreamPortClosed() async throws {
        let port = try await closedPort()
        try await withProxy({ $0.upstream.targets = [UpstreamTarget(scheme: .http, host: "127.0.0.1", port: port)] }) { proxy in
            let client = try await proxy.client()
            try await client.send("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            let response = try await client.readResponse(timeout: .seconds(5))
            #expect(response.status == 502)
            #expect(!response.body.isEmpty && response.body.count < 200)
            // A 502 on a complete request does not need to cost the client its connection.
            try await client.send("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(try await client.readResponse(timeout: .seconds(5)).status == 502)
            await client.close()
        }
    }

    @Test func upstreamClosesBeforeAnsweringNonIdempotent() async throws {
        try await withProxy({ $0.server.threads = 1 }) { proxy in
            let client = try await proxy.client()
            try await client.send("GET /stale HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(try await client.readResponse().bodyString == "stale")
            // The pooled connection will be closed by the upstream when this arrives: a POST
            // must not be replayed, so the client gets 502.
            try await client.send("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nab")
            let response = try await client.readResponse(timeout: .seconds(5))
            #expect(response.status == 502)
            #expect(proxy.upstream.requestURIs.filter { $0 == "/upload" }.count == 1)
            await client.close()
        }
    }

    @Test func truncatedUpstreamResponseClosesClient() async throws {
        try await withProxy { proxy in
            // The upstream abandons a response midway: the client must see the close, never a
            // short message followed by the next response on the same connection.
            let client = try await proxy.client()
            try await client.send("GET /truncated HTTP/1.1\r\nHost: t\r\n\r\n")
            let bytes = try await client.waitForClose(timeout: .seconds(5))
            let text = String(decoding: bytes, as: UTF8.self)
            #expect(text.hasPrefix("HTTP/1.1 200"))
            #expect(text.contains("\r\nContent-Length: 100\r\n"))
            #expect(text.hasSuffix("short"))
            await client.close()
            try await proxy.expectStillServing()
        }
    }
}

/// Connection-level edge cases: half-close, CONNECT.
@Suite("Connection edges", .timeLimit(.minutes(3)))
struct ProxyConnectionEdgeTests {
    @Test func clientHalfCloseAfterRequestGetsResponseThenClose() async throws {
        try await withProxy { proxy in
            let client = try await proxy.client()
            try await client.send("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            try await client.channel.close(mode: .output)
            let bytes = try await client.waitForClose(timeout: .seconds(3))
            let text = String(decoding: bytes, as: UTF8.self)
            #expect(text.hasPrefix("HTTP/1.1 200"))
            #expect(text.hasSuffix("hello"))
            await client.close()
        }
    }

    @Test func clientHalfCloseMidBodyIsNotForwardedAsComplete() async throws {
        try await withProxy { proxy in
            let client = try await proxy.client()
            try await client.send("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nonly-ten!!")
            try await client.channel.close(mode: .output)
            _ = try await client.waitForClose(timeout: .seconds(3))
            await client.close()
            try await proxy.expectStillServing()
        }
    }

    @Test func connectIsRefused() async throws {
        try await withProxy { proxy in
            let client = try await proxy.client()
            try await client.send("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
            let response = try await client.readResponse(timeout: .seconds(3))
            #expect(response.status == 405 || response.status == 400)
            _ = try await client.waitForClose(timeout: .seconds(3))
            #expect(!proxy.upstream.requestURIs.contains("example.com:443"))
            await client.close()
        }
    }
}
