import Foundation
import NIOCore
import SluiceAdmin
import SluiceConfig
import SluiceTestSupport
import Testing

@testable import SluiceProxy

/// HTTP/2 in operation (issue 13): a reload (what SIGHUP runs) applies to the new streams of an open connection, and
/// HTTP/2 requests are counted in the metrics, the access log and the admin listener's status data like any others.
@Suite("HTTP/2 operations", .timeLimit(.minutes(3)))
struct ProxyHTTP2OperationsTests {
    static func ipRule(_ name: String, _ count: Int) -> RuleConfiguration {
        RuleConfiguration(name: name, key: [.ip], limits: [RateLimit(count: count, periodSeconds: 60, text: "\(count)/minute")])
    }

    @Test("a reload applies to the streams opened after it on one open connection; the stream in flight completes")
    func reloadAppliesToNewStreams() async throws {
        try await withProxy({
            $0.server.h2c = true
            $0.rules = [Self.ipRule("h2reload", 100)]
        }) { proxy in
            let client = try await HTTP2TestClient.connect(port: proxy.port)
            for _ in 0..<3 {
                let before = try await client.request("GET", "/hello")
                #expect(before.status == 200)
                #expect(before.headers.first(name: "ratelimit-policy") == "\"h2reload\";q=100;w=60")
            }
            // A stream in flight across the reload: admitted under the old rule, answered after the reload.
            let inFlight = Task { try await client.request("GET", "/slow?ms=1500") }
            try await eventually("the slow stream reached the upstream") { proxy.upstream.requestURIs.contains("/slow?ms=1500") }

            // What SIGHUP does (sluice serve: load the file, then `reload`): the limit lowered from 100 to 1.
            var configuration = proxy.server.configuration
            configuration.rules = [Self.ipRule("h2reload", 1)]
            try await proxy.server.reload(configuration)

            // New streams on the same connection see the new limit. A changed limit counts from zero (its counter is
            // not the old one's): the first is admitted, the next ones get 429.
            let first = try await client.request("GET", "/hello")
            #expect(first.status == 200)
            #expect(first.headers.first(name: "ratelimit-policy") == "\"h2reload\";q=1;w=60")
            for _ in 0..<3 {
                let after = try await client.request("GET", "/hello")
                #expect(after.status == 429)
                #expect(after.headers.first(name: "ratelimit-policy") == "\"h2reload\";q=1;w=60")
                #expect(after.headers.first(name: "retry-after") != nil)
            }
            let slow = try await inFlight.value
            #expect(slow.status == 200)
            #expect(slow.bodyString == "slow")
            #expect(slow.headers.first(name: "ratelimit-policy") == "\"h2reload\";q=100;w=60", "decided before the reload")
            #expect(client.channel.isActive, "one connection throughout")
            #expect(proxy.upstream.requestURIs.filter { $0 == "/hello" }.count == 4, "the 429s never reached the upstream")

            // And back up: the next stream is admitted again.
            configuration.rules = [Self.ipRule("h2reload", 100)]
            try await proxy.server.reload(configuration)
            let raised = try await client.request("GET", "/hello")
            #expect(raised.status == 200)
            #expect(raised.headers.first(name: "ratelimit-policy") == "\"h2reload\";q=100;w=60")
            #expect(client.channel.isActive)
            await client.close()
        }
    }

    @Test("HTTP/2 requests are counted: sluice_requests_total, upstream responses, the access log's protocol, and /status")
    func http2RequestsAreCounted() async throws {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-h2ops-\(UUID().uuidString).log").path
        defer { try? FileManager.default.removeItem(atPath: log) }
        try await withProxy({
            $0.server.h2c = true
            $0.server.accessLog = .file(log)
            $0.rules = [Self.ipRule("h2count", 3)]
        }) { proxy in
            // The admin listener as `sluice serve` starts it: the proxy is its backend, the proxy's metrics its metrics.
            let admin = AdminServer(backend: proxy.server, metrics: proxy.server.metrics, group: ProxyHarness.group)
            try await admin.start(host: "127.0.0.1", port: 0)
            do {
                try await Self.countHTTP2Requests(proxy, adminPort: try #require(admin.localAddress?.port), log: log)
            } catch {
                await admin.stop()
                throw error
            }
            await admin.stop()
        }
    }

    static func countHTTP2Requests(_ proxy: ProxyHarness, adminPort: Int, log: String) async throws {
        let client = try await HTTP2TestClient.connect(port: proxy.port)
        var statuses: [Int] = []
        for i in 0..<5 { statuses.append(try await client.request("GET", "/hello?i=\(i)").status) }
        #expect(statuses == [200, 200, 200, 429, 429])

        // The counters the admin listener reads.
        let totals = proxy.server.metrics.totals()
        #expect(totals.requests["h2count"] == DecisionCounts(admitted: 3, limited: 2))
        #expect(totals.upstreamResponses[200] == 3)

        // GET /metrics on the admin listener; the HTTP/2 connection counts once, however many streams it had.
        let exposition = try await Self.adminGet("/metrics", port: adminPort)
        #expect(exposition.status == 200)
        #expect(exposition.bodyString.contains("sluice_requests_total{rule=\"h2count\",decision=\"admitted\"} 3\n"))
        #expect(exposition.bodyString.contains("sluice_requests_total{rule=\"h2count\",decision=\"limited\"} 2\n"))
        #expect(exposition.bodyString.contains("sluice_upstream_responses_total{status=\"200\"} 3\n"))
        #expect(exposition.bodyString.contains("sluice_open_connections 1.0\n"), "one HTTP/2 connection, five streams")

        // The access log: one line per stream, `protocol` HTTP/2.
        try await eventually("five HTTP/2 lines in the access log") {
            let lines = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n")
            return lines.filter { $0.contains("\"protocol\":\"HTTP/2\"") && $0.contains("\"status\":200") }.count == 3
                && lines.filter { $0.contains("\"protocol\":\"HTTP/2\"") && $0.contains("\"status\":429") }.count == 2
                && lines.count == 5
        }

        // GET /status, the data the status page polls: the rule's last-minute counts come from the samples the
        // admin listener takes every 2 s, so the first sample after the requests shows them.
        var rule: [String: Any] = [:]
        try await eventually(within: .seconds(10), "the status data counts the HTTP/2 requests") {
            guard let response = try? await Self.adminGet("/status", port: adminPort), response.status == 200,
                let json = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any],
                let rules = json["rules"] as? [[String: Any]],
                let found = rules.first(where: { $0["name"] as? String == "h2count" })
            else { return false }
            rule = found
            let lastMinute = found["last_minute"] as? [String: Any]
            return lastMinute?["admitted"] as? Int == 3 && lastMinute?["limited"] as? Int == 2
        }
        let lastMinute = try #require(rule["last_minute"] as? [String: Any])
        #expect(lastMinute["admitted"] as? Int == 3)
        #expect(lastMinute["limited"] as? Int == 2)
        // The status page's "most limited keys" table.
        let status = try await Self.adminGet("/status", port: adminPort)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(status.body)) as? [String: Any])
        let keys = try #require((json["limited_keys"] as? [String: Any])?["keys"] as? [[String: Any]])
        #expect(keys.count == 1)
        #expect(keys.first?["rule"] as? String == "h2count")
        #expect(keys.first?["count"] as? Int == 2)
        await client.close()
    }

    // MARK: A client that closes its side

    @Test("h2c: a client that shuts its side down gets the response of its stream in flight, then GOAWAY and the close")
    func halfClosedClientIsClosedAfterItsStreams() async throws {
        try await withProxy({ $0.server.h2c = true }) { proxy in
            // No stream open: closed at once (not after the 60 s idle timeout and the 15 s grace).
            let idle = try await HTTP2RawClient.connect(port: proxy.port)
            let started = ContinuousClock.now
            try await idle.channel.close(mode: .output)
            try await idle.waitForClose(within: .seconds(5))
            #expect(ContinuousClock.now - started < .seconds(3))
            #expect(idle.goAwayCode == 0, "a graceful GOAWAY (NO_ERROR)")

            // A stream in flight: its response is complete before the close.
            let busy = try await HTTP2RawClient.connect(port: proxy.port)
            let block = try H2Wire.headerBlock(path: "/slow?ms=800")
            try await busy.send(H2Wire.frame(.headers, flags: H2Wire.endStream | H2Wire.endHeaders, stream: 1, payload: block))
            try await eventually("the slow stream reached the upstream") { proxy.upstream.requestURIs.contains("/slow?ms=800") }
            try await busy.channel.close(mode: .output)
            try await busy.waitForClose(within: .seconds(5))
            let frames = busy.frames
            let data = frames.filter { $0.type == H2Wire.FrameType.data.rawValue && $0.stream == 1 }
            #expect(String(decoding: data.flatMap(\.payload), as: UTF8.self) == "slow")
            #expect(data.last.map { $0.flags & H2Wire.endStream != 0 } == true, "the response ended")
            let goAwayIndex = frames.firstIndex { $0.type == H2Wire.FrameType.goAway.rawValue }
            let lastDataIndex = frames.lastIndex { $0.type == H2Wire.FrameType.data.rawValue }
            #expect(goAwayIndex != nil && lastDataIndex != nil && goAwayIndex! > lastDataIndex!)
            #expect(busy.goAwayCode == 0)
            try await proxy.expectStillServing()
        }
    }

    @Test("TLS h2: the client's close_notify is answered at once (the connection is not held open)")
    func tlsCloseNotifyIsAnswered() async throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        let leaf = try certificates.issue("proxy")
        try await withProxy({ $0.server.tls = TLSFiles(cert: leaf.cert, key: leaf.key) }) { proxy in
            let client = try await HTTP2TestClient.connect(port: proxy.port, tls: try certificates.clientContext(protocols: ["h2"]))
            #expect(try await client.request("GET", "/hello").status == 200)
            let started = ContinuousClock.now
            // NIOSSL sends close_notify and waits up to 5 s for the server's.
            await client.close()
            #expect(ContinuousClock.now - started < .seconds(3))
            try await eventually("no client connection open") {
                proxy.server.metrics.exposition().contains("sluice_open_connections 0.0\n")
            }
        }
    }

    /// One request to the admin listener on a fresh HTTP/1.1 connection.
    static func adminGet(_ path: String, port: Int) async throws -> RawHTTPClient.Response {
        let client = try await RawHTTPClient.connect(port: port, group: ProxyHarness.group)
        defer { Task { await client.close() } }
        try await client.send("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\n\r\n")
        return try await client.readResponse()
    }
}
