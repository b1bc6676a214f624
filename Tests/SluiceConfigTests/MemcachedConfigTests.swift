import Testing

@testable import SluiceConfig

/// `storage.kind: memcached` (issue 21): the options Redis has, a list of servers in the URL, and the caveats as
/// warnings that leave the file valid.
@Suite("memcached storage configuration")
struct MemcachedConfigTests {
    @Test("every field")
    func everyField() throws {
        let yaml = minimalYAML + """
            storage:
              kind: memcached
              max_keys: 500
              url: memcached://10.0.0.5:11311,cache.example,[::1]:11212
              pool_size: 8
              timeout: 75ms
              key_prefix: "rl:"
              on_error: deny
              instances: 3

            """
        let configuration = try loadValid(yaml)
        let storage = configuration.storage
        #expect(storage.kind == .memcached)
        #expect(storage.maxKeys == 500)
        #expect(storage.redis == nil)
        let memcached = try #require(storage.memcached)
        #expect(memcached.url == "memcached://10.0.0.5:11311,cache.example,[::1]:11212")
        #expect(
            memcached.servers == [
                .init(host: "10.0.0.5", port: 11311), .init(host: "cache.example", port: 11211), .init(host: "::1", port: 11212),
            ]
        )
        #expect(memcached.servers.map(\.description) == ["10.0.0.5:11311", "cache.example:11211", "[::1]:11212"])
        #expect(memcached.poolSize == 8)
        #expect(memcached.timeout == .milliseconds(75))
        #expect(memcached.keyPrefix == "rl:")
        #expect(memcached.onError == .deny)
        #expect(memcached.instances == 3)
    }

    @Test("defaults are Redis's")
    func defaults() throws {
        let memcached = try #require(
            try loadValid(minimalYAML + "storage:\n  kind: memcached\n  url: memcached://127.0.0.1\n").storage.memcached
        )
        #expect(memcached.servers == [.init(host: "127.0.0.1", port: 11211)])
        #expect(memcached.poolSize == 4)
        #expect(memcached.timeout == .milliseconds(50))
        #expect(memcached.keyPrefix == "sluice:")
        #expect(memcached.onError == .local)
        #expect(memcached.instances == 1)
    }

    @Test("the caveats are warnings at the kind, and the file stays valid")
    func caveatsAreWarnings() throws {
        let configuration = try loadValid(minimalYAML + "storage:\n  kind: memcached\n  url: memcached://127.0.0.1/\n")
        let lines = configuration.warnings.map(\.description)
        #expect(lines.count == 2)
        #expect(lines.allSatisfy { $0.hasPrefix("test.yaml:4:9: warning: memcached storage: ") })
        #expect(lines[0].contains("evict"))
        #expect(lines[1].contains("NTP"))
        #expect(try loadValid(minimalYAML + "storage:\n  kind: memory\n").warnings.isEmpty)
        #expect(try loadValid(minimalYAML + "storage:\n  kind: redis\n  url: redis://127.0.0.1\n").warnings.isEmpty)
    }

    @Test(
        "bad URLs name the character",
        arguments: [
            ("redis://127.0.0.1", "test.yaml:5:8: url: invalid memcached URL: expected memcached://host:port[,host:port...]"),
            ("memcached://user:pw@127.0.0.1", "test.yaml:5:27: url: invalid memcached URL: memcached takes no user or password"),
            ("memcached://127.0.0.1/0", "test.yaml:5:29: url: invalid memcached URL: no path or query parameters after the servers"),
            ("memcached://a:1,,b:2", "test.yaml:5:24: url: invalid memcached URL: missing host"),
            ("memcached://a:1,", "test.yaml:5:24: url: invalid memcached URL: missing host"),
            ("memcached://a:1,b:99999", "test.yaml:5:26: url: invalid memcached URL: invalid port '99999' (expected 1...65535)"),
            ("memcached://a:11211,A", "test.yaml:5:28: url: invalid memcached URL: server a:11211 is listed twice"),
            ("memcached://", "test.yaml:5:20: url: invalid memcached URL: missing host"),
        ]
    )
    func badURL(url: String, expected: String) {
        let lines = errorLines(yaml: minimalYAML + "storage:\n  kind: memcached\n  url: \(url)\n")
        #expect(lines == [expected])
    }

    @Test("a key prefix memcached cannot take")
    func badKeyPrefix() {
        let yaml = minimalYAML + "storage:\n  kind: memcached\n  url: memcached://h\n  key_prefix: \"a b\"\n"
        #expect(
            errorLines(yaml: yaml) == [
                "test.yaml:6:15: key_prefix: memcached keys take printable ASCII only, without spaces or control characters"
            ]
        )
        let long = String(repeating: "k", count: 201)
        #expect(
            errorLines(yaml: minimalYAML + "storage:\n  kind: memcached\n  url: memcached://h\n  key_prefix: \(long)\n") == [
                "test.yaml:6:15: key_prefix: at most 200 bytes with memcached storage, got 201"
            ]
        )
    }

    @Test("url is required; memcached options are refused with kind memory")
    func requiredAndMisplaced() {
        #expect(
            errorLines(yaml: minimalYAML + "storage:\n  kind: memcached\n  timeout: 10ms\n") == [
                "test.yaml:4:3: storage.url is required when kind is memcached"
            ]
        )
        #expect(
            errorLines(yaml: minimalYAML + "storage:\n  url: memcached://h\n") == [
                "test.yaml:4:3: 'url' is only valid with storage kind redis or memcached (kind is memory)"
            ]
        )
        #expect(
            errorLines(yaml: minimalYAML + "storage:\n  kind: memcache\n") == [
                "test.yaml:4:9: kind: expected memory, redis or memcached, got 'memcache'"
            ]
        )
    }
}
