import NIOCore
import NIOHTTP1

/// Bounds chunk extensions and trailers in a client's request stream, in front of NIO's HTTP decoder.
///
/// `HTTPRequestDecoder` (llhttp) skips chunk extensions without any bound and gives no access to them, so
/// a client could stream them forever (Node CVE-2024-22019, Go CVE-2023-39326). This handler sits right
/// before the decoder (after TLS, so it sees plain bytes), runs every inbound buffer through a
/// ``ChunkedFramingScanner`` and passes the same buffer on, unchanged and uncopied.
///
/// Consumes and produces `ByteBuffer`. When the scanner refuses the stream, the bytes before the
/// offending one are passed on (a slice, still no copy), then a ``ChunkedFramingError`` is fired for
/// ``ProxyHandler`` to answer (400, 413 or 431, or a close once a response has started); every later
/// byte is dropped, so the decoder never sees any of it. This handler closes nothing itself.
final class ChunkedFramingGuard: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private var scanner: ChunkedFramingScanner
    private var refused = false
    private let shared: ProxyShared

    /// - Parameters:
    ///   - shared: the server's state; a chunked request reads its `max_body_bytes` from the current snapshot
    ///     when its head ends, as ``ProxyHandler`` does.
    ///   - maxHeaderBytes: `server.max_header_bytes`, the bound of a trailer section.
    init(shared: ProxyShared, maxHeaderBytes: Int) {
        self.shared = shared
        self.scanner = ChunkedFramingScanner(limits: .init(maxTrailerBytes: maxHeaderBytes))
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if self.refused { return }
        guard self.scanner.isFollowing else {
            context.fireChannelRead(data)
            return
        }
        let buffer = self.unwrapInboundIn(data)
        // Scanned on a local copy of the value: no exclusivity check per byte.
        var scanner = self.scanner
        let shared = self.shared
        let verdict = buffer.withUnsafeReadableBytes { bytes in
            scanner.scan(bytes) { shared.current().maxBodyBytes }
        }
        self.scanner = scanner
        switch verdict {
        case .accepted:
            context.fireChannelRead(data)
        case .rejected(let rejection):
            self.refused = true
            if rejection.offset > 0, let accepted = buffer.getSlice(at: buffer.readerIndex, length: rejection.offset) {
                context.fireChannelRead(self.wrapInboundOut(accepted))
            }
            context.fireErrorCaught(ChunkedFramingError(rejection))
        }
    }
}

/// A request stream refused by ``ChunkedFramingGuard``; ``ProxyHandler`` answers it with ``status``.
struct ChunkedFramingError: Error, Equatable, CustomStringConvertible {
    var violation: ChunkedFramingScanner.Violation
    /// The refused request, counting request heads on the connection from 1.
    var request: Int

    init(_ rejection: ChunkedFramingScanner.Rejection) {
        self.violation = rejection.violation
        self.request = rejection.request
    }

    init(violation: ChunkedFramingScanner.Violation, request: Int) {
        self.violation = violation
        self.request = request
    }

    /// 413 when the body is too large, as for data; 431 for trailers, as for a head; else 400.
    var status: HTTPResponseStatus {
        switch self.violation {
        case .chunkLineTooLong, .tooManyExtensionBytes: return .badRequest
        case .bodyTooLarge: return .payloadTooLarge
        case .trailersTooLarge: return .requestHeaderFieldsTooLarge
        }
    }

    var description: String {
        switch self.violation {
        case .chunkLineTooLong: return "chunk-size line too long (request \(self.request))"
        case .tooManyExtensionBytes: return "too many chunk-extension bytes (request \(self.request))"
        case .bodyTooLarge: return "request body too large with its chunk extensions (request \(self.request))"
        case .trailersTooLarge: return "trailer section too large (request \(self.request))"
        }
    }
}
