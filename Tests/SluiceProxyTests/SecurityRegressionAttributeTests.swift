import SluiceConfig
import SluiceTestSupport
import Testing

/// Issue 18, items 3, 4, 5, 6, 11 and 12: how the limiter reads a request. Each test spends a budget with one
/// spelling of a request and then shows that another spelling of the same request, which a backend reads as the
/// same thing, is refused by the same limit (over real sockets, through the proxy).
///
/// Every rule uses `gcra` with `1/minute` (or a token bucket over an hour), so the second request of a test is
/// refused whenever the test runs (a fixed window would hand out a fresh budget at the turn of the minute).
@Suite("Security regression: request attributes", .timeLimit(.minutes(3)))
struct SecurityRegressionAttributeTests {
    private static let onePerMinute = [RateLimit(count: 1, periodSeconds: 60, text: "1/minute")]

    /// One rule: `path` only, keyed by `key`, one request per minute.
    private static func rule(
        _ name: String,
        path: String,
        methods: [String]? = nil,
        host: String? = nil,
        headers: [RuleMatch.HeaderCondition] = [],
        key: [KeyPart] = [.const("all")],
        limits: [RateLimit] = onePerMinute,
        tiers: Tiers? = nil
    ) -> RuleConfiguration {
        RuleConfiguration(
            name: name,
            match: RuleMatch(methods: methods, path: .exact(path), host: host, headers: headers),
            key: key,
            limits: limits,
            algorithm: .gcra,
            tiers: tiers
        )
    }

    /// Sends one raw request head on a fresh connection; the response.
    private func send(_ proxy: ProxyHarness, _ head: String, isHEAD: Bool = false) async throws -> RawHTTPClient.Response {
        let client = try await proxy.client()
        try await client.send(head)
        let response = try await client.readResponse(isHEAD: isHEAD)
        await client.close()
        return response
    }

    /// The status of `GET path` with these header lines.
    private func status(_ proxy: ProxyHarness, _ path: String, _ headerLines: String) async throws -> Int {
        try await self.send(proxy, "GET \(path) HTTP/1.1\r\n\(headerLines)\r\n").status
    }

    /// `GET path` with these header lines is not refused (it spends the budget).
    private func expectPasses(
        _ proxy: ProxyHarness,
        _ path: String,
        _ headerLines: String,
        _ comment: Comment? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let status = try await self.status(proxy, path, headerLines)
        #expect(status != 429, comment, sourceLocation: sourceLocation)
    }

    /// `GET path` with these header lines is refused by the spent budget.
    private func expectLimited(
        _ proxy: ProxyHarness,
        _ path: String,
        _ headerLines: String,
        _ comment: Comment? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let status = try await self.status(proxy, path, headerLines)
        #expect(status == 429, comment, sourceLocation: sourceLocation)
    }

    // MARK: item 3

    /// `X-Api-Key: A␠` spends `A`'s budget; the same for `match.host`, `match.headers`, `tiers.by`, `query:`,
    /// `cookie:` and the `host` key part (RFC 9110 §5.5: whitespace around a field value is not part of it).
    @Test func surroundingWhitespaceDoesNotEscapeALimit() async throws {
        try await withProxy({ config in
            config.rules = [
                Self.rule("apikey", path: "/apikey", key: [.header("x-api-key")]),
                Self.rule("host-match", path: "/host-match", host: "api.example.com"),
                Self.rule("header-match", path: "/header-match", headers: [.init(name: "x-env", value: "prod")]),
                Self.rule(
                    "tier",
                    path: "/tier",
                    limits: [RateLimit(count: 100, periodSeconds: 60, text: "100/minute")],
                    tiers: Tiers(by: .header("x-plan"), values: ["free": Self.onePerMinute], defaultLimits: nil)
                ),
                Self.rule("query", path: "/query", key: [.query("key")]),
                Self.rule("cookie", path: "/cookie", key: [.cookie("sid")]),
                Self.rule("host-key", path: "/host-key", key: [.host]),
            ]
        }) { proxy in
            // Header key part: trailing SP, trailing HTAB, leading HTAB.
            try await self.expectPasses(proxy, "/apikey", "Host: t\r\nX-Api-Key: A\r\n")
            try await self.expectLimited(proxy, "/apikey", "Host: t\r\nX-Api-Key: A \r\n", "X-Api-Key: A␠")
            try await self.expectLimited(proxy, "/apikey", "Host: t\r\nX-Api-Key: A\t\r\n", "X-Api-Key: A⇥")
            try await self.expectLimited(proxy, "/apikey", "Host: t\r\nX-Api-Key:\tA\t \r\n", "X-Api-Key:⇥A⇥␠")

            // match.host: the rule must apply to the padded Host too.
            try await self.expectPasses(proxy, "/host-match", "Host: api.example.com\r\n")
            try await self.expectLimited(proxy, "/host-match", "Host: api.example.com\t\r\n", "Host: …⇥")
            try await self.expectLimited(proxy, "/host-match", "Host: api.example.com \r\n", "Host: …␠")

            // match.headers
            try await self.expectPasses(proxy, "/header-match", "Host: t\r\nX-Env: prod\r\n")
            try await self.expectLimited(proxy, "/header-match", "Host: t\r\nX-Env: prod \r\n", "X-Env: prod␠")

            // tiers.by: `free ` is the `free` tier (1/minute), not the 100/minute default.
            try await self.expectPasses(proxy, "/tier", "Host: t\r\nX-Plan: free\r\n")
            try await self.expectLimited(proxy, "/tier", "Host: t\r\nX-Plan: free \r\n", "X-Plan: free␠")

            // query: value, percent-encoded whitespace around it.
            try await self.expectPasses(proxy, "/query?key=A", "Host: t\r\n")
            try await self.expectLimited(proxy, "/query?key=A%20", "Host: t\r\n", "?key=A%20")
            try await self.expectLimited(proxy, "/query?key=%09A", "Host: t\r\n", "?key=%09A")
            try await self.expectLimited(proxy, "/query?key=A+", "Host: t\r\n", "?key=A+")

            // cookie: value.
            try await self.expectPasses(proxy, "/cookie", "Host: t\r\nCookie: sid=A\r\n")
            try await self.expectLimited(proxy, "/cookie", "Host: t\r\nCookie: sid=A \r\n", "Cookie: sid=A␠")
            try await self.expectLimited(proxy, "/cookie", "Host: t\r\nCookie: sid= A\t\r\n", "Cookie: sid=␠A⇥")

            // host key part.
            try await self.expectPasses(proxy, "/host-key", "Host: api.example.com\r\n")
            try await self.expectLimited(proxy, "/host-key", "Host: api.example.com \r\n", "host key: …␠")
            try await self.expectLimited(proxy, "/host-key", "Host: api.example.com\t\r\n", "host key: …⇥")
        }
    }

    // MARK: item 4

    /// `GET http://api.example.com/p HTTP/1.1`: the authority is the host for `match.host` and the `host` key part,
    /// the path and query come from the target, and the upstream gets the origin form with that authority as `Host`.
    @Test func absoluteFormTargetIsLimitedByItsAuthority() async throws {
        try await withProxy({ config in
            config.upstream.preserveHost = true
            config.rules = [
                Self.rule("login", path: "/login", methods: ["POST"], key: [.ip]),
                Self.rule("api", path: "/api", host: "api.example.com", key: [.host]),
                Self.rule("query", path: "/q", key: [.query("k")]),
            ]
        }) { proxy in
            // A path rule is not bypassed by the absolute form (scheme in any case, path not normalised).
            let login = "Host: t\r\nContent-Length: 0\r\n\r\n"
            let origin = try await self.send(proxy, "POST /login HTTP/1.1\r\n" + login)
            #expect(origin.status != 429)
            let absolute = try await self.send(proxy, "POST http://t/login HTTP/1.1\r\n" + login)
            #expect(absolute.status == 429, "absolute form")
            let upperCaseScheme = try await self.send(proxy, "POST HTTP://t//./login?x=1 HTTP/1.1\r\n" + login)
            #expect(upperCaseScheme.status == 429, "absolute form, HTTP://, path to normalise")

            // match.host and the host key part read the authority, not the Host header.
            try await self.expectPasses(proxy, "/api", "Host: api.example.com\r\n")
            try await self.expectLimited(
                proxy,
                "http://api.example.com/api",
                "Host: elsewhere.example\r\n",
                "absolute-form target with a decoy Host"
            )
            try await self.expectLimited(proxy, "https://API.example.com:8443/api", "Host: x\r\n")
            // …and the Host header alone no longer picks the rule for an absolute-form target.
            try await self.expectPasses(proxy, "http://other.example/api", "Host: api.example.com\r\n")

            // query: key part from the target's query.
            try await self.expectPasses(proxy, "http://t/q?k=A", "Host: t\r\n")
            try await self.expectLimited(proxy, "/q?k=A", "Host: t\r\n")

            // The upstream sees what the limiter saw: origin form, Host = the authority.
            let echoed = try await self.send(
                proxy,
                "GET http://api.example.com:8080/echo-headers?x=1 HTTP/1.1\r\nHost: decoy.example\r\n\r\n"
            )
            #expect(echoed.status == 200)
            let (requestLine, headers) = echoedHeaders(echoed.bodyString)
            #expect(requestLine == "GET /echo-headers?x=1")
            #expect(headers.values("host") == ["api.example.com:8080"])
            #expect(headers.values("x-forwarded-host") == ["api.example.com:8080"])

            // Not http(s), userinfo, or no host: 400.
            for target in ["ftp://api.example.com/p", "http://user@api.example.com/p", "http://user:pw@t/p", "http:///p", "http://:80/p"] {
                let response = try await self.send(proxy, "GET \(target) HTTP/1.1\r\nHost: t\r\n\r\n")
                #expect(response.status == 400, "\(target)")
            }
        }
        // Without preserve_host the upstream's own host goes upstream, and the authority in X-Forwarded-Host.
        try await withProxy({ $0.upstream.preserveHost = false }) { proxy in
            let echoed = try await self.send(proxy, "GET http://api.example.com/echo-headers HTTP/1.1\r\nHost: decoy\r\n\r\n")
            let (requestLine, headers) = echoedHeaders(echoed.bodyString)
            #expect(requestLine == "GET /echo-headers")
            #expect(headers.values("host") == ["127.0.0.1:\(proxy.upstream.port)"])
            #expect(headers.values("x-forwarded-host") == ["api.example.com"])
        }
    }

    // MARK: item 5

    /// `cookie:NAME` looks in every `Cookie` field, first occurrence winning across fields in order.
    @Test func everyCookieFieldCounts() async throws {
        try await withProxy({ $0.rules = [Self.rule("session", path: "/c", key: [.cookie("sid")])] }) { proxy in
            try await self.expectPasses(proxy, "/c", "Host: t\r\nCookie: sid=A\r\n")
            try await self.expectLimited(
                proxy,
                "/c",
                "Host: t\r\nCookie: theme=dark\r\nCookie: sid=A\r\n",
                "sid in the second Cookie field"
            )
            // First occurrence wins: `sid=A` in the first field, `sid=B` in the second, is A.
            try await self.expectLimited(proxy, "/c", "Host: t\r\nCookie: x=1; sid=A\r\nCookie: sid=B\r\n")
            // B's own budget is untouched.
            try await self.expectPasses(proxy, "/c", "Host: t\r\nCookie: x=1\r\nCookie: y=2; sid=B\r\n")
        }
    }

    // MARK: item 6

    /// `api.example.com.` is `api.example.com` for `match.host` and the `host` key part, with or without a port.
    @Test func trailingDotInHostIsDropped() async throws {
        try await withProxy({ config in
            config.rules = [
                Self.rule("match", path: "/m", host: "api.example.com"),
                Self.rule("key", path: "/k", key: [.host]),
            ]
        }) { proxy in
            try await self.expectPasses(proxy, "/m", "Host: api.example.com\r\n")
            try await self.expectLimited(proxy, "/m", "Host: api.example.com.\r\n", "match.host: trailing dot")
            try await self.expectLimited(proxy, "/m", "Host: API.example.com.:8080\r\n", "…with a port")

            try await self.expectPasses(proxy, "/k", "Host: api.example.com\r\n")
            try await self.expectLimited(proxy, "/k", "Host: api.example.com.\r\n", "host key: trailing dot")
            try await self.expectLimited(proxy, "/k", "Host: api.example.com.:8080\r\n", "…with a port")
            try await self.expectLimited(proxy, "http://api.example.com./k", "Host: x\r\n", "…absolute form")
            // Only one dot: `api.example.com..` is another (invalid) name, with its own budget.
            try await self.expectPasses(proxy, "/k", "Host: api.example.com..\r\n")
        }
    }

    // MARK: item 11

    /// A cost header whose integer overflows counts as `max` (SPEC §2), never as `default`.
    @Test func overflowingCostHeaderCountsAsMax() async throws {
        try await withProxy({ config in
            config.rules = [
                RuleConfiguration(
                    name: "cost",
                    match: RuleMatch(path: .exact("/cost")),
                    key: [.header("x-api-key")],
                    // 10 tokens an hour, full at first: what one request spends is what the next can use.
                    limits: [RateLimit(count: 10, periodSeconds: 3600, text: "10/hour")],
                    algorithm: .tokenBucket,
                    cost: .header(name: "x-cost", default: 1, max: 10)
                )
            ]
        }) { proxy in
            for (key, cost) in [("A", "99999999999999999999"), ("B", "18446744073709551616"), ("C", " 9223372036854775808 ")] {
                // The overflowing value takes all ten tokens (max), so one more unit is refused.
                try await self.expectPasses(proxy, "/cost", "Host: t\r\nX-Api-Key: \(key)\r\nX-Cost: \(cost)\r\n")
                try await self.expectLimited(
                    proxy,
                    "/cost",
                    "Host: t\r\nX-Api-Key: \(key)\r\nX-Cost: 1\r\n",
                    "X-Cost: \(cost) counted less than max"
                )
            }
            // Whitespace around the number is not part of it; a value that is not an integer is `default`.
            try await self.expectPasses(proxy, "/cost", "Host: t\r\nX-Api-Key: D\r\nX-Cost:\t9 \r\n")
            try await self.expectPasses(proxy, "/cost", "Host: t\r\nX-Api-Key: D\r\nX-Cost: 1\r\n")
            try await self.expectLimited(proxy, "/cost", "Host: t\r\nX-Api-Key: D\r\nX-Cost: 1\r\n")
            try await self.expectPasses(proxy, "/cost", "Host: t\r\nX-Api-Key: E\r\nX-Cost: 9x\r\n")
            try await self.expectPasses(proxy, "/cost", "Host: t\r\nX-Api-Key: E\r\nX-Cost: 9\r\n")
            try await self.expectLimited(proxy, "/cost", "Host: t\r\nX-Api-Key: E\r\nX-Cost: 1\r\n")
        }
    }

    // MARK: item 12

    /// `methods: [GET]` also matches HEAD, so HEAD cannot spend a GET-only rule's upstream capacity for free.
    @Test func getOnlyRuleAlsoLimitsHead() async throws {
        try await withProxy({ $0.rules = [Self.rule("reads", path: "/hello", methods: ["GET"], key: [.ip])] }) { proxy in
            let head = try await self.send(proxy, "HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n", isHEAD: true)
            #expect(head.status == 200)
            try await self.expectLimited(proxy, "/hello", "Host: t\r\n", "HEAD spent nothing of the GET rule")
            let secondHead = try await self.send(proxy, "HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n", isHEAD: true)
            #expect(secondHead.status == 429)
            // Other methods are still not matched.
            let post = try await self.send(proxy, "POST /hello HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
            #expect(post.status != 429)
        }
    }
}
