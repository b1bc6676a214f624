import Foundation
import SluiceTestSupport
import Testing

/// The answer a blocked request gets (SPEC §2 `response:`, §5 `Retry-After`).
@Suite("blocked response")
struct BlockedResponseTests {
    @Test func defaultTemplate() async throws {
        try await E2E.withSluice({ port in
            E2E.config(
                upstreamPort: port,
                rest: """
                    rules:
                      - name: per-ip
                        key: [ip]
                        limits: ["1/minute"]
                    """
            )
        }) { sluice async throws in
            let firstAt = E2E.unixNow
            #expect(try await E2E.request(port: sluice.port, "/hello").status == 200)
            let sentAt = E2E.unixNow
            let blocked = try await E2E.request(port: sluice.port, "/hello")
            let receivedAt = E2E.unixNow
            #expect(blocked.status == 429)
            #expect(blocked.header("Content-Type") == "application/json")
            let retryAfter = try #require(blocked.header("Retry-After").flatMap { Int($0) })
            // sliding_window (the default): the one request weighs on the estimate until the end of the window after
            // its own, 60-aligned.
            let admittedAgain = (firstAt / 60).rounded(.down) * 60 + 120
            let earliest = Int((admittedAgain - receivedAt).rounded(.up))
            let latest = Int((admittedAgain - sentAt).rounded(.up))
            #expect(retryAfter >= earliest - 1 && retryAfter <= latest + 1, "Retry-After \(retryAfter)")
            #expect(blocked.bodyString == #"{"error":"rate_limited","rule":"per-ip","retry_after":\#(retryAfter)}"#)
            #expect(blocked.header("Content-Length") == String(blocked.body.count))
            #expect(sluice.upstream.requestURIs == ["/hello"])
        }
    }

    @Test func customResponseAndPerRuleOverride() async throws {
        try await E2E.withSluice({ port in
            E2E.config(
                upstreamPort: port,
                rest: """
                    response:
                      status: 503
                      content_type: text/plain
                      body: "limited by {rule} ({limit}), retry in {retry_after}s"
                      headers: { X-Limited: "yes", Cache-Control: no-store }
                    rules:
                      - name: global-resp
                        match: { path: /hello }
                        key: [ip]
                        limits: ["1/minute"]
                      - name: own-resp
                        match: { path: /echo-headers }
                        key: [ip]
                        limits: ["1/hour"]
                        response:
                          body: "slow down, {rule}"
                          headers: { X-Rule: own }
                    """
            )
        }) { sluice async throws in
            _ = try await E2E.request(port: sluice.port, "/hello")
            let blocked = try await E2E.request(port: sluice.port, "/hello")
            #expect(blocked.status == 503)
            #expect(blocked.header("Content-Type") == "text/plain")
            #expect(blocked.header("X-Limited") == "yes")
            #expect(blocked.header("Cache-Control") == "no-store")
            let retryAfter = try #require(blocked.header("Retry-After"))
            #expect(blocked.bodyString == "limited by global-resp (1/minute), retry in \(retryAfter)s")

            _ = try await E2E.request(port: sluice.port, "/echo-headers")
            let own = try await E2E.request(port: sluice.port, "/echo-headers")
            // Fields the rule does not override come from the global `response`.
            #expect(own.status == 503)
            #expect(own.header("Content-Type") == "text/plain")
            #expect(own.header("X-Limited") == "yes")
            #expect(own.header("X-Rule") == "own")
            #expect(own.bodyString == "slow down, own-resp")
            #expect(own.header("Retry-After") != nil)
        }
    }

    /// `Retry-After` of a fixed window: the seconds to the window's end, rounded up; after waiting that
    /// long the request is admitted.
    @Test func retryAfterOfFixedWindow() async throws {
        try await E2E.withSluice({ port in
            E2E.config(
                upstreamPort: port,
                rest: """
                    response:
                      rate_limit_headers: both
                    rules:
                      - name: fixed
                        key: [ip]
                        limits: ["1/3 seconds"]
                        algorithm: fixed_window
                    """
            )
        }) { sluice async throws in
            var blocked: RawHTTPClient.Response?
            var sentAt = 0.0
            var receivedAt = 0.0
            for _ in 0..<4 {
                sentAt = E2E.unixNow
                let r = try await E2E.request(port: sluice.port, "/hello")
                receivedAt = E2E.unixNow
                if r.status == 429 {
                    blocked = r
                    break
                }
            }
            let response = try #require(blocked)
            let retryAfter = try #require(response.header("Retry-After").flatMap { Int($0) })
            // Windows are aligned to the epoch: [3k, 3k+3). Sluice decided at some instant t in
            // [sentAt, receivedAt]; Retry-After must be ceil(windowEnd(t) - t), at least 1.
            func windowEnd(_ t: Double) -> Double { (t / 3).rounded(.down) * 3 + 3 }
            let reset = try #require(response.header("X-RateLimit-Reset").flatMap { Int($0) })
            #expect(retryAfter >= 1)
            if windowEnd(sentAt) == windowEnd(receivedAt) {
                let earliest = Int((windowEnd(receivedAt) - receivedAt).rounded(.up))
                let latest = Int((windowEnd(sentAt) - sentAt).rounded(.up))
                #expect(retryAfter >= max(1, earliest) && retryAfter <= max(1, latest), "Retry-After \(retryAfter)")
                #expect(abs(Double(reset) - windowEnd(sentAt)) <= 1, "reset \(reset) vs \(windowEnd(sentAt))")
            } else {
                // The decision fell on either side of a window boundary.
                #expect(retryAfter <= 3, "Retry-After \(retryAfter)")
                #expect(
                    abs(Double(reset) - windowEnd(sentAt)) <= 1 || abs(Double(reset) - windowEnd(receivedAt)) <= 1,
                    "reset \(reset)"
                )
            }
            #expect(response.rateLimit?.remaining == 0)
            #expect(response.rateLimit?.reset == retryAfter)
            try await Task.sleep(for: .seconds(retryAfter))
            #expect(try await E2E.request(port: sluice.port, "/hello").status == 200)
        }
    }
}
