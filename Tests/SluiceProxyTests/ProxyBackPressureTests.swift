import NIOCore
import NIOHTTP1
import SluiceConfig
import SluiceTestSupport
import Testing

/// Bodies stream with back-pressure (SPEC §3): a slow upstream slows the reading of the client,
/// and a slow client slows the reading of the upstream. Sluice never buffers a body whole.
@Suite("Back-pressure", .timeLimit(.minutes(3)))
struct ProxyBackPressureTests {
    static let attempted = 128 * 1024 * 1024
    /// Loopback socket buffers are a few MB each; four of them sit between the two ends.
    static let bound = 48 * 1024 * 1024

    @Test func slowUpstreamSlowsTheClient() async throws {
        try await withProxy({ $0.server.threads = 1 }) { proxy in
            let client = try await proxy.streamingClient()
            // The upstream reads one buffer every 200 ms.
            client.startSending(
                HTTPRequestHead(
                    version: .http1_1,
                    method: .POST,
                    uri: "/slow-upload?ms=200",
                    headers: ["Host": "t", "Content-Length": String(Self.attempted)]
                ),
                bodyBytes: Self.attempted
            )
            try await eventually("upload started") { proxy.upstream.slowUploadBytesReceived > 0 }
            try await Task.sleep(for: .seconds(2))
            let written = client.bodyBytesWritten
            let received = proxy.upstream.slowUploadBytesReceived
            #expect(written - received < Self.bound, "client handed \(written) B to its socket, upstream read \(received) B")
            #expect(written < Self.attempted)
            await client.close()
        }
    }

    @Test func slowClientSlowsTheUpstream() async throws {
        try await withProxy({ $0.server.threads = 1 }) { proxy in
            let client = try await proxy.streamingClient(autoRead: false)
            try await client.send(HTTPRequestHead(version: .http1_1, method: .GET, uri: "/download?bytes=\(Self.attempted)", headers: ["Host": "t"]))
            try await eventually("download started") { proxy.upstream.downloadBytesWritten > 0 }
            try await Task.sleep(for: .seconds(2))
            let sent = proxy.upstream.downloadBytesWritten
            #expect(client.bodyBytesReceived == 0)
            #expect(sent < Self.bound, "upstream handed \(sent) B to its socket while the client read nothing")
            // And it resumes: the client reads a good part of it afterwards.
            client.startReading()
            try await eventually(within: .seconds(10), "download resumes") { client.bodyBytesReceived > sent }
            await client.close()
        }
    }
}
