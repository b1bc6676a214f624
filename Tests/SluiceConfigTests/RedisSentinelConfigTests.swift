import Testing

@testable import SluiceConfig

/// `storage.url: redis+sentinel://...` (issue 12): the sentinels, the master name and the database, and a
/// `file:line:column` error for each way to get them wrong.
@Suite("redis sentinel storage configuration")
struct RedisSentinelConfigTests {
    private static func yaml(_ url: String, extra: String = "") -> String {
        minimalYAML + "storage:\n  kind: redis\n  url: \(url)\n" + extra
    }

    @Test("sentinels, master name, database, password and sentinel_password")
    func everyPart() throws {
        let configuration = try loadValid(
            Self.yaml(
                "redis+sentinel://app:s%40cret@10.0.0.1:26380,sentinel.example,[::1]:26381/my-primary/2",
                extra: "  sentinel_password: ${SENTINEL_PASSWORD}\n"
            ),
            environment: ["SENTINEL_PASSWORD": "watch"]
        )
        let redis = try #require(configuration.storage.redis)
        #expect(
            redis.deployment
                == .sentinel(
                    sentinels: [
                        RedisSeed(host: "10.0.0.1", port: 26380), RedisSeed(host: "sentinel.example", port: 26379),
                        RedisSeed(host: "::1", port: 26381),
                    ],
                    masterName: "my-primary"
                )
        )
        #expect(redis.username == "app")
        #expect(redis.password == "s@cret")
        #expect(redis.database == 2)
        #expect(redis.sentinelPassword == "watch")
        #expect(redis.useTLS == false)
        // Until the primary is known, host and port name the first sentinel.
        #expect(redis.host == "10.0.0.1" && redis.port == 26380)
        #expect(redis.redactedURL == "redis+sentinel://:***@10.0.0.1:26380,sentinel.example:26379,[::1]:26381/my-primary/2")
    }

    @Test("defaults: port 26379, database 0, no passwords; a trailing slash is fine")
    func defaults() throws {
        for url in ["redis+sentinel://127.0.0.1/mymaster", "REDIS+SENTINEL://127.0.0.1/mymaster/"] {
            let redis = try #require(try loadValid(Self.yaml(url)).storage.redis)
            #expect(redis.deployment == .sentinel(sentinels: [RedisSeed(host: "127.0.0.1", port: 26379)], masterName: "mymaster"))
            #expect(redis.database == 0)
            #expect(redis.password == nil && redis.sentinelPassword == nil)
        }
        let single = try #require(try loadValid(Self.yaml("redis://127.0.0.1:6379")).storage.redis)
        #expect(single.deployment == .single)
    }

    @Test(
        "bad sentinel URLs point at the mistake",
        arguments: [
            ("redis+sentinel://127.0.0.1:26379", "test.yaml:5:40: url: invalid Redis Sentinel URL: missing the master name (redis+sentinel://host:port/MASTER_NAME)"),
            ("redis+sentinel://127.0.0.1:26379/", "test.yaml:5:41: url: invalid Redis Sentinel URL: missing the master name (redis+sentinel://host:port/MASTER_NAME)"),
            ("redis+sentinel:///mymaster", "test.yaml:5:25: url: invalid Redis Sentinel URL: no sentinel listed (expected host:port[,host:port...])"),
            ("redis+sentinel://:pw@/mymaster", "test.yaml:5:29: url: invalid Redis Sentinel URL: no sentinel listed (expected host:port[,host:port...])"),
            ("redis+sentinel://a:1,,b:2/m", "test.yaml:5:29: url: invalid Redis Sentinel URL: missing sentinel host"),
            ("redis+sentinel://a:1,b:99999/m", "test.yaml:5:31: url: invalid Redis Sentinel URL: invalid port '99999' (expected 1...65535)"),
            ("redis+sentinel://a:x/m", "test.yaml:5:27: url: invalid Redis Sentinel URL: invalid port 'x' (expected 1...65535)"),
            ("redis+sentinel://a:1,a:1/m", "test.yaml:5:29: url: invalid Redis Sentinel URL: sentinel a:1 is listed twice"),
            ("redis+sentinel://a:1/m/zero", "test.yaml:5:31: url: invalid Redis Sentinel URL: after the master name, only a database number, as in /mymaster/0"),
            ("redis+sentinel://a:1/m?db=1", "test.yaml:5:30: url: invalid Redis Sentinel URL: query parameters are not supported"),
            ("rediss+sentinel://a:1/m", "test.yaml:5:8: url: invalid Redis Sentinel URL: TLS (rediss+sentinel://) is not supported with Sentinel"),
        ]
    )
    func badURL(url: String, expected: String) {
        #expect(errorLines(yaml: Self.yaml(url)) == [expected])
    }

    @Test("sentinel_password needs a sentinel URL")
    func sentinelPasswordNeedsSentinel() {
        #expect(
            errorLines(yaml: Self.yaml("redis://127.0.0.1", extra: "  sentinel_password: x\n")) == [
                "test.yaml:6:3: 'sentinel_password' is only valid with a redis+sentinel:// url"
            ]
        )
        #expect(
            errorLines(yaml: minimalYAML + "storage:\n  kind: memory\n  sentinel_password: x\n") == [
                "test.yaml:5:3: 'sentinel_password' is only valid with storage kind redis (kind is memory)"
            ]
        )
    }
}
