import NIOCore
import NIOHPACK
import NIOHTTP2
import SluiceHTTP1

/// Turns the HTTP/1.1 response bytes a stream's ``ProxyConnectionHandler`` writes into HTTP/2 frame payloads
/// (issue 13): a HEADERS frame per head (interim 1xx heads included), DATA frames for the body, `END_STREAM` on the
/// frame that ends the response.
///
/// The bytes are Sluice's own output, but they are read with the same strict parsers as an upstream's response
/// (``HTTPResponseHeadParser``, ``ChunkedBodyParser``): the head's framing says where the response ends. The
/// connection-specific fields (`Connection`, `Keep-Alive`, `Proxy-Connection`, `Transfer-Encoding`, `Upgrade`,
/// `TE`, `Trailer`) are dropped (RFC 9113 §8.2.2), names are lowercased, and a chunked body is sent as its data
/// only; its trailer section, if any, is dropped. A value type: fed by ``HTTP2StreamBridgeHandler`` only.
struct HTTP2ResponseFrames {
    private enum State {
        /// Bytes of a head (in ``headBytes``) until the parser completes it.
        case head
        /// `remaining` bytes of a `Content-Length` body.
        case length(remaining: Int)
        /// A chunked body, through ``chunked``.
        case chunked
        /// Everything until the handler closes the stream.
        case untilClose
        /// The response ended (`END_STREAM` sent): nothing more is taken.
        case ended
    }

    private var state = State.head
    private var parser: HTTPResponseHeadParser
    private var headBytes: ByteBuffer?
    private var chunked = ChunkedBodyParser()

    /// - Parameter requestIsHEAD: the request was `HEAD`: the response has no body whatever its fields say.
    init(requestIsHEAD: Bool) {
        self.parser = HTTPResponseHeadParser(maxHeadBytes: 1 << 20, maxFields: 1024, requestIsHEAD: requestIsHEAD)
    }

    /// The response ended; the last payload returned carried `END_STREAM`.
    var hasEnded: Bool {
        if case .ended = self.state { return true }
        return false
    }

    /// The head was sent and the body goes until the close: the close ends it (with an empty `END_STREAM` DATA frame).
    var endsAtClose: Bool {
        if case .untilClose = self.state { return true }
        return false
    }

    /// Which bytes could not be read as an HTTP/1.1 response (never expected: the writer is Sluice's own code).
    struct Malformed: Error {}

    /// Converts one write; `emit` gets the payloads in order.
    mutating func convert(_ buffer: ByteBuffer, emit: (HTTP2Frame.FramePayload) -> Void) throws {
        var buffer = buffer
        while buffer.readableBytes > 0 {
            switch self.state {
            case .ended:
                return
            case .head:
                if self.headBytes == nil || self.headBytes!.readableBytes == 0 {
                    self.headBytes = buffer
                } else {
                    self.headBytes!.writeBuffer(&buffer)
                }
                buffer = ByteBuffer()
                let result = self.headBytes!.withUnsafeReadableBytes { self.parser.parse($0) }
                switch result {
                case .needMoreBytes:
                    return
                case .error:
                    throw Malformed()
                case .head(let head):
                    var bytes = self.headBytes!
                    self.headBytes = nil
                    let headSlice = bytes.readSlice(length: head.length)!
                    buffer = bytes
                    emit(self.headPayload(head, headSlice))
                }
            case .length(let remaining):
                let count = min(remaining, buffer.readableBytes)
                let slice = buffer.readSlice(length: count)!
                let end = count == remaining
                self.state = end ? .ended : .length(remaining: remaining - count)
                emit(.data(.init(data: .byteBuffer(slice), endStream: end)))
            case .chunked:
                var pieces: [Range<Int>] = []
                let result = buffer.withUnsafeReadableBytes { bytes in
                    self.chunked.parse(bytes) { pieces.append($0) }
                }
                let base = buffer.readerIndex
                for piece in pieces where !piece.isEmpty {
                    emit(.data(.init(data: .byteBuffer(buffer.getSlice(at: base + piece.lowerBound, length: piece.count)!))))
                }
                switch result {
                case .needMoreBytes:
                    return
                case .end:
                    self.state = .ended
                    emit(.data(.init(data: .byteBuffer(ByteBuffer()), endStream: true)))
                    return
                case .error:
                    throw Malformed()
                }
            case .untilClose:
                let slice = buffer
                buffer = ByteBuffer()
                emit(.data(.init(data: .byteBuffer(slice))))
            }
        }
    }

    /// The last payload of a body that ends at the close.
    mutating func closePayload() -> HTTP2Frame.FramePayload? {
        guard self.endsAtClose else { return nil }
        self.state = .ended
        return .data(.init(data: .byteBuffer(ByteBuffer()), endStream: true))
    }

    private mutating func headPayload(_ head: ParsedResponseHead, _ bytes: ByteBuffer) -> HTTP2Frame.FramePayload {
        var headers = HPACKHeaders()
        headers.reserveCapacity(head.fields.count + 1)
        headers.add(name: ":status", value: String(head.status))
        bytes.withUnsafeReadableBytes { raw in
            for field in head.fields where !Self.isConnectionSpecific(raw, field.name) {
                let name = String(decoding: UnsafeRawBufferPointer(rebasing: raw[field.name]), as: UTF8.self).lowercased()
                let value = String(decoding: UnsafeRawBufferPointer(rebasing: raw[field.value]), as: UTF8.self)
                headers.add(name: name, value: value)
            }
        }
        if head.isInformational {
            // The final head follows, for the same request.
            self.parser.reset(requestIsHEAD: self.parser.requestIsHEAD)
            return .headers(.init(headers: headers))
        }
        switch head.framing {
        case .none, .length(0):
            self.state = .ended
        case .length(let length):
            self.state = .length(remaining: length)
        case .chunked:
            self.state = .chunked
        case .untilClose:
            self.state = .untilClose
        }
        return .headers(.init(headers: headers, endStream: self.hasEnded))
    }

    private static func isConnectionSpecific(_ bytes: UnsafeRawBufferPointer, _ name: Range<Int>) -> Bool {
        switch name.count {
        case 2: return HTTPBytes.equalsLowercased(bytes, name, "te")
        case 7: return HTTPBytes.equalsLowercased(bytes, name, "upgrade") || HTTPBytes.equalsLowercased(bytes, name, "trailer")
        case 10: return HTTPBytes.equalsLowercased(bytes, name, "connection") || HTTPBytes.equalsLowercased(bytes, name, "keep-alive")
        case 16: return HTTPBytes.equalsLowercased(bytes, name, "proxy-connection")
        case 17: return HTTPBytes.equalsLowercased(bytes, name, "transfer-encoding")
        default: return false
        }
    }
}
