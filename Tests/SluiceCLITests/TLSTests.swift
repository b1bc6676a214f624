import Foundation
import NIOSSL
import SluiceTestSupport
import Testing

/// TLS end to end through the real binary: certificates renewed in place and picked up by SIGHUP, `https://`
/// upstreams, and files that cannot be used refused by `check` and `serve`.
@Suite("TLS end to end", .timeLimit(.minutes(2)))
struct TLSTests {
    static func tlsServerSection(_ pair: TestCertificates.Pair) -> String {
        """
          tls:
            cert: "\(pair.cert)"
            key: "\(pair.key)"
        """
    }

    static func copy(_ pair: TestCertificates.Pair, to destination: TestCertificates.Pair) throws {
        try Data(contentsOf: URL(fileURLWithPath: pair.cert)).write(to: URL(fileURLWithPath: destination.cert))
        try Data(contentsOf: URL(fileURLWithPath: pair.key)).write(to: URL(fileURLWithPath: destination.key))
    }

    /// The certificate a new connection is shown, after one request on it.
    static func newConnectionCertificate(port: Int, _ certificates: TestCertificates) async throws -> NIOSSLCertificate? {
        let client = try await RawHTTPClient.connect(port: port, group: E2E.group, tls: try certificates.clientContext())
        defer { Task { await client.close() } }
        try await client.send("GET /hello HTTP/1.1\r\nHost: test\r\n\r\n")
        let response = try await client.readResponse()
        #expect(response.status == 200)
        return try await client.peerCertificate()
    }

    @Test func sighupPicksUpRenewedCertificate() async throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        let a = try certificates.issue("a", subject: "localhost")
        let b = try certificates.issue("b", subject: "renewed.localhost")
        let live = TestCertificates.Pair(cert: "\(certificates.directory)/live.pem", key: "\(certificates.directory)/live.key")
        try Self.copy(a, to: live)
        let certificateA = try NIOSSLCertificate.fromPEMFile(a.cert)[0]
        let certificateB = try NIOSSLCertificate.fromPEMFile(b.cert)[0]
        #expect(certificateA != certificateB)

        try await E2E.withSluice({ E2E.config(upstreamPort: $0, server: Self.tlsServerSection(live), rest: "rules: []") }) { sluice in
            let before = try await RawHTTPClient.connect(port: sluice.port, group: E2E.group, tls: try certificates.clientContext())
            #expect(try await before.tlsHandshake() == "http/1.1")
            try await before.send("GET /hello HTTP/1.1\r\nHost: test\r\n\r\n")
            #expect(try await before.readResponse().status == 200)
            #expect(try await before.peerCertificate() == certificateA)

            // A broken key: the reload fails, is logged, and the running certificate stays.
            try "garbage\n".write(toFile: live.key, atomically: false, encoding: .utf8)
            sluice.process.signal(SIGHUP)
            try await sluice.process.waitForOutput("reload failed, keeping the running configuration")
            #expect(sluice.process.outputSoFar.contains(live.key))
            #expect(try await Self.newConnectionCertificate(port: sluice.port, certificates) == certificateA)

            // Renewed in place, same YAML: SIGHUP is enough.
            try Self.copy(b, to: live)
            sluice.process.signal(SIGHUP)
            try await sluice.process.waitForOutput("configuration reloaded")
            #expect(try await Self.newConnectionCertificate(port: sluice.port, certificates) == certificateB)

            // The connection opened before keeps working, with the certificate it was accepted with.
            try await before.send("GET /hello HTTP/1.1\r\nHost: test\r\n\r\n")
            let response = try await before.readResponse()
            #expect(response.status == 200)
            #expect(response.bodyString == "hello")
            #expect(try await before.peerCertificate() == certificateA)
            await before.close()
        }
    }

    @Test func httpsUpstreamThroughTheBinary() async throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        let leaf = try certificates.issue("upstream")
        let upstream = try await TestUpstream(group: E2E.group, tls: try TestCertificates.serverContext(leaf))
        defer { Task { await upstream.close() } }
        func yaml(_ tls: String) -> String {
            E2E.config(upstreamPort: 1, rest: "rules: []")
                .replacingOccurrences(of: "url: http://127.0.0.1:1", with: "url: https://localhost:\(upstream.port)\n  tls: \(tls)")
        }
        try await E2E.withSluice({ _ in yaml("{ verify: true, ca: \"\(certificates.caPath)\" }") }) { sluice in
            let response = try await E2E.request(port: sluice.port, "/echo-headers")
            #expect(response.status == 200)
            #expect(response.bodyString.contains("x-forwarded-proto: http\n"))
        }
        try await E2E.withSluice({ _ in yaml("{ verify: true }") }) { sluice in
            let response = try await E2E.request(port: sluice.port, "/hello")
            #expect(response.status == 502)
            // The log says why.
            try await sluice.process.waitForOutput("upstream connect failed")
            #expect(sluice.process.outputSoFar.contains("CERTIFICATE_VERIFY_FAILED"))
        }
    }

    @Test func missingCertificateRefusedByCheckAndServe() async throws {
        let missing = "/nonexistent/sluice-\(UUID())/cert.pem"
        let path = try E2E.writeConfig(
            E2E.config(upstreamPort: 1, server: "  tls:\n    cert: \(missing)\n    key: \(missing)", rest: "rules: []")
        )
        defer { try? FileManager.default.removeItem(atPath: path) }
        for command in ["check", "serve"] {
            let (status, output) = try await SluiceProcess.run([command, "--config", path])
            #expect(status == 1, "\(command): \(output)")
            #expect(output.contains("\(path):7:11: cert: cannot read '\(missing)': no such file"), "\(command): \(output)")
            #expect(!output.contains("listening on"))
        }
    }

    @Test func invalidCertificateRefusedByCheckAndServe() async throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        let leaf = try certificates.issue("leaf")
        let garbage = "\(certificates.directory)/garbage.pem"
        try "not a certificate\n".write(toFile: garbage, atomically: true, encoding: .utf8)
        let path = try E2E.writeConfig(
            E2E.config(upstreamPort: 1, server: Self.tlsServerSection(.init(cert: garbage, key: leaf.key)), rest: "rules: []")
        )
        defer { try? FileManager.default.removeItem(atPath: path) }
        for command in ["check", "serve"] {
            let (status, output) = try await SluiceProcess.run([command, "--config", path])
            #expect(status == 1, "\(command): \(output)")
            #expect(output.contains("\(path): server.tls.cert: cannot use '\(garbage)': "), "\(command): \(output)")
            #expect(!output.contains("listening on"))
        }
    }
}
