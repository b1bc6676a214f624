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
}
