import NIOCore
import SluiceConfig
import SluiceTestSupport
import Testing

/// `Upgrade` requests are tunnelled both ways once the upstream switches protocols (SPEC §3).
@Suite("Upgrade tunnels", .timeLimit(.minutes(3)))
struct ProxyUpgradeTests {
    private static let upgradeRequest = "GET /upgrade HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"

    @Test func upgradeThenEchoSeveralRoundTrips() async throws {
        try await withProxy { proxy in
            let client = try await proxy.client()
            try await client.send(Self.upgradeRequest)
            let switching = try await client.readResponse()
            #expect(switching.status == 101)
            #expect(switching.header("upgrade") == "echo")
            for i in 0..<5 {
                let message = "ping \(i) " + String(repeating: "z", count: i * 1000)
                try await client.send(message)
                let echoed = try await client.readBytes(count: message.utf8.count, timeout: .seconds(5))
                #expect(String(decoding: echoed, as: UTF8.self) == message)
            }
            await client.close()
        }
    }

    @Test func bytesSentRightAfterTheUpgradeRequestAreTunnelled() async throws {
        try await withProxy { proxy in
            let client = try await proxy.client()
            // No waiting for the 101: these bytes may reach the proxy in the same read as the head.
            try await client.send(Self.upgradeRequest + "early bytes")
            let switching = try await client.readResponse()
            #expect(switching.status == 101)
            let echoed = try await client.readBytes(count: "early bytes".utf8.count, timeout: .seconds(5))
            #expect(String(decoding: echoed, as: UTF8.self) == "early bytes")
            try await client.send("late")
            #expect(String(decoding: try await client.readBytes(count: 4, timeout: .seconds(5)), as: UTF8.self) == "late")
            await client.close()
        }
    }

    @Test func clientCloseClosesUpstreamSide() async throws {
        try await withProxy { proxy in
            let client = try await proxy.client()
            try await client.send(Self.upgradeRequest)
            #expect(try await client.readResponse().status == 101)
            try await client.send("x")
            _ = try await client.readBytes(count: 1, timeout: .seconds(5))
            // Half-close: the upstream echo sees its input end and closes; that closes the client.
            try await client.channel.close(mode: .output)
            _ = try await client.waitForClose(timeout: .seconds(5))
            await client.close()
        }
    }

    @Test func upstreamCloseClosesClientSide() async throws {
        try await withProxy { proxy in
            let client = try await proxy.client()
            try await client.send(Self.upgradeRequest)
            #expect(try await client.readResponse().status == 101)
            try await client.send("y")
            #expect(try await client.readBytes(count: 1, timeout: .seconds(5)) == Array("y".utf8))
            try await client.send("quit")
            _ = try await client.waitForClose(timeout: .seconds(5))
            await client.close()
            try await proxy.expectStillServing()
        }
    }

    @Test func refusedUpgradeDoesNotWedgeTheConnection() async throws {
        try await withProxy { proxy in
            let client = try await proxy.client()
            // The upstream answers 200: no tunnel. The next request on the connection must get
            // an answer, or the connection must be closed; never a hang.
            try await client.send("GET /hello HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
            let response = try await client.readResponse()
            #expect(response.status == 200)
            #expect(response.bodyString == "hello")
            try? await client.send("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            let outcome = try await withTimeout(.seconds(3), "second request after refused upgrade") {
                if let next = try? await client.readResponse(timeout: .seconds(3)) { return next.bodyString }
                return client.isClosed ? "closed" : "hang"
            }
            #expect(outcome == "hello" || outcome == "closed")
            await client.close()
        }
    }
}
