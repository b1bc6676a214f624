import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import NIOPosix
import SluiceConfig
import SluiceLimiter
import SluiceProxy
import SluiceRLS
import SluiceRLSProto
import SluiceTestSupport

typealias RLSRequest = Envoy_Service_Ratelimit_V3_RateLimitRequest
typealias RLSResponse = Envoy_Service_Ratelimit_V3_RateLimitResponse
typealias RLSDescriptor = Envoy_Extensions_Common_Ratelimit_V3_RateLimitDescriptor

/// A running proxy (in front of a ``TestUpstream``) and its gRPC rate-limit service, both on loopback with free
/// ports, wired as `sluice serve` wires them: one limiter for both front ends.
final class RLSHarness: Sendable {
    static let group = MultiThreadedEventLoopGroup.singleton

    let upstream: TestUpstream
    let server: ProxyServer
    let rls: RateLimitGRPCServer
    let proxyPort: Int
    let rlsPort: Int
    private let serving: Task<Void, any Error>

    /// - Parameters:
    ///   - rules: the `rules:` section (and anything after it) of a Sluice YAML file.
    ///   - grpcRLS: the value of `server.grpc_rls` (port 0).
    init(rules: String, grpcRLS: String = #""127.0.0.1:0""#) async throws {
        self.upstream = try await TestUpstream(group: Self.group)
        let configuration = try Self.configuration(rules: rules, upstreamPort: self.upstream.port, grpcRLS: grpcRLS)
        var logger = Logger(label: "sluice-rls-test")
        logger.logLevel = .critical
        self.server = try ProxyServer(configuration: configuration, logger: logger)
        try await self.server.start()
        self.proxyPort = self.server.listeningAddresses.first!.port!
        let handler = RateLimitServiceHandler(running: { [server] in server.limiterWithCounters }, logger: logger)
        self.rls = RateLimitGRPCServer(configuration: configuration.server.grpcRLS!, handler: handler)
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        self.serving = Task { [rls] in
            try await rls.run { address in
                continuation.yield(Int(address.split(separator: ":").last!)!)
                continuation.finish()
            }
        }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else { throw HarnessError(description: "grpc_rls did not listen") }
        self.rlsPort = port
    }

    /// The whole configuration: the proxy and `grpc_rls` on port 0, then `rules`.
    static func configuration(rules: String, upstreamPort: Int, grpcRLS: String = #""127.0.0.1:0""#) throws -> SluiceConfiguration {
        let yaml = """
            version: 1
            server:
              listen: "127.0.0.1:0"
              threads: 2
              access_log: off
              grpc_rls: \(grpcRLS)
            upstream:
              url: "http://127.0.0.1:\(upstreamPort)"
            \(rules)
            """
        return try ConfigLoader.parse(yaml: yaml, file: "test.yaml", environment: [:])
    }

    /// Runs `body` with a client of the generated code on one connection.
    func withClient<T: Sendable>(
        security: HTTP2ClientTransport.Posix.TransportSecurity = .plaintext,
        _ body: (Envoy_Service_Ratelimit_V3_RateLimitService.Client<HTTP2ClientTransport.Posix>) async throws -> T
    ) async throws -> T {
        try await withGRPCClient(
            transport: .http2NIOPosix(
                target: .ipv4(address: "127.0.0.1", port: self.rlsPort),
                transportSecurity: security,
                eventLoopGroup: Self.group
            )
        ) { client in
            try await body(Envoy_Service_Ratelimit_V3_RateLimitService.Client(wrapping: client))
        }
    }

    /// One proxied `GET path` on a fresh connection.
    func get(_ path: String) async throws -> RawHTTPClient.Response {
        let client = try await RawHTTPClient.connect(port: self.proxyPort, group: Self.group)
        defer { Task { await client.close() } }
        try await client.send("GET \(path) HTTP/1.1\r\nHost: test\r\n\r\n")
        return try await client.readResponse()
    }

    func stop() async {
        self.rls.beginGracefulShutdown()
        _ = try? await self.serving.value
        await self.server.stop()
        await self.upstream.close()
    }
}

struct HarnessError: Error, CustomStringConvertible {
    var description: String
}

/// Runs `body` with a harness and always stops it (inside ``TestLoadGate``, shared).
func withRLS(rules: String, grpcRLS: String = #""127.0.0.1:0""#, _ body: (RLSHarness) async throws -> Void) async throws {
    try await TestLoadGate.shared {
        let harness = try await RLSHarness(rules: rules, grpcRLS: grpcRLS)
        do {
            try await body(harness)
        } catch {
            await harness.stop()
            throw error
        }
        await harness.stop()
    }
}

/// A request as Envoy's ratelimit filter builds it: one descriptor per rate-limit action list.
func rlsRequest(domain: String, _ descriptors: [[(String, String)]], hitsAddend: UInt32 = 0) -> RLSRequest {
    var request = RLSRequest()
    request.domain = domain
    request.hitsAddend = hitsAddend
    request.descriptors = descriptors.map { entries in
        var descriptor = RLSDescriptor()
        descriptor.entries = entries.map { key, value in
            var entry = RLSDescriptor.Entry()
            entry.key = key
            entry.value = value
            return entry
        }
        return descriptor
    }
    return request
}

extension RLSResponse {
    /// The value of header `name` in `response_headers_to_add`, compared case-insensitively.
    func header(_ name: String) -> String? {
        self.responseHeadersToAdd.first { $0.key.lowercased() == name.lowercased() }?.value
    }
}
