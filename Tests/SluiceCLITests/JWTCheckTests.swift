import Foundation
import Testing

/// `sluice check` with a `jwt:` section (issue 15): the example passes; bad key files, unknown algorithms and a `jwt:`
/// key part without the section are reported at their `file:line:column`, and the command exits 1.
@Suite("sluice check: jwt")
struct JWTCheckTests {
    @Test func badKeyFilesAndAlgorithms() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-jwt-check-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let notAKey = directory + "/not-a-key.pem"
        try "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".write(toFile: notAKey, atomically: true, encoding: .utf8)
        let notJWKS = directory + "/jwks.json"
        try #"{"keys":[{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA"}]}"#.write(toFile: notJWKS, atomically: true, encoding: .utf8)

        // Key files are parsed only once the file is otherwise valid (they are read by the verifier, like TLS files).
        let bad = directory + "/bad.yaml"
        try """
            upstream: { url: "http://127.0.0.1:1" }
            jwt:
              keys:
                - { alg: RS256, file: \(notAKey) }
              jwks_file: \(notJWKS)
            rules:
              - { name: users, key: [jwt:sub], limits: 10/second }

            """.write(toFile: bad, atomically: true, encoding: .utf8)
        let (status, output) = try await SluiceProcess.run(["check", "--config", bad])
        #expect(status == 1)
        let lines = output.split(separator: "\n").map(String.init)
        #expect(lines.count == 2, "\(output)")
        #expect(lines.first?.hasPrefix("\(bad):4:27: file: '\(notAKey)' is not a PEM RS256 public key") == true, "\(output)")
        #expect(lines.last == "\(bad):5:14: jwks_file: '\(notJWKS)': key 1 has no kid", "\(output)")

        let syntax = directory + "/syntax.yaml"
        try """
            upstream: { url: "http://127.0.0.1:1" }
            rules:
              - { name: users, key: [ip, jwt:org.id], limits: 10/second }
              - name: plans
                limits: 10/second
                tiers: { by: jwt:plan, values: { pro: 100/second } }

            """.write(toFile: syntax, atomically: true, encoding: .utf8)
        let (syntaxStatus, syntaxOutput) = try await SluiceProcess.run(["check", "--config", syntax])
        #expect(syntaxStatus == 1)
        #expect(
            syntaxOutput == """
                \(syntax):3:30: jwt: key parts and match.jwt need a top-level jwt: section (where the token is, which keys sign it)
                \(syntax):6:18: jwt: key parts and match.jwt need a top-level jwt: section (where the token is, which keys sign it)

                """
        )

        let algorithm = directory + "/algorithm.yaml"
        try """
            upstream: { url: "http://127.0.0.1:1" }
            jwt:
              keys: [ { alg: none, file: \(notAKey) } ]

            """.write(toFile: algorithm, atomically: true, encoding: .utf8)
        let (algorithmStatus, algorithmOutput) = try await SluiceProcess.run(["check", "--config", algorithm])
        #expect(algorithmStatus == 1)
        #expect(
            algorithmOutput
                == "\(algorithm):3:18: alg: unknown algorithm 'none' (expected RS256, RS384, RS512, ES256, ES384, EdDSA)\n"
        )
    }
}
