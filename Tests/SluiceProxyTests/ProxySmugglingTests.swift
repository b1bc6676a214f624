import NIOCore
import SluiceConfig
import SluiceTestSupport
import Testing

/// Request smuggling (SPEC §3): ambiguous framing is refused with 400 and the upstream never
/// receives a request the client did not send as a complete, properly framed one.
@Suite("Request smuggling", .timeLimit(.minutes(3)))
struct ProxySmugglingTests {
    private func expect400(_ proxy: ProxyHarness, _ raw: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let client = try await proxy.client()
        try? await client.send(raw)
        let response = try await client.readResponse(timeout: .seconds(5))
        #expect(response.status == 400, sourceLocation: sourceLocation)
        _ = try await client.waitForClose(timeout: .seconds(5))
        await client.close()
    }

    @Test(arguments: [
        // CL.TE and TE.CL
        "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n",
        "POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n",
        // Obfuscated Transfer-Encoding
        "POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n",
        "POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n",
        "POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: identity\r\nContent-Length: 5\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n",
        "POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n",
        "POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding:\tchunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n",
        "POST /upload HTTP/1.1\r\nHost: t\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n",
        // Bad chunk sizes
        "POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nabc\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n",
        "POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nabc\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n",
        // HTTP/1.0 with chunked
        "POST /upload HTTP/1.0\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n",
    ])
    func ambiguousFramingIsRefused(raw: String) async throws {
        try await withProxy { proxy in
            try await self.expect400(proxy, raw)
            #expect(!proxy.upstream.requestURIs.contains("/smuggled"))
            try await proxy.expectStillServing()
            #expect(!proxy.upstream.requestURIs.contains("/smuggled"))
        }
    }

    @Test func requestHiddenInContentLengthBodyStaysBody() async throws {
        try await withProxy({ $0.server.threads = 1 }) { proxy in
            let hidden = "GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"
            let client = try await proxy.client()
            try await client.send("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: \(hidden.utf8.count)\r\n\r\n\(hidden)")
            let response = try await client.readResponse()
            #expect(response.status == 200)
            var sha = SHA256()
            sha.update(Array(hidden.utf8))
            #expect(response.bodyString == "\(sha.finalize().hex) \(hidden.utf8.count)")
            // Again on the same (pooled) upstream connection.
            try await client.send("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(try await client.readResponse().bodyString == "hello")
            #expect(proxy.upstream.requestURIs == ["/upload", "/hello"])
            await client.close()
        }
    }

    @Test func bodyOfALocallyAnsweredRequestIsNotForwarded() async throws {
        try await withProxy({ $0.server.maxBodyBytes = 10 }) { proxy in
            let hidden = "GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"
            let client = try await proxy.client()
            try? await client.send("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: \(hidden.utf8.count)\r\n\r\n\(hidden)")
            #expect(try await client.readResponse(timeout: .seconds(5)).status == 413)
            _ = try await client.waitForClose(timeout: .seconds(5))
            await client.close()
            try await proxy.expectStillServing()
            #expect(proxy.upstream.requestURIs == ["/hello"])
        }
    }
}
