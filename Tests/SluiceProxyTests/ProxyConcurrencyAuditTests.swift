import Foundation
import NIOCore
import NIOPosix
import SluiceConfig
import SluiceLimiter
import SluiceTestSupport
import Testing

@testable import SluiceProxy

/// Clauses of issue 22 that no earlier socket test asserted (audit of issue 22): a concurrency rule over h2c (each
/// stream one request), a `retry_after` other than the default on every refusal reason, a plain concurrency refusal
/// with the rule's 503, time spent queued kept out of the adaptive controller's samples, and tiers, `exempt` and
/// `on_missing_key: deny` through the proxy (the limiter's own tests had them without sockets), and `match`.
@Suite("Proxy concurrency: audit of issue 22", .timeLimit(.minutes(2)))
struct ProxyConcurrencyAuditTests {
    @Test("h2c: each stream holds one slot; the over-cap stream gets 429 without RateLimit fields; a reset stream gives its slot back")
    func http2StreamsAreRequests() async throws {
        try await withConcurrencyProxy([concurrencyRule("gen", max: 2)], configure: { $0.server.h2c = true }) { proxy in
            let slots = proxy.slots("gen")
            let client = try await HTTP2TestClient.connect(port: proxy.port)
            // Two streams of one connection hold the two slots of key k.
            let held = (0..<2).map { _ in
                Task { try await client.request("GET", "/hold", headers: [("x-key", "k")]) }
            }
            try await eventually("two streams held upstream") { proxy.upstream.heldCount == 2 }
            #expect(slots.inFlight == 2)
            // A third stream of the same key is over the cap.
            let refused = try await client.request("GET", "/", headers: [("x-key", "k")])
            #expect(refused.status == 429)
            #expect(refused.headers.first(name: "retry-after") == "1")
            #expect(refused.headers.first(name: "ratelimit") == nil && refused.headers.first(name: "ratelimit-policy") == nil)
            #expect(slots.refusals(.concurrency) == 1)
            // Another key on the same connection has its own slots.
            #expect(try await client.request("GET", "/", headers: [("x-key", "other")]).status == 200)
            proxy.upstream.releaseHeld()
            for task in held { #expect(try await task.value.status == 200) }
            try await eventually("every stream ended: in flight 0") { slots.inFlight == 0 }
            #expect(proxy.upstream.peak <= 3)
            await client.close()

            // A stream the client resets (RST_STREAM) while the upstream works: its slot comes back without waiting
            // for the upstream.
            let raw = try await HTTP2RawClient.connect(port: proxy.port)
            let block = try H2Wire.headerBlock(path: "/hold", extra: [("x-key", "k")])
            try await raw.send(H2Wire.frame(.headers, flags: H2Wire.endStream | H2Wire.endHeaders, stream: 1, payload: block))
            try await eventually("the stream is held upstream") { proxy.upstream.heldCount == 1 }
            #expect(slots.inFlight == 1)
            let cancel: [UInt8] = [0, 0, 0, 0x8]  // CANCEL (RFC 9113 §7)
            try await raw.send(H2Wire.frame(.rstStream, stream: 1, payload: cancel))
            try await eventually("the reset stream's slot is back") { slots.inFlight == 0 }
            proxy.upstream.releaseHeld()
            await raw.close()
        }
    }

    @Test("a rule's retry_after is the Retry-After of concurrency, queue_full and queue_timeout refusals; its 503 is used")
    func configuredRetryAfterAndStatus() async throws {
        var capped = concurrencyRule("capped", max: 1)
        capped.concurrency?.retryAfter = .seconds(7)
        capped.response.status = 503
        var queued = concurrencyRule("queued", key: [.header("x-q")], max: 1, queue: .init(size: 1, timeout: .seconds(3)))
        queued.concurrency?.retryAfter = .seconds(4)
        try await withConcurrencyProxy([capped, queued]) { proxy in
            // Over the cap, no queue: the rule's 503 with Retry-After 7.
            let holder = try await proxy.send("/hold", headers: ["X-Key: k"])
            try await eventually("held") { proxy.upstream.heldCount == 1 }
            let refused = try await proxy.get("/", headers: ["X-Key: k"])
            #expect(refused.status == 503)
            #expect(refused.header("Retry-After") == "7")
            #expect(refused.header("RateLimit") == nil)
            #expect(proxy.slots("capped").refusals(.concurrency) == 1)

            // Queue: one holds, one waits; a third finds the queue full, the waiter times out: both Retry-After 4.
            let queuedHolder = try await proxy.send("/hold", headers: ["X-Q: q"])
            try await eventually("second held") { proxy.upstream.heldCount == 2 }
            let waiter = try await proxy.send("/", headers: ["X-Q: q"])
            try await eventually("one waits") { proxy.slots("queued").queued == 1 }
            let full = try await proxy.get("/", headers: ["X-Q: q"])
            #expect(full.status == 429)
            #expect(full.header("Retry-After") == "4")
            let timedOut = try await waiter.readResponse()
            #expect(timedOut.status == 429)
            #expect(timedOut.header("Retry-After") == "4")
            #expect(proxy.slots("queued").refusals(.queueFull) == 1)
            #expect(proxy.slots("queued").refusals(.queueTimeout) == 1)

            proxy.upstream.releaseHeld()
            for client in [holder, queuedHolder] {
                #expect(try await client.readResponse().status == 200)
                await client.close()
            }
            await waiter.close()
            try await eventually("all back") {
                proxy.slots("capped").inFlight == 0 && proxy.slots("queued").inFlight == 0 && proxy.slots("queued").queued == 0
            }
        }
    }

    @Test("adaptive concurrency: the time a request spent in a concurrency queue is not part of its latency sample")
    func queuedTimeIsNotSampled() async throws {
        try await TestLoadGate.shared {
            let upstream = try await PeakRecordingUpstream(group: ProxyHarness.group)
            defer { Task { await upstream.close() } }
            let rule = concurrencyRule("gen", max: 1, queue: .init(size: 2, timeout: .seconds(20)))
            let adaptive = AdaptiveConcurrencyConfiguration(min: 4, max: 4, minRTTSamples: 1)
            try await withAdaptiveProxy(upstreamPort: upstream.port, adaptive, rules: [rule]) { proxy in
                let limiter = proxy.limiter
                let slots = try #require(proxy.server.concurrencyLimiter).table.rule(named: "gen")
                // A holds the key's only slot at the upstream; B waits in the queue behind it.
                let a = try await proxy.send("/hold", headers: ["X-Key: k"])
                try await eventually("A held") { upstream.heldCount == 1 }
                let b = try await proxy.send("/slow?ms=1", headers: ["X-Key: k"])
                try await eventually("B queued") { slots.queued == 1 }
                #expect(limiter.inFlight == 1, "a queued request holds no place in the upstream's limit")
                try await Task.sleep(for: .milliseconds(1500))
                // A's client resets its connection: A ends without a sample, B gets the slot and completes at once.
                let socket = try #require(a.channel as? any SocketOptionProvider)
                try await socket.setSoLinger(linger(l_onoff: 1, l_linger: 0)).get()
                await a.close()
                #expect(try await b.readResponse().status == 200)
                await b.close()
                try await eventually("B's sample") { limiter.samples == 1 && limiter.inFlight == 0 }
                let minRTT = try #require(limiter.state.minRTT, "one sample ends the first measurement")
                #expect(minRTT < 750_000_000, "B's latency \(minRTT / 1_000_000) ms includes its 1.5 s in the queue")
                upstream.releaseHeld()
                try await eventually("slots back") { slots.inFlight == 0 && slots.queued == 0 }
            }
        }
    }

    @Test("through the proxy: a tier picks max, an exempt client takes no slot, on_missing_key deny refuses without Retry-After")
    func tiersExemptAndMissingKey() async throws {
        var plans = concurrencyRule("plans", max: 1)
        var tiers = Tiers(by: .header("x-plan"), values: [:], defaultLimits: nil)
        tiers.concurrencyMax = ["pro": 2]
        plans.tiers = tiers
        var users = concurrencyRule("users", key: [.header("x-user")], max: 5)
        users.onMissingKey = .deny
        // Would refuse the second request in flight, but every test client (loopback) is exempt from it.
        var everyone = concurrencyRule("everyone", key: [.const("all")], max: 1)
        everyone.exempt = [CIDR("127.0.0.0/8")!]
        try await withConcurrencyProxy([plans, users, everyone]) { proxy in
            let pro = ["X-Key: k", "X-Plan: pro", "X-User: u"]
            let first = try await proxy.send("/hold", headers: pro)
            let second = try await proxy.send("/hold", headers: pro)
            try await eventually("the pro tier holds 2") { proxy.upstream.heldCount == 2 }
            #expect(proxy.slots("plans").inFlight == 2)
            #expect(proxy.slots("users").inFlight == 2)
            #expect(proxy.slots("everyone").inFlight == 0, "an exempt client takes no slot")
            let third = try await proxy.get("/", headers: pro)
            #expect(third.status == 429)
            #expect(third.bodyString.contains("plans"))
            // Without a plan: the rule's own max 1.
            let free = try await proxy.send("/hold", headers: ["X-Key: f", "X-User: u"])
            try await eventually("one free held") { proxy.upstream.heldCount == 3 }
            #expect(try await proxy.get("/", headers: ["X-Key: f", "X-User: u"]).status == 429)
            // No X-User: refused for good by `users` (no Retry-After: waiting does not help), no slot kept.
            let denied = try await proxy.get("/", headers: ["X-Key: other"])
            #expect(denied.status == 429)
            #expect(denied.header("Retry-After") == nil)
            #expect(denied.bodyString.contains("users"))
            #expect(proxy.slots("plans").inFlight == 3, "the denied request's slot of `plans` is back")
            proxy.upstream.releaseHeld()
            for client in [first, second, free] {
                #expect(try await client.readResponse().status == 200)
                await client.close()
            }
            try await eventually("all back") {
                proxy.slots("plans").inFlight == 0 && proxy.slots("users").inFlight == 0 && proxy.slots("everyone").inFlight == 0
            }
        }
    }

    @Test("match: only the requests a concurrency rule matches take (and are refused for) its slots")
    func matchSelectsRequests() async throws {
        var rule = concurrencyRule("held-only", max: 1)
        rule.match = RuleMatch(path: .exact("/hold"))
        try await withConcurrencyProxy([rule]) { proxy in
            let held = try await proxy.send("/hold", headers: ["X-Key: k"])
            try await eventually("held") { proxy.upstream.heldCount == 1 }
            #expect(proxy.slots("held-only").inFlight == 1)
            // Same key, another path: not matched, so neither counted nor refused.
            #expect(try await proxy.get("/other", headers: ["X-Key: k"]).status == 200)
            #expect(proxy.slots("held-only").inFlight == 1)
            // Same key, the matched path: over max 1.
            #expect(try await proxy.get("/hold", headers: ["X-Key: k"]).status == 429)
            proxy.upstream.releaseHeld()
            #expect(try await held.readResponse().status == 200)
            await held.close()
            try await eventually("back") { proxy.slots("held-only").inFlight == 0 }
        }
    }
}
