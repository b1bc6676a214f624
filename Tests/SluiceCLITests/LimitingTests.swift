import Foundation
import SluiceTestSupport
import Testing

/// Rate limiting end to end through the real binary (SPEC §2 keys/paths/decisions, §4 client IP).
@Suite("limiting end to end")
struct LimitingTests {
    @Test func perKeyBudgets() async throws {
        try await E2E.withSluice({ port in
            E2E.config(
                upstreamPort: port,
                rest: """
                    rules:
                      - name: per-key
                        key: [header:X-Api-Key]
                        limits: ["3/minute"]
                    """
            )
        }) { sluice async throws in
            let a = [("X-Api-Key", "key-a")]
            let b = [("X-Api-Key", "key-b")]
            #expect(try await E2E.statuses(port: sluice.port, "/hello", count: 4, headers: a) == [200, 200, 200, 429])
            #expect(try await E2E.statuses(port: sluice.port, "/hello", count: 2, headers: b) == [200, 200])
            // Still refused: the denied request took nothing, but nothing was given back either.
            #expect(try await E2E.request(port: sluice.port, "/hello", headers: a).status == 429)
            // No key: `on_missing_key: skip` (the default), the rule does not apply.
            let anonymous = try await E2E.request(port: sluice.port, "/hello")
            #expect(anonymous.status == 200)
            #expect(anonymous.rateLimitHeaderNames.isEmpty)
            // Denied requests never reached the upstream.
            #expect(sluice.upstream.requestURIs.count == 6)
        }
    }

    @Test func spoofedForwardedForFromUntrustedPeerSharesOneBudget() async throws {
        try await E2E.withSluice({ port in
            E2E.config(
                upstreamPort: port,
                rest: """
                    rules:
                      - name: per-ip
                        key: [ip]
                        limits: ["2/minute"]
                    """
            )
        }) { sluice async throws in
            var statuses: [Int] = []
            for client in ["198.51.100.1", "198.51.100.2", "198.51.100.3"] {
                statuses.append(
                    try await E2E.request(port: sluice.port, "/hello", headers: [("X-Forwarded-For", client)]).status
                )
            }
            #expect(statuses == [200, 200, 429])
        }
    }

    @Test func trustedProxyForwardedForGivesSeparateBudgets() async throws {
        try await E2E.withSluice({ port in
            E2E.config(
                upstreamPort: port,
                server: "  trusted_proxies: [\"127.0.0.1/32\"]",
                rest: """
                    rules:
                      - name: per-ip
                        key: [ip]
                        limits: ["2/minute"]
                    """
            )
        }) { sluice async throws in
            let one = [("X-Forwarded-For", "198.51.100.1")]
            let two = [("X-Forwarded-For", "198.51.100.2")]
            #expect(try await E2E.statuses(port: sluice.port, "/hello", count: 3, headers: one) == [200, 200, 429])
            #expect(try await E2E.statuses(port: sluice.port, "/hello", count: 2, headers: two) == [200, 200])
            // Right-most untrusted address: a client-supplied left part changes nothing.
            let spoofedLeft = [("X-Forwarded-For", "203.0.113.9, 198.51.100.1")]
            #expect(try await E2E.request(port: sluice.port, "/hello", headers: spoofedLeft).status == 429)
        }
    }

    /// IPv4-mapped IPv6 addresses count as IPv4 (SPEC §4).
    @Test func ipv4MappedAddressIsTheIPv4Client() async throws {
        try await E2E.withSluice({ port in
            E2E.config(
                upstreamPort: port,
                server: "  trusted_proxies: [\"127.0.0.1/32\"]",
                rest: """
                    rules:
                      - name: per-net
                        key: [ip/24]
                        limits: ["2/minute"]
                    """
            )
        }) { sluice async throws in
            func status(_ client: String) async throws -> Int {
                try await E2E.request(port: sluice.port, "/hello", headers: [("X-Forwarded-For", client)]).status
            }
            #expect(try await status("198.51.100.7") == 200)
            #expect(try await status("::ffff:198.51.100.8") == 200)
            #expect(try await status("198.51.100.9") == 429)
            #expect(try await status("198.51.101.1") == 200)
        }
    }

    @Test func ipv6PrefixKeyGroupsOne64() async throws {
        try await E2E.withSluice({ port in
            E2E.config(
                upstreamPort: port,
                server: "  trusted_proxies: [\"127.0.0.1/32\"]",
                rest: """
                    rules:
                      - name: per-net
                        key: [ip/64]
                        limits: ["2/minute"]
                    """
            )
        }) { sluice async throws in
            func status(_ client: String) async throws -> Int {
                try await E2E.request(port: sluice.port, "/hello", headers: [("X-Forwarded-For", client)]).status
            }
            #expect(try await status("2001:db8:1:2::1") == 200)
            #expect(try await status("2001:db8:1:2::ffff") == 200)
            #expect(try await status("2001:db8:1:2::1") == 429)
            #expect(try await status("2001:db8:1:2:abcd::7") == 429)
            #expect(try await status("2001:db8:1:3::1") == 200)
        }
    }

    @Test func pathVariantsShareTheNormalisedPathBudget() async throws {
        try await E2E.withSluice({ port in
            E2E.config(
                upstreamPort: port,
                rest: """
                    rules:
                      - name: login
                        match: { path: /login }
                        key: [ip]
                        limits: ["4/minute"]
                    """
            )
        }) { sluice async throws in
            let variants = ["//login", "/./login", "/%6Cogin", "/login?x=1"]
            var statuses: [Int] = []
            for target in variants + ["/login"] {
                let response = try await E2E.request(port: sluice.port, target)
                statuses.append(response.status)
                if response.status != 429 {
                    #expect(response.rateLimit?.name == "login", "\(target) did not match the rule")
                }
            }
            // The TestUpstream answers 404 for /login: admitted requests reached it.
            #expect(statuses == [404, 404, 404, 404, 429])
            // Forwarded unchanged.
            #expect(sluice.upstream.requestURIs == variants)
            // Other paths are not limited by the rule.
            let other = try await E2E.request(port: sluice.port, "/hello")
            #expect(other.status == 200)
            #expect(other.rateLimitHeaderNames.isEmpty)
        }
    }

    @Test func exemptClientIsNeverLimitedAndGetsNoHeaders() async throws {
        try await E2E.withSluice({ port in
            E2E.config(
                upstreamPort: port,
                rest: """
                    rules:
                      - name: per-ip
                        key: [ip]
                        limits: ["1/minute"]
                        exempt: ["127.0.0.0/8"]
                    """
            )
        }) { sluice async throws in
            for _ in 0..<3 {
                let response = try await E2E.request(port: sluice.port, "/hello")
                #expect(response.status == 200)
                #expect(response.rateLimitHeaderNames.isEmpty)
                #expect(response.header("Retry-After") == nil)
            }
        }
    }

    @Test func shadowModeNeverBlocksButReportsAndLogs() async throws {
        try await E2E.withSluice({ port in
            E2E.config(
                upstreamPort: port,
                accessLog: "stdout",
                rest: """
                    rules:
                      - name: trial
                        key: [ip]
                        limits: ["1/minute"]
                        algorithm: moving_window
                        mode: shadow
                    """
            )
        }) { sluice async throws in
            let first = try await E2E.request(port: sluice.port, "/hello?n=1")
            #expect(first.status == 200)
            #expect(first.header("RateLimit-Policy") == #""trial";q=1;w=60"#)
            #expect(first.rateLimit?.name == "trial")
            #expect(first.rateLimit?.remaining == 0)
            for n in 2...3 {
                let response = try await E2E.request(port: sluice.port, "/hello?n=\(n)")
                #expect(response.status == 200)
                #expect(response.header("Retry-After") == nil)
                #expect(response.rateLimit?.name == "trial")
                #expect(response.rateLimit?.remaining == 0)
            }
            #expect(sluice.upstream.requestURIs.count == 3)
            func accessLine(_ n: Int) -> Substring? {
                sluice.process.outputSoFar.split(separator: "\n").first {
                    $0.hasPrefix("{") && $0.contains(#""path":"/hello?n=\#(n)""#)
                }
            }
            try await E2E.eventually("the access log lines") { accessLine(3) != nil }
            let line1 = accessLine(1)
            let line2 = accessLine(2)
            #expect(line1 != nil && !line1!.contains("shadow"), "\(line1 ?? "")")
            #expect(line2 != nil && line2!.contains("shadow") && line2!.contains("trial"), "\(line2 ?? "")")
        }
    }

    /// A request one rule refuses takes nothing from the other rules (SPEC §2 "Decisions").
    @Test func deniedRequestConsumesNothingFromOtherRules() async throws {
        try await E2E.withSluice({ port in
            E2E.config(
                upstreamPort: port,
                rest: """
                    rules:
                      - name: global
                        key: [ip]
                        limits: ["3/minute"]
                        algorithm: moving_window
                      - name: strict
                        match: { path: /hello }
                        key: [ip]
                        limits: ["2/minute"]
                        algorithm: moving_window
                    """
            )
        }) { sluice async throws in
            var responses: [RawHTTPClient.Response] = []
            for _ in 0..<5 { responses.append(try await E2E.request(port: sluice.port, "/hello")) }
            #expect(responses.map(\.status) == [200, 200, 429, 429, 429])
            #expect(responses[1].rateLimit?.name == "strict")
            #expect(responses[1].rateLimit?.remaining == 0)
            #expect(responses[2].bodyString.contains(#""rule":"strict""#))
            // `global` has 1 left: the three refused requests took nothing from it.
            let other = try await E2E.request(port: sluice.port, "/echo-headers")
            #expect(other.status == 200)
            #expect(other.rateLimit == RateLimitField(other.header("RateLimit")) && other.rateLimit?.name == "global")
            #expect(other.rateLimit?.remaining == 0)
            let blocked = try await E2E.request(port: sluice.port, "/echo-headers")
            #expect(blocked.status == 429)
            #expect(blocked.bodyString.contains(#""rule":"global""#))
        }
    }

    /// Symmetric case: rule A (all paths) blocks; rule B (one path) keeps its budget. A's key is a header, so a
    /// request without it shows B's numbers alone.
    @Test func blockedByBroadRuleKeepsNarrowRuleBudget() async throws {
        try await E2E.withSluice({ port in
            E2E.config(
                upstreamPort: port,
                rest: """
                    rules:
                      - name: a
                        key: [header:X-Client]
                        limits: ["2/minute"]
                        algorithm: moving_window
                      - name: b
                        match: { path: /hello }
                        key: [ip]
                        limits: ["5/minute"]
                        algorithm: moving_window
                    """
            )
        }) { sluice async throws in
            let withA = [("X-Client", "c1")]
            var responses: [RawHTTPClient.Response] = []
            for _ in 0..<5 { responses.append(try await E2E.request(port: sluice.port, "/hello", headers: withA)) }
            #expect(responses.map(\.status) == [200, 200, 429, 429, 429])
            #expect(responses[0].header("RateLimit-Policy") == #""a";q=2;w=60, "b";q=5;w=60"#)
            #expect(responses[4].bodyString.contains(#""rule":"a""#))
            #expect(responses[4].header("RateLimit-Policy") == #""a";q=2;w=60, "b";q=5;w=60"#)
            // Only `b` applies now: 2 taken by the admitted requests, none by the refused ones, 1 by this one.
            let onlyB = try await E2E.request(port: sluice.port, "/hello")
            #expect(onlyB.status == 200)
            #expect(onlyB.header("RateLimit-Policy") == #""b";q=5;w=60"#)
            #expect(onlyB.rateLimit?.name == "b")
            #expect(onlyB.rateLimit?.remaining == 2)
        }
    }

    @Test func missingKeyDenyIsRefusedWithoutRetryAfter() async throws {
        try await E2E.withSluice({ port in
            E2E.config(
                upstreamPort: port,
                rest: """
                    rules:
                      - name: needs-key
                        key: [header:X-Api-Key]
                        limits: ["100/minute"]
                        on_missing_key: deny
                    """
            )
        }) { sluice async throws in
            let refused = try await E2E.request(port: sluice.port, "/hello")
            #expect(refused.status == 429)
            #expect(refused.header("Retry-After") == nil)
            #expect(refused.bodyString.contains(#""rule":"needs-key""#), "\(refused.bodyString)")
            let admitted = try await E2E.request(port: sluice.port, "/hello", headers: [("X-Api-Key", "k")])
            #expect(admitted.status == 200)
            #expect(sluice.upstream.requestURIs == ["/hello"])
        }
    }

    @Test func costFromHeader() async throws {
        try await E2E.withSluice({ port in
            E2E.config(
                upstreamPort: port,
                rest: """
                    rules:
                      - name: weighted
                        match: { path: /hello }
                        key: [ip]
                        limits: ["10/minute"]
                        algorithm: moving_window
                        cost: { header: X-Cost, default: 1, max: 5 }
                      - name: small
                        match: { path: /echo-headers }
                        key: [ip]
                        limits: ["3/minute"]
                        cost: { header: X-Cost, default: 1, max: 10 }
                    """
            )
        }) { sluice async throws in
            func remaining(_ cost: String?) async throws -> (Int, Int?) {
                let headers = cost.map { [("X-Cost", $0)] } ?? []
                let r = try await E2E.request(port: sluice.port, "/hello", headers: headers)
                return (r.status, r.rateLimit?.remaining)
            }
            #expect(try await remaining("4") == (200, 6))
            #expect(try await remaining("abc") == (200, 5))  // not an integer: default
            #expect(try await remaining("0") == (200, 4))  // below 1: default
            #expect(try await remaining(nil) == (200, 3))  // absent: default
            #expect(try await remaining("100") == (429, 3))  // clamped to max 5 > 3 left; nothing taken
            #expect(try await remaining("3") == (200, 0))
            // Cost above COUNT: refused for good, no Retry-After, nothing taken.
            let tooBig = try await E2E.request(port: sluice.port, "/echo-headers", headers: [("X-Cost", "5")])
            #expect(tooBig.status == 429)
            #expect(tooBig.header("Retry-After") == nil)
            let fits = try await E2E.request(port: sluice.port, "/echo-headers", headers: [("X-Cost", "3")])
            #expect(fits.status == 200)
        }
    }

    /// `count_when`: only matching upstream statuses take quota; the budget still refuses once spent.
    @Test func countWhenChargesMatchingStatusesOnly() async throws {
        try await E2E.withSluice({ port in
            E2E.config(
                upstreamPort: port,
                rest: """
                    rules:
                      - name: failures
                        key: [ip]
                        limits: ["2/minute"]
                        algorithm: moving_window
                        count_when: { status: ["4xx"] }
                    """
            )
        }) { sluice async throws in
            #expect(try await E2E.statuses(port: sluice.port, "/hello", count: 4) == [200, 200, 200, 200])
            #expect(try await E2E.statuses(port: sluice.port, "/status?code=401", count: 2) == [401, 401])
            #expect(try await E2E.request(port: sluice.port, "/hello").status == 429)
            #expect(sluice.upstream.requestURIs.count == 6)
        }
    }

    /// `block_for`: after a breach the key is refused for the whole penalty, beyond the window's end.
    @Test func blockForKeepsTheKeyBlocked() async throws {
        try await E2E.withSluice({ port in
            E2E.config(
                upstreamPort: port,
                rest: """
                    rules:
                      - name: penalty
                        key: [ip]
                        limits: ["1/second"]
                        algorithm: fixed_window
                        block_for: 3s
                    """
            )
        }) { sluice async throws in
            var blocked: RawHTTPClient.Response?
            for _ in 0..<4 {
                let r = try await E2E.request(port: sluice.port, "/hello")
                if r.status == 429 {
                    blocked = r
                    break
                }
            }
            let retryAfter = try #require(blocked?.header("Retry-After").flatMap { Int($0) })
            #expect((2...3).contains(retryAfter), "Retry-After \(retryAfter)")
            // The 1-second window has ended, the penalty has not.
            try await Task.sleep(for: .milliseconds(1200))
            let during = try await E2E.request(port: sluice.port, "/hello")
            #expect(during.status == 429)
            // Refused requests do not extend the block.
            let left = try #require(during.header("Retry-After").flatMap { Int($0) })
            #expect(left <= 2, "Retry-After \(left)")
            try await Task.sleep(for: .seconds(left))
            try await E2E.eventually("admitted after the penalty", timeout: .seconds(2)) {
                try await E2E.request(port: sluice.port, "/hello").status == 200
            }
        }
    }

    /// gcra with `delay`: a request that fits after a short wait is held, then forwarded (not refused).
    @Test func gcraDelayHoldsThenForwards() async throws {
        try await E2E.withSluice({ port in
            E2E.config(
                upstreamPort: port,
                rest: """
                    rules:
                      - name: paced
                        key: [ip]
                        limits: ["5/second"]
                        algorithm: gcra
                        delay: 1s
                    """
            )
        }) { sluice async throws in
            let start = ContinuousClock.now
            let statuses = try await E2E.statuses(port: sluice.port, "/hello", count: 3)
            let elapsed = ContinuousClock.now - start
            #expect(statuses == [200, 200, 200])
            // One every 200 ms: the 2nd and 3rd are held about 200 ms each.
            #expect(elapsed >= .milliseconds(350), "\(elapsed)")
        }
    }
}
