import Foundation
import SluiceConfig
import Testing

@testable import SluiceAdmin

/// `GET /config` shows the HTTP/2 settings (issue 13) and the gRPC rate-limit listener (issue 14) under `server`.
@Suite("Admin /config: HTTP/2 and grpc_rls")
struct ServerProtocolsAdminJSONTests {
    @Test func http2AndGRPCListenerAreShown() async throws {
        var configuration = testConfiguration()
        configuration.server.http2 = false
        configuration.server.h2c = true
        configuration.server.http2MaxConcurrentStreams = 37
        configuration.server.grpcRLS = GRPCRateLimitServiceConfiguration(
            listen: ListenAddress(host: "127.0.0.1", port: 8081),
            tls: TLSFiles(cert: "/etc/sluice/rls.pem", key: "/etc/sluice/rls.key")
        )
        try await withAdminServer(backend: TestBackend(configuration: configuration)) { port in
            let response = try await send(.GET, "/config", port: port)
            #expect(response.status == .ok)
            let json = try #require(try JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: Any])
            let server = try #require(json["server"] as? [String: Any])
            #expect(server["http2"] as? Bool == false)
            #expect(server["h2c"] as? Bool == true)
            #expect(server["http2_max_concurrent_streams"] as? Int == 37)
            let grpc = try #require(server["grpc_rls"] as? [String: Any])
            #expect(grpc["listen"] as? String == "127.0.0.1:8081")
            let tls = try #require(grpc["tls"] as? [String: Any])
            #expect(tls["cert"] as? String == "/etc/sluice/rls.pem")
            #expect(tls["key"] as? String == "/etc/sluice/rls.key")
        }
    }

    @Test func noGRPCListenerIsNull() async throws {
        let configuration = testConfiguration()
        try await withAdminServer(backend: TestBackend(configuration: configuration)) { port in
            let response = try await send(.GET, "/config", port: port)
            let json = try #require(try JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: Any])
            let server = try #require(json["server"] as? [String: Any])
            #expect(server["grpc_rls"] is NSNull)
            #expect(server["http2"] as? Bool == true)
            #expect(server["h2c"] as? Bool == false)
        }
    }
}
