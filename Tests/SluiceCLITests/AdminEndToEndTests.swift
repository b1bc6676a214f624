import Foundation
import SluiceTestSupport
import Testing

/// The admin listener of SPEC §7 on the real binary, with traffic through the proxy.
@Suite("admin listener end to end") struct AdminEndToEndTests {
    static func adminPort(_ sluice: E2E.Running) async throws -> Int {
        try await sluice.process.waitForOutput("sluice admin on ")
        let line = sluice.process.outputSoFar.split(separator: "\n").first { $0.contains("sluice admin on ") }!
        return Int(line.split(separator: ":").last!)!
    }

    @Test func healthMetricsAndLimits() async throws {
        try await E2E.withSluice({ port in
            E2E.config(
                upstreamPort: port,
                server: """
                      admin: "127.0.0.1:0"
                      admin_token: s3cret
                    """,
                rest: """
                    rules:
                      - name: per-ip
                        key: [ip]
                        limits: ["2/minute"]
                    """
            )
        }) { sluice async throws in
            let admin = try await Self.adminPort(sluice)
            let bearer = [("Authorization", "Bearer s3cret")]
            #expect(try await E2E.request(port: admin, "/healthz").status == 200)
            #expect(try await E2E.request(port: admin, "/readyz").status == 200)
            #expect(try await E2E.request(port: admin, "/metrics").status == 401)

            #expect(try await E2E.statuses(port: sluice.port, "/hello", count: 3) == [200, 200, 429])

            let metrics = try await E2E.request(port: admin, "/metrics", headers: bearer)
            #expect(metrics.status == 200)
            let text = metrics.bodyString
            let requests = text.split(separator: "\n").filter { $0.hasPrefix("sluice_requests_total{") }
            #expect(requests.contains { $0.contains(#"rule="per-ip""#) && $0.contains(#"decision="admitted""#) && $0.hasSuffix(" 2") }, "\(requests)")
            #expect(requests.contains { $0.contains(#"rule="per-ip""#) && $0.contains(#"decision="limited""#) && $0.hasSuffix(" 1") }, "\(requests)")
            #expect(text.contains(#"sluice_upstream_responses_total{status="200"} 2"#), "\(text)")
            #expect(text.contains("sluice_upstream_latency_seconds_bucket"))
            #expect(text.contains("sluice_open_connections"))
            #expect(text.contains("sluice_tracked_keys"))

            let state = try await E2E.request(port: admin, "/limits/per-ip?key=127.0.0.1", headers: bearer)
            #expect(state.status == 200)
            let json = try JSONSerialization.jsonObject(with: Data(state.bodyString.utf8)) as? [String: Any]
            let limits = json?["limits"] as? [[String: Any]]
            #expect(json?["rule"] as? String == "per-ip")
            #expect(limits?.first?["limit"] as? String == "2/minute", "\(state.bodyString)")
            #expect(limits?.first?["remaining"] as? Int == 0, "\(state.bodyString)")
            #expect(try await E2E.request(port: admin, "/limits/nope?key=127.0.0.1", headers: bearer).status == 404)
            #expect(try await E2E.request(port: admin, "/limits/per-ip?key=127.0.0.1", method: "DELETE", headers: bearer).status == 204)
            // Forgiven: the key has its whole budget again.
            #expect(try await E2E.statuses(port: sluice.port, "/hello", count: 1) == [200])

            let config = try await E2E.request(port: admin, "/config", headers: bearer)
            #expect(config.status == 200)
            #expect(!config.bodyString.contains("s3cret"), "\(config.bodyString)")
        }
    }
}
