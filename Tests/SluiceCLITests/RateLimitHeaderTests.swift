import Foundation
import SluiceTestSupport
import Testing

/// Rate-limit header fields on real responses (SPEC §5).
@Suite("rate-limit headers")
struct RateLimitHeaderTests {
    static func config(_ upstreamPort: Int, mode: String, limits: String = #"["5/minute"]"#) -> String {
        E2E.config(
            upstreamPort: upstreamPort,
            rest: """
                response:
                  rate_limit_headers: \(mode)
                rules:
                  - name: api
                    match: { path: /hello }
                    key: [ip]
                    limits: \(limits)
                    algorithm: moving_window
                  - name: free
                    match: { path: /status }
                    key: [ip]
                    limits: ["5/minute"]
                    exempt: ["127.0.0.1/32"]
                """
        )
    }

    @Test func draft() async throws {
        try await E2E.withSluice({ Self.config($0, mode: "draft") }) { sluice async throws in
            var remaining: [Int] = []
            for _ in 0..<5 {
                let r = try await E2E.request(port: sluice.port, "/hello")
                #expect(r.status == 200)
                #expect(r.header("RateLimit-Policy") == #""api";q=5;w=60"#)
                let field = try #require(r.rateLimit, "RateLimit: \(r.header("RateLimit") ?? "absent")")
                #expect(field.name == "api")
                #expect((1...60).contains(field.reset))
                remaining.append(field.remaining)
                #expect(r.header("X-RateLimit-Limit") == nil)
            }
            #expect(remaining == [4, 3, 2, 1, 0])
            let blocked = try await E2E.request(port: sluice.port, "/hello")
            #expect(blocked.status == 429)
            #expect(blocked.header("RateLimit-Policy") == #""api";q=5;w=60"#)
            #expect(blocked.rateLimit?.remaining == 0)
            let retryAfter = try #require(blocked.header("Retry-After").flatMap { Int($0) })
            #expect((1...60).contains(retryAfter))

            // Unmatched and exempt requests carry none.
            let unmatched = try await E2E.request(port: sluice.port, "/echo-headers")
            #expect(unmatched.status == 200)
            #expect(unmatched.rateLimitHeaderNames.isEmpty)
            let exempt = try await E2E.request(port: sluice.port, "/status?code=204")
            #expect(exempt.status == 204)
            #expect(exempt.rateLimitHeaderNames.isEmpty)
        }
    }

    @Test func twoLimitsLeastRemainingFirst() async throws {
        try await E2E.withSluice({ Self.config($0, mode: "draft", limits: #"["5/minute", "3/hour"]"#) }) { sluice async throws in
            let first = try await E2E.request(port: sluice.port, "/hello")
            #expect(first.header("RateLimit-Policy") == #""api-3600";q=3;w=3600, "api-60";q=5;w=60"#)
            #expect(first.rateLimit?.name == "api-3600")
            #expect(first.rateLimit?.remaining == 2)
            _ = try await E2E.request(port: sluice.port, "/hello")
            let third = try await E2E.request(port: sluice.port, "/hello")
            #expect(third.rateLimit?.name == "api-3600")
            #expect(third.rateLimit?.remaining == 0)
            let blocked = try await E2E.request(port: sluice.port, "/hello")
            #expect(blocked.status == 429)
            #expect(blocked.header("RateLimit-Policy") == #""api-3600";q=3;w=3600, "api-60";q=5;w=60"#)
            // Retry-After: the hour limit refused, so about an hour.
            let retryAfter = try #require(blocked.header("Retry-After").flatMap { Int($0) })
            #expect((3500...3600).contains(retryAfter))
            #expect(blocked.bodyString.contains(#""rule":"api""#))
        }
    }

    @Test func twoLimitsFileOrderWhenFirstIsLeast() async throws {
        try await E2E.withSluice({ Self.config($0, mode: "draft", limits: #""2/minute;5/hour""#) }) { sluice async throws in
            let first = try await E2E.request(port: sluice.port, "/hello")
            #expect(first.header("RateLimit-Policy") == #""api-60";q=2;w=60, "api-3600";q=5;w=3600"#)
            #expect(first.rateLimit?.name == "api-60")
            #expect(first.rateLimit?.remaining == 1)
        }
    }

    @Test func legacy() async throws {
        try await E2E.withSluice({ Self.config($0, mode: "legacy") }) { sluice async throws in
            for expected in [4, 3, 2, 1, 0] {
                let before = E2E.unixNow
                let r = try await E2E.request(port: sluice.port, "/hello")
                #expect(r.status == 200)
                #expect(r.header("X-RateLimit-Limit") == "5")
                #expect(r.header("X-RateLimit-Remaining") == String(expected))
                let reset = try #require(r.header("X-RateLimit-Reset").flatMap { Int($0) })
                #expect(Double(reset) > before && Double(reset) <= before + 61, "reset \(reset) at \(before)")
                #expect(r.header("RateLimit") == nil && r.header("RateLimit-Policy") == nil)
            }
            let blocked = try await E2E.request(port: sluice.port, "/hello")
            #expect(blocked.status == 429)
            #expect(blocked.header("X-RateLimit-Remaining") == "0")
            #expect(blocked.header("Retry-After") != nil)
            #expect(try await E2E.request(port: sluice.port, "/echo-headers").rateLimitHeaderNames.isEmpty)
        }
    }

    @Test func both() async throws {
        try await E2E.withSluice({ Self.config($0, mode: "both") }) { sluice async throws in
            let r = try await E2E.request(port: sluice.port, "/hello")
            #expect(r.status == 200)
            #expect(Set(r.rateLimitHeaderNames) == [
                "ratelimit", "ratelimit-policy", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset",
            ])
            #expect(r.rateLimit?.remaining == 4)
            #expect(r.header("X-RateLimit-Remaining") == "4")
            // Each field once.
            #expect(r.headers("RateLimit").count == 1)
            #expect(r.headers("X-RateLimit-Limit").count == 1)
        }
    }

    @Test func noneStillSendsRetryAfter() async throws {
        try await E2E.withSluice({ Self.config($0, mode: "none") }) { sluice async throws in
            for _ in 0..<5 {
                let r = try await E2E.request(port: sluice.port, "/hello")
                #expect(r.status == 200)
                #expect(r.rateLimitHeaderNames.isEmpty)
            }
            let blocked = try await E2E.request(port: sluice.port, "/hello")
            #expect(blocked.status == 429)
            #expect(blocked.rateLimitHeaderNames.isEmpty)
            let retryAfter = try #require(blocked.header("Retry-After").flatMap { Int($0) })
            #expect(retryAfter >= 1)
        }
    }

    /// Headers ride on keep-alive responses too, one set per response.
    @Test func headersOnKeepAliveConnection() async throws {
        try await E2E.withSluice({ Self.config($0, mode: "draft") }) { sluice async throws in
            let client = try await RawHTTPClient.connect(port: sluice.port, group: E2E.group)
            var remaining: [Int] = []
            for _ in 0..<6 {
                try await client.send(E2E.requestText("/hello"))
                let r = try await client.readResponse()
                #expect(r.headers("RateLimit").count == 1)
                remaining.append(r.rateLimit?.remaining ?? -1)
            }
            // The unmatched request on the same connection carries none.
            try await client.send(E2E.requestText("/echo-headers"))
            let unmatched = try await client.readResponse()
            #expect(unmatched.status == 200)
            #expect(unmatched.rateLimitHeaderNames.isEmpty)
            await client.close()
            #expect(remaining == [4, 3, 2, 1, 0, 0])
        }
    }
}
