import SluiceHTTP1
import Testing

/// The offsets and flags ``HTTPResponseHeadParser`` reports (what the differential tests cannot see: NIOHTTP1 keeps
/// no offsets and rewrites the reason phrase).
@Suite("HTTPResponseHeadParser")
struct HTTPResponseHeadParserTests {
    static func parse(_ text: String, requestIsHEAD: Bool = false) -> (ParsedResponseHead?, HTTPHeadError?, [UInt8]) {
        let bytes = Array(text.utf8)
        var parser = HTTPResponseHeadParser(requestIsHEAD: requestIsHEAD)
        switch bytes.withUnsafeBytes({ parser.parse($0) }) {
        case .head(let head): return (head, nil, bytes)
        case .error(let error): return (nil, error, bytes)
        case .needMoreBytes: return (nil, nil, bytes)
        }
    }

    static func text(_ bytes: [UInt8], _ range: Range<Int>) -> String { String(decoding: bytes[range], as: UTF8.self) }

    @Test func offsetsOfStatusReasonFieldsAndLength() throws {
        let text =
            "\r\nHTTP/1.1 404 Not  Found \r\nContent-Type:  text/plain \r\nX-Empty:\r\nContent-Length: 3\r\n\r\nabc"
        let (parsed, _, bytes) = Self.parse(text)
        let head = try #require(parsed)
        #expect(head.status == 404)
        #expect(Self.text(bytes, head.statusRange) == "404")
        // The reason as sent, up to the CR (llhttp's span too).
        #expect(Self.text(bytes, head.reason) == "Not  Found ")
        #expect(head.minorVersion == 1)
        #expect(head.fields.map { Self.text(bytes, $0.name) } == ["Content-Type", "X-Empty", "Content-Length"])
        #expect(head.fields.map { Self.text(bytes, $0.value) } == ["text/plain", "", "3"])
        #expect(head.length == text.utf8.count - 3)
        #expect(head.framing == .length(3))
        #expect(head.isKeepAlive)
    }

    @Test func emptyAndMissingReason() throws {
        let (withSpace, _, bytes1) = Self.parse("HTTP/1.1 200 \r\n\r\n")
        #expect(try #require(withSpace).reason.isEmpty)
        #expect(Self.text(bytes1, try #require(withSpace).statusRange) == "200")
        let (without, _, _) = Self.parse("HTTP/1.1 204\r\n\r\n")
        #expect(try #require(without).reason.isEmpty)
        #expect(try #require(without).framing == .none)
    }

    @Test func framingPerStatusAndMethod() {
        func framing(_ text: String, head: Bool = false) -> ParsedResponseHead.Framing? {
            Self.parse(text, requestIsHEAD: head).0?.framing
        }
        #expect(framing("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n", head: true) == ParsedResponseHead.Framing.none)
        #expect(
            framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", head: true)
                == ParsedResponseHead.Framing.none
        )
        #expect(framing("HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n") == ParsedResponseHead.Framing.none)
        #expect(framing("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n") == ParsedResponseHead.Framing.none)
        #expect(framing("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n") == .length(0))
        #expect(framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, CHUNKED\r\n\r\n") == .chunked)
        #expect(framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n") == .untilClose)
        #expect(
            framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n") == .untilClose
        )
        #expect(framing("HTTP/1.1 200 OK\r\n\r\n") == .untilClose)
    }

    @Test func refusals() {
        func error(_ text: String) -> HTTPHeadError? { Self.parse(text).1 }
        #expect(
            error("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")
                == .malformed(.lengthAndTransferEncoding)
        )
        #expect(
            error("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n")
                == .malformed(.repeatedContentLength)
        )
        #expect(
            error("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n") == .malformed(.transferEncoding)
        )
        #expect(error("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\t\r\n\r\n") == .malformed(.transferEncoding))
        #expect(
            error("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                == .malformed(.transferEncodingInHTTP10Response)
        )
        #expect(error("HTTP/1.1 204 No Content\r\nContent-Length: 1\r\n\r\n") == .malformed(.bodyOnBodilessStatus))
        #expect(
            error("HTTP/1.1 100 Continue\r\nTransfer-Encoding: chunked\r\n\r\n") == .malformed(.bodyOnBodilessStatus)
        )
        #expect(
            error("HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n\r\n")
                == .malformed(.switchingWithoutUpgrade)
        )
        #expect(error("HTTP/1.1 099 Low\r\n\r\n") == .malformed(.statusCode))
        #expect(error("HTTP/1.1 600 High\r\n\r\n") == .malformed(.statusCode))
        #expect(error("HTTP/1.1 200 O\u{0}K\r\n\r\n") == .malformed(.reasonPhrase))
        #expect(error("HTTP/2.0 200 OK\r\n\r\n") == .versionNotSupported)
        #expect(error("HTTP/1.1 200 OK\nX: y\r\n\r\n") == .malformed(.bareLineFeed))
        #expect(error("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n") == .malformed(.obsoleteLineFolding))
        #expect(error("HTTP/1.1 200 OK\r\nX : a\r\n\r\n") == .malformed(.whitespaceBeforeColon))
        var fields = "HTTP/1.1 200 OK\r\n"
        for i in 0..<129 { fields += "X-\(i): v\r\n" }
        #expect(error(fields + "\r\n") == .tooLarge)
    }

    @Test func connectionOptionsAndUpgrade() throws {
        let (switching, _, bytes) = Self.parse(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        )
        let head = try #require(switching)
        #expect(head.isSwitchingProtocols && head.connectionUpgrade && !head.isKeepAlive)
        #expect(Self.text(bytes, head.fields[try #require(head.upgradeField)].value) == "websocket")
        #expect(
            try #require(Self.parse("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").0).isKeepAlive
                == false
        )
        #expect(try #require(Self.parse("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").0).isKeepAlive == false)
        #expect(
            try #require(Self.parse("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n").0)
                .isKeepAlive
        )
        #expect(try #require(Self.parse("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\n").0).isKeepAlive == false)
    }

    @Test func informationalThenFinalResponseToTheSameHEAD() throws {
        let text = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"
        let bytes = Array(text.utf8)
        var parser = HTTPResponseHeadParser(requestIsHEAD: true)
        guard case .head(let first) = bytes.withUnsafeBytes({ parser.parse($0) }) else {
            Issue.record("no 100")
            return
        }
        #expect(first.isInformational && first.framing == .none && first.length == 25)
        parser.reset(requestIsHEAD: true)
        guard case .head(let final) = bytes[first.length...].withUnsafeBytes({ parser.parse($0) }) else {
            Issue.record("no 200")
            return
        }
        #expect(final.status == 200 && final.framing == .none && final.length == bytes.count - first.length)
    }
}
