import NIOCore
import NIOHTTP1

/// The parts of a response head Sluice writes itself (local answers, blocked requests): one place for the status
/// line and for the framing and connection fields that close it.
enum LocalResponseHead {
    /// `HTTP/1.x CODE REASON CRLF`.
    static func writeStatusLine(_ status: HTTPResponseStatus, minorVersion: Int, into buffer: inout ByteBuffer) {
        buffer.writeStaticString(minorVersion == 0 ? "HTTP/1.0 " : "HTTP/1.1 ")
        RateLimitFieldValues.writeDecimal(Int64(status.code), into: &buffer)
        buffer.writeInteger(UInt8(ascii: " "))
        buffer.writeString(status.reasonPhrase)
        buffer.writeStaticString("\r\n")
    }

    /// `Content-Length`, then `Connection: close` (HTTP/1.1) or `Connection: keep-alive` (HTTP/1.0) as needed, and
    /// the empty line that ends the head.
    static func writeEnd(bodyLength: Int, minorVersion: Int, close: Bool, into buffer: inout ByteBuffer) {
        buffer.writeStaticString("Content-Length: ")
        RateLimitFieldValues.writeDecimal(Int64(bodyLength), into: &buffer)
        buffer.writeStaticString("\r\n")
        if close {
            if minorVersion >= 1 { buffer.writeStaticString("Connection: close\r\n") }
        } else if minorVersion == 0 {
            buffer.writeStaticString("Connection: keep-alive\r\n")
        }
        buffer.writeStaticString("\r\n")
    }
}
