import NIOCore
import NIOEmbedded
import NIOHTTP1
import SluiceDifferential
import SluiceHTTP1

/// What NIOHTTP1's `HTTPResponseDecoder` (llhttp) makes of an upstream's bytes: the reference the response-head parser
/// is held against.
enum ResponseReference {
    struct Head: Equatable {
        var minorVersion: Int
        var status: Int
        var fields: [ReferenceOutcome.Field]
        /// Compared only where llhttp decides it after the head is known to have no body (not for `HEAD`, whose
        /// missing body llhttp learns after computing it, nor for 101).
        var isKeepAlive: Bool?
    }

    enum Outcome: Equatable {
        case accepted(Head)
        case rejected(String)
        /// The bytes end before the head does.
        case incomplete
    }

    /// What the decoder did with the bytes after the first head: the body it delivered, and when the message ended.
    struct Body: Equatable {
        enum End: Equatable {
            /// `.end` before the connection closed.
            case beforeEOF
            /// `.end` when the connection closed (a body delimited by the close).
            case atEOF
            /// No `.end`: an informational head, or a body that never completed.
            case never
        }

        var bytes: [UInt8]
        var end: End
    }

    /// A pipeline as a client has it: `HTTPRequestEncoder` then the response decoder, which learns the method of each
    /// request written through it (that is how NIO omits the body of a response to `HEAD`). One request is written.
    static func makeChannel(requestIsHEAD: Bool, maxHeadBytes: Int) throws -> EmbeddedChannel {
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderListSize = maxHeadBytes
        limits.maxHeaderFieldSize = maxHeadBytes
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers([
            HTTPRequestEncoder(),
            ByteToMessageHandler(
                HTTPResponseDecoder(
                    leftOverBytesStrategy: .forwardBytes,
                    informationalResponseStrategy: .forward,
                    limitConfiguration: limits
                )
            ),
        ])
        let request = HTTPRequestHead(version: .http1_1, method: requestIsHEAD ? .HEAD : .GET, uri: "/")
        try channel.writeOutbound(HTTPClientRequestPart.head(request))
        try channel.writeOutbound(HTTPClientRequestPart.end(nil))
        while try channel.readOutbound(as: ByteBuffer.self) != nil {}
        return channel
    }

    /// The first response head NIO decodes from `bytes`.
    static func decode(_ bytes: [UInt8], requestIsHEAD: Bool, maxHeadBytes: Int = 16384) -> Outcome {
        guard let channel = try? Self.makeChannel(requestIsHEAD: requestIsHEAD, maxHeadBytes: maxHeadBytes) else {
            return .rejected("pipeline")
        }
        defer { _ = try? channel.finish() }
        var buffer = channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        var failure: (any Error)? = nil
        do {
            try channel.writeInbound(buffer)
        } catch {
            // An error about bytes after a head (a body, the next response) leaves that head accepted.
            failure = error
        }
        while let part = try? channel.readInbound(as: HTTPClientResponsePart.self) {
            guard case .head(let head) = part else { continue }
            let status = Int(head.status.code)
            return .accepted(
                Head(
                    minorVersion: head.version.minor,
                    status: status,
                    fields: head.headers.map {
                        ReferenceOutcome.Field(name: $0.name, value: NIOReferenceDecoder.trimmed($0.value))
                    },
                    isKeepAlive: requestIsHEAD || status == 101 ? nil : head.isKeepAlive
                )
            )
        }
        if let failure { return .rejected("\(failure)") }
        return .incomplete
    }

    /// Feeds `head` (one complete head) and then `probe`, then closes the connection, and reports what NIO made the
    /// body: this observes NIO's framing instead of restating it.
    static func observeBody(head: [UInt8], probe: [UInt8], requestIsHEAD: Bool) -> Body {
        var body = Body(bytes: [], end: .never)
        guard let channel = try? Self.makeChannel(requestIsHEAD: requestIsHEAD, maxHeadBytes: 1 << 20) else {
            return body
        }
        defer { _ = try? channel.finish() }
        var buffer = channel.allocator.buffer(capacity: head.count + probe.count)
        buffer.writeBytes(head)
        buffer.writeBytes(probe)
        // Errors after the first message (the probe read as a next response) do not matter.
        _ = try? channel.writeInbound(buffer)
        var sawHead = false
        var done = false
        func drain(atEOF: Bool) {
            while !done, let part = try? channel.readInbound(as: HTTPClientResponsePart.self) {
                switch part {
                case .head:
                    if sawHead { done = true } else { sawHead = true }
                case .body(let bytes):
                    body.bytes += Array(bytes.readableBytesView)
                case .end:
                    body.end = atEOF ? .atEOF : .beforeEOF
                    done = true
                }
            }
        }
        drain(atEOF: false)
        if !done {
            channel.pipeline.fireChannelInactive()
            _ = try? channel.throwIfErrorCaught()
            drain(atEOF: true)
        }
        return body
    }

    /// The body ``observeBody(head:probe:requestIsHEAD:)`` must see for a head Sluice framed this way.
    static func expectedBody(_ head: ParsedResponseHead, probe: [UInt8], chunkedData: [UInt8]) -> Body {
        switch head.framing {
        case .none:
            // NIO forwards an informational head and no `.end` for it.
            return Body(bytes: [], end: head.isInformational ? .never : .beforeEOF)
        case .length(let length):
            return length <= probe.count
                ? Body(bytes: Array(probe.prefix(length)), end: .beforeEOF) : Body(bytes: probe, end: .never)
        case .chunked:
            return Body(bytes: chunkedData, end: .beforeEOF)
        case .untilClose:
            return Body(bytes: probe, end: .atEOF)
        }
    }

    /// Bytes after a head that tell the framings apart: a chunked body of "hello", then more bytes.
    static let probe = Array("5\r\nhello\r\n0\r\n\r\nAFTER-THE-BODY-0123456789".utf8)
    static let probeChunkedData = Array("hello".utf8)
}

/// What ``HTTPResponseHeadParser`` makes of the same bytes, in the reference's terms.
enum SluiceResponseOutcome: Equatable {
    case accepted(ResponseReference.Head, ParsedResponseHead)
    case rejected(HTTPHeadError)
    case incomplete

    /// Parses `bytes`, fed in the given pieces (prefixes growing by each piece, as reads arrive).
    static func parse(
        _ bytes: [UInt8],
        requestIsHEAD: Bool,
        pieces: [Int]? = nil,
        maxHeadBytes: Int = 16384
    ) -> SluiceResponseOutcome {
        var parser = HTTPResponseHeadParser(maxHeadBytes: maxHeadBytes, requestIsHEAD: requestIsHEAD)
        var result = HTTPResponseHeadParser.Result.needMoreBytes
        var fed = 0
        for piece in pieces ?? [bytes.count] {
            fed = min(bytes.count, fed + piece)
            result = bytes[0..<fed].withUnsafeBytes { parser.parse($0) }
            if case .needMoreBytes = result { continue }
            break
        }
        if case .needMoreBytes = result, fed < bytes.count {
            result = bytes.withUnsafeBytes { parser.parse($0) }
        }
        switch result {
        case .needMoreBytes:
            return .incomplete
        case .error(let error):
            return .rejected(error)
        case .head(let head):
            func text(_ range: Range<Int>) -> String { String(decoding: bytes[range], as: UTF8.self) }
            return .accepted(
                ResponseReference.Head(
                    minorVersion: head.minorVersion,
                    status: head.status,
                    fields: head.fields.map { ReferenceOutcome.Field(name: text($0.name), value: text($0.value)) },
                    isKeepAlive: requestIsHEAD || head.status == 101 ? nil : head.isKeepAlive
                ),
                head
            )
        }
    }
}
