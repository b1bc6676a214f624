import Foundation
import Logging
import NIOCore
import SluiceConfig
import SluiceLimiter
import SluiceTestSupport
import Synchronization
import Testing

@testable import SluiceProxy

/// A proxy with `upstream.adaptive_concurrency` (or without, for comparison) in front of an upstream port, on loopback.
final class AdaptiveProxy: Sendable {
    let server: ProxyServer
    let port: Int
    private let configuration: Mutex<SluiceConfiguration>

    init(
        upstreamPort: Int,
        adaptive: AdaptiveConcurrencyConfiguration?,
        rules: [RuleConfiguration] = [],
        configure: (inout SluiceConfiguration) -> Void = { _ in }
    ) async throws {
        var configuration = SluiceConfiguration()
        configuration.server.listen = [ListenAddress(host: "127.0.0.1", port: 0)]
        configuration.server.threads = 2
        configuration.server.accessLog = .off
        configuration.upstream.targets = [UpstreamTarget(scheme: .http, host: "127.0.0.1", port: upstreamPort)]
        configuration.upstream.adaptiveConcurrency = adaptive
        configuration.rules = rules
        configure(&configuration)
        self.configuration = Mutex(configuration)
        var logger = Logger(label: "sluice-test")
        logger.logLevel = .critical
        self.server = try ProxyServer(configuration: configuration, logger: logger)
        try await self.server.start()
        self.port = self.server.listeningAddresses.first!.port!
    }

    /// The running snapshot's adaptive limiter.
    var limiter: AdaptiveConcurrencyLimiter { self.server.adaptiveConcurrency! }

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
    }
}

/// Runs `body` with an ``AdaptiveProxy`` and always stops it.
func withAdaptiveProxy(
    upstreamPort: Int,
    _ adaptive: AdaptiveConcurrencyConfiguration?,
    rules: [RuleConfiguration] = [],
    configure: (inout SluiceConfiguration) -> Void = { _ in },
    _ body: (AdaptiveProxy) async throws -> Void
) async throws {
    let proxy = try await AdaptiveProxy(upstreamPort: upstreamPort, adaptive: adaptive, rules: rules, configure: configure)
    do {
        try await body(proxy)
    } catch {
        await proxy.stop()
        throw error
    }
    await proxy.stop()
}

@Suite("Proxy adaptive concurrency (issue 22 item 7)")
struct ProxyAdaptiveConcurrencyTests {
    /// What the clients of a flood saw.
    struct FloodResult: Sendable {
        var ok = 0
        var refused = 0
        var other = 0
        /// 503s without `Retry-After: 1`, or with a rate-limit field.
        var badRefusals = 0
    }

    /// `clients` clients, each sending requests one after another on its own keep-alive connection (a new one only
    /// when Sluice closes it) for `duration`; after a 503 a client waits `pause` (as one that honours `Retry-After` in
    /// spirit, without waiting a whole second). Keep-alive keeps the kernel's share of the load (and the sockets left
    /// in TIME_WAIT) small, for the tests that run after this one.
    static func flood(port: Int, clients: Int, duration: Duration, pause: Duration = .milliseconds(100)) async throws -> FloodResult {
        let deadline = ContinuousClock.now + duration
        return try await withThrowingTaskGroup(of: FloodResult.self) { group in
            for _ in 0..<clients {
                group.addTask {
                    var result = FloodResult()
                    var client: RawHTTPClient? = nil
                    while ContinuousClock.now < deadline {
                        if client == nil || client!.isClosed {
                            if let old = client { await old.close() }
                            client = try await RawHTTPClient.connect(port: port, group: ProxyHarness.group)
                        }
                        try await client!.send("GET / HTTP/1.1\r\nHost: test\r\n\r\n")
                        let response = try await client!.readResponse(timeout: .seconds(20))
                        if response.header("Connection")?.lowercased() == "close" {
                            await client!.close()
                            client = nil
                        }
                        switch response.status {
                        case 200:
                            result.ok += 1
                        case 503:
                            result.refused += 1
                            if response.header("Retry-After") != "1" || response.header("RateLimit") != nil
                                || response.header("RateLimit-Policy") != nil
                            {
                                result.badRefusals += 1
                            }
                            try await Task.sleep(for: pause)
                        default:
                            result.other += 1
                        }
                    }
                    if let client { await client.close() }
                    return result
                }
            }
            var total = FloodResult()
            for try await part in group {
                total.ok += part.ok
                total.refused += part.refused
                total.other += part.other
                total.badRefusals += part.badRefusals
            }
            return total
        }
    }

    @Test("a flood against an upstream with a knee: the limit settles near the knee and the upstream's p99 stays bounded")
    func settlesBelowTheFlood() async throws {
        try await TestLoadGate.exclusive {
            let upstream = try await KneeUpstream(group: ProxyHarness.group, workers: 4, serviceTime: .milliseconds(10))
            defer { Task { await upstream.close() } }
            let clients = 64

            // Without the adaptive limit: every client's request is in the upstream, queued behind its 4 workers.
            var unlimitedP50 = 0.0
            var unlimitedP99 = 0.0
            var unlimitedPeak = 0
            try await withAdaptiveProxy(upstreamPort: upstream.port, nil) { proxy in
                let result = try await withTimeout(.seconds(60), "flood without adaptive") {
                    try await Self.flood(port: proxy.port, clients: clients, duration: .seconds(1))
                }
                #expect(result.refused == 0 && result.other == 0)
                unlimitedP50 = upstream.latencyQuantileMs(0.5)
                unlimitedP99 = upstream.latencyQuantileMs(0.99)
                unlimitedPeak = upstream.peak
            }
            try await eventually("the upstream drained") { upstream.inFlight == 0 }
            upstream.resetRecords()

            // With it (small intervals, so that it converges within the test).
            let adaptive = AdaptiveConcurrencyConfiguration(
                min: 2,
                max: 200,
                sampleInterval: .milliseconds(100),
                minRTTInterval: .seconds(60),
                jitter: 0,
                minRTTSamples: 20
            )
            try await withAdaptiveProxy(upstreamPort: upstream.port, adaptive) { proxy in
                let limiter = proxy.limiter
                // Warm-up: the minimum latency is measured and the limit found.
                _ = try await withTimeout(.seconds(60), "warm-up flood") {
                    try await Self.flood(port: proxy.port, clients: clients, duration: .milliseconds(600))
                }
                upstream.resetRecords()
                let samplesBefore = limiter.samples
                let refusalsBefore = limiter.refusals
                let result = try await withTimeout(.seconds(60), "flood with adaptive") {
                    try await Self.flood(port: proxy.port, clients: clients, duration: .milliseconds(1500))
                }
                let state = limiter.state
                let adaptiveP50 = upstream.latencyQuantileMs(0.5)
                let adaptiveP99 = upstream.latencyQuantileMs(0.99)
                let adaptivePeak = upstream.peak
                let description =
                    "limit \(state.limit), minRTT \(state.minRTT.map { Double($0) / 1e6 } ?? -1) ms, "
                    + "p50 \(adaptiveP50) ms vs \(unlimitedP50) ms, p99 \(adaptiveP99) ms vs \(unlimitedP99) ms, peak \(adaptivePeak) vs \(unlimitedPeak), \(result)"
                // SLUICE_PRINT_ADAPTIVE=1 shows the figures of a passing run.
                if ProcessInfo.processInfo.environment["SLUICE_PRINT_ADAPTIVE"] != nil { print("adaptive flood: \(description)") }
                // Without the limit the upstream held (nearly) every client's request, with the latency that brings.
                #expect(unlimitedPeak >= clients * 3 / 4, "\(description)")
                #expect(unlimitedP50 >= 80, "\(description)")
                // With it: about its workers plus the headroom (the limit swings around the knee: √limit of headroom
                // while the latency looks unloaded), and a fraction of the latency. The peak is the robust measure on
                // a loaded 2-core machine, where timers of the test process itself fire late: the upstream's p99 is
                // required to be half (seen: 20-30 ms against 168 ms), its median a third.
                #expect(state.minRTT != nil, "\(description)")
                #expect(state.limit <= 5 * upstream.workers, "\(description)")
                #expect(adaptivePeak <= 5 * upstream.workers, "\(description)")
                #expect(adaptivePeak * 3 < unlimitedPeak, "\(description)")
                #expect(adaptiveP50 * 3 < unlimitedP50, "\(description)")
                #expect(adaptiveP99 * 2 < unlimitedP99, "\(description)")
                #expect(result.ok > 0 && result.refused > 0 && result.other == 0, "\(description)")
                // Every refusal is a 503 with Retry-After and no rate-limit fields.
                #expect(result.badRefusals == 0, "\(description)")
                // Refusals are not samples: every sample is a completed (200) request, and every 503 a refusal.
                try await eventually("in flight back to 0") { limiter.inFlight == 0 }
                #expect(limiter.samples - samplesBefore == result.ok, "\(description)")
                #expect(limiter.refusals - refusalsBefore == result.refused, "\(description)")
                let metrics = proxy.server.metrics.exposition()
                let limitLine = metrics.split(separator: "\n").first { $0.hasPrefix("sluice_adaptive_concurrency_limit ") }
                let shownLimit = limitLine.flatMap { Int($0.split(separator: " ").last ?? "") }
                #expect(shownLimit.map { (2...200).contains($0) } == true, "\(limitLine ?? "no limit line")")
                #expect(metrics.contains("sluice_adaptive_concurrency_in_flight 0\n"))
                #expect(metrics.contains("sluice_adaptive_concurrency_refusals_total \(limiter.refusals)\n"))
                #expect(metrics.contains("sluice_adaptive_concurrency_samples_total \(limiter.samples)\n"))
                #expect(metrics.contains("\nsluice_adaptive_concurrency_min_rtt_seconds "))
                #expect(metrics.contains("\nsluice_adaptive_concurrency_sample_latency_seconds "))
            }
            try await eventually("the upstream drained") { upstream.inFlight == 0 }
        }
    }

    /// min = max = 1: one request in flight at most, whatever the latency.
    static let one = AdaptiveConcurrencyConfiguration(min: 1, max: 1, minRTTSamples: 1000)

    @Test("over the limit: 503 with Retry-After, a JSON body, no rate-limit fields, logged; not a sample")
    func refusal() async throws {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-adaptive-\(UUID().uuidString).log").path
        defer { try? FileManager.default.removeItem(atPath: log) }
        try await TestLoadGate.shared {
            let upstream = try await PeakRecordingUpstream(group: ProxyHarness.group)
            defer { Task { await upstream.close() } }
            var three = Self.one
            three.retryAfter = .seconds(3)
            try await withAdaptiveProxy(upstreamPort: upstream.port, three, configure: { $0.server.accessLog = .file(log) }) {
                proxy in
                let limiter = proxy.limiter
                let held = try await proxy.send("/hold")
                try await eventually("held") { upstream.heldCount == 1 }
                #expect(limiter.inFlight == 1)
                let refused = try await proxy.get("/")
                #expect(refused.status == 503)
                #expect(refused.header("Retry-After") == "3")
                #expect(refused.header("RateLimit") == nil && refused.header("RateLimit-Policy") == nil)
                #expect(refused.bodyString == #"{"error":"upstream_overloaded","retry_after":3}"#)
                #expect(limiter.refusals == 1 && limiter.samples == 0)
                upstream.releaseHeld()
                #expect(try await held.readResponse().status == 200)
                await held.close()
                try await eventually("released") { limiter.inFlight == 0 }
                #expect(limiter.samples == 1)
                // The upstream never saw the refused request.
                #expect(upstream.arrivals.count == 1)
                #expect(try await proxy.get("/").status == 200)
                try await eventually("second sample") { limiter.samples == 2 }
                // The access log names the reason, without a rule.
                try await eventually("access log written") {
                    let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                    return text.split(separator: "\n").contains {
                        $0.contains("\"decision\":\"adaptive_concurrency\"") && $0.contains("\"status\":503")
                    }
                }
            }
        }
    }

    @Test("the in-flight count goes back to 0 on every end: client abort, upstream reset, 5xx, unreachable")
    func releasedOnEveryEnd() async throws {
        try await TestLoadGate.shared {
            let upstream = try await PeakRecordingUpstream(group: ProxyHarness.group)
            defer { Task { await upstream.close() } }
            try await withAdaptiveProxy(
                upstreamPort: upstream.port,
                AdaptiveConcurrencyConfiguration(min: 4, max: 4, minRTTSamples: 1000),
                configure: { $0.server.timeouts.upstreamResponse = .seconds(1) }
            ) { proxy in
                let limiter = proxy.limiter
                // The client resets its connection while the upstream works: released at once, no sample.
                let abandoned = try await proxy.send("/hold")
                try await eventually("held") { upstream.heldCount == 1 }
                #expect(limiter.inFlight == 1)
                let socket = try #require(abandoned.channel as? any SocketOptionProvider)
                try await socket.setSoLinger(linger(l_onoff: 1, l_linger: 0)).get()
                await abandoned.close()
                try await eventually("client abort released") { limiter.inFlight == 0 }
                upstream.releaseHeld()
                #expect(limiter.samples == 0)
                // A client that only shuts its side (it may still read the answer, as HTTP allows): released when the
                // exchange ends.
                let halfClosed = try await proxy.send("/hold")
                try await eventually("held") { upstream.heldCount == 1 }
                await halfClosed.close()
                #expect(limiter.inFlight == 1)
                upstream.releaseHeld()
                try await eventually("half-closed client released") { limiter.inFlight == 0 }
                let samplesBefore = limiter.samples
                // The upstream does not answer in time: 504, released, no sample.
                #expect(try await proxy.get("/hold").status == 504)
                try await eventually("timeout released") { limiter.inFlight == 0 }
                upstream.releaseHeld()
                #expect(limiter.samples == samplesBefore)
                // The upstream resets the connection: 502, released, no sample.
                #expect(try await proxy.get("/reset").status == 502)
                try await eventually("reset released") { limiter.inFlight == 0 }
                #expect(limiter.samples == samplesBefore)
                // A 5xx that is relayed to its end is a completed request: a sample.
                #expect(try await proxy.get("/status?code=500").status == 500)
                try await eventually("5xx released") { limiter.inFlight == 0 }
                #expect(limiter.samples == samplesBefore + 1)
                // Several at once, all ending: back to 0.
                let clients = try await withThrowingTaskGroup(of: Int.self) { group in
                    for _ in 0..<4 { group.addTask { try await proxy.get("/slow?ms=50").status } }
                    return try await group.reduce(into: [Int]()) { $0.append($1) }
                }
                #expect(clients.allSatisfy { $0 == 200 || $0 == 503 })
                try await eventually("all released") { limiter.inFlight == 0 }
                #expect(limiter.samples == samplesBefore + 1 + clients.filter { $0 == 200 }.count)
            }
            let unreachable = try await closedPort()
            try await withAdaptiveProxy(upstreamPort: unreachable, AdaptiveConcurrencyConfiguration(min: 4, max: 4)) { proxy in
                #expect(try await proxy.get("/").status == 502)
                try await eventually("unreachable released") { proxy.limiter.inFlight == 0 }
                #expect(proxy.limiter.samples == 0 && proxy.limiter.refusals == 0)
            }
        }
    }

    @Test("after the slots and the rate limits: a refused request gives its slot back and has spent its rate quota")
    func orderWithSlotsAndRateLimits() async throws {
        try await TestLoadGate.shared {
            let upstream = try await PeakRecordingUpstream(group: ProxyHarness.group)
            defer { Task { await upstream.close() } }
            let rule = concurrencyRule("gen", max: 5, limits: [RateLimit(count: 2, periodSeconds: 60, text: "2/minute")])
            try await withAdaptiveProxy(upstreamPort: upstream.port, Self.one, rules: [rule]) { proxy in
                let slots = try #require(proxy.server.concurrencyLimiter).table.rule(named: "gen")
                let held = try await proxy.send("/hold", headers: ["X-Key: k"])
                try await eventually("held") { upstream.heldCount == 1 }
                #expect(slots.inFlight == 1)
                // Its slot and its quota are taken, then the upstream's limit refuses it: the slot comes back.
                let refused = try await proxy.get("/", headers: ["X-Key: k"])
                #expect(refused.status == 503)
                #expect(refused.header("RateLimit") == nil)
                try await eventually("slot returned") { slots.inFlight == 1 }
                upstream.releaseHeld()
                #expect(try await held.readResponse().status == 200)
                await held.close()
                try await eventually("released") { slots.inFlight == 0 && proxy.limiter.inFlight == 0 }
                // 2/minute: the held request and the refused one spent it.
                let limited = try await proxy.get("/", headers: ["X-Key: k"])
                #expect(limited.status == 429)
                #expect(proxy.limiter.refusals == 1)
            }
        }
    }

    @Test("reload: a kept upstream keeps its limiter; a changed one gets a new one and the old one's requests release into it")
    func reload() async throws {
        try await TestLoadGate.shared {
            let upstream = try await PeakRecordingUpstream(group: ProxyHarness.group)
            defer { Task { await upstream.close() } }
            let settings = AdaptiveConcurrencyConfiguration(min: 2, max: 50, minRTTSamples: 1)
            try await withAdaptiveProxy(upstreamPort: upstream.port, settings) { proxy in
                let first = proxy.limiter
                #expect(try await proxy.get("/").status == 200)
                #expect(first.state.minRTT != nil)
                let held = try await proxy.send("/hold")
                try await eventually("held") { upstream.heldCount == 1 }
                #expect(first.inFlight == 1)
                // Something else changes: the limiter (limit, minimum latency, in-flight count) stays.
                try await proxy.reload { $0.upstream.preserveHost = false }
                #expect(proxy.limiter === first)
                // The settings change: a new limiter, measuring afresh; the held request still counts in the old one.
                try await proxy.reload { $0.upstream.adaptiveConcurrency?.max = 40 }
                let second = proxy.limiter
                #expect(second !== first)
                #expect(second.state.minRTT == nil && second.inFlight == 0)
                #expect(first.inFlight == 1)
                upstream.releaseHeld()
                #expect(try await held.readResponse().status == 200)
                await held.close()
                try await eventually("released into the old limiter") { first.inFlight == 0 }
                #expect(second.inFlight == 0 && second.samples == 0)
                // Removed: no limiter, requests pass.
                try await proxy.reload { $0.upstream.adaptiveConcurrency = nil }
                #expect(proxy.server.adaptiveConcurrency == nil)
                #expect(try await proxy.get("/").status == 200)
            }
        }
    }
}
