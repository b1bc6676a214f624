import Foundation
import Logging
import Synchronization
import NIOCore
import SluiceConfig
import SluiceLimiter
import SluiceTestSupport
import Testing

@testable import SluiceProxy

/// A proxy with concurrency rules in front of a ``PeakRecordingUpstream`` (or another upstream port), on loopback.
final class ConcurrencyProxy: Sendable {
    let upstream: PeakRecordingUpstream
    let server: ProxyServer
    let port: Int
    /// The slot table, which outlives reloads.
    let table: ConcurrencySlotTable
    private let configuration: Mutex<SluiceConfiguration>

    init(upstreamPort: Int? = nil, rules: [RuleConfiguration], configure: (inout SluiceConfiguration) -> Void = { _ in }) async throws {
        self.upstream = try await PeakRecordingUpstream(group: ProxyHarness.group)
        var configuration = SluiceConfiguration()
        configuration.server.listen = [ListenAddress(host: "127.0.0.1", port: 0)]
        configuration.server.threads = 2
        configuration.server.accessLog = .off
        configuration.upstream.targets = [
            UpstreamTarget(scheme: .http, host: "127.0.0.1", port: upstreamPort ?? self.upstream.port)
        ]
        configuration.rules = rules
        configure(&configuration)
        self.configuration = Mutex(configuration)
        var logger = Logger(label: "sluice-test")
        logger.logLevel = .critical
        self.server = try ProxyServer(configuration: configuration, logger: logger)
        try await self.server.start()
        self.port = self.server.listeningAddresses.first!.port!
        self.table = self.server.concurrencyLimiter!.table
    }

    /// The slots of rule `name` (kept across reloads, also for a removed rule).
    func slots(_ name: String) -> ConcurrencyRuleSlots {
        self.table.rule(named: name)
    }

    /// A connection that has sent one request.
    func send(_ path: String, headers: [String] = []) async throws -> RawHTTPClient {
        let client = try await RawHTTPClient.connect(port: self.port, group: ProxyHarness.group)
        try await client.send("GET \(path) HTTP/1.1\r\nHost: test\r\n" + headers.map { $0 + "\r\n" }.joined() + "\r\n")
        return client
    }

    /// One request on a fresh connection, and its response.
    func get(_ path: String, headers: [String] = []) async throws -> RawHTTPClient.Response {
        let client = try await self.send(path, headers: headers)
        defer { Task { await client.close() } }
        return try await client.readResponse()
    }

    func reload(_ change: (inout SluiceConfiguration) -> Void) async throws {
        let configuration = self.configuration.withLock { configuration in
            change(&configuration)
            return configuration
        }
        try await self.server.reload(configuration)
    }

    func stop() async {
        await self.server.stop()
        await self.upstream.close()
    }
}

func concurrencyRule(
    _ name: String,
    key: [KeyPart] = [.header("x-key")],
    max: Int,
    queue: ConcurrencyConfiguration.Queue? = nil,
    mode: RuleConfiguration.Mode = .enforce,
    limits: [RateLimit] = []
) -> RuleConfiguration {
    var rule = RuleConfiguration(name: name, key: key, limits: limits, mode: mode)
    rule.concurrency = ConcurrencyConfiguration(max: max, queue: queue)
    return rule
}

/// Runs `body` with a ``ConcurrencyProxy`` and always stops it.
func withConcurrencyProxy(
    upstreamPort: Int? = nil,
    _ rules: [RuleConfiguration],
    configure: (inout SluiceConfiguration) -> Void = { _ in },
    _ body: (ConcurrencyProxy) async throws -> Void
) async throws {
    try await TestLoadGate.shared {
        let proxy = try await ConcurrencyProxy(upstreamPort: upstreamPort, rules: rules, configure: configure)
        do {
            try await body(proxy)
        } catch {
            await proxy.stop()
            throw error
        }
        #expect(ConcurrencyAdmission.releasedOnDeinit == 0, "an admission was dropped without release")
        await proxy.stop()
    }
}

@Suite("Proxy concurrency limits (issue 22)")
struct ProxyConcurrencyTests {
    static let key = "X-Key: k"

    @Test("200 simultaneous requests against max 5: the upstream never has more than 5, the rest get 429")
    func peakNeverAboveMax() async throws {
        try await withConcurrencyProxy([concurrencyRule("gen", max: 5)]) { proxy in
            let statuses = try await withTimeout(.seconds(60), "200 requests") {
                try await withThrowingTaskGroup(of: (Int, String?, Bool).self) { group in
                    for _ in 0..<200 {
                        group.addTask {
                            let response = try await proxy.get("/slow?ms=150", headers: [Self.key])
                            return (response.status, response.header("Retry-After"), response.header("RateLimit") != nil)
                        }
                    }
                    var all: [(Int, String?, Bool)] = []
                    for try await result in group { all.append(result) }
                    return all
                }
            }
            #expect(statuses.count == 200)
            #expect(proxy.upstream.peak <= 5)
            #expect(proxy.upstream.peak >= 1)
            let admitted = statuses.filter { $0.0 == 200 }.count
            let refused = statuses.filter { $0.0 == 429 }
            #expect(admitted >= 5)
            #expect(admitted + refused.count == 200)
            #expect(refused.allSatisfy { $0.1 == "1" && !$0.2 }, "429 with Retry-After: 1 and no RateLimit fields")
            try await eventually("slots returned") { proxy.slots("gen").inFlight == 0 }
            #expect(proxy.slots("gen").refusals(.concurrency) == refused.count)
        }
    }

    @Test("with a queue large enough, 60 simultaneous requests all pass, never more than 5 at once")
    func queueAdmitsAll() async throws {
        let rule = concurrencyRule("gen", max: 5, queue: .init(size: 100, timeout: .seconds(20)))
        try await withConcurrencyProxy([rule]) { proxy in
            let statuses = try await withTimeout(.seconds(60), "60 requests") {
                try await withThrowingTaskGroup(of: Int.self) { group in
                    for _ in 0..<60 {
                        group.addTask { try await proxy.get("/slow?ms=50", headers: [Self.key]).status }
                    }
                    var all: [Int] = []
                    for try await status in group { all.append(status) }
                    return all
                }
            }
            #expect(statuses == Array(repeating: 200, count: 60))
            #expect(proxy.upstream.peak <= 5)
            try await eventually("slots returned") { proxy.slots("gen").inFlight == 0 && proxy.slots("gen").queued == 0 }
        }
    }

    @Test("every way an exchange ends returns its slot")
    func releaseOnEveryPath() async throws {
        let rules = [concurrencyRule("gen", max: 5)]
        try await withConcurrencyProxy(rules, configure: { $0.server.timeouts.upstreamResponse = .seconds(2) }) { proxy in
            let slots = proxy.slots("gen")
            func settled(_ what: String) async throws {
                try await eventually("\(what): in flight 0") { slots.inFlight == 0 }
            }
            // Normal end.
            #expect(try await proxy.get("/slow?ms=10", headers: [Self.key]).status == 200)
            try await settled("normal end")
            // Upstream 5xx.
            #expect(try await proxy.get("/status?code=500", headers: [Self.key]).status == 500)
            try await settled("upstream 500")
            // Upstream reset before answering: 502.
            #expect(try await proxy.get("/reset", headers: [Self.key]).status == 502)
            try await settled("upstream reset")
            // Upstream timeout: 504 (the held request is answered later, to nobody).
            #expect(try await proxy.get("/hold", headers: [Self.key]).status == 504)
            try await settled("upstream timeout")
            proxy.upstream.releaseHeld()
            // Client abort before the response: the slot is held while the upstream works, and returned after.
            let early = try await proxy.send("/hold", headers: [Self.key])
            try await eventually("held") { proxy.upstream.heldCount == 1 }
            #expect(slots.inFlight == 1)
            await early.close()
            proxy.upstream.releaseHeld()
            try await settled("client gone before the response")
            // Client gone after the response.
            let after = try await proxy.send("/slow?ms=1", headers: [Self.key])
            #expect(try await after.readResponse().status == 200)
            await after.close()
            try await settled("client gone after the response")
            // A local 4xx after admission: a broken chunked body.
            let broken = try await RawHTTPClient.connect(port: proxy.port, group: ProxyHarness.group)
            try await broken.send("POST /slow?ms=1 HTTP/1.1\r\nHost: test\r\nX-Key: k\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
            #expect(try await broken.readResponse().status == 400)
            await broken.close()
            try await settled("local 400")
        }
    }

    @Test("the slot is returned when the client leaves during the response and after a 502 for an unreachable upstream")
    func releaseOnAbortAndUnreachable() async throws {
        let upstream = try await TestUpstream(group: ProxyHarness.group)
        defer { Task { await upstream.close() } }
        try await withConcurrencyProxy(upstreamPort: upstream.port, [concurrencyRule("gen", max: 5)]) { proxy in
            let slots = proxy.slots("gen")
            // Client abort during a 50 MB response.
            let client = try await proxy.send("/download?bytes=50000000", headers: [Self.key])
            _ = try await client.readBytes(count: 1000)
            #expect(slots.inFlight == 1)
            await client.close()
            try await eventually("client gone during the response") { slots.inFlight == 0 }
            // A WebSocket holds its slot until the tunnel closes.
            let tunnel = try await RawHTTPClient.connect(port: proxy.port, group: ProxyHarness.group)
            try await tunnel.send(
                "GET /upgrade HTTP/1.1\r\nHost: test\r\nX-Key: k\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
            )
            let switched = try await tunnel.readResponse()
            #expect(switched.status == 101)
            try await tunnel.send("ping")
            #expect(try await tunnel.readBytes(count: 4) == Array("ping".utf8))
            #expect(slots.inFlight == 1)
            try await tunnel.send("quit")
            _ = try await tunnel.waitForClose()
            try await eventually("tunnel closed") { slots.inFlight == 0 }
        }
        let unreachable = try await closedPort()
        try await withConcurrencyProxy(upstreamPort: unreachable, [concurrencyRule("gen", max: 5)]) { proxy in
            #expect(try await proxy.get("/", headers: [Self.key]).status == 502)
            try await eventually("upstream unreachable") { proxy.slots("gen").inFlight == 0 }
        }
    }

    @Test("a rate-limit refusal after the slots were taken gives them back; a concurrency refusal spends no quota")
    func rateRefusalReturnsSlots() async throws {
        let rule = concurrencyRule("gen", max: 1, limits: [RateLimit(count: 2, periodSeconds: 60, text: "2/minute")])
        try await withConcurrencyProxy([rule]) { proxy in
            let held = try await proxy.send("/hold", headers: [Self.key])
            try await eventually("held") { proxy.upstream.heldCount == 1 }
            // Over the concurrency cap: refused before the rate limits, so no quota is spent.
            let refused = try await proxy.get("/", headers: [Self.key])
            #expect(refused.status == 429)
            #expect(refused.header("RateLimit") == nil)
            proxy.upstream.releaseHeld()
            #expect(try await held.readResponse().status == 200)
            await held.close()
            try await eventually("first returned") { proxy.slots("gen").inFlight == 0 }
            // Second of 2/minute: admitted (the refused one took nothing).
            #expect(try await proxy.get("/", headers: [Self.key]).status == 200)
            // Third: the rate limit refuses, with its fields; the slot taken first is back at once.
            let limited = try await proxy.get("/", headers: [Self.key])
            #expect(limited.status == 429)
            #expect(limited.header("RateLimit") != nil)
            try await eventually("rate refusal returned the slot") { proxy.slots("gen").inFlight == 0 }
        }
    }

    @Test("two rules, one full: the other rule's slot is given back")
    func allOrNothing() async throws {
        let rules = [concurrencyRule("global", key: [.const("all")], max: 10), concurrencyRule("per-key", max: 1)]
        try await withConcurrencyProxy(rules) { proxy in
            let held = try await proxy.send("/hold", headers: [Self.key])
            try await eventually("held") { proxy.upstream.heldCount == 1 }
            #expect(proxy.slots("global").inFlight == 1)
            #expect(proxy.slots("per-key").inFlight == 1)
            let refused = try await proxy.get("/", headers: [Self.key])
            #expect(refused.status == 429)
            #expect(refused.bodyString.contains("per-key"))
            #expect(proxy.slots("global").inFlight == 1, "the global slot of the refused request is back")
            // Another key passes both.
            #expect(try await proxy.get("/", headers: ["X-Key: other"]).status == 200)
            proxy.upstream.releaseHeld()
            _ = try await held.readResponse()
            await held.close()
            try await eventually("all back") { proxy.slots("global").inFlight == 0 && proxy.slots("per-key").inFlight == 0 }
        }
    }

    @Test("queue: first come first served, a timeout, a full queue, and a client that leaves")
    func queue() async throws {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-conc-\(UUID().uuidString).log").path
        defer { try? FileManager.default.removeItem(atPath: log) }
        let rule = concurrencyRule("gen", max: 1, queue: .init(size: 3, timeout: .seconds(10)))
        var short = concurrencyRule("short", key: [.header("x-short")], max: 1, queue: .init(size: 1, timeout: .milliseconds(300)))
        short.response.status = 503
        try await withConcurrencyProxy([rule, short], configure: { $0.server.accessLog = .file(log) }) { proxy in
            let slots = proxy.slots("gen")
            let first = try await proxy.send("/hold", headers: [Self.key, "X-Seq: 0"])
            try await eventually("first held") { proxy.upstream.heldCount == 1 }
            var waiting: [RawHTTPClient] = []
            for seq in 1...3 {
                waiting.append(try await proxy.send("/hold", headers: [Self.key, "X-Seq: \(seq)"]))
                try await eventually("\(seq) queued") { slots.queued == seq }
            }
            // Full: refused at once.
            let full = try await proxy.get("/", headers: [Self.key, "X-Seq: 9"])
            #expect(full.status == 429)
            #expect(full.header("Retry-After") == "1")
            // The second request leaves the queue by going away.
            await waiting[0].close()
            try await eventually("left the queue") { slots.queued == 2 }
            // Answer one at a time: 0, then 2, then 3.
            for expected in 1...3 {
                proxy.upstream.releaseHeld(1)
                try await eventually("next admitted") { proxy.upstream.heldCount == (expected < 3 ? 1 : 0) }
            }
            #expect(proxy.upstream.arrivals == ["0", "2", "3"])
            #expect(try await first.readResponse().status == 200)
            #expect(try await waiting[1].readResponse().status == 200)
            #expect(try await waiting[2].readResponse().status == 200)
            try await eventually("all back") { slots.inFlight == 0 && slots.queued == 0 }
            #expect(slots.refusals(.queueFull) == 1)

            // Timeout: the second waits 300 ms, then gets the rule's 503 with Retry-After.
            let holder = try await proxy.send("/hold", headers: ["X-Short: s"])
            try await eventually("holder held") { proxy.upstream.heldCount == 1 }
            let started = ContinuousClock.now
            let timedOut = try await proxy.get("/", headers: ["X-Short: s"])
            #expect(timedOut.status == 503)
            #expect(timedOut.header("Retry-After") == "1")
            #expect(ContinuousClock.now - started >= .milliseconds(250))
            #expect(proxy.slots("short").refusals(.queueTimeout) == 1)
            proxy.upstream.releaseHeld()
            _ = try await holder.readResponse()
            await holder.close()
            for client in waiting { await client.close() }
            await first.close()
            try await eventually("short back") { proxy.slots("short").inFlight == 0 && proxy.slots("short").queued == 0 }
            // The access log names the reasons.
            try await eventually("access log written") {
                let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                return text.contains("\"decision\":\"queue_full\"") && text.contains("\"decision\":\"queue_timeout\"")
            }
        }
    }

    @Test("shadow mode: counted and logged, never refused")
    func shadow() async throws {
        try await withConcurrencyProxy([concurrencyRule("gen", max: 1, mode: .shadow)]) { proxy in
            let held = try await proxy.send("/hold", headers: [Self.key])
            try await eventually("held") { proxy.upstream.heldCount == 1 }
            let second = try await proxy.send("/hold", headers: [Self.key])
            try await eventually("second forwarded too") { proxy.upstream.heldCount == 2 }
            #expect(proxy.slots("gen").inFlight == 2)
            #expect(proxy.slots("gen").shadowAdmissions == 1)
            #expect(proxy.slots("gen").refusals(.concurrency) == 0)
            proxy.upstream.releaseHeld()
            #expect(try await held.readResponse().status == 200)
            #expect(try await second.readResponse().status == 200)
            await held.close()
            await second.close()
            try await eventually("back") { proxy.slots("gen").inFlight == 0 }
        }
    }

    @Test("a reload during long requests keeps the counts, a lowered max applies to new requests, a removed rule releases")
    func reload() async throws {
        try await withConcurrencyProxy([concurrencyRule("gen", max: 3), concurrencyRule("gone", key: [.const("x")], max: 5)]) { proxy in
            let a = try await proxy.send("/hold", headers: [Self.key])
            let b = try await proxy.send("/hold", headers: [Self.key])
            try await eventually("two held") { proxy.upstream.heldCount == 2 }
            #expect(proxy.slots("gen").inFlight == 2)
            #expect(proxy.slots("gone").inFlight == 2)
            try await proxy.reload { configuration in
                configuration.rules = [concurrencyRule("gen", max: 1)]
            }
            #expect(proxy.slots("gen").inFlight == 2, "counts kept")
            #expect(try await proxy.get("/", headers: [Self.key]).status == 429, "lowered max: 2 in flight >= 1")
            proxy.upstream.releaseHeld()
            #expect(try await a.readResponse().status == 200)
            #expect(try await b.readResponse().status == 200)
            await a.close()
            await b.close()
            try await eventually("released into the kept and the removed rule") {
                proxy.slots("gen").inFlight == 0 && proxy.slots("gone").inFlight == 0
            }
            #expect(try await proxy.get("/", headers: [Self.key]).status == 200)
            #expect(proxy.server.concurrencyLimiter?.keyState(rule: "gen", displayKey: "k")?.max == 1)
        }
    }

    @Test("metrics show in-flight, queue and refusals by reason; the admin key state shows the in-flight count")
    func metricsAndKeyState() async throws {
        try await withConcurrencyProxy([concurrencyRule("gen", max: 1)]) { proxy in
            let held = try await proxy.send("/hold", headers: [Self.key])
            try await eventually("held") { proxy.upstream.heldCount == 1 }
            #expect(try await proxy.get("/", headers: [Self.key]).status == 429)
            let text = proxy.server.metrics.exposition()
            #expect(text.contains("sluice_concurrency_in_flight{rule=\"gen\"} 1"))
            #expect(text.contains("sluice_concurrency_queued{rule=\"gen\"} 0"))
            #expect(text.contains("sluice_concurrency_refusals_total{rule=\"gen\",reason=\"concurrency\"} 1"))
            let state = proxy.server.concurrencyLimiter?.keyState(rule: "gen", displayKey: "k")
            #expect(state?.inFlight == 1)
            #expect(state?.max == 1)
            #expect(proxy.server.concurrencyLimiter?.keyState(rule: "gen", displayKey: "other")?.inFlight == 0)
            proxy.upstream.releaseHeld()
            _ = try await held.readResponse()
            await held.close()
        }
    }
}
