import Foundation
import SluiceTestSupport
import Testing

/// `server.grpc_rls.tls` (issue 14): its files are loaded by `check` and `serve` like `server.tls`'s, so an unusable
/// certificate or key is refused with the setting and the file, not found only when the gRPC listener binds.
@Suite("grpc_rls TLS files checked", .timeLimit(.minutes(2)))
struct GRPCTLSCheckTests {
    static func section(cert: String, key: String) -> String {
        """
          grpc_rls:
            listen: "127.0.0.1:0"
            tls:
              cert: "\(cert)"
              key: "\(key)"
        """
    }

    @Test func invalidCertificateRefusedByCheckAndServe() async throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        let leaf = try certificates.issue("leaf")
        let garbage = "\(certificates.directory)/garbage.pem"
        try "not a certificate\n".write(toFile: garbage, atomically: true, encoding: .utf8)
        let path = try E2E.writeConfig(
            E2E.config(upstreamPort: 1, server: Self.section(cert: garbage, key: leaf.key), rest: "rules: []")
        )
        defer { try? FileManager.default.removeItem(atPath: path) }
        for command in ["check", "serve"] {
            let (status, output) = try await SluiceProcess.run([command, "--config", path])
            #expect(status == 1, "\(command): \(output)")
            #expect(output.contains("\(path): server.grpc_rls.tls.cert: cannot use '\(garbage)': "), "\(command): \(output)")
        }
    }

    @Test func keyOfAnotherCertificateRefusedByCheck() async throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        let a = try certificates.issue("a")
        let b = try certificates.issue("b")
        let path = try E2E.writeConfig(
            E2E.config(upstreamPort: 1, server: Self.section(cert: a.cert, key: b.key), rest: "rules: []")
        )
        defer { try? FileManager.default.removeItem(atPath: path) }
        let (status, output) = try await SluiceProcess.run(["check", "--config", path])
        #expect(status == 1, "\(output)")
        #expect(output.contains("server.grpc_rls.tls.key"), "\(output)")
    }

    @Test func goodFilesPassCheck() async throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        let leaf = try certificates.issue("leaf")
        let path = try E2E.writeConfig(
            E2E.config(upstreamPort: 1, server: Self.section(cert: leaf.cert, key: leaf.key), rest: "rules: []")
        )
        defer { try? FileManager.default.removeItem(atPath: path) }
        let (status, output) = try await SluiceProcess.run(["check", "--config", path])
        #expect(status == 0, "\(output)")
        #expect(output.contains("ok"), "\(output)")
    }
}
