import Foundation
import SluiceConfig
import SluiceTestSupport
import Testing

@testable import SluiceProxy

/// HTTP/2 with a real client (issue 13): curl (built with nghttp2) over TLS with ALPN `h2`, and with prior knowledge
/// over cleartext (h2c); the over-limit request gets its 429 over HTTP/2 too.
@Suite("HTTP/2 with curl", .timeLimit(.minutes(2)))
struct ProxyHTTP2CurlTests {
    /// Runs curl; returns what `--write-out` printed after the body.
    static func curl(_ arguments: [String]) throws -> String {
        try CleanSpawn.run(
            "/usr/bin/curl",
            ["--silent", "--show-error", "--max-time", "20", "--write-out", "\n%{http_version} %{http_code}"] + arguments
        )
    }

    static func limitRule(_ count: Int) -> RuleConfiguration {
        RuleConfiguration(name: "curl", key: [.ip], limits: [RateLimit(count: count, periodSeconds: 60, text: "\(count)/minute")])
    }

    @Test("curl --http2 over TLS negotiates h2, is forwarded, and is limited")
    func curlOverTLSNegotiatesH2() async throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        let leaf = try certificates.issue("proxy")
        try await withProxy({
            $0.server.tls = TLSFiles(cert: leaf.cert, key: leaf.key)
            $0.rules = [Self.limitRule(2)]
        }) { proxy in
            let url = "https://localhost:\(proxy.port)/echo-headers"
            let arguments = ["--http2", "--cacert", certificates.caPath, "--include", url]
            let first = try Self.curl(arguments)
            #expect(first.hasSuffix("\n2 200"))
            #expect(first.hasPrefix("HTTP/2 200"))
            #expect(first.contains("x-forwarded-proto: https\n"))
            #expect(first.contains("host: localhost:\(proxy.port)\n"))
            #expect(first.lowercased().contains("ratelimit-policy: \"curl\";q=2;w=60"))
            #expect(try Self.curl(arguments).hasSuffix("\n2 200"))
            let limited = try Self.curl(arguments)
            #expect(limited.hasSuffix("\n2 429"))
            #expect(limited.lowercased().contains("retry-after: "))
            // HTTP/1.1 clients of the same listener still get HTTP/1.1 (and share the budget).
            let http1 = try Self.curl(["--http1.1", "--cacert", certificates.caPath, url])
            #expect(http1.hasSuffix("\n1.1 429"))
        }
    }

    @Test("server.http2 false: ALPN offers http/1.1 only, curl --http2 falls back to HTTP/1.1")
    func http2OffKeepsHTTP1() async throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        let leaf = try certificates.issue("proxy")
        try await withProxy({
            $0.server.tls = TLSFiles(cert: leaf.cert, key: leaf.key)
            $0.server.http2 = false
        }) { proxy in
            let out = try Self.curl(["--http2", "--cacert", certificates.caPath, "https://localhost:\(proxy.port)/hello"])
            #expect(out == "hello\n1.1 200")
        }
    }

    @Test("curl --http2-prior-knowledge over h2c, with a 429 on the over-limit request and an upload")
    func curlPriorKnowledgeOverH2C() async throws {
        try await withProxy({
            $0.server.h2c = true
            $0.rules = [Self.limitRule(3)]
        }) { proxy in
            let base = "http://127.0.0.1:\(proxy.port)"
            #expect(try Self.curl(["--http2-prior-knowledge", "\(base)/hello"]) == "hello\n2 200")
            let upload = try Self.curl(["--http2-prior-knowledge", "--data-binary", "abc", "\(base)/upload"])
            // SHA-256("abc")
            #expect(upload == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad 3\n2 200")
            #expect(try Self.curl(["--http2-prior-knowledge", "\(base)/hello"]) == "hello\n2 200")
            let limited = try Self.curl(["--http2-prior-knowledge", "--include", "\(base)/hello"])
            #expect(limited.hasPrefix("HTTP/2 429"))
            #expect(limited.hasSuffix("\n2 429"))
            // Without prior knowledge, curl speaks HTTP/1.1 to the same listener.
            #expect(try Self.curl(["\(base)/hello"]).hasSuffix("\n1.1 429"))
        }
    }
}
