import NIOCore
import NIOEmbedded
import NIOHTTP1
import SluiceHTTP1
import Testing

@testable import SluiceProxy

/// The raw client-head writer against the NIOHTTP1 rewrite the proxy does today (`ProxyHandler.upstreamReceived`
/// `.head`, restated in ``reference(_:requestIsHEAD:clientMinor:keepAlive:extra:)`` around the real ``HopByHop``):
/// for every upstream head, client version, keep-alive and extra fields, the client gets the same status and the
/// same fields (order aside), with two intended differences: a chunked body passed to an HTTP/1.1 client keeps the
/// upstream's `Transfer-Encoding` field(s) verbatim (NIO decoded and re-chunked it), and a 101 is stripped like any
/// response but keeps `Upgrade` with `Connection: upgrade` (today's tunnel start relays the 101's fields unchanged).
@Suite("ClientResponseHeadWriter, differential against the NIOHTTP1 rewrite")
struct ClientResponseHeadWriterTests {
    /// An upstream head and whether the request was `HEAD`.
    struct Sample {
        var text: String
        var requestIsHEAD = false
    }

    static let corpus: [Sample] = [
        Sample(text: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\n"),
        Sample(text: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        Sample(text: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n"),
        Sample(text: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
        Sample(text: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\nVary: x\r\n\r\n"),
        Sample(text: "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"),
        Sample(text: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
        Sample(text: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n"),
        Sample(text: "HTTP/1.0 200 OK\r\nServer: old\r\n\r\n"),
        Sample(text: "HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n"),
        Sample(text: "HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\nETag: \"x\"\r\n\r\n"),
        Sample(text: "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n"),
        Sample(text: "HTTP/1.1 200 OK\r\nConnection: close, X-Drop, Content-Length\r\nX-Drop: 1\r\nx-drop: 2\r\nContent-Length: 0\r\n\r\n"),
        Sample(text: "HTTP/1.1 200 OK\r\nConnection: keep-alive, Transfer-Encoding, Keep-Alive\r\nTransfer-Encoding: chunked\r\nKeep-Alive: 5\r\n\r\n"),
        Sample(
            text: "HTTP/1.1 200 OK\r\nProxy-Authenticate: Basic\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-T\r\n"
                + "Upgrade: h2c\r\nProxy-Authorization: x\r\nContent-Length: 0\r\n\r\n"
        ),
        Sample(
            text: "HTTP/1.1 200 OK\r\nConnection: Host, X-Forwarded-For, set-cookie, X-Forwarded-Proto\r\nSet-Cookie: a=b\r\n"
                + "Set-Cookie: c=d\r\nHost: x\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Proto: https\r\nContent-Length: 0\r\n\r\n"
        ),
        Sample(text: "HTTP/1.1 200 OK\r\nConnection: x-a,,x-b , \r\nX-A: 1\r\nX-B: 2\r\nX-C: 3\r\nContent-Length: 0\r\n\r\n"),
        Sample(text: "HTTP/1.1 500 Ori\u{EB}ntatieprobleem\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        Sample(text: "HTTP/1.1 301\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n"),
        Sample(text: "HTTP/1.1 200 Everything is fine\r\nX-Empty:\r\nX-Tab:\tv\t\r\nContent-Length: 3\r\n\r\n"),
        Sample(text: "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", requestIsHEAD: true),
        Sample(text: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", requestIsHEAD: true),
        Sample(text: "HTTP/1.1 200 OK\r\n\r\n", requestIsHEAD: true),
        Sample(text: "HTTP/1.0 200 OK\r\n\r\n", requestIsHEAD: true),
        Sample(
            text: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade, X-Y\r\nX-Y: 1\r\n"
                + "Sec-WebSocket-Accept: abc\r\nKeep-Alive: 1\r\n\r\n"
        ),
    ]

    static let extras: [[(name: String, value: String)]] = [
        [],
        [(name: "RateLimit-Policy", value: "\"r\";q=10;w=60"), (name: "RateLimit", value: "\"r\";r=9;t=60")],
    ]

    /// `name: value` with the name lower-cased and the value trimmed, sorted.
    static func summary(_ fields: [(String, String)]) -> [String] {
        fields.map { "\($0.0.lowercased()): \($0.1.trimmingCharacters(in: " \t"))" }.sorted()
    }

    /// The head NIO's client decoder makes of `text`, as the proxy gets it today.
    static func nioDecode(_ text: String, requestIsHEAD: Bool) throws -> HTTPResponseHead {
        let channel = EmbeddedChannel()
        defer { _ = try? channel.finish() }
        try channel.pipeline.syncOperations.addHandlers([
            HTTPRequestEncoder(),
            ByteToMessageHandler(HTTPResponseDecoder(leftOverBytesStrategy: .forwardBytes, informationalResponseStrategy: .forward)),
        ])
        try channel.writeOutbound(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: requestIsHEAD ? .HEAD : .GET, uri: "/")))
        try channel.writeOutbound(HTTPClientRequestPart.end(nil))
        while try channel.readOutbound(as: ByteBuffer.self) != nil {}
        var buffer = channel.allocator.buffer(capacity: text.utf8.count)
        buffer.writeString(text)
        try channel.writeInbound(buffer)
        while let part = try channel.readInbound(as: HTTPClientResponsePart.self) {
            if case .head(let head) = part { return head }
        }
        throw ReferenceError.noHead
    }

    enum ReferenceError: Error { case noHead }

    /// What `ProxyHandler.upstreamReceived(.head)` sends today (the 101 as the new path sends it, see the suite's
    /// comment), and whether it forced the client connection closed.
    static func reference(
        _ upstream: HTTPResponseHead,
        requestIsHEAD: Bool,
        clientMinor: Int,
        keepAlive requested: Bool,
        extra: [(name: String, value: String)]
    ) -> (fields: [(String, String)], forcedClose: Bool) {
        var headers = upstream.headers
        let code = upstream.status.code
        if code == 101 {
            HopByHop.strip(&headers, keepUpgrade: true)
            for (name, value) in extra { headers.add(name: name, value: value) }
            return (headers.map { ($0.name, $0.value) }, false)
        }
        HopByHop.strip(&headers, keepUpgrade: false)
        for (name, value) in extra { headers.add(name: name, value: value) }
        var keepAlive = requested
        let bodyless = requestIsHEAD || code == 204 || code == 304 || code < 200
        var forcedClose = false
        if clientMinor == 0 && !bodyless && !headers.contains(name: "content-length") {
            keepAlive = false
            forcedClose = true
        }
        if !bodyless && clientMinor >= 1 && !headers.contains(name: "content-length") {
            headers.add(name: "Transfer-Encoding", value: "chunked")
        }
        if clientMinor == 0 {
            if keepAlive { headers.add(name: "Connection", value: "keep-alive") }
        } else if !keepAlive {
            headers.add(name: "Connection", value: "close")
        }
        return (headers.map { ($0.name, $0.value) }, forcedClose)
    }

    /// Runs the writer on `text`: the bytes written, and the framing returned.
    static func write(
        _ sample: Sample,
        clientMinor: Int,
        keepAlive: Bool,
        extra: [(name: String, value: String)]
    ) throws -> (parsed: ParsedResponseHead, output: [UInt8], framing: ClientResponseFraming) {
        let bytes = Array(sample.text.utf8)
        var parser = HTTPResponseHeadParser(requestIsHEAD: sample.requestIsHEAD)
        guard case .head(let head) = bytes.withUnsafeBytes({ parser.parse($0) }) else {
            Issue.record("the parser refused \(sample.text.debugDescription)")
            throw ReferenceError.noHead
        }
        var buffer = ByteBuffer()
        let framing = bytes.withUnsafeBytes {
            ClientResponseHeadWriter.write(
                head,
                bytes: $0,
                clientMinorVersion: clientMinor,
                keepAlive: keepAlive,
                extraFields: extra,
                into: &buffer
            )
        }
        return (head, Array(buffer.readableBytesView), framing)
    }

    @Test func sameFieldsAsTheNIOHTTP1Rewrite() throws {
        for sample in Self.corpus {
            let nioHead = try Self.nioDecode(sample.text, requestIsHEAD: sample.requestIsHEAD)
            for clientMinor in [0, 1] {
                for keepAlive in [true, false] {
                    for extra in Self.extras {
                        let label = "\(sample.text.debugDescription) HTTP/1.\(clientMinor) keepAlive=\(keepAlive) extra=\(extra.count)"
                        let (upstream, output, framing) = try Self.write(sample, clientMinor: clientMinor, keepAlive: keepAlive, extra: extra)
                        let want = Self.reference(
                            nioHead,
                            requestIsHEAD: sample.requestIsHEAD,
                            clientMinor: clientMinor,
                            keepAlive: keepAlive,
                            extra: extra
                        )
                        var wantFields = want.fields
                        if upstream.framing == .chunked && clientMinor == 1 {
                            // Intended: the upstream's Transfer-Encoding passes verbatim with its chunked body.
                            wantFields.removeAll { $0.0.lowercased() == "transfer-encoding" }
                            wantFields += nioHead.headers.filter { $0.name.lowercased() == "transfer-encoding" }.map { ($0.name, $0.value) }
                        }

                        // Parse the output back, as a client would.
                        var back = HTTPResponseHeadParser(requestIsHEAD: sample.requestIsHEAD)
                        guard case .head(let written) = output.withUnsafeBytes({ back.parse($0) }) else {
                            Issue.record("output refused: \(String(decoding: output, as: UTF8.self).debugDescription) for \(label)")
                            continue
                        }
                        #expect(written.length == output.count, "\(label)")
                        func text(_ range: Range<Int>) -> String { String(decoding: output[range], as: UTF8.self) }
                        let gotFields = written.fields.map { (text($0.name), text($0.value)) }
                        #expect(Self.summary(gotFields) == Self.summary(wantFields), "\(label)")

                        // Status line: the client's version, the code, the reason exactly as received.
                        #expect(written.minorVersion == clientMinor, "\(label)")
                        #expect(written.status == Int(nioHead.status.code), "\(label)")
                        let input = Array(sample.text.utf8)
                        #expect(Array(output[written.reason]) == Array(input[upstream.reason]), "\(label)")

                        // Framing: forced close exactly where today's path forces it, and the body the client will
                        // read is the one the framing sends.
                        #expect(framing.forcesClose == want.forcedClose, "\(label)")
                        switch (upstream.framing, framing) {
                        case (.none, .asReceived):
                            #expect(written.framing == .none || upstream.isSwitchingProtocols, "\(label)")
                        case (.length(let n), .asReceived):
                            #expect(written.framing == .length(n), "\(label)")
                        case (.chunked, .asReceived), (.untilClose, .chunkEncode):
                            #expect(clientMinor == 1 && written.framing == .chunked, "\(label)")
                        case (.chunked, .closeDelimited), (.untilClose, .closeDelimited):
                            #expect(clientMinor == 0 && written.framing == .untilClose, "\(label)")
                            #expect(framing.delivery == .dataOnly)
                        default:
                            Issue.record("framing \(framing) for \(upstream.framing): \(label)")
                        }
                        // NIO's decoder takes what Sluice sends too.
                        #expect(throws: Never.self, "\(label)") {
                            _ = try Self.nioDecode(String(decoding: output, as: UTF8.self), requestIsHEAD: sample.requestIsHEAD)
                        }
                    }
                }
            }
        }
    }

    @Test func connectionNamedFieldsAreDroppedExceptProtectedOnes() throws {
        let sample = Sample(
            text: "HTTP/1.1 200 OK\r\nConnection: X-Secret, Content-Length, Transfer-Encoding, Host, Close\r\n"
                + "X-Secret: s\r\nX-Kept: k\r\nHost: h\r\nContent-Length: 2\r\n\r\n"
        )
        let (_, output, framing) = try Self.write(sample, clientMinor: 1, keepAlive: true, extra: [])
        #expect(framing == .asReceived)
        #expect(String(decoding: output, as: UTF8.self) == "HTTP/1.1 200 OK\r\nX-Kept: k\r\nHost: h\r\nContent-Length: 2\r\n\r\n")
    }

    @Test func exactBytesForEachFraming() throws {
        func out(_ text: String, minor: Int, keepAlive: Bool, head: Bool = false) throws -> (String, ClientResponseFraming) {
            let r = try Self.write(Sample(text: text, requestIsHEAD: head), clientMinor: minor, keepAlive: keepAlive, extra: [("RateLimit", "x")])
            return (String(decoding: r.output, as: UTF8.self), r.framing)
        }
        #expect(
            try out("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nConnection: keep-alive\r\n\r\n", minor: 1, keepAlive: false)
                == ("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nRateLimit: x\r\nConnection: close\r\n\r\n", .asReceived)
        )
        #expect(
            try out("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", minor: 0, keepAlive: true)
                == ("HTTP/1.0 200 OK\r\nRateLimit: x\r\n\r\n", .closeDelimited)
        )
        #expect(
            try out("HTTP/1.0 200 OK\r\n\r\n", minor: 1, keepAlive: true)
                == ("HTTP/1.1 200 OK\r\nRateLimit: x\r\nTransfer-Encoding: chunked\r\n\r\n", .chunkEncode)
        )
        #expect(
            try out("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", minor: 0, keepAlive: true)
                == ("HTTP/1.0 200 OK\r\nContent-Length: 3\r\nRateLimit: x\r\nConnection: keep-alive\r\n\r\n", .asReceived)
        )
        #expect(
            try out("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", minor: 1, keepAlive: true, head: true)
                == ("HTTP/1.1 200 OK\r\nRateLimit: x\r\n\r\n", .asReceived)
        )
        #expect(
            try out("HTTP/1.1 204\r\n\r\n", minor: 1, keepAlive: true) == ("HTTP/1.1 204 \r\nRateLimit: x\r\n\r\n", .asReceived)
        )
        #expect(
            try out("HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\nX-A: 1\r\n\r\n", minor: 1, keepAlive: false)
                == ("HTTP/1.1 101 Switching Protocols\r\nX-A: 1\r\nUpgrade: websocket\r\nConnection: upgrade\r\nRateLimit: x\r\n\r\n", .asReceived)
        )
    }

    @Test func chunkEncodingHelpers() throws {
        var buffer = ByteBuffer()
        for length in [1, 9, 10, 15, 16, 255, 4096, 65_535, 1 << 20, Int(UInt32.max) + 1] {
            buffer.clear()
            ClientResponseHeadWriter.writeChunkHeader(length: length, into: &buffer)
            #expect(String(buffer: buffer) == String(length, radix: 16) + "\r\n")
        }
        // A body encoded with the helpers is what ChunkedBodyParser reads back.
        buffer.clear()
        let pieces = ["hello", " ", String(repeating: "z", count: 300)]
        for piece in pieces {
            ClientResponseHeadWriter.writeChunkHeader(length: piece.utf8.count, into: &buffer)
            buffer.writeString(piece)
            ClientResponseHeadWriter.writeChunkDataEnd(into: &buffer)
        }
        ClientResponseHeadWriter.writeLastChunk(into: &buffer)
        var parser = ChunkedBodyParser()
        var data: [UInt8] = []
        let bytes = Array(buffer.readableBytesView)
        let result = bytes.withUnsafeBytes { pointer in parser.parse(pointer) { data += pointer[$0] } }
        #expect(result == .end(bytes.count))
        #expect(String(decoding: data, as: UTF8.self) == pieces.joined())
    }
}

extension String {
    fileprivate func trimmingCharacters(in set: String) -> String {
        let scalars = Set(set.unicodeScalars)
        var s = Substring(self)
        while let first = s.unicodeScalars.first, scalars.contains(first) { s = s.dropFirst() }
        while let last = s.unicodeScalars.last, scalars.contains(last) { s = s.dropLast() }
        return String(s)
    }
}
