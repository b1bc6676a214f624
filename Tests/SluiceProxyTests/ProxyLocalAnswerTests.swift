import SluiceConfig
import SluiceTestSupport
import Testing

/// Requests answered by Sluice itself (429) on keep-alive connections: the body is dropped and
/// the connection stays usable, unless the body is not worth reading.
@Suite("Local answers", .timeLimit(.minutes(3)))
struct ProxyLocalAnswerTests {
    static func oneLoginPerMinute(_ config: inout SluiceConfiguration) {
        config.rules = [
            RuleConfiguration(
                name: "login",
                match: RuleMatch(methods: ["POST"], path: .exact("/login")),
                key: [.ip],
                limits: [RateLimit(count: 1, periodSeconds: 60, text: "1/minute")],
                // gcra: the second request within a minute is refused whenever the test runs (a fixed window
                // would hand out a fresh budget at the turn of the minute).
                algorithm: .gcra
            )
        ]
    }

    @Test func blockedSmallBodyIsDroppedAndConnectionReused() async throws {
        try await withProxy(Self.oneLoginPerMinute) { proxy in
            let client = try await proxy.client()
            let post = "POST /login HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nuser=secret"
            try await client.send(post)
            #expect(try await client.readResponse().status == 404)  // TestUpstream has no /login
            try await client.send(post)
            let blocked = try await client.readResponse()
            #expect(blocked.status == 429)
            #expect(blocked.header("connection") == nil)
            // Same connection: the dropped body was not taken for a request.
            try await client.send("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            let next = try await client.readResponse()
            #expect(next.status == 200)
            #expect(next.bodyString == "hello")
            #expect(!proxy.upstream.requestURIs.contains { $0.contains("secret") })
            await client.close()
        }
    }

    @Test func blockedLargeOrChunkedBodyClosesTheConnection() async throws {
        try await withProxy(Self.oneLoginPerMinute) { proxy in
            _ = try await proxy.get("/hello")
            let first = try await proxy.client()
            try await first.send("POST /login HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
            _ = try await first.readResponse()
            await first.close()
            for head in [
                "POST /login HTTP/1.1\r\nHost: t\r\nContent-Length: 10000000\r\n\r\n",
                "POST /login HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
                "POST /login HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
            ] {
                let client = try await proxy.client()
                try await client.send(head)
                let blocked = try await client.readResponse()
                #expect(blocked.status == 429)
                #expect(blocked.header("connection") == "close")
                _ = try await client.waitForClose(timeout: .seconds(5))
            }
        }
    }
}

@Suite("Lingering close", .timeLimit(.minutes(3)))
struct ProxyLingeringCloseTests {
    /// A client still uploading when its 413 is sent reads the 413 (the rest of the upload is
    /// read off instead of being answered with a reset), and the connection ends afterwards.
    @Test func tooLargeUploadStillGetsItsAnswer() async throws {
        try await withProxy({ $0.server.maxBodyBytes = 100_000 }) { proxy in
            let client = try await proxy.client()
            try await client.send("POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
            let chunk = Array("10000\r\n".utf8) + [UInt8](repeating: 0x61, count: 0x10000) + Array("\r\n".utf8)
            // Far past the limit: the 413 is sent while these are still arriving.
            for _ in 0..<32 {
                try await client.send(chunk)
            }
            let response = try await client.readResponse()
            #expect(response.status == 413)
            _ = try await client.waitForClose(timeout: .seconds(5))
            await client.close()
        }
    }
}
