import NIOPosix
import SluiceConfig
import SluiceTestSupport
import Testing

@Suite("Listeners", .timeLimit(.minutes(3)))
struct ProxyListenerTests {
    /// `0.0.0.0:P`-style IPv4 and `[::]:P`-style IPv6 listeners on one port both bind (an IPv6
    /// listener is IPv6-only, as nginx's `ipv6only=on`) and both serve.
    @Test func ipv4AndIPv6OnTheSamePort() async throws {
        let port = try await Self.freePort()
        try await withProxy({
            $0.server.listen = [ListenAddress(host: "127.0.0.1", port: port), ListenAddress(host: "::1", port: port)]
        }) { proxy in
            #expect(proxy.server.listeningAddresses.count == 2)
            for host in ["127.0.0.1", "::1"] {
                let client = try await RawHTTPClient.connect(host: host, port: port, group: ProxyHarness.group)
                try await client.send("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
                #expect(try await client.readResponse().bodyString == "hello")
                await client.close()
            }
        }
    }

    /// A port outside the kernel's ephemeral range, free on both loopbacks right now.
    static func freePort() async throws -> Int {
        for _ in 0..<200 {
            let candidate = Int.random(in: 20_000..<32_000)
            guard let v4 = try? await ServerBootstrap(group: ProxyHarness.group).bind(host: "127.0.0.1", port: candidate).get()
            else { continue }
            let v6 = try? await ServerBootstrap(group: ProxyHarness.group).bind(host: "::1", port: candidate).get()
            try await v4.close()
            if let v6 {
                try await v6.close()
                return candidate
            }
        }
        throw CancellationError()
    }
}
