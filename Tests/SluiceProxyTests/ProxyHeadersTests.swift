import NIOCore
import SluiceConfig
import SluiceTestSupport
import Testing

/// Header rewriting towards the upstream (SPEC §3): hop-by-hop removal, X-Forwarded-*, Host.
@Suite("Forwarded headers", .timeLimit(.minutes(3)))
struct ProxyHeadersTests {
    private func echo(_ proxy: ProxyHarness, _ rawHeaders: String) async throws -> [(String, String)] {
        let client = try await proxy.client()
        try await client.send("GET /echo-headers HTTP/1.1\r\n\(rawHeaders)\r\n")
        let response = try await client.readResponse()
        await client.close()
        #expect(response.status == 200)
        return echoedHeaders(response.bodyString).headers
    }

    @Test func hopByHopHeadersAreNotForwarded() async throws {
        try await withProxy { proxy in
            let headers = try await self.echo(
                proxy,
                "Host: t\r\nConnection: keep-alive, X-Secret-Hop\r\nX-Secret-Hop: 1\r\nKeep-Alive: timeout=5\r\n"
                    + "TE: trailers\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\nProxy-Connection: keep-alive\r\n"
                    + "X-End-To-End: kept\r\n"
            )
            let names = Set(headers.map(\.0))
            for hop in ["connection", "x-secret-hop", "keep-alive", "te", "proxy-authorization", "proxy-connection"] {
                #expect(!names.contains(hop), "\(hop) reached the upstream")
            }
            #expect(headers.values("x-end-to-end") == ["kept"])
        }
    }

    @Test func responseHopByHopHeadersAreNotReturned() async throws {
        try await withProxy { proxy in
            // /trailers declares `Trailer: X-Checksum` (hop-by-hop) and is chunked.
            let response = try await proxy.get("/trailers")
            #expect(response.header("trailer") == nil)
            #expect(response.headers("transfer-encoding") == ["chunked"])
        }
    }

    @Test func xForwardedForIsSetFromPeer() async throws {
        try await withProxy { proxy in
            let headers = try await self.echo(proxy, "Host: t\r\n")
            #expect(headers.values("x-forwarded-for") == ["127.0.0.1"])
            #expect(headers.values("x-forwarded-proto") == ["http"])
            #expect(headers.values("x-forwarded-host") == ["t"])
        }
    }

    @Test func xForwardedForIsAppended() async throws {
        try await withProxy { proxy in
            let headers = try await self.echo(
                proxy,
                "Host: t\r\nX-Forwarded-For: 203.0.113.7, 198.51.100.2\r\nX-Forwarded-For: 192.0.2.1\r\nX-Forwarded-Proto: https\r\n"
            )
            #expect(headers.values("x-forwarded-for") == ["203.0.113.7, 198.51.100.2, 192.0.2.1, 127.0.0.1"])
            // The client's claim about the scheme is replaced by what Sluice saw.
            #expect(headers.values("x-forwarded-proto") == ["http"])
        }
    }

    @Test func preserveHostKeepsClientHost() async throws {
        try await withProxy({ $0.upstream.preserveHost = true }) { proxy in
            let headers = try await self.echo(proxy, "Host: api.example.com\r\n")
            #expect(headers.values("host") == ["api.example.com"])
            #expect(headers.values("x-forwarded-host") == ["api.example.com"])
        }
    }

    @Test func noPreserveHostSendsUpstreamHost() async throws {
        try await withProxy({ $0.upstream.preserveHost = false }) { proxy in
            let headers = try await self.echo(proxy, "Host: api.example.com\r\n")
            #expect(headers.values("host") == ["127.0.0.1:\(proxy.upstream.port)"])
            #expect(headers.values("x-forwarded-host") == ["api.example.com"])
        }
    }

    @Test func http10WithoutHostGetsUpstreamHost() async throws {
        try await withProxy { proxy in
            let client = try await proxy.client()
            try await client.send("GET /echo-headers HTTP/1.0\r\n\r\n")
            let response = try await client.readResponse()
            #expect(response.status == 200)
            let headers = echoedHeaders(response.bodyString).headers
            #expect(headers.values("host") == ["127.0.0.1:\(proxy.upstream.port)"])
            await client.close()
        }
    }

    @Test func upgradeHeaderWithoutConnectionUpgradeIsNotAnUpgrade() async throws {
        try await withProxy { proxy in
            // `Upgrade` not listed in `Connection` is meaningless (RFC 9110 §7.8): it must not be
            // turned into an upgrade request towards the upstream.
            let headers = try await self.echo(proxy, "Host: t\r\nUpgrade: echo\r\n")
            #expect(headers.values("upgrade").isEmpty)
            #expect(headers.values("connection").isEmpty)
        }
    }
}
