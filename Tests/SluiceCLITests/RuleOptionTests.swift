import Foundation
import SluiceTestSupport
import Testing

/// Rule options end to end through the real binary (SPEC §2 `shared`, `tiers`, `gcra`+`delay`, `block_for`,
/// `count_when`, `cost`, "Decisions"; §5 headers).
@Suite("rule options end to end")
struct RuleOptionTests {
    // MARK: shared

    /// Two rules on different paths with one `shared` name spend one budget per key; a third rule with the
    /// same key and limits but no `shared` keeps its own.
    @Test func sharedBudgetAcrossRules() async throws {
        try await E2E.withSluice({ port in
            E2E.config(
                upstreamPort: port,
                server: E2E.trustLoopback,
                rest: """
                    rules:
                      - name: a
                        match: { path: /hello }
                        key: [ip]
                        limits: ["4/minute"]
                        algorithm: moving_window
                        shared: pair
                      - name: b
                        match: { path: /echo-headers }
                        key: [ip]
                        limits: ["4/minute"]
                        algorithm: moving_window
                        shared: pair
                      - name: c
                        match: { path: /conn }
                        key: [ip]
                        limits: ["4/minute"]
                        algorithm: moving_window
                    """
            )
        }) { sluice async throws in
            let one = E2E.from("198.51.100.1")
            var seen: [(String, Int, String?, Int?)] = []
            for target in ["/hello", "/echo-headers", "/echo-headers", "/hello"] {
                let r = try await E2E.request(port: sluice.port, target, headers: one)
                seen.append((target, r.status, r.rateLimit?.name, r.rateLimit?.remaining))
            }
            #expect(seen.map(\.1) == [200, 200, 200, 200])
            // One budget: the remaining count goes down across both paths; each policy keeps its rule's name.
            #expect(seen.map(\.2) == ["a", "b", "b", "a"])
            #expect(seen.map(\.3) == [3, 2, 1, 0])
            // Spent on both paths.
            let blockedA = try await E2E.request(port: sluice.port, "/hello", headers: one)
            let blockedB = try await E2E.request(port: sluice.port, "/echo-headers", headers: one)
            #expect(blockedA.status == 429)
            #expect(blockedB.status == 429)
            #expect(blockedA.bodyString.contains(#""rule":"a""#), "\(blockedA.bodyString)")
            #expect(blockedB.bodyString.contains(#""rule":"b""#), "\(blockedB.bodyString)")
            #expect(blockedA.retryAfter != nil && blockedB.retryAfter != nil)
            // The unshared rule with the same key and limits has its own full budget.
            #expect(try await E2E.statuses(port: sluice.port, "/conn", count: 5, headers: one) == [200, 200, 200, 200, 429])
            // The shared budget is per key: another client starts afresh.
            let two = E2E.from("198.51.100.2")
            let other = try await E2E.request(port: sluice.port, "/echo-headers", headers: two)
            #expect(other.status == 200)
            #expect(other.rateLimit?.remaining == 3)
            // Refused requests never reached the upstream: 4 shared + 4 of `c` + 1.
            #expect(sluice.upstream.requestURIs.count == 9)
        }
    }

    // MARK: tiers

    @Test func tiersPickTheBudgetByPlan() async throws {
        try await E2E.withSluice({ port in
            E2E.config(
                upstreamPort: port,
                rest: """
                    rules:
                      - name: plans
                        match: { path: /hello }
                        key: [header:X-Api-Key]
                        limits: ["1/minute"]
                        algorithm: moving_window
                        tiers:
                          by: header:X-Plan
                          values: { free: ["2/minute"], pro: ["5/minute"] }
                          default: ["3/minute"]
                      - name: plans-nodefault
                        match: { path: /echo-headers }
                        key: [header:X-Api-Key]
                        limits: ["1/minute"]
                        algorithm: moving_window
                        tiers:
                          by: header:X-Plan
                          values: { free: ["2/minute"], pro: ["5/minute"] }
                    """
            )
        }) { sluice async throws in
            /// Sends `count` requests as client `key` on `plan`; checks the quota in both header fields on every
            /// response and returns (statuses, remaining values).
            func run(_ target: String, key: String, plan: String?, count: Int, quota: Int, rule: String) async throws
                -> ([Int], [Int])
            {
                var headers = [("X-Api-Key", key)]
                if let plan { headers.append(("X-Plan", plan)) }
                var statuses: [Int] = []
                var remaining: [Int] = []
                for _ in 0..<count {
                    let r = try await E2E.request(port: sluice.port, target, headers: headers)
                    statuses.append(r.status)
                    remaining.append(r.rateLimit?.remaining ?? -1)
                    #expect(
                        r.header("RateLimit-Policy") == "\"\(rule)\";q=\(quota);w=60",
                        "\(key)/\(plan ?? "-"): RateLimit-Policy \(r.header("RateLimit-Policy") ?? "absent")"
                    )
                    #expect(r.rateLimit?.name == rule)
                }
                return (statuses, remaining)
            }
            // Listed plans.
            let free = try await run("/hello", key: "k-free", plan: "free", count: 3, quota: 2, rule: "plans")
            #expect(free.0 == [200, 200, 429])
            #expect(free.1 == [1, 0, 0])
            let pro = try await run("/hello", key: "k-pro", plan: "pro", count: 6, quota: 5, rule: "plans")
            #expect(pro.0 == [200, 200, 200, 200, 200, 429])
            #expect(pro.1 == [4, 3, 2, 1, 0, 0])
            // Unlisted plan, and no plan header at all: the tier `default`, not `limits`.
            let unknown = try await run("/hello", key: "k-unknown", plan: "enterprise", count: 4, quota: 3, rule: "plans")
            #expect(unknown.0 == [200, 200, 200, 429])
            #expect(unknown.1 == [2, 1, 0, 0])
            let noPlan = try await run("/hello", key: "k-noplan", plan: nil, count: 4, quota: 3, rule: "plans")
            #expect(noPlan.0 == [200, 200, 200, 429])

            // Without `default`, an unlisted value gets the rule's `limits`; listed values still get their tier.
            let fallback = try await run(
                "/echo-headers", key: "k-gold", plan: "gold", count: 2, quota: 1, rule: "plans-nodefault"
            )
            #expect(fallback.0 == [200, 429])
            let listed = try await run(
                "/echo-headers", key: "k-free2", plan: "free", count: 3, quota: 2, rule: "plans-nodefault"
            )
            #expect(listed.0 == [200, 200, 429])
            // 2 + 5 + 3 + 3 + 1 + 2 admitted.
            #expect(sluice.upstream.requestURIs.count == 16)
        }
    }

    // MARK: gcra + delay

    static func pacedConfig(_ upstreamPort: Int) -> String {
        E2E.config(
            upstreamPort: upstreamPort,
            server: E2E.trustLoopback,
            rest: """
                rules:
                  - name: paced
                    match: { path: /echo-headers }
                    key: [ip]
                    limits: ["5/second"]
                    algorithm: gcra
                    burst: 0
                    delay: 1s
                  - name: slow
                    match: { path: /conn }
                    key: [ip]
                    limits: ["2/minute"]
                    algorithm: gcra
                    burst: 0
                    delay: 1s
                """
        )
    }

    /// One keep-alive connection, requests one after the other: the first is forwarded at once, each later one
    /// is held until its 200 ms slot.
    @Test func gcraDelayPacesRequestsOnOneConnection() async throws {
        try await E2E.withSluice({ Self.pacedConfig($0) }) { sluice async throws in
            let client = try await RawHTTPClient.connect(port: sluice.port, group: E2E.group)
            let me = E2E.from("198.51.100.1")
            // Warm the upstream connection pool with an unmatched request, so the first timed one pays no connect.
            try await client.send(E2E.requestText("/hello", headers: me))
            #expect(try await client.readResponse().status == 200)

            var sends: [ContinuousClock.Instant] = []
            var arrivals: [ContinuousClock.Instant] = []
            for n in 0..<5 {
                sends.append(.now)
                try await client.send(E2E.requestText("/echo-headers?n=\(n)", headers: me))
                let r = try await client.readResponse()
                arrivals.append(.now)
                #expect(r.status == 200)
                #expect(r.bodyString.hasPrefix("GET /echo-headers?n=\(n)\n"))
            }
            let start = sends[0]
            let offsets = arrivals.map { ($0 - start).milliseconds }
            let gaps = zip(arrivals.dropFirst(), arrivals).map { ($0 - $1).milliseconds }
            // The slot of request k is 200 ms after that of request k-1, which was decided after it was sent: so
            // response k arrives at least 200 ms after request k-1 was sent (no jitter can shorten this).
            let spacing = (1..<5).map { (arrivals[$0] - sends[$0 - 1]).milliseconds }
            // That the first is not held is the engine's (AlgorithmPropertyTests.gcraDelayHoldsAndCounts: delayed only when its
            // wait is positive); over loopback on a loaded 2-core machine one exchange's latency varies by more
            // than a slot, so only the lower bounds below are checked here.
            for (k, offset) in offsets.enumerated() {
                #expect(offset >= Int64(k) * 200 - 2, "response \(k) at \(offset) ms; offsets \(offsets)")
            }
            for ms in spacing {
                #expect(ms >= 198, "spacing \(spacing) ms; gaps \(gaps) ms")
                // Held for the slot, not for the whole `delay` (1 s, which would make it at least 1,000 ms). 700 failed
                // once on the loaded 2-core machine (727 ms) in a full parallel run.
                #expect(ms < 950, "spacing \(spacing) ms")
            }
            #expect(offsets[4] < 1_600, "offsets \(offsets)")
            await client.close()
            #expect(sluice.upstream.requestURIs.count == 6)
        }
    }

    /// Three requests in one write: answered in order, the second and third held for their slots.
    @Test func gcraDelayWithPipelinedRequests() async throws {
        try await E2E.withSluice({ Self.pacedConfig($0) }) { sluice async throws in
            let client = try await RawHTTPClient.connect(port: sluice.port, group: E2E.group)
            let me = E2E.from("198.51.100.2")
            try await client.send(E2E.requestText("/hello", headers: me))
            #expect(try await client.readResponse().status == 200)

            let start = ContinuousClock.now
            let timed = try await E2E.pipeline(client, ["/echo-headers?p=1", "/echo-headers?p=2", "/echo-headers?p=3"], headers: me)
            #expect(timed.map(\.response.status) == [200, 200, 200])
            // In order: the upstream echoes each request line.
            #expect(timed.map { $0.response.bodyString.split(separator: "\n").first.map(String.init) } == [
                "GET /echo-headers?p=1", "GET /echo-headers?p=2", "GET /echo-headers?p=3",
            ])
            let offsets = timed.map { ($0.arrived - start).milliseconds }
            // Slots at 0, 200 and 400 ms, counted from no earlier than the write.
            #expect(offsets[1] >= 198 && offsets[2] >= 398, "offsets \(offsets)")
            #expect(offsets[2] < 1_200, "offsets \(offsets)")
            #expect(sluice.upstream.requestURIs.suffix(3) == ["/echo-headers?p=1", "/echo-headers?p=2", "/echo-headers?p=3"])
            await client.close()
        }
    }

    /// While one client's requests are held, other clients and unmatched paths are answered at once (one event
    /// loop: `threads: 1`, so a blocking hold would stall them).
    @Test func gcraDelayDoesNotBlockOtherRequests() async throws {
        try await E2E.withSluice({ Self.pacedConfig($0) }) { sluice async throws in
            let held = try await RawHTTPClient.connect(port: sluice.port, group: E2E.group)
            let me = E2E.from("198.51.100.3")
            try await held.send(E2E.requestText("/hello", headers: me))
            #expect(try await held.readResponse().status == 200)

            // Five pipelined: slots at 0, 200, 400, 600, 800 ms.
            let start = ContinuousClock.now
            try await held.send((1...5).map { E2E.requestText("/echo-headers?h=\($0)", headers: me) }.joined())
            let first = try await held.readResponse()
            #expect(first.status == 200)

            // Now the rest are held. Another client on the limited path, and this client on an unmatched path.
            let otherStart = ContinuousClock.now
            let other = try await E2E.request(port: sluice.port, "/echo-headers", headers: E2E.from("198.51.100.4"))
            let otherArrived = ContinuousClock.now
            let unmatched = try await E2E.request(port: sluice.port, "/hello", headers: me)
            let unmatchedArrived = ContinuousClock.now
            #expect(other.status == 200)
            #expect(other.rateLimit?.name == "paced")
            #expect(unmatched.status == 200)
            #expect(unmatched.rateLimitHeaderNames.isEmpty)

            var heldArrivals: [ContinuousClock.Instant] = []
            for n in 2...5 {
                let r = try await held.readResponse()
                heldArrivals.append(.now)
                #expect(r.status == 200)
                #expect(r.bodyString.hasPrefix("GET /echo-headers?h=\(n)\n"))
            }
            let lastHeld = (heldArrivals.last! - start).milliseconds
            #expect(lastHeld >= 795, "last held response at \(lastHeld) ms")
            // Both answered while the held client was still waiting, and promptly.
            #expect(otherArrived < heldArrivals.last!, "other answered after the held requests")
            #expect(unmatchedArrived < heldArrivals.last!, "unmatched answered after the held requests")
            let otherMs = (otherArrived - otherStart).milliseconds
            let unmatchedMs = (unmatchedArrived - otherArrived).milliseconds
            #expect(otherMs < 500 && unmatchedMs < 500, "other \(otherMs) ms, unmatched \(unmatchedMs) ms")
            await held.close()
        }
    }

    /// A request that would have to wait longer than `delay` is refused at once with 429 and `Retry-After`.
    @Test func gcraDelayRefusesWaitsLongerThanDelay() async throws {
        try await E2E.withSluice({ Self.pacedConfig($0) }) { sluice async throws in
            // 2/minute: the second request would need ~30 s, far beyond `delay: 1s`.
            let me = E2E.from("198.51.100.5")
            #expect(try await E2E.request(port: sluice.port, "/conn", headers: me).status == 200)
            let sent = ContinuousClock.now
            let refused = try await E2E.request(port: sluice.port, "/conn", headers: me)
            let tookMs = (ContinuousClock.now - sent).milliseconds
            #expect(refused.status == 429)
            let retryAfter = try #require(refused.retryAfter, "Retry-After \(refused.header("Retry-After") ?? "absent")")
            #expect((28...30).contains(retryAfter), "Retry-After \(retryAfter)")
            // Not held for `delay` first.
            #expect(tookMs < 700, "refused after \(tookMs) ms")

            // 5/second: ten at once need slots 0, 200, ..., 1800 ms; those beyond 1 s are refused, the rest held.
            let (start, timed) = try await E2E.concurrentRequests(
                port: sluice.port, "/echo-headers", count: 10, headers: E2E.from("198.51.100.6")
            )
            let statuses = timed.map(\.response.status)
            let admitted = timed.filter { $0.response.status == 200 }
            let blocked = timed.filter { $0.response.status == 429 }
            #expect(admitted.count + blocked.count == 10, "statuses \(statuses)")
            #expect(admitted.count >= 6, "statuses \(statuses)")
            #expect(blocked.count >= 1, "statuses \(statuses)")
            let admittedMs = admitted.map { ($0.arrived - start).milliseconds }.sorted()
            #expect((admittedMs.last ?? 0) >= 995, "admitted at \(admittedMs) ms")
            for b in blocked {
                #expect(b.response.retryAfter.map { (1...2).contains($0) } == true, "Retry-After \(b.response.header("Retry-After") ?? "absent")")
                // Refused at once: before the last held one was let through.
                #expect(b.arrived < admitted.map(\.arrived).max()!, "a refused request was answered late")
            }
        }
    }

    // MARK: block_for

    /// The penalty outlasts the window, refused requests (even one just before its end) do not extend it,
    /// and other keys are unaffected.
    @Test func blockForPenaltyBox() async throws {
        try await E2E.withSluice({ port in
            E2E.config(
                upstreamPort: port,
                server: E2E.trustLoopback,
                rest: """
                    rules:
                      - name: penalty
                        key: [ip]
                        limits: ["2/2 seconds"]
                        algorithm: moving_window
                        block_for: 4s
                    """
            )
        }) { sluice async throws in
            let a = E2E.from("198.51.100.1")
            let b = E2E.from("198.51.100.2")
            #expect(try await E2E.statuses(port: sluice.port, "/hello", count: 2, headers: a) == [200, 200])
            let breachSent = ContinuousClock.now
            let breach = try await E2E.request(port: sluice.port, "/hello", headers: a)
            let breachReceived = ContinuousClock.now
            #expect(breach.status == 429)
            // Retry-After is the penalty, not the window's two seconds.
            #expect(breach.retryAfter == 4, "Retry-After \(breach.header("Retry-After") ?? "absent")")
            #expect(breach.bodyString.contains(#""rule":"penalty""#))

            // Another key is not affected.
            #expect(try await E2E.statuses(port: sluice.port, "/hello", count: 2, headers: b) == [200, 200])

            /// A request for A during the block, with the Retry-After range the block's end allows: it ends 4 s after
            /// the breach was decided (between `breachSent` and `breachReceived`), whatever A sends meanwhile.
            func duringBlock() async throws -> (RawHTTPClient.Response, ClosedRange<Int>) {
                let sent = ContinuousClock.now
                let r = try await E2E.request(port: sluice.port, "/hello", headers: a)
                let received = ContinuousClock.now
                func seconds(_ d: Duration) -> Int {
                    Int((Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18).rounded(.up))
                }
                let low = max(1, seconds(breachSent + .seconds(4) - received))
                let high = max(low, seconds(breachReceived + .seconds(4) - sent))
                return (r, low...high)
            }

            // The 2-second window would admit A again; the penalty does not.
            try await E2E.sleep(until: breachSent + .milliseconds(2300))
            let (during, duringRange) = try await duringBlock()
            #expect(during.status == 429)
            #expect(
                during.retryAfter.map { duringRange.contains($0) } == true,
                "Retry-After \(during.header("Retry-After") ?? "absent"), expected \(duringRange)"
            )

            // One near the end: still refused, and it must not extend the block.
            try await E2E.sleep(until: breachSent + .milliseconds(3500))
            let (nearEnd, nearEndRange) = try await duringBlock()
            #expect(nearEnd.status == 429)
            #expect(
                nearEnd.retryAfter.map { nearEndRange.contains($0) } == true,
                "Retry-After \(nearEnd.header("Retry-After") ?? "absent"), expected \(nearEndRange)"
            )

            // Just after the block's end (it started no later than the breach answer arrived): free again, with
            // the plain limit back in force.
            try await E2E.sleep(until: breachReceived + .milliseconds(4150))
            let after = try await E2E.statuses(port: sluice.port, "/hello", count: 3, headers: a)
            #expect(after == [200, 200, 429], "after the penalty: \(after)")
            // A: 2 + 2, B: 2 reached the upstream.
            #expect(sluice.upstream.requestURIs.count == 6)
        }
    }

    // MARK: count_when

    @Test func countWhenExactStatusAndClass() async throws {
        try await E2E.withSluice({ port in
            E2E.config(
                upstreamPort: port,
                rest: """
                    rules:
                      - name: auth-failures
                        key: [header:X-Exact]
                        limits: ["3/minute"]
                        algorithm: moving_window
                        count_when: { status: [401] }
                      - name: client-errors
                        key: [header:X-Class]
                        limits: ["3/minute"]
                        algorithm: moving_window
                        count_when: { status: ["4xx"] }
                    """
            )
        }) { sluice async throws in
            // Exact status: only 401 takes quota.
            let exact = [("X-Exact", "user-1")]
            #expect(try await E2E.statuses(port: sluice.port, "/hello", count: 4, headers: exact) == [200, 200, 200, 200])
            #expect(try await E2E.statuses(port: sluice.port, "/status?code=403", count: 2, headers: exact) == [403, 403])
            #expect(try await E2E.statuses(port: sluice.port, "/status?code=500", count: 1, headers: exact) == [500])
            #expect(try await E2E.statuses(port: sluice.port, "/status?code=401", count: 3, headers: exact) == [401, 401, 401])
            // Spent by 401s: refused now, even requests the upstream would have answered 200.
            let refused = try await E2E.request(port: sluice.port, "/hello", headers: exact)
            #expect(refused.status == 429)
            #expect(refused.bodyString.contains(#""rule":"auth-failures""#), "\(refused.bodyString)")
            #expect(refused.retryAfter != nil)
            #expect(try await E2E.request(port: sluice.port, "/status?code=401", headers: exact).status == 429)
            #expect(sluice.upstream.requestURIs.count == 10)

            // Class form: any 4xx takes quota, 2xx and 5xx do not.
            let klass = [("X-Class", "user-2")]
            #expect(try await E2E.statuses(port: sluice.port, "/status?code=500", count: 2, headers: klass) == [500, 500])
            #expect(try await E2E.statuses(port: sluice.port, "/hello", count: 2, headers: klass) == [200, 200])
            #expect(try await E2E.request(port: sluice.port, "/status?code=403", headers: klass).status == 403)
            #expect(try await E2E.request(port: sluice.port, "/nowhere", headers: klass).status == 404)
            #expect(try await E2E.request(port: sluice.port, "/hello", headers: klass).status == 200)
            #expect(try await E2E.request(port: sluice.port, "/status?code=401", headers: klass).status == 401)
            let classRefused = try await E2E.request(port: sluice.port, "/hello", headers: klass)
            #expect(classRefused.status == 429)
            #expect(classRefused.bodyString.contains(#""rule":"client-errors""#), "\(classRefused.bodyString)")
            #expect(sluice.upstream.requestURIs.count == 18)
        }
    }

    // MARK: cost

    @Test func costUnitsFromHeaderAndFixed() async throws {
        try await E2E.withSluice({ port in
            E2E.config(
                upstreamPort: port,
                rest: """
                    rules:
                      - name: weighted
                        match: { path: /hello }
                        key: [header:X-Client]
                        limits: ["10/minute"]
                        algorithm: moving_window
                        cost: { header: X-Cost, default: 1, max: 5 }
                      - name: fixed
                        match: { path: /echo-headers }
                        key: [ip]
                        limits: ["10/minute"]
                        algorithm: moving_window
                        cost: 20
                    """
            )
        }) { sluice async throws in
            func send(_ client: String, _ cost: String?) async throws -> RawHTTPClient.Response {
                var headers = [("X-Client", client)]
                if let cost { headers.append(("X-Cost", cost)) }
                return try await E2E.request(port: sluice.port, "/hello", headers: headers)
            }
            func outcome(_ r: RawHTTPClient.Response) -> String { "\(r.status) r=\(r.rateLimit?.remaining ?? -1)" }

            // 3 + 3 + 3, then 3 does not fit in the 1 left (refused, nothing taken), then 1 does.
            var seen: [String] = []
            for cost in ["3", "3", "3"] { seen.append(outcome(try await send("c1", cost))) }
            let tooMuch = try await send("c1", "3")
            seen.append(outcome(tooMuch))
            seen.append(outcome(try await send("c1", "1")))
            seen.append(outcome(try await send("c1", "1")))
            #expect(seen == ["200 r=7", "200 r=4", "200 r=1", "429 r=1", "200 r=0", "429 r=0"])
            // Temporarily refused: Retry-After present.
            #expect(tooMuch.retryAfter != nil)

            // Above max: clamped to 5, so admitted (not refused as above COUNT).
            let clamped = [try await send("c2", "50"), try await send("c2", "50"), try await send("c2", "1")]
            #expect(clamped.map(outcome) == ["200 r=5", "200 r=0", "429 r=0"])

            // Not an integer or below 1: default (1).
            var defaults: [String] = []
            for cost in ["abc", "0", "-2", "1.5", nil] { defaults.append(outcome(try await send("c3", cost))) }
            #expect(defaults == ["200 r=9", "200 r=8", "200 r=7", "200 r=6", "200 r=5"])

            // A fixed cost above COUNT is refused for good: no Retry-After, never forwarded.
            for _ in 0..<2 {
                let never = try await E2E.request(port: sluice.port, "/echo-headers")
                #expect(never.status == 429)
                #expect(never.retryAfter == nil, "Retry-After \(never.header("Retry-After") ?? "")")
                #expect(never.header("Retry-After") == nil)
                #expect(never.bodyString.contains(#""rule":"fixed""#), "\(never.bodyString)")
                // SPEC §5: blocked responses of a rule with limits carry the rate-limit fields; a refusal for good
                // is still a blocked response of `fixed` (10/minute, nothing taken).
                #expect(never.header("RateLimit-Policy") == #""fixed";q=10;w=60"#)
                #expect(never.rateLimit?.name == "fixed")
                #expect(never.rateLimit?.remaining == 10)
            }
            #expect(!sluice.upstream.requestURIs.contains { $0.hasPrefix("/echo-headers") })
            // 4 + 2 + 5 requests on /hello were admitted.
            #expect(sluice.upstream.requestURIs.count == 11)
        }
    }
}
