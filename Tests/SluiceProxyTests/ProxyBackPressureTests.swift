import NIOCore
import NIOHTTP1
import SluiceConfig
import SluiceTestSupport
import Testing

/// Bodies stream with back-pressure (SPEC §3): a slow upstream slows the reading of the client,
/// and a slow client slows the reading of the upstream. Sluice never buffers a body whole.
@Suite("Back-pressure", .timeLimit(.minutes(3)))
struct ProxyBackPressureTests {
    /// Four socket buffers sit between the two ends (the client's send buffer, the proxy's receive and send buffers,
    /// the upstream's receive buffer), and Linux grows each as it sees fit up to its `tcp_wmem` / `tcp_rmem` maximum,
    /// more so on a loaded machine: 38 MB were seen in flight under load where 8–10 MB are usual, and with a 32 MB
    /// `tcp_rmem` maximum (the build machine's) the former fixed 48 MB bound was not safe. The
    /// bound is what those four buffers can hold at most, plus 8 MB for the proxy's own buffer and one read of the
    /// upstream; 48 MB where the limits cannot be read (not Linux).
    static let bound: Int = {
        func maximum(_ name: String) -> Int? {
            guard let text = try? String(contentsOfFile: "/proc/sys/net/ipv4/\(name)", encoding: .utf8) else { return nil }
            return text.split(whereSeparator: \.isWhitespace).last.flatMap { Int($0) }
        }
        guard let send = maximum("tcp_wmem"), let receive = maximum("tcp_rmem") else { return 48 * 1024 * 1024 }
        return 2 * send + 2 * receive + 8 * 1024 * 1024
    }()
    /// Well beyond ``bound``, so a proxy that buffers the body shows it (it takes the body at loopback speed).
    static let attempted = max(128 * 1024 * 1024, 2 * Self.bound)

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
