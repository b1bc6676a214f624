import Foundation
import SluiceConfig
import Testing

@testable import SluiceAdmin

/// `GET /config` with memcached storage (issue 21): shown like Redis's section, under `storage.memcached`.
@Suite("Admin /config with memcached storage")
struct MemcachedAdminJSONTests {
    @Test func memcachedSectionIsShown() async throws {
        var configuration = testConfiguration()
        configuration.storage = StorageConfiguration(
            kind: .memcached,
            maxKeys: 1000,
            memcached: MemcachedStorageConfiguration(
                url: "memcached://10.0.0.5:11211,10.0.0.6:11311",
                servers: [.init(host: "10.0.0.5"), .init(host: "10.0.0.6", port: 11311)],
                poolSize: 2,
                timeout: .milliseconds(80),
                keyPrefix: "rl:",
                onError: .deny,
                instances: 3
            )
        )
        let backend = TestBackend(configuration: configuration)
        try await withAdminServer(backend: backend) { port in
            let response = try await send(.GET, "/config", port: port)
            #expect(response.status == .ok)
            let json = try #require(try JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: Any])
            let storage = try #require(json["storage"] as? [String: Any])
            #expect(storage["kind"] as? String == "memcached")
            #expect(storage["redis"] == nil)
            let memcached = try #require(storage["memcached"] as? [String: Any])
            #expect(memcached["url"] as? String == "memcached://10.0.0.5:11211,10.0.0.6:11311")
            #expect(memcached["servers"] as? [String] == ["10.0.0.5:11211", "10.0.0.6:11311"])
            #expect(memcached["pool_size"] as? Int == 2)
            #expect(memcached["timeout"] as? String == "80ms")
            #expect(memcached["key_prefix"] as? String == "rl:")
            #expect(memcached["on_error"] as? String == "deny")
            #expect(memcached["instances"] as? Int == 3)
        }
    }
}
