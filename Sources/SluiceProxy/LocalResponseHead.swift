import NIOCore
import NIOHTTP1

/// The parts of a response head Sluice writes itself (local answers, blocked requests): one place for the status
/// line and for the framing and connection fields that close it.
enum LocalResponseHead {
    /// `HTTP/1.x CODE REASON CRLF`.
    static func writeStatusLine(_ status: HTTPResponseStatus, minorVersion: Int, into buffer: inout ByteBuffer) {
        buffer.writeHeadBytes(estimate: 64) { Self.writeStatusLine(status, minorVersion: minorVersion, into: &$0) }
    }

    static func writeStatusLine(_ status: HTTPResponseStatus, minorVersion: Int, into out: inout HeadBytes) {
        out.append(minorVersion == 0 ? "HTTP/1.0 " : "HTTP/1.1 ")
        out.appendDecimal(Int64(status.code))
        out.append(byte: UInt8(ascii: " "))
        out.append(status.reasonPhrase)
        out.append("\r\n")
    }

    /// `Content-Length`, then `Connection: close` (HTTP/1.1) or `Connection: keep-alive` (HTTP/1.0) as needed, and
    /// the empty line that ends the head.
    static func writeEnd(bodyLength: Int, minorVersion: Int, close: Bool, into buffer: inout ByteBuffer) {
        buffer.writeHeadBytes(estimate: 64) {
            Self.writeEnd(bodyLength: bodyLength, minorVersion: minorVersion, close: close, into: &$0)
        }
    }

    static func writeEnd(bodyLength: Int, minorVersion: Int, close: Bool, into out: inout HeadBytes) {
        out.append("Content-Length: ")
        out.appendDecimal(Int64(bodyLength))
        out.append("\r\n")
        if close {
            if minorVersion >= 1 { out.append("Connection: close\r\n") }
        } else if minorVersion == 0 {
            out.append("Connection: keep-alive\r\n")
        }
        out.append("\r\n")
    }
}
