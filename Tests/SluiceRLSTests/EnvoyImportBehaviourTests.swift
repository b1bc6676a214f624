import Foundation
import SluiceConfig
import SluiceLimiter
import Testing

/// The converted README examples (config/envoy-ratelimit/) decide descriptors as envoyproxy/ratelimit describes
/// them: the engine, without sockets, with a fixed clock.
@Suite("EnvoyImportBehaviour")
struct EnvoyImportBehaviourTests {
    static func limiter(_ name: String) throws -> RateLimiter {
        let directory = URL(fileURLWithPath: #filePath).resolvingSymlinksInPath()
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("config/envoy-ratelimit")
        let text = try String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)
        let output = try EnvoyRateLimitImporter.convert(text, file: name)
        let configuration = try ConfigLoader.parse(yaml: output.yaml, file: name, environment: [:])
        return RateLimiter(configuration: configuration, previous: nil)
    }

    /// How many of `count` calls with `entries` are admitted at one instant.
    static func admitted(_ limiter: RateLimiter, _ domain: String, _ entries: [(String, String)], count: Int) -> Int {
        let now = LimiterInstant.seconds(1_800_000_000)
        let request = DescriptorRequest(domain: domain, entries: entries.map { .init(key: $0.0, value: $0.1) }, cost: 1)
        return (0..<count).filter { _ in !limiter.evaluate(request, now: now).isBlocked }.count
    }

    @Test func example2MarketingAndOverallLimits() throws {
        let limiter = try Self.limiter("example2-messaging.yaml")
        #expect(Self.admitted(limiter, "messaging", [("message_type", "marketing"), ("to_number", "2061111111")], count: 8) == 5)
        #expect(Self.admitted(limiter, "messaging", [("message_type", "marketing"), ("to_number", "2062222222")], count: 8) == 5)
        #expect(Self.admitted(limiter, "messaging", [("to_number", "2061111111")], count: 120) == 100)
        // A message_type descriptor alone has no limit of its own.
        #expect(Self.admitted(limiter, "messaging", [("message_type", "marketing")], count: 20) == 20)
    }

    @Test func example3MostSpecificMatch() throws {
        let limiter = try Self.limiter("example3-edge-per-ip.yaml")
        #expect(Self.admitted(limiter, "edge_proxy_per_ip", [("remote_address", "50.0.0.1")], count: 15) == 10)
        #expect(Self.admitted(limiter, "edge_proxy_per_ip", [("remote_address", "50.0.0.5")], count: 5) == 0)
        // The refused address spent nothing of its per-IP counter: the next window... and another IP is untouched.
        #expect(Self.admitted(limiter, "edge_proxy_per_ip", [("remote_address", "50.0.0.2")], count: 15) == 10)
    }

    @Test func example4OnlyTheFullPathMatches() throws {
        let limiter = try Self.limiter("example4-nested.yaml")
        #expect(Self.admitted(limiter, "example4", [("key", "value")], count: 400) == 400)
        #expect(Self.admitted(limiter, "example4", [("key", "value"), ("subkey", "s")], count: 400) == 300)
    }

    @Test func example6ShadowAndEnforced() throws {
        let limiter = try Self.limiter("example6-shadow.yaml")
        #expect(Self.admitted(limiter, "example6", [("service", "auth-service"), ("user", "user-a")], count: 30) == 30)
        #expect(Self.admitted(limiter, "example6", [("service", "auth-service"), ("user", "user-b")], count: 30) == 20)
    }

    @Test func example8ValueTierBeatsTheDefault() throws {
        let limiter = try Self.limiter("example8-detailed-metric.yaml")
        #expect(Self.admitted(limiter, "example8", [("key1", "value1")], count: 30) == 20)
        #expect(Self.admitted(limiter, "example8", [("key1", "other")], count: 30) == 10)
    }
}
