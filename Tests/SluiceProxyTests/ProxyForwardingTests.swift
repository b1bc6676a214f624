import NIOCore
import SluiceConfig
import SluiceTestSupport
import Testing

@Suite("Forwarding over loopback", .timeLimit(.minutes(2)))
struct ProxyForwardingTests {
    @Test func simpleGet() async throws {
        try await withProxy { proxy in
            let response = try await proxy.get("/hello")
            #expect(response.status == 200)
            #expect(response.bodyString == "hello")
        }
    }

    @Test func keepAliveReusesOneUpstreamConnection() async throws {
        try await withProxy({ $0.server.threads = 1 }) { proxy in
            let client = try await proxy.client()
            for _ in 0..<20 {
                try await client.send("GET /conn HTTP/1.1\r\nHost: test\r\n\r\n")
                let response = try await client.readResponse()
                #expect(response.status == 200)
            }
            #expect(proxy.upstream.connectionsAccepted == 1)
            #expect(client.isClosed == false)
            await client.close()
        }
    }

    @Test func pipelinedRequestsAnsweredInOrder() async throws {
        try await withProxy { proxy in
            let client = try await proxy.client()
            // The slow one first: its answer must still come first.
            try await client.send(
                "GET /slow?ms=200 HTTP/1.1\r\nHost: t\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\nGET /chunked HTTP/1.1\r\nHost: t\r\n\r\n"
            )
            let first = try await client.readResponse()
            let second = try await client.readResponse()
            let third = try await client.readResponse()
            #expect(first.bodyString == "slow")
            #expect(second.bodyString == "hello")
            #expect(third.bodyString == "abbccc")
            await client.close()
        }
    }
}
