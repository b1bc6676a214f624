import Foundation
import SluiceDifferential
import SluiceHTTP1
import Testing

/// Inputs the `differential` fuzz target (Fuzz/, docs/fuzzing.md) broke, kept as files in `Regressions/`
/// (`differential-*`) and fed through the same comparisons with NIOHTTP1's decoder (llhttp) that target makes.
@Suite struct DifferentialRegressionTests {
    static func regressions(_ prefix: String) throws -> [(name: String, bytes: [UInt8])] {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Regressions")
        return try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasPrefix(prefix) }.sorted()
            .map { name in (name, Array(try Data(contentsOf: folder.appendingPathComponent(name)))) }
    }

    @Test func regressionInputsAreNeverLaxerThanLLHTTP() throws {
        let inputs = try Self.regressions("differential-")
        #expect(inputs.count >= 3)
        for (name, bytes) in inputs {
            #expect(RequestHeadDifferential.compare(bytes) == nil, "\(name): head")
            #expect(ChunkedBodyDifferential.compare(bytes).map { "\(name): \($0)" } == nil)
            #expect(PipelineDifferential.compare(bytes).map { "\(name): \($0)" } == nil)
        }
    }

    /// `differential-trailer-connection-close`: llhttp reads `Connection: close` in a trailer as if it were in the
    /// head, so it does not read the request pipelined after the message, while Sluice, which read a chunked body's
    /// trailers as opaque, read it as the next request. A `Connection` trailer is refused now.
    @Test func llhttpDoesNotReadTheNextRequestAfterAConnectionCloseTrailer() throws {
        let inputs = try Self.regressions("differential-trailer-connection")
        #expect(inputs.count == 1)
        for (name, bytes) in inputs {
            let (messages, _) = PipelineDifferential.reference(bytes)
            #expect(messages.count == 1, "\(name): llhttp read \(messages.count) messages")
            guard case .accepted(_, let length) = SluiceOutcome.parse(bytes) else {
                Issue.record("\(name): the head is refused")
                continue
            }
            var parser = ChunkedBodyParser()
            let body = Array(bytes[length...])
            #expect(body.withUnsafeBytes { parser.parse($0) { _ in } } == .error(.malformed), "\(name)")
        }
    }

    /// `differential-trailer-*`: a `Transfer-Encoding` or `Content-Length` field in the trailer section ended the body
    /// for Sluice, while llhttp refuses the request; `Connection` there changes what llhttp does after the message.
    /// Refused in every split; other trailer names stay accepted.
    @Test(arguments: [
        ("0\r\nTransfer-Encoding:d\r\n\r\n", true),
        ("0\r\ntransfer-encoding: chunked\r\n\r\n", true),
        ("5\r\nhello\r\n0\r\nX: 1\r\nContent-Length: 5\r\n\r\n", true),
        ("0\r\nCONTENT-LENGTH:0\r\n\r\n", true),
        ("0\r\nTransfer-Encodings: x\r\n\r\n", false),
        ("0\r\nTransfer-Encodin: x\r\n\r\n", false),
        ("0\r\nX-Content-Length: 5\r\n\r\n", false),
        ("0\r\nContent-Lengt: 5\r\nContent-Type: a\r\n\r\n", false),
        ("0\r\nConnection: close\r\n\r\n", true),
        ("0\r\nX: y\r\nconnection: keep-alive\r\n\r\n", true),
        ("0\r\nUpgrade: h2c\r\n\r\n", false),
        ("0\r\nConnections: close\r\nConnectio: close\r\n\r\n", false),
    ])
    func framingFieldsInTrailersAreRefused(body: String, refused: Bool) {
        let bytes = Array(body.utf8)
        for piece in [bytes.count, 1, 2, 5] {
            var parser = ChunkedBodyParser()
            var result = ChunkedBodyParser.Result.needMoreBytes
            var offset = 0
            while offset < bytes.count, case .needMoreBytes = result {
                let read = Array(bytes[offset..<min(bytes.count, offset + piece)])
                result = read.withUnsafeBytes { parser.parse($0) { _ in } }
                if case .end(let end) = result { result = .end(offset + end) }
                offset += read.count
            }
            #expect(result == (refused ? .error(.malformed) : .end(bytes.count)), "\(body.debugDescription) in pieces of \(piece)")
        }
        let request = Array("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".utf8) + bytes
        if refused && !body.lowercased().contains("connection") {
            // llhttp refuses framing fields in trailers too: the refusal is not stricter than it needs to be.
            guard case .refused = ChunkedBodyDifferential.reference(request) else {
                Issue.record("llhttp accepts \(body.debugDescription)")
                return
            }
        }
        #expect(ChunkedBodyDifferential.compare(request) == nil)
    }
}

/// `differential-connect-chunked` (the differential target's 20-minute run): llhttp takes what follows a CONNECT
/// head as tunnel bytes whatever `Transfer-Encoding` or `Content-Length` say, while Sluice framed a chunked body
/// after it. RFC 9110 §9.3.6: a CONNECT request has no content; such a head is refused now (400; the proxy answers a
/// CONNECT without content 405 and closes, as before).
@Suite struct ConnectContentRegressionTests {
    static func parse(_ text: String) -> HTTPRequestHeadParser.Result {
        var parser = HTTPRequestHeadParser()
        return Array(text.utf8).withUnsafeBytes { parser.parse($0) }
    }

    @Test func aConnectWithContentIsRefused() {
        for framing in ["Transfer-Encoding: chunked\r\n", "Content-Length: 5\r\n"] {
            let result = Self.parse("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\(framing)\r\n")
            #expect(result == .error(.malformed(.contentOnConnect)), "\(framing)")
        }
    }

    @Test func aConnectWithoutContentIsStillRead() {
        for framing in ["", "Content-Length: 0\r\n"] {
            guard case .head(let head) = Self.parse("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\(framing)\r\n")
            else {
                Issue.record("refused: \(framing)")
                continue
            }
            #expect(head.framing == .none || head.framing == .length(0))
        }
    }
}
