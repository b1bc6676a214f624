import Foundation
import NIOHTTP1
import SluiceConfig
import SluiceLimiter
import SluiceTestSupport
import Testing

@testable import SluiceProxy

/// Concurrency limits end to end (issue 22), continued: the access log's decisions, and a queued upload that is not
/// read while it waits.
@Suite("Proxy concurrency: access log and back-pressure")
struct ProxyConcurrencyQueueTests {
    @Test("the access log names concurrency, shadow_concurrency and the admitting rule")
    func accessLogDecisions() async throws {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-conc-\(UUID().uuidString).log").path
        defer { try? FileManager.default.removeItem(atPath: log) }
        let rules = [
            concurrencyRule("capped", max: 1),
            concurrencyRule("watched", key: [.header("x-watch")], max: 1, mode: .shadow),
        ]
        try await withConcurrencyProxy(rules, configure: { $0.server.accessLog = .file(log) }) { proxy in
            let held = try await proxy.send("/hold", headers: ["X-Key: k", "X-Watch: w"])
            try await eventually("held") { proxy.upstream.heldCount == 1 }
            // Over `capped`: refused.
            let refused = try await proxy.get("/", headers: ["X-Key: k"])
            #expect(refused.status == 429)
            #expect(refused.header("Retry-After") == "1")
            #expect(refused.header("RateLimit-Policy") == nil)
            // Over the shadow rule only: forwarded.
            #expect(try await proxy.get("/", headers: ["X-Key: other", "X-Watch: w"]).status == 200)
            // Under every cap: admitted by the first rule that applied.
            #expect(try await proxy.get("/", headers: ["X-Key: third"]).status == 200)
            proxy.upstream.releaseHeld()
            _ = try await held.readResponse()
            await held.close()
            try await eventually("access log written") {
                let lines = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n")
                return lines.contains { $0.contains("\"rule\":\"capped\"") && $0.contains("\"decision\":\"concurrency\"") && $0.contains("\"status\":429") }
                    && lines.contains { $0.contains("\"rule\":\"watched\"") && $0.contains("\"decision\":\"shadow_concurrency\"") }
                    && lines.contains { $0.contains("\"rule\":\"capped\"") && $0.contains("\"decision\":\"admitted\"") }
            }
        }
    }

    @Test("a queued upload is not read while it waits, then goes through whole")
    func queuedUploadIsNotRead() async throws {
        let rule = concurrencyRule("uploads", max: 1, queue: .init(size: 1, timeout: .seconds(20)))
        try await withConcurrencyProxy([rule]) { proxy in
            let held = try await proxy.send("/hold", headers: ["X-Key: k"])
            try await eventually("held") { proxy.upstream.heldCount == 1 }
            let upload = try await StreamingHTTPClient.connect(port: proxy.port, group: ProxyHarness.group)
            let total = 64 * 1024 * 1024
            var headers = HTTPHeaders()
            headers.add(name: "Host", value: "test")
            headers.add(name: "X-Key", value: "k")
            headers.add(name: "Content-Length", value: String(total))
            upload.startSending(HTTPRequestHead(version: .http1_1, method: .POST, uri: "/slow?ms=1", headers: headers), bodyBytes: total)
            try await eventually("queued") { proxy.slots("uploads").queued == 1 }
            // Give the client time to fill what the sockets hold; the proxy must not take more than one read.
            try await Task.sleep(for: .milliseconds(300))
            let writtenWhileQueued = upload.bodyBytesWritten
            #expect(writtenWhileQueued < total / 4, "the upload was read while queued: \(writtenWhileQueued) bytes")
            proxy.upstream.releaseHeld()
            _ = try await held.readResponse()
            await held.close()
            let response = try await withTimeout(.seconds(30), "upload") { try await upload.response() }
            #expect(response.head.status == .ok)
            #expect(upload.bodyBytesWritten == total)
            await upload.close()
            try await eventually("back") { proxy.slots("uploads").inFlight == 0 }
        }
    }
}

/// With `storage.kind: redis` the rate limits take a round trip while the request holds its (in-memory) slots.
@Suite("Proxy concurrency with Redis rate limits")
struct ProxyConcurrencyRedisTests {
    @Test("slots are held across the Redis round trip, returned on its refusal, and the log names the rules")
    func slotsAcrossTheRoundTrip() async throws {
        let redis = try await RedisServer.start()
        defer { Task { await redis.stop() } }
        let rule = concurrencyRule("gen", max: 1, limits: [RateLimit(count: 2, periodSeconds: 60, text: "2/minute")])
        try await withConcurrencyProxy([rule], configure: { configuration in
            var storage = RedisStorageConfiguration(url: "redis://127.0.0.1:\(redis.port)/0")
            storage.host = "127.0.0.1"
            storage.port = redis.port
            storage.keyPrefix = "conc-test:"
            storage.timeout = .seconds(2)
            configuration.storage.kind = .redis
            configuration.storage.redis = storage
        }) { proxy in
            let held = try await proxy.send("/hold", headers: ["X-Key: k"])
            try await eventually("held") { proxy.upstream.heldCount == 1 }
            #expect(proxy.slots("gen").inFlight == 1)
            let refused = try await proxy.get("/", headers: ["X-Key: k"])
            #expect(refused.status == 429)
            #expect(refused.header("RateLimit") == nil, "a concurrency refusal, before the rate limits")
            proxy.upstream.releaseHeld()
            #expect(try await held.readResponse().status == 200)
            await held.close()
            try await eventually("back") { proxy.slots("gen").inFlight == 0 }
            #expect(try await proxy.get("/", headers: ["X-Key: k"]).status == 200)
            let limited = try await proxy.get("/", headers: ["X-Key: k"])
            #expect(limited.status == 429)
            #expect(limited.header("RateLimit") != nil, "the rate limit's refusal, through Redis")
            try await eventually("the rate refusal returned the slot") { proxy.slots("gen").inFlight == 0 }
            #expect(!redis.cli("--scan", "--pattern", "conc-test:*").isEmpty, "the counters live in Redis")
        }
    }
}
