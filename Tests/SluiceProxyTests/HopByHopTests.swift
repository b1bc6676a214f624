import NIOHTTP1
import Testing

@testable import SluiceProxy

@Suite("HopByHop")
struct HopByHopTests {
    @Test func removesStandardAndConnectionListedHeaders() {
        var headers: HTTPHeaders = [
            "Host": "a", "Connection": "close, X-Foo", "X-Foo": "1", "Keep-Alive": "timeout=5", "TE": "trailers",
            "Trailer": "X", "Transfer-Encoding": "chunked", "Proxy-Authorization": "Basic x",
            "Proxy-Authenticate": "Basic", "Proxy-Connection": "keep-alive", "Upgrade": "h2c", "Accept": "*/*",
        ]
        HopByHop.strip(&headers, keepUpgrade: false)
        #expect(headers.map(\.name) == ["Host", "Accept"])
    }

    @Test func connectionTokensAreCaseInsensitive() {
        var headers: HTTPHeaders = ["Connection": "X-BAR", "x-bar": "1", "X-Keep": "2"]
        HopByHop.strip(&headers, keepUpgrade: false)
        #expect(headers.map(\.name) == ["X-Keep"])
    }

    @Test func keepsUpgradeForTunnels() {
        var headers: HTTPHeaders = ["Connection": "keep-alive, Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Key": "k"]
        HopByHop.strip(&headers, keepUpgrade: true)
        #expect(headers["upgrade"] == ["websocket"])
        #expect(headers["connection"] == ["upgrade"])
        #expect(headers["sec-websocket-key"] == ["k"])
    }

    @Test func untouchedWhenNothingToRemove() {
        var headers: HTTPHeaders = ["Host": "a", "Accept": "*/*", "X-Te": "1"]
        HopByHop.strip(&headers, keepUpgrade: false)
        #expect(headers.map(\.name) == ["Host", "Accept", "X-Te"])
    }

    @Test func connectionNeverNamesFramingHostOrForwardingHeaders() {
        var headers: HTTPHeaders = [
            "Host": "a", "Connection": "close, Content-Length, TRANSFER-ENCODING, host, X-Forwarded-For, x-forwarded-proto, X-Forwarded-Host, X-Other",
            "Content-Length": "3", "X-Forwarded-For": "1.2.3.4", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "h",
            "X-Other": "1",
        ]
        HopByHop.strip(&headers, keepUpgrade: false)
        #expect(headers.map(\.name) == ["Host", "Content-Length", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"])
    }

    @Test func requestFramingIsRestoredAfterStripping() {
        var headers: HTTPHeaders = ["Host": "a", "Transfer-Encoding": "gzip, chunked"]
        let framing = RequestFraming(head: HTTPRequestHead(version: .http1_1, method: .POST, uri: "/", headers: headers))
        #expect(framing == .chunked)
        HopByHop.strip(&headers, keepUpgrade: false)
        #expect(framing?.isExplicit(in: headers) == false)
        framing?.apply(to: &headers)
        #expect(headers["transfer-encoding"] == ["chunked"])
        #expect(framing?.isExplicit(in: headers) == true)
        let length = RequestFraming(head: HTTPRequestHead(version: .http1_1, method: .POST, uri: "/", headers: ["Content-Length": "12"]))
        #expect(length == .length(12))
        // NIO keeps the whitespace llhttp allows around the digits.
        let padded = RequestFraming(head: HTTPRequestHead(version: .http1_1, method: .POST, uri: "/", headers: ["Content-Length": " 12 "]))
        #expect(padded == .length(12))
        #expect(RequestFraming(head: HTTPRequestHead(version: .http1_1, method: .POST, uri: "/", headers: ["Content-Length": "+12"])) == nil)
        #expect(RequestFraming(head: HTTPRequestHead(version: .http1_1, method: .GET, uri: "/", headers: [:])) == RequestFraming.none)
    }
}
