import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import SluiceConfig
import SluiceTestSupport
import Testing

@testable import SluiceProxy

/// TLS listeners (`server.tls`) and `https://` upstreams (`upstream.tls`), with certificates a private CA issues
/// at test time.
@Suite("TLS", .timeLimit(.minutes(2)))
struct ProxyTLSTests {
    /// A proxy whose listener terminates TLS with a leaf of a fresh private CA, and that CA (for clients).
    static func withTLSListener(_ body: (ProxyHarness, TestCertificates) async throws -> Void) async throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        let leaf = try certificates.issue("proxy")
        try await withProxy({ $0.server.tls = TLSFiles(cert: leaf.cert, key: leaf.key) }) { proxy in
            try await body(proxy, certificates)
        }
    }

    // MARK: listeners

    @Test func tlsListenerForwardsToPlainUpstreamWithALPNAndForwardedProto() async throws {
        try await Self.withTLSListener { proxy, certificates in
            let client = try await RawHTTPClient.connect(
                port: proxy.port,
                group: ProxyHarness.group,
                tls: try certificates.clientContext()
            )
            #expect(try await client.tlsHandshake() == "http/1.1")
            for _ in 0..<2 {
                try await client.send("GET /echo-headers HTTP/1.1\r\nHost: test\r\nX-Forwarded-Proto: http\r\n\r\n")
                let response = try await client.readResponse()
                #expect(response.status == 200)
                #expect(response.bodyString.contains("x-forwarded-proto: https\n"))
                #expect(!response.bodyString.contains("x-forwarded-proto: http\n"))
            }
            #expect(!client.isClosed)
            await client.close()
        }
    }

    /// With `server.http2: false`, a client offering only `h2` still gets HTTP/1.1 (no ALPN answer), as with nginx
    /// without http2.
    @Test func clientWithoutHTTP1InALPNStillServed() async throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        let leaf = try certificates.issue("proxy")
        try await withProxy({
            $0.server.tls = TLSFiles(cert: leaf.cert, key: leaf.key)
            $0.server.http2 = false
        }) { proxy in
            let client = try await RawHTTPClient.connect(
                port: proxy.port,
                group: ProxyHarness.group,
                tls: try certificates.clientContext(protocols: ["h2"])
            )
            #expect(try await client.tlsHandshake() == nil)
            try await client.send("GET /hello HTTP/1.1\r\nHost: test\r\n\r\n")
            #expect(try await client.readResponse().status == 200)
            await client.close()
        }
    }

    @Test func plainHTTPOnTLSPortIsClosedWithoutDisturbingTLSClients() async throws {
        try await Self.withTLSListener { proxy, certificates in
            let tlsClient = try await RawHTTPClient.connect(
                port: proxy.port,
                group: ProxyHarness.group,
                tls: try certificates.clientContext()
            )
            try await tlsClient.send("GET /conn HTTP/1.1\r\nHost: test\r\n\r\n")
            let first = try await tlsClient.readResponse()
            #expect(first.status == 200)

            let plain = try await proxy.client()
            try await plain.send("GET /hello HTTP/1.1\r\nHost: test\r\n\r\n")
            let received = try await plain.waitForClose(timeout: .seconds(20))
            #expect(!String(decoding: received, as: UTF8.self).contains("hello"))

            // An untrusting TLS client fails its own handshake; nobody else notices.
            let untrusting = try await RawHTTPClient.connect(
                port: proxy.port,
                group: ProxyHarness.group,
                tls: try NIOSSLContext(configuration: .makeClientConfiguration())
            )
            await #expect(throws: (any Error).self) { try await untrusting.tlsHandshake(timeout: .seconds(20)) }

            try await tlsClient.send("GET /conn HTTP/1.1\r\nHost: test\r\n\r\n")
            let second = try await tlsClient.readResponse()
            #expect(second.status == 200)
            #expect(second.bodyString == first.bodyString, "the TLS client kept its connection and its upstream")
            await tlsClient.close()
        }
    }

    @Test func reloadServesTheNewCertificateToNewConnectionsOnly() async throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        let a = try certificates.issue("a", subject: "localhost")
        let b = try certificates.issue("b", subject: "renewed.localhost")
        // One pair of paths, renewed in place, as an operator (or certbot) does.
        let live = TestCertificates.Pair(cert: "\(certificates.directory)/live.pem", key: "\(certificates.directory)/live.key")
        try Self.copy(a, to: live)
        try await withProxy({ $0.server.tls = TLSFiles(cert: live.cert, key: live.key) }) { proxy in
            let before = try await RawHTTPClient.connect(port: proxy.port, group: ProxyHarness.group, tls: try certificates.clientContext())
            _ = try await before.tlsHandshake()
            let certificateA = try NIOSSLCertificate.fromPEMFile(a.cert)[0]
            #expect(try await before.peerCertificate() == certificateA)

            // Unusable files: the reload fails and the running certificate stays.
            try "not a certificate\n".write(toFile: live.cert, atomically: true, encoding: .utf8)
            await #expect(throws: TLSSetupError.self) { try await proxy.server.reload(proxy.server.configuration) }
            #expect(try await Self.peerCertificate(proxy, certificates) == certificateA)

            try Self.copy(b, to: live)
            try await proxy.server.reload(proxy.server.configuration)
            let certificateB = try NIOSSLCertificate.fromPEMFile(b.cert)[0]
            #expect(try await Self.peerCertificate(proxy, certificates) == certificateB)

            try await before.send("GET /hello HTTP/1.1\r\nHost: test\r\n\r\n")
            #expect(try await before.readResponse().status == 200)
            #expect(try await before.peerCertificate() == certificateA)
            await before.close()
        }
    }

    @Test func unusableFilesRefusedAtStartNamingTheFile() throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        let a = try certificates.issue("a")
        let b = try certificates.issue("b")
        let garbage = "\(certificates.directory)/garbage.pem"
        try "hello\n".write(toFile: garbage, atomically: true, encoding: .utf8)
        func startError(_ configure: (inout SluiceConfiguration) -> Void) -> String? {
            var configuration = SluiceConfiguration()
            configure(&configuration)
            do {
                _ = try ProxyServer(configuration: configuration, logger: Logger(label: "test"))
                return nil
            } catch {
                return error.description
            }
        }
        let badCert = startError { $0.server.tls = TLSFiles(cert: garbage, key: a.key) }
        #expect(badCert?.hasPrefix("server.tls.cert: cannot use '\(garbage)': ") == true, "\(badCert ?? "started")")
        let badKey = startError { $0.server.tls = TLSFiles(cert: a.cert, key: garbage) }
        #expect(badKey?.hasPrefix("server.tls.key: cannot use '\(garbage)': not a PEM private key") == true, "\(badKey ?? "started")")
        let mismatch = startError { $0.server.tls = TLSFiles(cert: a.cert, key: b.key) }
        #expect(mismatch?.hasPrefix("server.tls.key: cannot use '\(b.key)': does not match the certificate") == true, "\(mismatch ?? "started")")
        let missing = startError { $0.server.tls = TLSFiles(cert: "\(certificates.directory)/none.pem", key: a.key) }
        #expect(missing == "server.tls.cert: cannot use '\(certificates.directory)/none.pem': no such file")
        let badCA = startError {
            $0.upstream.targets = [UpstreamTarget(scheme: .https, host: "localhost", port: 443)]
            $0.upstream.tls = UpstreamTLS(verify: true, ca: garbage)
        }
        #expect(badCA?.hasPrefix("upstream.tls.ca: cannot use '\(garbage)': ") == true, "\(badCA ?? "started")")
    }

    // MARK: https upstreams

    @Test func httpsUpstreamVerifiedAgainstTheCA() async throws {
        try await Self.withTLSUpstream { certificates, upstream in
            try await withProxy({
                $0.server.threads = 1
                $0.upstream.targets = [UpstreamTarget(scheme: .https, host: "localhost", port: upstream.port)]
                $0.upstream.tls = UpstreamTLS(verify: true, ca: certificates.caPath)
            }) { proxy in
                let client = try await proxy.client()
                var connections: Set<String> = []
                for _ in 0..<3 {
                    try await client.send("GET /conn HTTP/1.1\r\nHost: test\r\n\r\n")
                    let response = try await client.readResponse()
                    #expect(response.status == 200)
                    connections.insert(response.bodyString)
                }
                #expect(connections.count == 1, "the pooled TLS connection is reused")
                #expect(upstream.connectionsAccepted == 1)
                await client.close()
                // An address target is checked against the certificate's IP addresses.
                try await proxy.server.reload({
                    var c = proxy.server.configuration
                    c.upstream.targets = [UpstreamTarget(scheme: .https, host: "127.0.0.1", port: upstream.port)]
                    return c
                }())
                #expect(try await proxy.get("/hello").status == 200)
            }
        }
    }

    /// A pooled TLS connection the upstream closes as it is reused: retried once on a fresh one, as over HTTP.
    @Test func stalePooledTLSConnectionIsRetried() async throws {
        try await Self.withTLSUpstream { certificates, upstream in
            try await withProxy({
                $0.server.threads = 1
                $0.upstream.targets = [UpstreamTarget(scheme: .https, host: "localhost", port: upstream.port)]
                $0.upstream.tls = UpstreamTLS(verify: true, ca: certificates.caPath)
            }) { proxy in
                let client = try await proxy.client()
                try await client.send("GET /stale HTTP/1.1\r\nHost: t\r\n\r\n")
                #expect(try await client.readResponse().bodyString == "stale")
                try await client.send("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
                let response = try await client.readResponse(timeout: .seconds(10))
                #expect(response.status == 200)
                #expect(upstream.connectionsAccepted == 2)
                await client.close()
            }
        }
    }

    @Test func httpsUpstreamUnknownToTheSystemRootsIs502() async throws {
        try await Self.withTLSUpstream { _, upstream in
            try await withProxy({
                $0.upstream.targets = [UpstreamTarget(scheme: .https, host: "localhost", port: upstream.port)]
                $0.upstream.tls = UpstreamTLS(verify: true, ca: nil)
            }) { proxy in
                let response = try await proxy.get("/hello")
                #expect(response.status == 502)
                #expect(upstream.requestURIs.isEmpty)
            }
        }
    }

    @Test func httpsUpstreamWithoutVerification() async throws {
        try await Self.withTLSUpstream(altNames: "DNS:elsewhere.example") { _, upstream in
            try await withProxy({
                $0.upstream.targets = [UpstreamTarget(scheme: .https, host: "localhost", port: upstream.port)]
                $0.upstream.tls = UpstreamTLS(verify: false, ca: nil)
            }) { proxy in
                let response = try await proxy.get("/echo-headers")
                #expect(response.status == 200)
                #expect(response.bodyString.contains("x-forwarded-proto: http\n"))
            }
        }
    }

    @Test func httpsUpstreamWithAnotherNameIs502() async throws {
        try await Self.withTLSUpstream(altNames: "DNS:elsewhere.example") { certificates, upstream in
            try await withProxy({
                $0.upstream.targets = [UpstreamTarget(scheme: .https, host: "localhost", port: upstream.port)]
                $0.upstream.tls = UpstreamTLS(verify: true, ca: certificates.caPath)
            }) { proxy in
                let response = try await proxy.get("/hello")
                #expect(response.status == 502)
                #expect(upstream.requestURIs.isEmpty)
            }
        }
    }

    /// An upstream that accepts TCP but never answers the handshake: 502 after `upstream_connect`, not a hang.
    @Test func stalledUpstreamHandshakeIs502() async throws {
        let silent = try await ServerBootstrap(group: ProxyHarness.group)
            .childChannelOption(.autoRead, value: false)
            .bind(host: "127.0.0.1", port: 0).get()
        defer { silent.close(promise: nil) }
        try await withProxy({
            $0.upstream.targets = [UpstreamTarget(scheme: .https, host: "localhost", port: silent.localAddress!.port!)]
            $0.upstream.tls = UpstreamTLS(verify: false, ca: nil)
            $0.server.timeouts.upstreamConnect = .milliseconds(500)
        }) { proxy in
            let response = try await proxy.get("/hello")
            #expect(response.status == 502)
        }
    }

    @Test func upgradeTunnelsThroughTLSOnBothSides() async throws {
        try await Self.withTLSUpstream { certificates, upstream in
            let leaf = try certificates.issue("proxy")
            try await withProxy({
                $0.server.tls = TLSFiles(cert: leaf.cert, key: leaf.key)
                $0.upstream.targets = [UpstreamTarget(scheme: .https, host: "localhost", port: upstream.port)]
                $0.upstream.tls = UpstreamTLS(verify: true, ca: certificates.caPath)
            }) { proxy in
                let client = try await RawHTTPClient.connect(
                    port: proxy.port,
                    group: ProxyHarness.group,
                    tls: try certificates.clientContext()
                )
                try await client.send("GET /upgrade HTTP/1.1\r\nHost: test\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n")
                #expect(try await client.readResponse().status == 101)
                try await client.send("ping")
                #expect(try await client.readBytes(count: 4) == Array("ping".utf8))
                await client.close()
            }
        }
    }

    // MARK: helpers

    /// A ``TestUpstream`` speaking HTTPS with a leaf of a fresh CA (`altNames` on the leaf).
    static func withTLSUpstream(
        altNames: String = "DNS:localhost,IP:127.0.0.1",
        _ body: (TestCertificates, TestUpstream) async throws -> Void
    ) async throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        let leaf = try certificates.issue("upstream", altNames: altNames)
        let upstream = try await TestUpstream(group: ProxyHarness.group, tls: try TestCertificates.serverContext(leaf))
        do {
            try await body(certificates, upstream)
        } catch {
            await upstream.close()
            throw error
        }
        await upstream.close()
    }

    static func copy(_ pair: TestCertificates.Pair, to destination: TestCertificates.Pair) throws {
        try Data(contentsOf: URL(fileURLWithPath: pair.cert)).write(to: URL(fileURLWithPath: destination.cert))
        try Data(contentsOf: URL(fileURLWithPath: pair.key)).write(to: URL(fileURLWithPath: destination.key))
    }

    /// The certificate a new TLS connection to the proxy is shown.
    static func peerCertificate(_ proxy: ProxyHarness, _ certificates: TestCertificates) async throws -> NIOSSLCertificate? {
        let client = try await RawHTTPClient.connect(port: proxy.port, group: ProxyHarness.group, tls: try certificates.clientContext())
        defer { Task { await client.close() } }
        _ = try await client.tlsHandshake()
        return try await client.peerCertificate()
    }
}
