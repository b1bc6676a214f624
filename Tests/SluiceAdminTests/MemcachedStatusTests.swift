import Foundation
import SluiceConfig
import SluiceLimiter
import Testing

@testable import SluiceAdmin

/// A backend with memcached storage over two servers, one of them down.
private struct MemcachedBackend: AdminBackend {
    var configuration: SluiceConfiguration
    var limiter: RateLimiter? { nil }
    var isReady: Bool { true }
    var storageAvailable: Bool { true }
    var storageServers: [StorageServerHealth]
}

/// The status page and `/metrics` with memcached storage (issue 21): each server's health, errors and latency.
@Suite struct MemcachedStatusTests {
    static func configuration() -> SluiceConfiguration {
        var configuration = testConfiguration()
        configuration.storage = StorageConfiguration(
            kind: .memcached,
            memcached: MemcachedStorageConfiguration(
                url: "memcached://10.0.0.5:11211,10.0.0.6:11211",
                servers: [.init(host: "10.0.0.5"), .init(host: "10.0.0.6")],
                onError: .local
            )
        )
        return configuration
    }

    func storage(_ servers: [StorageServerHealth]) throws -> [String: Any] {
        let backend = MemcachedBackend(configuration: Self.configuration(), storageServers: servers)
        let text = StatusReport(backend: backend, history: RateHistory(), now: testNow).json.rendered()
        let json = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        return try #require(json["storage"] as? [String: Any])
    }

    @Test func eachServersHealthIsShown() throws {
        let degraded = try self.storage([
            StorageServerHealth(address: "10.0.0.5:11211", available: true),
            StorageServerHealth(address: "10.0.0.6:11211", available: false),
        ])
        #expect(degraded["kind"] as? String == "memcached")
        #expect(degraded["status"] as? String == "degraded")
        #expect(degraded["on_error"] as? String == "local")
        let servers = try #require(degraded["servers"] as? [[String: Any]])
        #expect(servers.map { $0["address"] as? String } == ["10.0.0.5:11211", "10.0.0.6:11211"])
        #expect(servers.map { $0["status"] as? String } == ["ok", "unavailable"])

        let healthy = try self.storage([
            StorageServerHealth(address: "10.0.0.5:11211", available: true),
            StorageServerHealth(address: "10.0.0.6:11211", available: true),
        ])
        #expect(healthy["status"] as? String == "ok")
        let down = try self.storage([
            StorageServerHealth(address: "10.0.0.5:11211", available: false),
            StorageServerHealth(address: "10.0.0.6:11211", available: false),
        ])
        #expect(down["status"] as? String == "unavailable")
    }

    @Test func thePageRendersMemcachedServers() {
        #expect(StatusPage.html.contains(#"s.kind === "memcached""#))
        #expect(StatusPage.html.contains("s.servers.map"))
    }

    @Test func perServerErrorsAndLatencyInMetrics() {
        let metrics = SluiceMetrics()
        let servers = metrics.storageServerMetrics(for: ["10.0.0.5:11211", "10.0.0.6:11211"])
        let empty = metrics.exposition()
        #expect(empty.contains(#"sluice_storage_server_errors_total{server="10.0.0.5:11211"} 0"#))
        #expect(empty.contains(#"sluice_storage_server_errors_total{server="10.0.0.6:11211"} 0"#))
        #expect(empty.contains(#"sluice_storage_server_latency_seconds_count{server="10.0.0.6:11211"} 0"#))
        servers.observe(server: 1, seconds: 0.0003, failed: false)
        servers.observe(server: 1, seconds: 0.0003, failed: false)
        servers.observe(server: 0, seconds: 0.05, failed: true)
        servers.observe(server: 7, seconds: 0.05, failed: true)  // no such server: ignored
        let body = metrics.exposition()
        #expect(body.contains(#"sluice_storage_server_errors_total{server="10.0.0.5:11211"} 1"#))
        #expect(body.contains(#"sluice_storage_server_errors_total{server="10.0.0.6:11211"} 0"#))
        #expect(body.contains(#"sluice_storage_server_latency_seconds_count{server="10.0.0.6:11211"} 2"#))
        #expect(body.contains(#"sluice_storage_server_latency_seconds_bucket{server="10.0.0.6:11211",le="0.0005"} 2"#))
        #expect(body.contains(#"sluice_storage_server_latency_seconds_count{server="10.0.0.5:11211"} 0"#))
    }
}
