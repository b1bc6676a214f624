import NIOCore
import SluiceConfig
import SluiceTestSupport
import Testing

/// Issue 18, item 1: no `Connection` option removes a framing header, `Host`, or a header Sluice sets itself
/// (SPEC §3 "Hostile clients").
///
/// Before the fix, `Connection: Content-Length` made Sluice drop `Content-Length` but still stream the body to
/// the upstream, unframed: the upstream read it as further requests (which passed no limit and carried any
/// `X-Forwarded-For`), and their responses waited on the pooled upstream connection for the next client.
@Suite("Security regression: framing", .timeLimit(.minutes(3)))
struct SecurityRegressionFramingTests {
    /// A request the body hides; the upstream answers `/echo-headers` with its own head, so a response that
    /// reaches the wrong client is easy to recognise.
    private static let hidden = "GET /echo-headers HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n"

    private static func sha(_ text: String) -> String {
        var sha = SHA256()
        sha.update(Array(text.utf8))
        return "\(sha.finalize().hex) \(text.utf8.count)"
    }

    @Test(arguments: ["Content-Length", "content-length", "close, Content-Length", "CONTENT-LENGTH, keep-alive"])
    func connectionOptionsNeverRemoveContentLength(option: String) async throws {
        // One loop: the second client gets the same pooled upstream connection as the first.
        try await withProxy({ $0.server.threads = 1 }) { proxy in
            let attacker = try await proxy.client()
            try await attacker.send(
                "POST /upload HTTP/1.1\r\nHost: t\r\nConnection: \(option)\r\n"
                    + "Content-Length: \(Self.hidden.utf8.count)\r\n\r\n\(Self.hidden)"
            )
            let answer = try await attacker.readResponse(timeout: .seconds(5))
            #expect(answer.status == 200)
            #expect(answer.bodyString == Self.sha(Self.hidden), "the upstream must read the whole body as the body")
            await attacker.close()

            // Another client never receives a response that is not its own.
            for _ in 0..<3 {
                let victim = try await proxy.client()
                try await victim.send("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
                #expect(try await victim.readResponse(timeout: .seconds(5)).bodyString == "hello")
                await victim.close()
            }
            #expect(!proxy.upstream.requestURIs.contains("/echo-headers"))
            #expect(proxy.upstream.requestURIs == ["/upload", "/hello", "/hello", "/hello"])
        }
    }

    @Test func connectionOptionsNeverRemoveTransferEncoding() async throws {
        try await withProxy({ $0.server.threads = 1 }) { proxy in
            let attacker = try await proxy.client()
            let size = String(Self.hidden.utf8.count, radix: 16)
            try await attacker.send(
                "POST /upload HTTP/1.1\r\nHost: t\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + "\(size)\r\n\(Self.hidden)\r\n0\r\n\r\n"
            )
            let answer = try await attacker.readResponse(timeout: .seconds(5))
            #expect(answer.status == 200)
            #expect(answer.bodyString == Self.sha(Self.hidden))
            try await attacker.send("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(try await attacker.readResponse(timeout: .seconds(5)).bodyString == "hello")
            await attacker.close()
            #expect(proxy.upstream.requestURIs == ["/upload", "/hello"])
        }
    }

    @Test func connectionOptionsNeverRemoveHostOrForwardingHeaders() async throws {
        try await withProxy { proxy in
            let response = try await proxy.get(
                "/echo-headers",
                headers: ["Connection: Host, X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, X-Drop", "X-Drop: 1",
                          "X-Forwarded-For: 198.51.100.7"]
            )
            #expect(response.status == 200)
            let lines = response.bodyString.split(separator: "\n").map(String.init)
            #expect(lines.contains("host: test"))
            #expect(lines.contains("x-forwarded-for: 198.51.100.7, 127.0.0.1"))
            #expect(lines.contains("x-forwarded-proto: http"))
            #expect(lines.contains("x-forwarded-host: test"))
            // Options that name anything else are still honoured (RFC 9110 §7.6.1).
            #expect(!lines.contains { $0.hasPrefix("x-drop:") })
            #expect(!lines.contains { $0.hasPrefix("connection:") })
        }
    }
}
