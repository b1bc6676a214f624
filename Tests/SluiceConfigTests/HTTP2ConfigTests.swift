import Testing

@testable import SluiceConfig

/// `server.http2`, `server.h2c`, `server.http2_max_concurrent_streams` (issue 13).
@Suite("HTTP/2 configuration")
struct HTTP2ConfigTests {
    static func load(_ yaml: String) throws -> SluiceConfiguration {
        try ConfigLoader.parse(yaml: yaml, file: "test.yaml", environment: [:])
    }

    @Test func defaults() throws {
        let configuration = try Self.load("upstream:\n  url: http://127.0.0.1:3000\n")
        #expect(configuration.server.http2)
        #expect(!configuration.server.h2c)
        #expect(configuration.server.http2MaxConcurrentStreams == 100)
    }

    @Test func setValues() throws {
        let configuration = try Self.load(
            "server:\n  http2: true\n  h2c: on\n  http2_max_concurrent_streams: 32\nupstream:\n  url: http://127.0.0.1:3000\n"
        )
        #expect(configuration.server.h2c)
        #expect(configuration.server.http2MaxConcurrentStreams == 32)
    }
}
