import Foundation
import SluiceConfig
import SluiceLimiter
import Testing

@testable import SluiceAdmin

/// Redis through Sentinel in the admin API (issue 12): `/status` names the primary in use and each sentinel's
/// health, `/config` the sentinels without either password, `/metrics` one `sluice_storage_server_up` series each.
@Suite("Admin with Redis Sentinel storage")
struct RedisSentinelAdminTests {
    struct Backend: AdminBackend {
        var configuration: SluiceConfiguration
        var limiter: RateLimiter? { nil }
        var isReady: Bool { self.storageAvailable }
        var storageAvailable: Bool
        var storageServers: [StorageServerHealth]
    }

    static func configuration() -> SluiceConfiguration {
        var configuration = testConfiguration()
        var redis = RedisStorageConfiguration(url: "redis+sentinel://:hunter2@10.0.0.1:26379,10.0.0.2:26379/orders/1")
        redis.host = "10.0.0.1"
        redis.port = 26379
        redis.password = "hunter2"
        redis.sentinelPassword = "watch-me"
        redis.database = 1
        redis.deployment = .sentinel(
            sentinels: [RedisSeed(host: "10.0.0.1", port: 26379), RedisSeed(host: "10.0.0.2", port: 26379)],
            masterName: "orders"
        )
        configuration.storage = StorageConfiguration(kind: .redis, redis: redis)
        return configuration
    }

    static func storage(_ backend: Backend) throws -> (text: String, json: [String: Any]) {
        let text = StatusReport(backend: backend, history: RateHistory(), now: testNow).json.rendered()
        let json = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        return (text, try #require(json["storage"] as? [String: Any]))
    }

    @Test func statusNamesThePrimaryAndEachSentinel() throws {
        let servers = [
            StorageServerHealth(address: "10.0.0.7:6379", available: true, role: .primary),
            StorageServerHealth(address: "10.0.0.1:26379", available: true, role: .sentinel),
            StorageServerHealth(address: "10.0.0.2:26379", available: false, role: .sentinel),
        ]
        var backend = Backend(configuration: Self.configuration(), storageAvailable: true, storageServers: servers)
        var (text, storage) = try Self.storage(backend)
        #expect(storage["deployment"] as? String == "sentinel")
        #expect(storage["status"] as? String == "degraded")
        #expect(storage["primary"] as? String == "10.0.0.7:6379")
        #expect(storage["address"] as? String == "10.0.0.7:6379/1")
        #expect(storage["master_name"] as? String == "orders")
        let sentinels = try #require(storage["sentinels"] as? [[String: String]])
        #expect(sentinels == [["address": "10.0.0.1:26379", "status": "ok"], ["address": "10.0.0.2:26379", "status": "unavailable"]])
        #expect(!text.contains("hunter2") && !text.contains("watch-me"))

        backend.storageServers[2].available = true
        #expect(try Self.storage(backend).json["status"] as? String == "ok")
        // No primary found yet.
        backend.storageServers.removeFirst()
        backend.storageAvailable = false
        (text, storage) = try Self.storage(backend)
        #expect(storage["status"] as? String == "unavailable")
        #expect(storage["primary"] is NSNull)
    }

    @Test func configShowsTheSentinelsWithoutPasswords() throws {
        let text = Self.configuration().adminJSON.rendered()
        let json = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        let redis = try #require((json["storage"] as? [String: Any])?["redis"] as? [String: Any])
        #expect(redis["url"] as? String == "redis+sentinel://:***@10.0.0.1:26379,10.0.0.2:26379/orders/1")
        #expect(redis["sentinels"] as? [String] == ["10.0.0.1:26379", "10.0.0.2:26379"])
        #expect(redis["master_name"] as? String == "orders")
        #expect(redis["sentinel_password"] as? String == "***")
        #expect(!text.contains("hunter2") && !text.contains("watch-me"))
    }

    @Test func metricsHaveOneUpSeriesPerServerAndKeepAFormerPrimaryAtZero() {
        let metrics = SluiceMetrics()
        metrics.updateStorageServers([
            StorageServerHealth(address: "10.0.0.7:6379", available: true, role: .primary),
            StorageServerHealth(address: "10.0.0.1:26379", available: false, role: .sentinel),
        ])
        var text = metrics.exposition()
        #expect(text.contains("sluice_storage_server_up{server=\"10.0.0.7:6379\",role=\"primary\"} 1"))
        #expect(text.contains("sluice_storage_server_up{server=\"10.0.0.1:26379\",role=\"sentinel\"} 0"))
        metrics.updateStorageServers([
            StorageServerHealth(address: "10.0.0.8:6379", available: true, role: .primary),
            StorageServerHealth(address: "10.0.0.1:26379", available: true, role: .sentinel),
        ])
        text = metrics.exposition()
        #expect(text.contains("sluice_storage_server_up{server=\"10.0.0.7:6379\",role=\"primary\"} 0"))
        #expect(text.contains("sluice_storage_server_up{server=\"10.0.0.8:6379\",role=\"primary\"} 1"))
        #expect(text.contains("sluice_storage_server_up{server=\"10.0.0.1:26379\",role=\"sentinel\"} 1"))
    }
}
