import NIOCore
import SluiceConfig
import SluiceTestSupport
import Testing

/// Issue 18, item 10: chunk extensions are bounded (SPEC §3 "Hostile clients"; Node CVE-2024-22019,
/// Go CVE-2023-39326). A chunk-size line over 4 KiB, or extension bytes beyond the body's data bytes
/// plus 16 KiB, get 400 and a close; extension bytes count toward `server.max_body_bytes` (413); a
/// trailer section over `server.max_header_bytes` gets 431. Everything here runs over real sockets,
/// so it holds whatever parses the requests.
@Suite("Security regression: chunked framing", .timeLimit(.minutes(3)))
struct SecurityRegressionChunkTests {
    private static let chunkedHead = "POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"

    /// `;e=` followed by `count - 3` token bytes: `count` bytes of chunk extension.
    private static func extensions(_ count: Int) -> String {
        ";e=" + String(repeating: "x", count: count - 3)
    }

    /// Sends `raw`, expects one answer with `status`, then the connection's end.
    private func expectRefused(
        _ client: RawHTTPClient,
        _ raw: String,
        status: Int,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        try? await client.send(raw)
        let response = try await client.readResponse(timeout: .seconds(5))
        #expect(response.status == status, sourceLocation: sourceLocation)
        #expect(response.header("connection") == "close", sourceLocation: sourceLocation)
        _ = try await client.waitForClose(timeout: .seconds(5))
        await client.close()
    }

    private func sha(_ text: String) -> String {
        var sha = SHA256()
        sha.update(Array(text.utf8))
        return "\(sha.finalize().hex) \(text.utf8.count)"
    }

    @Test func chunkSizeLineOver4KiBIsRefusedAndItsUpstreamConnectionIsNotReused() async throws {
        try await withProxy({ $0.server.threads = 1 }) { proxy in
            // The head goes upstream first, so the cut request holds a real upstream connection.
            let client = try await proxy.client()
            try await client.send(Self.chunkedHead)
            try await eventually("the head reached the upstream") { proxy.upstream.requestURIs == ["/upload"] }
            #expect(proxy.upstream.connectionsAccepted == 1)
            try await self.expectRefused(
                client,
                "1" + Self.extensions(5 * 1024) + "\r\na\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n",
                status: 400
            )
            // The upstream connection that carried half a body is closed, never pooled: the next
            // request goes out on a fresh one.
            let response = try await proxy.get("/conn")
            #expect(response.status == 200)
            #expect(response.bodyString == "2")
            #expect(!proxy.upstream.requestURIs.contains("/smuggled"))
        }
    }

    @Test func twentyKiBOfExtensionsOnAOneByteChunkAreRefused() async throws {
        try await withProxy { proxy in
            try await self.expectRefused(
                try await proxy.client(),
                Self.chunkedHead + "1" + Self.extensions(20 * 1024) + "\r\na\r\n0\r\n\r\n",
                status: 400
            )
            try await proxy.expectStillServing()
            #expect(proxy.upstream.requestURIs == ["/hello"])
        }
    }

    /// Lines under 4 KiB each, but far more extension than data: the per-body budget catches it.
    @Test func extensionsBeyondDataPlus16KiBAreRefused() async throws {
        try await withProxy { proxy in
            let line = "1" + Self.extensions(3000) + "\r\na\r\n"
            try await self.expectRefused(
                try await proxy.client(),
                Self.chunkedHead + String(repeating: line, count: 8) + "0\r\n\r\n",
                status: 400
            )
            // Within the budget (30 000 extension bytes for 40 960 data bytes) it passes, byte-exact.
            let data = String(repeating: "d", count: 4096)
            let fair = "1000" + Self.extensions(3000) + "\r\n" + data + "\r\n"
            let client = try await proxy.client()
            try await client.send(Self.chunkedHead + String(repeating: fair, count: 10) + "0\r\n\r\n")
            let response = try await client.readResponse()
            #expect(response.status == 200)
            #expect(response.bodyString == self.sha(String(repeating: data, count: 10)))
            await client.close()
        }
    }

    @Test func extensionBytesCountTowardMaxBodyBytes() async throws {
        try await withProxy({ $0.server.maxBodyBytes = 1000 }) { proxy in
            let data = String(repeating: "d", count: 900)
            // 900 data bytes alone fit.
            let client = try await proxy.client()
            try await client.send(Self.chunkedHead + "384;a=b\r\n" + data + "\r\n0\r\n\r\n")
            let fits = try await client.readResponse()
            #expect(fits.status == 200)
            #expect(fits.bodyString == self.sha(data))
            // With 200 bytes of extensions they do not.
            try await self.expectRefused(
                client,
                Self.chunkedHead + "384" + Self.extensions(200) + "\r\n" + data + "\r\n0\r\n\r\n",
                status: 413
            )
            try await proxy.expectStillServing()
        }
    }

    /// Trailers are bounded like a head: raw bytes, whitespace included, up to `max_header_bytes`.
    @Test func trailerSectionOverMaxHeaderBytesIsRefused() async throws {
        try await withProxy({ $0.server.maxHeaderBytes = 4096 }) { proxy in
            let padded = "X-Pad:" + String(repeating: " ", count: 8000) + "v\r\n"
            try await self.expectRefused(
                try await proxy.client(),
                Self.chunkedHead + "1\r\na\r\n0\r\n" + padded + "\r\n",
                status: 431
            )
            try await proxy.expectStillServing()
        }
    }

    @Test func normalChunkedUploadWithExtensionsAndTrailersPassesByteExact() async throws {
        try await withProxy { proxy in
            let chunks = ["hello", String(repeating: "0123456789", count: 700), "\r\n0\r\n\r\n", "x"]
            let extensions = [";a", ";name=value", ";q=\"quoted \\\" ;=\";b=c", ""]
            var body = ""
            for (chunk, ext) in zip(chunks, extensions) {
                body += String(chunk.utf8.count, radix: 16) + ext + "\r\n" + chunk + "\r\n"
            }
            body += "0;last=1\r\nX-Checksum: 42\r\nX-Other: a b c\r\n\r\n"
            let request = Array((Self.chunkedHead + body).utf8)
            // All at once, then in uneven pieces (every split point inside a size line or a trailer).
            for pieces in [1, 7, 61] {
                let client = try await proxy.client()
                var generator = SplitMix64(seed: UInt64(pieces))
                var offset = 0
                while offset < request.count {
                    let length = pieces == 1 ? request.count : 1 + Int(generator.next() % UInt64(2 * request.count / pieces))
                    let end = min(request.count, offset + length)
                    try await client.send(Array(request[offset..<end]))
                    offset = end
                }
                let response = try await client.readResponse()
                #expect(response.status == 200)
                #expect(response.bodyString == self.sha(chunks.joined()))
                await client.close()
            }
        }
    }

    @Test func pipelinedRequestsAfterAChunkedBodyStillWork() async throws {
        try await withProxy { proxy in
            let client = try await proxy.client()
            let upload = Self.chunkedHead + "3;ext=1\r\nabc\r\n0\r\nX-T: 1\r\n\r\n"
            try await client.send(upload + "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n" + upload + "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            for _ in 0..<2 {
                let uploaded = try await client.readResponse()
                #expect(uploaded.status == 200)
                #expect(uploaded.bodyString == self.sha("abc"))
                let hello = try await client.readResponse()
                #expect(hello.status == 200)
                #expect(hello.bodyString == "hello")
            }
            #expect(!client.isClosed)
            await client.close()
        }
    }

    /// The refused request waits behind one in flight: the earlier request still gets its own
    /// answer, then the refusal comes, and nothing after it reaches the upstream.
    @Test func oversizedChunkLineBehindAPipelinedRequestLeavesTheEarlierOneIntact() async throws {
        try await withProxy({ $0.server.threads = 1 }) { proxy in
            let client = try await proxy.client()
            try await client.send(
                "GET /slow?ms=200 HTTP/1.1\r\nHost: t\r\n\r\n" + Self.chunkedHead + "1" + Self.extensions(5000)
                    + "\r\na\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"
            )
            let slow = try await client.readResponse()
            #expect(slow.status == 200)
            #expect(slow.bodyString == "slow")
            let refused = try await client.readResponse(timeout: .seconds(5))
            #expect(refused.status == 400)
            _ = try await client.waitForClose(timeout: .seconds(5))
            await client.close()
            // Another client is served, with its own answer.
            let response = try await proxy.get("/hello")
            #expect(response.bodyString == "hello")
            #expect(!proxy.upstream.requestURIs.contains("/smuggled"))
        }
    }

    @Test func oversizedChunkLineIsRefusedOverTLS() async throws {
        try await ProxyTLSTests.withTLSListener { proxy, certificates in
            let client = try await RawHTTPClient.connect(
                port: proxy.port,
                group: ProxyHarness.group,
                tls: try certificates.clientContext()
            )
            _ = try await client.tlsHandshake()
            try await self.expectRefused(
                client,
                Self.chunkedHead + "1" + Self.extensions(5 * 1024) + "\r\na\r\n0\r\n\r\n",
                status: 400
            )
        }
    }

    /// Bytes tunnelled after an upgrade are never read as HTTP framing, however they look.
    @Test func tunnelBytesAreNotMistakenForChunkedFraming() async throws {
        try await withProxy { proxy in
            let client = try await proxy.client()
            let lookalike = Self.chunkedHead + "1" + Self.extensions(6000)
            try await client.send("GET /upgrade HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n" + lookalike)
            #expect(try await client.readResponse().status == 101)
            let echoed = try await client.readBytes(count: lookalike.utf8.count, timeout: .seconds(5))
            #expect(String(decoding: echoed, as: UTF8.self) == lookalike)
            try await client.send("\r\n")
            #expect(try await client.readBytes(count: 2, timeout: .seconds(5)) == [13, 10])
            await client.close()
        }
    }
}
