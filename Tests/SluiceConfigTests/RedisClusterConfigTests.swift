import Testing

@testable import SluiceConfig

/// `storage.url: redis+cluster://` (issue 12): the seeds, and errors that name the character.
@Suite("Redis Cluster storage configuration")
struct RedisClusterConfigTests {
    @Test("seeds, credentials and TLS")
    func seeds() throws {
        let yaml = minimalYAML + """
            storage:
              kind: redis
              url: rediss+cluster://app:s%40cret@10.0.0.5:7000,redis-b,[::1]:7002/0
              pool_size: 2

            """
        let redis = try #require(try loadValid(yaml).storage.redis)
        #expect(
            redis.deployment
                == .cluster(seeds: [
                    RedisSeed(host: "10.0.0.5", port: 7000), RedisSeed(host: "redis-b", port: 6379), RedisSeed(host: "::1", port: 7002),
                ])
        )
        #expect(redis.useTLS)
        #expect(redis.username == "app")
        #expect(redis.password == "s@cret")
        #expect(redis.host == "10.0.0.5" && redis.port == 7000)
        #expect(redis.database == 0)
        #expect(redis.poolSize == 2)
        #expect(redis.redactedURL == "rediss+cluster://:***@10.0.0.5:7000,redis-b:6379,[::1]:7002")
    }

    @Test("a plain redis:// URL stays one server")
    func single() throws {
        let redis = try #require(try loadValid(minimalYAML + "storage:\n  kind: redis\n  url: redis://h:1/2\n").storage.redis)
        #expect(redis.deployment == .single)
        #expect(redis.database == 2)
    }

    @Test(
        "bad cluster URLs name the character",
        arguments: [
            ("redis+cluster://a:1,,b:2", "test.yaml:5:28: url: invalid Redis URL: empty cluster seed (expected host:port)"),
            ("redis+cluster://a:1,", "test.yaml:5:28: url: invalid Redis URL: empty cluster seed (expected host:port)"),
            ("redis+cluster://a:1,b:99999", "test.yaml:5:30: url: invalid Redis URL: invalid port '99999' (expected 1...65535)"),
            ("redis+cluster://a:1,b:x", "test.yaml:5:30: url: invalid Redis URL: invalid port 'x' (expected 1...65535)"),
            ("redis+cluster://a:1/2", "test.yaml:5:28: url: invalid Redis URL: a Redis Cluster has only database 0 (remove the path)"),
            ("redis+cluster://a:1?x=1", "test.yaml:5:27: url: invalid Redis URL: query parameters are not supported"),
            ("redis+cluster://", "test.yaml:5:24: url: invalid Redis URL: missing host"),
            ("redis+cluster://a:1,A:1", "test.yaml:5:28: url: invalid Redis URL: cluster seed A:1 is listed twice"),
        ]
    )
    func badURL(url: String, expected: String) {
        #expect(errorLines(yaml: minimalYAML + "storage:\n  kind: redis\n  url: \(url)\n") == [expected])
    }

    @Test("a key prefix with a brace would put every key in one slot")
    func braceInPrefix() throws {
        let yaml = minimalYAML + "storage:\n  kind: redis\n  url: redis+cluster://a:1\n  key_prefix: \"x{y}\"\n"
        #expect(
            errorLines(yaml: yaml) == [
                "test.yaml:6:15: key_prefix must not contain '{' with a Redis Cluster (it would hash every key to one slot)"
            ]
        )
        #expect(try loadValid(minimalYAML + "storage:\n  kind: redis\n  url: redis://a:1\n  key_prefix: \"x{y}\"\n").storage.redis?.keyPrefix == "x{y}")
    }
}
