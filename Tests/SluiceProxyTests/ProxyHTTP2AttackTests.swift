import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOSSL
import SluiceConfig
import SluiceTestSupport
import Testing

@testable import SluiceProxy

/// The HTTP/2 attacks of issue 13 that need frames no well-behaved client sends, written as raw bytes on a socket
/// (``HTTP2RawClient``): CONTINUATION floods (CVE-2024-27316 style) and SETTINGS floods. Each must end in the close of
/// the attacker's connection (NIOHTTP2's GOAWAY, then ``HTTP2GoAwayCloser``) while other clients are served.
@Suite("HTTP/2 attacks (raw frames)", .timeLimit(.minutes(3)))
struct ProxyHTTP2AttackTests {
    /// Cap of the "endless" floods: a proxy that buffered without bound would take all of it.
    static let floodCap = 64 << 20
    /// What an endless flood may have sent when the close comes: the bound (tens of KB) and what the socket buffers
    /// held meanwhile (in practice under 100 KB here). A bound even of 16 MB would fail this.
    static let closedNearTheBound = 8 << 20

    static func withH2C(
        _ configure: @escaping (inout SluiceConfiguration) -> Void = { _ in },
        _ body: (ProxyHarness) async throws -> Void
    ) async throws {
        try await withProxy({
            $0.server.h2c = true
            configure(&$0)
        }, body)
    }

    /// A bystander's request on its own HTTP/2 connection and a plain HTTP/1.1 one: both served.
    static func expectServed(_ proxy: ProxyHarness, _ bystander: HTTP2TestClient, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let response = try await bystander.request("GET", "/hello")
        #expect(response.status == 200, sourceLocation: sourceLocation)
        #expect(response.bodyString == "hello", sourceLocation: sourceLocation)
        try await proxy.expectStillServing(sourceLocation: sourceLocation)
    }

    /// Runs `flood` while a bystander keeps making requests on its own connection; returns the bystander's statuses.
    static func withBystanderTraffic(
        _ bystander: HTTP2TestClient,
        during flood: () async throws -> Void
    ) async throws -> [Int] {
        let traffic = Task {
            var statuses: [Int] = []
            for _ in 0..<20 { statuses.append(try await bystander.request("GET", "/hello").status) }
            return statuses
        }
        try await flood()
        return try await traffic.value
    }

    /// Sends `frame` again and again until the server closes the connection (a write fails or the close is seen), at
    /// most ``floodCap`` bytes; returns the bytes sent.
    static func floodUntilClosed(_ attacker: HTTP2RawClient, with frames: [UInt8]) async -> Int {
        var sent = 0
        while sent < Self.floodCap, !attacker.isClosed {
            do {
                try await attacker.send(frames)
            } catch {
                break
            }
            sent += frames.count
        }
        return sent
    }

    @Test("the flood guards are set by Sluice, not left to NIOHTTP2's defaults")
    func guardsAreSluicesOwn() {
        let server = SluiceConfiguration().server
        let connection = HTTP2ConnectionSetup.connectionConfiguration(.init(server))
        #expect(connection.maximumSequentialContinuationFrames == 5)
        #expect(connection.controlFrameRateLimit.maximumCount == 200)
        #expect(connection.controlFrameRateLimit.windowLength == .seconds(30))
        #expect(connection.maximumBufferedControlFrames == 10_000)
        #expect(connection.maximumSequentialEmptyDataFrames == 1)
        #expect(connection.maximumConnectionGlitches == 200)
        // Default max_header_bytes 16384: the header list size offered is 2 × 16384 + 32 × 128.
        #expect(connection.initialSettings.contains { $0.parameter == .maxHeaderListSize && $0.value == 36864 })
        #expect(connection.initialSettings.contains { $0.parameter == .maxConcurrentStreams && $0.value == server.http2MaxConcurrentStreams })
        let stream = HTTP2ConnectionSetup.streamConfiguration()
        #expect(stream.streamResetFrameRateLimit.maximumCount == 200)
        #expect(stream.streamErrorRateLimit.maximumCount == 200)
    }

    // MARK: CONTINUATION

    @Test("a header block within the bound, in HEADERS + CONTINUATIONs, is answered on its stream; one past it gets GOAWAY and the close")
    func continuationBlockPastTheBoundClosesTheConnection() async throws {
        // max_header_bytes 4096: the header list size offered is 2 × 4096 + 4096 = 12288 bytes.
        try await Self.withH2C({ $0.server.maxHeaderBytes = 4096 }) { proxy in
            let bystander = try await HTTP2TestClient.connect(port: proxy.port)
            let attacker = try await HTTP2RawClient.connect(port: proxy.port)

            // Stream 1: a valid block of about 7 KB in 4 frames, under the list bound but over max_header_bytes: 431.
            let block = try H2Wire.headerBlock(path: "/hello", extra: [("x-pad", String(repeating: "a", count: 7000))])
            #expect(block.count > 7000 && block.count < 8000)
            let pieces = stride(from: 0, to: block.count, by: 2000).map { Array(block[$0..<min($0 + 2000, block.count)]) }
            #expect(pieces.count == 4)
            var bytes = H2Wire.frame(.headers, flags: H2Wire.endStream, stream: 1, payload: pieces[0])
            for (index, piece) in pieces.enumerated().dropFirst() {
                bytes += H2Wire.frame(.continuation, flags: index == pieces.count - 1 ? H2Wire.endHeaders : 0, stream: 1, payload: piece)
            }
            try await attacker.send(bytes)
            try await attacker.waitFor("a response on stream 1") { bytes, _ in
                H2Wire.frames(bytes).contains { $0.type == H2Wire.FrameType.headers.rawValue && $0.stream == 1 }
            }
            let responseHead = try #require(attacker.frames.first { $0.type == H2Wire.FrameType.headers.rawValue && $0.stream == 1 })
            var decoder = HPACKDecoder(allocator: ByteBufferAllocator())
            var payload = ByteBuffer(bytes: responseHead.payload)
            #expect(try decoder.decodeHeaders(from: &payload).first(name: ":status") == "431")
            #expect(!attacker.isClosed)
            #expect(attacker.goAwayCode == nil)

            // Stream 3: 4000-byte fragments; the third CONTINUATION takes the block to 16000 bytes, past 12288, while
            // the count of CONTINUATIONs (3) is within its own bound (5): the size bound closes the connection.
            let fragment = [UInt8](repeating: 0x61, count: 4000)
            var flood = H2Wire.frame(.headers, flags: H2Wire.endStream, stream: 3, payload: fragment)
            for _ in 0..<3 { flood += H2Wire.frame(.continuation, stream: 3, payload: fragment) }
            try await attacker.send(flood)
            try await attacker.waitForClose()
            #expect(attacker.goAwayCode == H2Wire.protocolError)
            #expect(proxy.upstream.requestURIs.isEmpty, "neither stream reached the upstream")
            try await Self.expectServed(proxy, bystander)
            await bystander.close()
        }
    }

    @Test("an endless CONTINUATION flood (16 KB frames) is closed near the bound while a bystander is served")
    func endlessContinuationFloodIsClosed() async throws {
        try await Self.withH2C { proxy in
            let bystander = try await HTTP2TestClient.connect(port: proxy.port)
            let attacker = try await HTTP2RawClient.connect(port: proxy.port)
            let fragment = [UInt8](repeating: 0x61, count: 16384)
            var sent = 0
            let statuses = try await Self.withBystanderTraffic(bystander) {
                try await attacker.send(H2Wire.frame(.headers, flags: H2Wire.endStream, stream: 1, payload: fragment))
                sent = await Self.floodUntilClosed(attacker, with: H2Wire.frame(.continuation, stream: 1, payload: fragment))
            }
            try await attacker.waitForClose()
            // The bound (default max_header_bytes 16384: 36864 bytes offered) is passed at the third frame; the rest
            // of what was sent sat in socket buffers when the close came. A proxy buffering without bound would
            // have taken all 64 MB.
            #expect(sent < Self.closedNearTheBound)
            // The GOAWAY may be lost when the close resets a connection with unread bytes; when it came, it names
            // the size bound.
            if let code = attacker.goAwayCode { #expect(code == H2Wire.protocolError) }
            #expect(statuses == Array(repeating: 200, count: 20))
            #expect(proxy.upstream.requestURIs.allSatisfy { $0 == "/hello" })
            try await Self.expectServed(proxy, bystander)
            await bystander.close()
        }
    }

    @Test("empty CONTINUATION frames are not accepted forever: more than 5 in a row get GOAWAY ENHANCE_YOUR_CALM and the close")
    func emptyContinuationFloodIsClosed() async throws {
        try await Self.withH2C { proxy in
            let bystander = try await HTTP2TestClient.connect(port: proxy.port)
            let block = try H2Wire.headerBlock(path: "/hello")
            let empty = H2Wire.frame(.continuation, stream: 1, payload: [])

            // A burst of 100 after a HEADERS without END_HEADERS: the size never grows, the count bound closes it.
            let burst = try await HTTP2RawClient.connect(port: proxy.port)
            try await burst.send(
                H2Wire.frame(.headers, flags: H2Wire.endStream, stream: 1, payload: Array(block.prefix(4)))
                    + Array([[UInt8]](repeating: empty, count: 100).joined())
            )
            try await burst.waitForClose()
            #expect(burst.goAwayCode == H2Wire.enhanceYourCalm)

            // Endless: 1000 empty frames per write until the server closes.
            let endless = try await HTTP2RawClient.connect(port: proxy.port)
            var sent = 0
            let statuses = try await Self.withBystanderTraffic(bystander) {
                try await endless.send(H2Wire.frame(.headers, flags: H2Wire.endStream, stream: 1, payload: Array(block.prefix(4))))
                sent = await Self.floodUntilClosed(endless, with: Array([[UInt8]](repeating: empty, count: 1000).joined()))
            }
            try await endless.waitForClose()
            #expect(sent < Self.closedNearTheBound)
            if let code = endless.goAwayCode { #expect(code == H2Wire.enhanceYourCalm) }
            #expect(statuses == Array(repeating: 200, count: 20))
            #expect(proxy.upstream.requestURIs.allSatisfy { $0 == "/hello" })
            try await Self.expectServed(proxy, bystander)
            await bystander.close()
        }
    }

    // MARK: SETTINGS

    @Test("a SETTINGS flood from a client that never reads the ACKs is closed (GOAWAY ENHANCE_YOUR_CALM); a bystander is served")
    func settingsFloodIsClosed() async throws {
        try await Self.withH2C { proxy in
            let bystander = try await HTTP2TestClient.connect(port: proxy.port)
            let attacker = try await HTTP2RawClient.connect(port: proxy.port)
            #expect(try await Self.requestStatus(attacker, stream: 1) == "200", "the attacker's connection worked before")
            try await attacker.stopReading()
            // 100 SETTINGS frames per write (each must be acknowledged), without reading anything back.
            let batch = Array([[UInt8]](repeating: H2Wire.settings([(0x4, 65535)]), count: 100).joined())
            var sent = 0
            let statuses = try await Self.withBystanderTraffic(bystander) {
                sent = await Self.floodUntilClosed(attacker, with: batch)
            }
            // Not reading, the attacker sees the close only as a failed write; then it reads what was sent to it.
            try await attacker.startReading()
            try await attacker.waitForClose()
            #expect(sent < Self.closedNearTheBound)
            let acks = attacker.frames.filter { $0.type == H2Wire.FrameType.settings.rawValue && $0.flags & H2Wire.ack != 0 }
            // NIOHTTP2's bound: 200 PING/SETTINGS/PRIORITY frames within 30 s (the handshake's SETTINGS counts).
            #expect(acks.count <= 200)
            if let code = attacker.goAwayCode {
                #expect(code == H2Wire.enhanceYourCalm)
            }
            #expect(statuses == Array(repeating: 200, count: 20))
            try await Self.expectServed(proxy, bystander)
            await bystander.close()
        }
    }

    @Test("a burst of SETTINGS past the bound gets GOAWAY ENHANCE_YOUR_CALM after at most 200 ACKs")
    func settingsBurstGetsGoAway() async throws {
        try await Self.withH2C { proxy in
            let attacker = try await HTTP2RawClient.connect(port: proxy.port)
            // One write the server reads whole: it acts on every frame before it closes, so nothing is left unread
            // and the close is a FIN (its GOAWAY arrives) rather than a reset.
            try await attacker.send(Array([[UInt8]](repeating: H2Wire.settings(), count: 300).joined()))
            try await attacker.waitForClose()
            #expect(attacker.goAwayCode == H2Wire.enhanceYourCalm)
            let acks = attacker.frames.filter { $0.type == H2Wire.FrameType.settings.rawValue && $0.flags & H2Wire.ack != 0 }
            #expect(acks.count >= 150 && acks.count <= 200)
            try await proxy.expectStillServing()
        }
    }

    /// A GET on `stream` of `client` (raw); returns the `:status` of the response.
    static func requestStatus(_ client: HTTP2RawClient, stream: UInt32) async throws -> String? {
        let block = try H2Wire.headerBlock(path: "/hello")
        try await client.send(H2Wire.frame(.headers, flags: H2Wire.endStream | H2Wire.endHeaders, stream: stream, payload: block))
        try await client.waitFor("a response on stream \(stream)") { bytes, _ in
            H2Wire.frames(bytes).contains { $0.type == H2Wire.FrameType.headers.rawValue && $0.stream == stream }
        }
        let head = try #require(client.frames.first { $0.type == H2Wire.FrameType.headers.rawValue && $0.stream == stream })
        var decoder = HPACKDecoder(allocator: ByteBufferAllocator())
        var payload = ByteBuffer(bytes: head.payload)
        return try decoder.decodeHeaders(from: &payload).first(name: ":status")
    }

    // MARK: TLS

    @Test("over TLS with ALPN h2: CONTINUATION and SETTINGS floods are closed; a TLS h2 bystander is served")
    func floodsOverTLS() async throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        let leaf = try certificates.issue("proxy")
        try await withProxy({ $0.server.tls = TLSFiles(cert: leaf.cert, key: leaf.key) }) { proxy in
            let h2 = try certificates.clientContext(protocols: ["h2"])
            let bystander = try await HTTP2TestClient.connect(port: proxy.port, tls: h2)
            #expect(try await bystander.request("GET", "/hello").status == 200)

            let continuation = try await HTTP2RawClient.connect(port: proxy.port, tls: h2)
            #expect(try await Self.requestStatus(continuation, stream: 1) == "200", "ALPN chose h2: frames are answered")
            let fragment = [UInt8](repeating: 0x61, count: 16384)
            var sent = 0
            var statuses = try await Self.withBystanderTraffic(bystander) {
                try await continuation.send(H2Wire.frame(.headers, flags: H2Wire.endStream, stream: 3, payload: fragment))
                sent = await Self.floodUntilClosed(continuation, with: H2Wire.frame(.continuation, stream: 3, payload: fragment))
            }
            try await continuation.waitForClose()
            #expect(sent < Self.closedNearTheBound)
            #expect(statuses == Array(repeating: 200, count: 20))

            let settings = try await HTTP2RawClient.connect(port: proxy.port, tls: h2)
            let batch = Array([[UInt8]](repeating: H2Wire.settings(), count: 100).joined())
            statuses = try await Self.withBystanderTraffic(bystander) {
                sent = await Self.floodUntilClosed(settings, with: batch)
            }
            try await settings.waitForClose()
            #expect(sent < Self.closedNearTheBound)
            #expect(statuses == Array(repeating: 200, count: 20))

            #expect(try await bystander.request("GET", "/hello").status == 200)
            let fresh = try await HTTP2TestClient.connect(port: proxy.port, tls: h2)
            #expect(try await fresh.request("GET", "/hello").status == 200)
            await fresh.close()
            await bystander.close()
        }
    }
}
