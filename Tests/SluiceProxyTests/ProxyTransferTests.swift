import NIOCore
import NIOHTTP1
import SluiceConfig
import SluiceTestSupport
import Testing

/// Bodies through the proxy: sizes, framings, HTTP/1.0, pipelining, bodyless responses,
/// `Expect: 100-continue` (SPEC §3).
@Suite("Transfers", .timeLimit(.minutes(3)))
struct ProxyTransferTests {
    static let bigSize = 50 * 1024 * 1024

    @Test func fiftyMegabyteUploadWithContentLength() async throws {
        try await withProxy { proxy in
            let client = try await proxy.streamingClient()
            let head = HTTPRequestHead(
                version: .http1_1,
                method: .POST,
                uri: "/upload",
                headers: ["Host": "test", "Content-Length": String(Self.bigSize)]
            )
            let response = try await withTimeout(.seconds(30), "50 MB upload") {
                try await client.send(head, bodyBytes: Self.bigSize)
                return try await client.response()
            }
            #expect(response.head.status == .ok)
            #expect(response.smallBody == "\(TestPattern.sha256(count: Self.bigSize)) \(Self.bigSize)")
            await client.close()
        }
    }

    @Test func fiftyMegabyteDownload() async throws {
        try await withProxy { proxy in
            let client = try await proxy.streamingClient()
            let response = try await withTimeout(.seconds(30), "50 MB download") {
                try await client.send(HTTPRequestHead(version: .http1_1, method: .GET, uri: "/download?bytes=\(Self.bigSize)", headers: ["Host": "test"]))
                return try await client.response()
            }
            #expect(response.head.status == .ok)
            #expect(response.head.headers.first(name: "content-length") == String(Self.bigSize))
            #expect(response.bodyBytes == Self.bigSize)
            #expect(response.sha256 == TestPattern.sha256(count: Self.bigSize))
            await client.close()
        }
    }

    @Test func chunkedUploadArrivesIntact() async throws {
        try await withProxy { proxy in
            let size = 3 * 1024 * 1024 + 17
            let client = try await proxy.streamingClient()
            let head = HTTPRequestHead(
                version: .http1_1,
                method: .POST,
                uri: "/upload",
                headers: ["Host": "test", "Transfer-Encoding": "chunked"]
            )
            let response = try await withTimeout(.seconds(20), "chunked upload") {
                try await client.send(head, bodyBytes: size)
                return try await client.response()
            }
            #expect(response.head.status == .ok)
            #expect(response.smallBody == "\(TestPattern.sha256(count: size)) \(size)")
            await client.close()
        }
    }

    @Test func chunkedUploadWithTrailersAndExtensions() async throws {
        try await withProxy { proxy in
            let client = try await proxy.client()
            try await client.send(
                "POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + "3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Checksum: 1\r\n\r\n"
                    + "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"
            )
            let upload = try await client.readResponse()
            #expect(upload.status == 200)
            var sha = SHA256()
            sha.update(Array("abcde".utf8))
            #expect(upload.bodyString == "\(sha.finalize().hex) 5")
            // The connection is still in sync after the trailers.
            let hello = try await client.readResponse()
            #expect(hello.bodyString == "hello")
            await client.close()
        }
    }

    @Test func chunkedResponseIsDechunked() async throws {
        try await withProxy { proxy in
            let response = try await proxy.get("/chunked")
            #expect(response.status == 200)
            #expect(response.header("transfer-encoding") == "chunked")
            #expect(response.bodyString == "abbccc")
        }
    }

    @Test func responseTrailersDoNotBreakTheConnection() async throws {
        try await withProxy { proxy in
            let client = try await proxy.client()
            try await client.send("GET /trailers HTTP/1.1\r\nHost: t\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            let first = try await client.readResponse()
            #expect(first.status == 200)
            #expect(first.bodyString == "abc")
            let second = try await client.readResponse()
            #expect(second.bodyString == "hello")
            await client.close()
        }
    }

    @Test func closeDelimitedUpstreamResponseIsRechunkedForHTTP11() async throws {
        try await withProxy { proxy in
            let client = try await proxy.client()
            try await client.send("GET /no-length HTTP/1.1\r\nHost: t\r\n\r\n")
            let response = try await client.readResponse()
            #expect(response.bodyString == "bye")
            #expect(response.header("transfer-encoding") == "chunked")
            // The client connection survives the upstream's close.
            try await client.send("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(try await client.readResponse().bodyString == "hello")
            await client.close()
        }
    }

    // MARK: HTTP/1.0

    @Test func http10ClientGetsResponseAndClose() async throws {
        try await withProxy { proxy in
            let client = try await proxy.client()
            try await client.send("GET /hello HTTP/1.0\r\n\r\n")
            let bytes = try await client.waitForClose(timeout: .seconds(5))
            let text = String(decoding: bytes, as: UTF8.self)
            #expect(text.hasPrefix("HTTP/1.0 200"))
            #expect(text.hasSuffix("\r\n\r\nhello"))
            #expect(!text.lowercased().contains("transfer-encoding"))
        }
    }

    @Test func http10KeepAliveClientKeepsConnection() async throws {
        try await withProxy { proxy in
            let client = try await proxy.client()
            for _ in 0..<3 {
                try await client.send("GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                let response = try await client.readResponse()
                #expect(response.version == "HTTP/1.0")
                #expect(response.bodyString == "hello")
                #expect(response.header("connection")?.lowercased() == "keep-alive")
            }
            #expect(!client.isClosed)
            await client.close()
        }
    }

    @Test func http10ClientWithChunkedUpstreamGetsCloseDelimitedBody() async throws {
        try await withProxy { proxy in
            let client = try await proxy.client()
            // Even asking for keep-alive: the body can only be delimited by closing.
            try await client.send("GET /chunked HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            let bytes = try await client.waitForClose(timeout: .seconds(5))
            let text = String(decoding: bytes, as: UTF8.self)
            #expect(text.hasPrefix("HTTP/1.0 200"))
            #expect(!text.lowercased().contains("transfer-encoding"))
            #expect(!text.lowercased().contains("connection: keep-alive"))
            #expect(text.hasSuffix("\r\n\r\nabbccc"))
        }
    }

    // MARK: pipelining

    @Test func pipelinedPostBodyInTheMiddle() async throws {
        try await withProxy { proxy in
            let client = try await proxy.client()
            let body = String(repeating: "x", count: 100_000)
            try await client.send(
                "GET /slow?ms=100 HTTP/1.1\r\nHost: t\r\n\r\n"
                    + "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
                    + "GET /chunked HTTP/1.1\r\nHost: t\r\n\r\n"
                    + "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"
            )
            var sha = SHA256()
            sha.update(Array(body.utf8))
            #expect(try await client.readResponse().bodyString == "slow")
            #expect(try await client.readResponse().bodyString == "\(sha.finalize().hex) 100000")
            #expect(try await client.readResponse().bodyString == "abbccc")
            #expect(try await client.readResponse().bodyString == "hello")
            await client.close()
        }
    }

    // MARK: bodyless responses

    @Test func headKeepsContentLengthWithoutBody() async throws {
        try await withProxy { proxy in
            let client = try await proxy.client()
            try await client.send("HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            let head = try await client.readResponse(isHEAD: true)
            #expect(head.status == 200)
            #expect(head.header("content-length") == "5")
            #expect(head.header("transfer-encoding") == nil)
            #expect(head.body.isEmpty)
            // If the HEAD response had carried a body, this would parse garbage.
            let get = try await client.readResponse()
            #expect(get.status == 200)
            #expect(get.bodyString == "hello")
            await client.close()
        }
    }

    @Test func headOfChunkedResource() async throws {
        try await withProxy { proxy in
            let client = try await proxy.client()
            try await client.send("HEAD /chunked HTTP/1.1\r\nHost: t\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            let head = try await client.readResponse(isHEAD: true)
            #expect(head.status == 200)
            let get = try await client.readResponse()
            #expect(get.bodyString == "hello")
            await client.close()
        }
    }

    @Test(arguments: [204, 304])
    func bodylessStatus(code: Int) async throws {
        try await withProxy { proxy in
            let client = try await proxy.client()
            try await client.send("GET /status?code=\(code) HTTP/1.1\r\nHost: t\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            let response = try await client.readResponse()
            #expect(response.status == code)
            #expect(response.header("transfer-encoding") == nil)
            #expect(response.header("content-length") == nil)
            let next = try await client.readResponse()
            #expect(next.status == 200)
            #expect(next.bodyString == "hello")
            await client.close()
        }
    }

    // MARK: 100-continue

    @Test func expectContinue() async throws {
        try await withProxy { proxy in
            let client = try await proxy.client()
            try await client.send("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
            let interim = try await client.readResponse(timeout: .seconds(5))
            #expect(interim.status == 100)
            try await client.send("hello")
            let final = try await client.readResponse()
            #expect(final.status == 200)
            var sha = SHA256()
            sha.update(Array("hello".utf8))
            #expect(final.bodyString == "\(sha.finalize().hex) 5")
            // The upstream never saw the expectation (Sluice answered it).
            #expect(proxy.upstream.requestHeads.last?.headers.contains(name: "expect") == false)
            // And the connection is reusable.
            try await client.send("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(try await client.readResponse().bodyString == "hello")
            await client.close()
        }
    }

    @Test func expectContinueClientSendsBodyWithoutWaiting() async throws {
        try await withProxy { proxy in
            let client = try await proxy.client()
            try await client.send("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello")
            var response = try await client.readResponse()
            if response.status == 100 { response = try await client.readResponse() }
            #expect(response.status == 200)
            #expect(response.bodyString.hasSuffix(" 5"))
            await client.close()
        }
    }
}
