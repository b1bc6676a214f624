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
            #expect(try await E2E.adminRequest(port: admin, "/healthz").status == 200)
            #expect(try await E2E.adminRequest(port: admin, "/readyz").status == 200)
            #expect(try await E2E.adminRequest(port: admin, "/metrics").status == 401)

            #expect(try await E2E.statuses(port: sluice.port, "/hello", count: 3) == [200, 200, 429])

            let metrics = try await E2E.adminRequest(port: admin, "/metrics", headers: bearer)
            #expect(metrics.status == 200)
            let text = metrics.bodyString
            let requests = text.split(separator: "\n").filter { $0.hasPrefix("sluice_requests_total{") }
            #expect(requests.contains { $0.contains(#"rule="per-ip""#) && $0.contains(#"decision="admitted""#) && $0.hasSuffix(" 2") }, "\(requests)")
            #expect(requests.contains { $0.contains(#"rule="per-ip""#) && $0.contains(#"decision="limited""#) && $0.hasSuffix(" 1") }, "\(requests)")
            #expect(text.contains(#"sluice_upstream_responses_total{status="200"} 2"#), "\(text)")
            #expect(text.contains("sluice_upstream_latency_seconds_bucket"))
            #expect(text.contains("sluice_open_connections"))
            #expect(text.contains("sluice_tracked_keys"))

            let state = try await E2E.adminRequest(port: admin, "/limits/per-ip?key=127.0.0.1", headers: bearer)
            #expect(state.status == 200)
            let json = try JSONSerialization.jsonObject(with: Data(state.bodyString.utf8)) as? [String: Any]
            let limits = json?["limits"] as? [[String: Any]]
            #expect(json?["rule"] as? String == "per-ip")
            #expect(limits?.first?["limit"] as? String == "2/minute", "\(state.bodyString)")
            #expect(limits?.first?["remaining"] as? Int == 0, "\(state.bodyString)")
            #expect(try await E2E.adminRequest(port: admin, "/limits/nope?key=127.0.0.1", headers: bearer).status == 404)
            #expect(try await E2E.adminRequest(port: admin, "/limits/per-ip?key=127.0.0.1", method: "DELETE", headers: bearer).status == 204)
            // Forgiven: the key has its whole budget again.
            #expect(try await E2E.statuses(port: sluice.port, "/hello", count: 1) == [200])

            let config = try await E2E.adminRequest(port: admin, "/config", headers: bearer)
            #expect(config.status == 200)
            #expect(!config.bodyString.contains("s3cret"), "\(config.bodyString)")
        }
    }

    /// `GET /status` of the running proxy as JSON.
    static func status(admin: Int) async throws -> [String: Any] {
        let response = try await E2E.adminRequest(port: admin, "/status")
        #expect(response.status == 200)
        return try #require(try JSONSerialization.jsonObject(with: Data(response.bodyString.utf8)) as? [String: Any])
    }

    /// The access log's `key_hash` (part 3 of issue 6) is what the status page shows for the key, and neither
    /// carries the key's value.
    @Test func accessLogKeyHashMatchesTheStatusPage() async throws {
        let secret = "sk_live_status_page_secret"
        try await E2E.withSluice({ port in
            E2E.config(
                upstreamPort: port,
                server: "  admin: \"127.0.0.1:0\"",
                accessLog: "stdout",
                rest: """
                    rules:
                      - name: login
                        match: { path: /hello }
                        key: [header:X-Api-Key]
                        limits: ["2/minute"]
                        algorithm: gcra
                    """
            )
        }) { sluice async throws in
            let admin = try await Self.adminPort(sluice)
            let key = [("X-Api-Key", secret)]
            #expect(try await E2E.statuses(port: sluice.port, "/hello", count: 2, headers: key) == [200, 429])
            // No rule matches: the upstream's 404.
            #expect(try await E2E.statuses(port: sluice.port, "/elsewhere", count: 1) == [404])

            let limitedKeys = try await Self.status(admin: admin)["limited_keys"] as? [String: Any]
            let rows = try #require(limitedKeys?["keys"] as? [[String: Any]])
            #expect(rows.count == 1)
            #expect(rows.first?["rule"] as? String == "login")
            let shown = try #require(rows.first?["key_hash"] as? String)
            #expect(shown.count == 12 && shown.allSatisfy(\.isHexDigit))

            var lines: [[String: Any]] = []
            try await E2E.eventually("three access log lines") {
                lines = sluice.process.outputSoFar.split(separator: "\n")
                    .filter { $0.hasPrefix("{\"time\"") }
                    .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
                return lines.count >= 3
            }
            let limited = try #require(lines.first { $0["status"] as? Int == 429 })
            #expect(limited["rule"] as? String == "login")
            #expect(limited["key_hash"] as? String == shown)
            let admitted = try #require(
                lines.first { $0["path"] as? String == "/hello" && $0["status"] as? Int == 200 }
            )
            #expect(admitted["key_hash"] as? String == shown, "the same key, admitted or not")
            let unmatched = try #require(lines.first { $0["path"] as? String == "/elsewhere" })
            #expect(unmatched["key_hash"] is NSNull, "no rule applied, no key")
            #expect(!sluice.process.outputSoFar.contains(secret))
            #expect(!(try await E2E.adminRequest(port: admin, "/status").bodyString.contains(secret)))
        }
    }

    /// A refused reload is on the status page with its position; a good one replaces it.
    @Test func statusShowsTheLastReload() async throws {
        let rules = """
            rules:
              - name: per-ip
                key: [ip]
                limits: ["100/minute"]
            """
        try await E2E.withSluice({ port in
            E2E.config(upstreamPort: port, server: "  admin: \"127.0.0.1:0\"", rest: rules)
        }) { sluice async throws in
            let admin = try await Self.adminPort(sluice)
            let initial = try #require(try await Self.status(admin: admin)["reload"] as? [String: Any])
            #expect(initial["last"] is NSNull)
            #expect(initial["successes"] as? Int == 0)

            let good = try String(contentsOfFile: sluice.path, encoding: .utf8)
            try E2E.rewrite(sluice.path, good.replacingOccurrences(of: "limits:", with: "limts:"))
            sluice.process.signal(SIGHUP)
            var last: [String: Any] = [:]
            try await E2E.eventually("the refused reload on /status") {
                let reload = try await Self.status(admin: admin)["reload"] as? [String: Any]
                last = reload?["last"] as? [String: Any] ?? [:]
                return reload?["failures"] as? Int == 1
            }
            #expect(last["result"] as? String == "failure")
            let error = try #require(last["error"] as? String)
            #expect(error.hasPrefix(sluice.path + ":") && error.contains("limts"), "\(error)")

            try E2E.rewrite(sluice.path, good)
            sluice.process.signal(SIGHUP)
            try await E2E.eventually("the applied reload on /status") {
                let reload = try await Self.status(admin: admin)["reload"] as? [String: Any]
                last = reload?["last"] as? [String: Any] ?? [:]
                return reload?["successes"] as? Int == 1
            }
            #expect(last["result"] as? String == "success")
            #expect(last["error"] is NSNull)
        }
    }
}
