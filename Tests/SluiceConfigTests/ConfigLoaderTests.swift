import Foundation
import Testing

@testable import SluiceConfig

@Suite("ConfigLoader")
struct ConfigLoaderTests {
    @Test("config/sluice.yaml loads with the values it documents")
    func exampleConfiguration() throws {
        let path = Fixtures.exampleConfigPath
        let configuration: SluiceConfiguration
        do {
            configuration = try ConfigLoader.load(path: path, environment: [:])
        } catch {
            Issue.record("config/sluice.yaml must load:\n\(error)")
            return
        }
        #expect(configuration.sourcePath == path)
        #expect(configuration.version == 1)

        let server = configuration.server
        #expect(server.listen == [ListenAddress(host: "127.0.0.1", port: 8080), ListenAddress(host: "::1", port: 8080)])
        #expect(server.tls == nil)
        #expect(server.admin == ListenAddress(host: "127.0.0.1", port: 9090))
        #expect(server.adminToken == nil)
        #expect(server.threads == nil)
        #expect(server.maxHeaderBytes == 16384)
        #expect(server.maxBodyBytes == 0)
        #expect(server.timeouts == ServerConfiguration.Timeouts())
        #expect(server.trustedProxies == [CIDR("10.0.0.0/8")!, CIDR("fd00::/8")!])
        #expect(server.clientIPHeader == .xForwardedFor)
        #expect(server.accessLog == .stdout)

        let upstream = configuration.upstream
        #expect(upstream.targets == [UpstreamTarget(scheme: .http, host: "127.0.0.1", port: 3000)])
        #expect(upstream.preserveHost)
        #expect(upstream.maxIdlePerLoop == 64)
        #expect(upstream.tls == UpstreamTLS(verify: true, ca: nil))

        #expect(configuration.storage.kind == .memory)
        #expect(configuration.storage.maxKeys == 1_000_000)
        #expect(configuration.storage.redis == nil)

        let response = configuration.response
        #expect(response.status == 429)
        #expect(response.contentType == "application/json")
        #expect(response.body == BodyTemplate.defaultBody)
        #expect(response.headers == [HeaderField(name: "Cache-Control", value: "no-store")])
        #expect(response.rateLimitHeaders == .draft)

        let rules = configuration.rules
        #expect(rules.map(\.name) == ["login", "api", "orders", "search-a", "search-b", "global"])
        guard rules.count == 6 else { return }

        let login = rules[0]
        #expect(login.match.methods == ["POST"])
        #expect(login.match.path == .exact("/login"))
        #expect(login.match.host == "api.example.com")
        #expect(login.match.headers == [RuleMatch.HeaderCondition(name: "x-env", value: "prod")])
        #expect(login.key == [.ip])
        #expect(login.limits == [RateLimit(count: 5, periodSeconds: 60, text: "5/minute"), RateLimit(count: 20, periodSeconds: 3600, text: "20/hour")])
        #expect(login.algorithm == .slidingWindow)
        #expect(login.burst == 0)
        #expect(login.cost == .fixed(1))
        #expect(login.mode == .enforce)
        #expect(login.onMissingKey == .skip)
        #expect(login.exempt == [CIDR("127.0.0.1/32")!])
        #expect(login.blockFor == .seconds(300))
        #expect(login.shared == nil)
        #expect(login.delay == .zero)
        #expect(login.countWhen == StatusSet(codes: [401, 403]))
        #expect(login.tiers == nil)
        #expect(login.response.status == 429)
        #expect(login.response.contentType == "text/plain")
        #expect(login.response.body.parts == [.literal("too many login attempts, retry in "), .retryAfter, .literal("s\n")])
        #expect(login.response.headers == response.headers)

        let api = rules[1]
        #expect(api.match.path == .prefix("/api"))
        #expect(api.key == [.header("x-api-key")])
        #expect(api.onMissingKey == .fallback([.ip]))
        #expect(api.algorithm == .gcra)
        #expect(api.burst == 20)
        #expect(api.delay == .milliseconds(500))
        #expect(api.cost == .header(name: "x-cost", default: 1, max: 100))
        #expect(api.limits == [RateLimit(count: 10, periodSeconds: 3600, text: "10 per hour")])
        #expect(api.tiers?.by == .header("x-plan"))
        #expect(api.tiers?.values["free"] == [RateLimit(count: 100, periodSeconds: 3600, text: "100/hour")])
        #expect(api.tiers?.values["pro"]?.map(\.periodSeconds) == [3600, 60])
        #expect(api.tiers?.defaultLimits == [RateLimit(count: 10, periodSeconds: 3600, text: "10/hour")])

        let orders = rules[2]
        #expect(orders.match.methods == ["GET", "HEAD"])
        #expect(orders.match.path == .glob(["users", nil, "orders"]))
        #expect(orders.key == [.ipPrefix(64), .path])
        #expect(orders.limits == [RateLimit(count: 100, periodSeconds: 10, text: "100/10s")])
        #expect(orders.algorithm == .tokenBucket)
        #expect(orders.mode == .shadow)

        #expect(rules[3].match.path == .regex("^/search(/|$)"))
        #expect(rules[3].shared == "search")
        #expect(rules[4].shared == "search")
        #expect(rules[5].key == [.const("all")])
        #expect(rules[5].algorithm == .fixedWindow)
    }

    @Test("omitted sections take the documented defaults")
    func defaults() throws {
        let configuration = try loadValid(minimalYAML)
        #expect(configuration.version == 1)
        let server = configuration.server
        #expect(server.listen == [ListenAddress(host: "127.0.0.1", port: 8080)])
        #expect(server.admin == nil)
        #expect(server.adminToken == nil)
        #expect(server.threads == nil)
        #expect(server.maxHeaderBytes == 16384)
        #expect(server.maxBodyBytes == 0)
        #expect(server.timeouts.headerRead == .seconds(10))
        #expect(server.timeouts.idle == .seconds(60))
        #expect(server.timeouts.upstreamConnect == .seconds(2))
        #expect(server.timeouts.upstreamResponse == .seconds(30))
        #expect(server.timeouts.shutdown == .seconds(15))
        #expect(server.timeouts.bodyRead == .seconds(60))
        #expect(server.timeouts.send == .seconds(60))
        #expect(server.timeouts.tunnelIdle == .seconds(3600))
        #expect(server.trustedProxies.isEmpty)
        #expect(server.clientIPHeader == .xForwardedFor)
        #expect(server.accessLog == .stdout)
        #expect(configuration.upstream.preserveHost)
        #expect(configuration.upstream.maxIdlePerLoop == 64)
        #expect(configuration.storage.kind == .memory)
        #expect(configuration.storage.maxKeys == 1_000_000)
        #expect(configuration.response == ResponseConfiguration())
        #expect(configuration.rules.isEmpty)
    }

    @Test("a rule with only name and limits takes the rule defaults")
    func ruleDefaults() throws {
        let configuration = try loadValid(minimalYAML + "rules:\n  - name: r\n    limits: 10/second\n")
        let rule = try #require(configuration.rules.first)
        #expect(rule.match == RuleMatch())
        #expect(rule.key == [.ip])
        #expect(rule.algorithm == .slidingWindow)
        #expect(rule.burst == 0)
        #expect(rule.cost == .fixed(1))
        #expect(rule.mode == .enforce)
        #expect(rule.onMissingKey == .skip)
        #expect(rule.exempt.isEmpty)
        #expect(rule.blockFor == .zero)
        #expect(rule.shared == nil)
        #expect(rule.delay == .zero)
        #expect(rule.countWhen == nil)
        #expect(rule.tiers == nil)
        #expect(rule.response == ResponseConfiguration())
    }

    @Test("an empty rules list is valid")
    func emptyRules() throws {
        #expect(try loadValid(minimalYAML + "rules: []\n").rules.isEmpty)
    }

    @Test("${VAR} and ${VAR:-default} are expanded before values are interpreted")
    func environmentExpansion() throws {
        let yaml = """
            server:
              listen: "${HOST:-127.0.0.1}:${PORT:-8080}"
              admin_token: ${TOKEN}
              max_body_bytes: ${MAX_BODY:-1024}
            upstream:
              url: http://${UPSTREAM}:3000
            storage:
              kind: ${STORAGE_KIND:-redis}
              url: redis://:${REDIS_PASSWORD}@redis:6379/2
              key_prefix: "cost$$:${EMPTY:-x}"

            """
        let environment = ["PORT": "9000", "TOKEN": "s3cret", "UPSTREAM": "backend", "REDIS_PASSWORD": "p@ss", "EMPTY": ""]
        let configuration = try loadValid(yaml, environment: environment)
        #expect(configuration.server.listen == [ListenAddress(host: "127.0.0.1", port: 9000)])
        #expect(configuration.server.adminToken == "s3cret")
        #expect(configuration.server.maxBodyBytes == 1024)
        #expect(configuration.upstream.targets == [UpstreamTarget(scheme: .http, host: "backend", port: 3000)])
        let redis = try #require(configuration.storage.redis)
        #expect(configuration.storage.kind == .redis)
        #expect(redis.password == "p@ss")
        #expect(redis.host == "redis")
        #expect(redis.database == 2)
        #expect(redis.keyPrefix == "cost$$:x")
        #expect(!redis.redactedURL.contains("p@ss"))
    }

    @Test("max_connections defaults to 80 % of the open-file limit; admin_max_connections to 64")
    func connectionCaps() throws {
        let defaults = try loadValid(minimalYAML)
        #expect(defaults.server.maxConnections == nil)
        #expect(defaults.server.adminMaxConnections == 64)
        if let limit = ServerConfiguration.openFileLimit {
            #expect(defaults.server.effectiveMaxConnections == max(1, limit * 8 / 10))
        }
        let set = try loadValid(minimalYAML + "server:\n  max_connections: 5_000\n  admin_max_connections: 8\n")
        #expect(set.server.maxConnections == 5000)
        #expect(set.server.effectiveMaxConnections == 5000)
        #expect(set.server.adminMaxConnections == 8)
    }

    @Test("an empty admin_token means no token")
    func emptyAdminToken() throws {
        let configuration = try loadValid(minimalYAML + "server:\n  admin_token: ${TOKEN:-}\n")
        #expect(configuration.server.adminToken == nil)
    }

    @Test(
        "access_log: stdout, off, false, a path",
        arguments: [
            ("stdout", AccessLog.stdout), ("off", .off), ("false", .off), ("\"off\"", .off), ("no", .off),
            ("/var/log/sluice.log", .file("/var/log/sluice.log")), ("\"no\"", .file("no")),
        ]
    )
    func accessLog(value: String, expected: AccessLog) throws {
        let configuration = try loadValid(minimalYAML + "server:\n  access_log: \(value)\n")
        #expect(configuration.server.accessLog == expected)
    }

    @Test("listen addresses", arguments: [
        ("\"127.0.0.1:8080\"", ListenAddress(host: "127.0.0.1", port: 8080)),
        ("\"[::]:8080\"", ListenAddress(host: "::", port: 8080)),
        ("\":8080\"", ListenAddress(host: "0.0.0.0", port: 8080)),
        ("\"*:8080\"", ListenAddress(host: "0.0.0.0", port: 8080)),
        ("8080", ListenAddress(host: "0.0.0.0", port: 8080)),
        ("localhost:0", ListenAddress(host: "localhost", port: 0)),
    ])
    func listen(value: String, expected: ListenAddress) throws {
        let configuration = try loadValid(minimalYAML + "server:\n  listen: \(value)\n")
        #expect(configuration.server.listen == [expected])
    }

    @Test("upstream targets and URL forms")
    func upstreamTargets() throws {
        // `ca` must name a readable file (checked at load); its contents are the proxy's business.
        let ca = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-ca-\(UUID()).pem").path
        try "".write(toFile: ca, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: ca) }
        let yaml = """
            upstream:
              targets: [http://10.0.0.1:3000, "https://[2001:db8::1]", HTTP://Backend.Example/]
              preserve_host: no
              max_idle_per_loop: 0
              tls: { verify: false, ca: "\(ca)" }

            """
        let upstream = try loadValid(yaml).upstream
        #expect(upstream.targets == [
            UpstreamTarget(scheme: .http, host: "10.0.0.1", port: 3000),
            UpstreamTarget(scheme: .https, host: "2001:db8::1", port: 443),
            UpstreamTarget(scheme: .http, host: "backend.example", port: 80),
        ])
        #expect(!upstream.preserveHost)
        #expect(upstream.maxIdlePerLoop == 0)
        #expect(upstream.tls == UpstreamTLS(verify: false, ca: ca))
    }

    @Test("redis storage with every field")
    func redisStorage() throws {
        let yaml = minimalYAML + """
            storage:
              kind: redis
              max_keys: 500
              url: rediss://sluice:pa%3Ass@[::1]:6380/3
              pool_size: 8
              timeout: 75ms
              key_prefix: "rl:"
              on_error: deny
              instances: 3

            """
        let storage = try loadValid(yaml).storage
        #expect(storage.kind == .redis)
        #expect(storage.maxKeys == 500)
        let redis = try #require(storage.redis)
        #expect(redis.useTLS)
        #expect(redis.username == "sluice")
        #expect(redis.password == "pa:ss")
        #expect(redis.host == "::1")
        #expect(redis.port == 6380)
        #expect(redis.database == 3)
        #expect(redis.poolSize == 8)
        #expect(redis.timeout == .milliseconds(75))
        #expect(redis.keyPrefix == "rl:")
        #expect(redis.onError == .deny)
        #expect(redis.instances == 3)
    }

    @Test("a rule's response overrides fields of the global one and adds headers")
    func responseOverride() throws {
        let yaml = minimalYAML + """
            response:
              status: 503
              headers: { X-A: "1", X-B: "2" }
              rate_limit_headers: both
            rules:
              - name: r
                limits: 1/s
                response:
                  status: 429
                  headers: { x-b: "3", X-C: "4" }

            """
        let configuration = try loadValid(yaml)
        #expect(configuration.response.status == 503)
        let response = try #require(configuration.rules.first).response
        #expect(response.status == 429)
        #expect(response.rateLimitHeaders == .both)
        #expect(response.body == BodyTemplate.defaultBody)
        #expect(response.headers == [HeaderField(name: "X-A", value: "1"), HeaderField(name: "x-b", value: "3"), HeaderField(name: "X-C", value: "4")])
    }

    @Test("tiers without limits use the tier default as the rule's limits")
    func tiersWithoutLimits() throws {
        let yaml = minimalYAML + """
            rules:
              - name: plans
                key: header:X-Api-Key
                tiers:
                  by: { header: X-Plan }
                  values: { free: 10/hour, "pro plan": [100/hour, 10/minute] }
                  default: 1/hour

            """
        let rule = try #require(try loadValid(yaml).rules.first)
        #expect(rule.key == [.header("x-api-key")])
        #expect(rule.tiers?.by == .header("x-plan"))
        #expect(rule.tiers?.values.keys.sorted() == ["free", "pro plan"])
        #expect(rule.limits == [RateLimit(count: 1, periodSeconds: 3600, text: "1/hour")])
    }

    @Test("count_when accepts codes and classes")
    func countWhen() throws {
        let yaml = minimalYAML + "rules:\n  - name: r\n    limits: 1/s\n    count_when: { status: [401, \"4XX\", 5xx, \"503\"] }\n"
        let rule = try #require(try loadValid(yaml).rules.first)
        #expect(rule.countWhen == StatusSet(codes: [401, 503], classes: [4, 5]))
        #expect(rule.countWhen?.contains(404) == true)
        #expect(rule.countWhen?.contains(302) == false)
    }

    @Test("errors from every part of the file are collected and sorted")
    func collectsAllErrors() {
        let yaml = """
            rules:
              - name: b
                limits: 0/s
            server:
              threads: 0
            bogus: 1

            """
        #expect(errorLines(yaml: yaml) == [
            "test.yaml:1:1: upstream.url or upstream.targets is required",
            "test.yaml:3:13: limits: invalid limit '0/s': count must be at least 1",
            "test.yaml:5:12: threads: expected auto or a number of at least 1, got '0'",
            "test.yaml:6:1: unknown key 'bogus'",
        ])
    }
}
