import Logging
import NIOCore
import NIOPosix
import SluiceConfig
import SluiceTestSupport
@testable import SluiceProxy

/// A running proxy in front of a real ``TestUpstream``, both on loopback with free ports.
final class ProxyHarness {
    static let group = MultiThreadedEventLoopGroup.singleton

    let upstream: TestUpstream
    let server: ProxyServer
    let port: Int

    /// - Parameter configure: adjusts the configuration; listen and upstream are preset.
    init(_ configure: (inout SluiceConfiguration) -> Void = { _ in }) async throws {
        self.upstream = try await TestUpstream(group: Self.group)
        var configuration = SluiceConfiguration()
        configuration.server.listen = [ListenAddress(host: "127.0.0.1", port: 0)]
        configuration.server.threads = 2
        configuration.server.accessLog = .off
        configuration.upstream.targets = [UpstreamTarget(scheme: .http, host: "127.0.0.1", port: self.upstream.port)]
        configure(&configuration)
        var logger = Logger(label: "sluice-test")
        logger.logLevel = .critical
        self.server = try ProxyServer(configuration: configuration, logger: logger)
        try await self.server.start()
        self.port = self.server.listeningAddresses.first!.port!
    }

    func client() async throws -> RawHTTPClient {
        try await RawHTTPClient.connect(port: self.port, group: Self.group)
    }

    /// One request on a fresh connection.
    func get(_ path: String, headers: [String] = []) async throws -> RawHTTPClient.Response {
        let client = try await self.client()
        defer { Task { await client.close() } }
        try await client.send("GET \(path) HTTP/1.1\r\nHost: test\r\n" + headers.map { $0 + "\r\n" }.joined() + "\r\n")
        return try await client.readResponse()
    }

    func stop() async {
        await self.server.stop()
        await self.upstream.close()
    }
}

/// Runs `body` with a harness and always stops it (inside ``TestLoadGate``, shared).
func withProxy(
    _ configure: (inout SluiceConfiguration) -> Void = { _ in },
    _ body: (ProxyHarness) async throws -> Void
) async throws {
    try await TestLoadGate.shared { try await withProxyUngated(configure, body) }
}

private func withProxyUngated(
    _ configure: (inout SluiceConfiguration) -> Void,
    _ body: (ProxyHarness) async throws -> Void
) async throws {
    let harness = try await ProxyHarness(configure)
    do {
        try await body(harness)
    } catch {
        await harness.stop()
        throw error
    }
    await harness.stop()
}
