import GRPCCore
import GRPCNIOTransportHTTP2
import SluiceRLSProto
import SluiceTestSupport
import Testing

/// `grpc_rls: { listen, tls: { cert, key } }` (issue 14): gRPC over TLS, verified against the test CA.
@Suite("RateLimitServiceTLS")
struct RateLimitServiceTLSTests {
    @Test func answersOverTLS() async throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        let pair = try certificates.issue("rls")
        let rules = """
            rules:
              - name: per-user
                match: { descriptor: { domain: edge, entries: { user: "*" } } }
                key: [descriptor:user]
                limits: 1/minute
            """
        let grpcRLS = #"{ listen: "127.0.0.1:0", tls: { cert: "\#(pair.cert)", key: "\#(pair.key)" } }"#
        try await withRLS(rules: rules, grpcRLS: grpcRLS) { harness in
            let security = HTTP2ClientTransport.Posix.TransportSecurity.tls { tls in
                tls.trustRoots = .certificates([.file(path: certificates.caPath, format: .pem)])
            }
            try await harness.withClient(security: security) { client in
                let request = rlsRequest(domain: "edge", [[("user", "a")]])
                let first = try await client.shouldRateLimit(request)
                let second = try await client.shouldRateLimit(request)
                #expect(first.overallCode == .ok)
                #expect(second.overallCode == .overLimit)
            }
            // A plaintext client gets no answer from the TLS listener.
            await #expect(throws: (any Error).self) {
                try await harness.withClient { client in
                    _ = try await client.shouldRateLimit(
                        rlsRequest(domain: "edge", [[("user", "b")]]),
                        options: { var options = CallOptions.defaults; options.timeout = .seconds(2); return options }()
                    )
                }
            }
        }
    }
}
