import NIOCore
import NIOEmbedded
import NIOHTTP1
import SluiceHTTP1

/// Several requests on one connection (pipelined), through Sluice's parsers as the proxy reads them and through
/// NIOHTTP1's decoder (llhttp); shared by the `differential` fuzz target and the regression tests.
///
/// Sluice reads a head, skips its body by its framing (``ChunkedBodyParser`` for chunked), and reads the next head
/// only if the request keeps the connection alive. Every message Sluice reads whole must be one llhttp reads whole
/// too, with the same head (``RequestHeadDifferential``'s terms) and the same body; after CONNECT or an upgrade only
/// the heads are compared (the rest is a tunnel).
public enum PipelineDifferential {
    /// One message as llhttp delivered it.
    public struct Message: Equatable, Sendable {
        public var head: ReferenceOutcome.Head
        public var body: [UInt8]
        public var ended: Bool
    }

    /// `nil` when every message Sluice reads whole is read alike by llhttp; otherwise what differs.
    public static func compare(_ input: [UInt8], maxMessages: Int = 8) -> String? {
        let (theirs, failure) = Self.reference(input)
        var offset = 0
        for index in 0..<maxMessages where offset < input.count {
            let bytes = Array(input[offset...])
            guard case .accepted(let head, let length) = SluiceOutcome.parse(bytes) else { return nil }
            var parser = HTTPRequestHeadParser()
            guard case .head(let parsed) = bytes.withUnsafeBytes({ parser.parse($0) }) else { return nil }
            var body: [UInt8] = []
            var end = length
            switch head.framing {
            case .none:
                break
            case .length(let count):
                guard count <= bytes.count - length else { return nil }
                body = Array(bytes[length..<length + count])
                end += count
            case .chunked:
                var chunked = ChunkedBodyParser()
                let rest = Array(bytes[length...])
                let result = rest.withUnsafeBytes { raw in chunked.parse(raw) { body.append(contentsOf: rest[$0]) } }
                guard case .end(let bodyEnd) = result else { return nil }
                end += bodyEnd
            }
            let shown = "message \(index + 1) of \"\(RequestHeadDifferential.escaped(input))\""
            guard index < theirs.count else {
                return "Sluice reads \(shown) whole; llhttp: \(failure.map { "refused (\($0))" } ?? "not whole")"
            }
            let message = theirs[index]
            guard message.head == head else { return "heads differ in \(shown): Sluice \(head), llhttp \(message.head)" }
            // After CONNECT or an upgrade, llhttp hands the bytes over as a tunnel (Sluice answers CONNECT with 405, and
            // tunnels an admitted upgrade once the upstream switched): nothing more to compare.
            guard !parsed.isUpgrade, head.method != "CONNECT" else { return nil }
            guard message.ended, message.body == body else {
                return "bodies differ in \(shown): Sluice \"\(RequestHeadDifferential.escaped(body))\", llhttp "
                    + "\"\(RequestHeadDifferential.escaped(message.body))\"\(message.ended ? "" : " (not ended)")"
            }
            guard parsed.isKeepAlive else { return nil }
            offset += end
        }
        return nil
    }

    /// The messages llhttp delivers from `input` in one read, and its error if it stopped on one.
    public static func reference(_ input: [UInt8]) -> ([Message], String?) {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes)))
        defer { _ = try? channel.finish() }
        var failure: String? = nil
        do {
            try channel.writeInbound(ByteBuffer(bytes: input))
        } catch {
            failure = "\(error)"
        }
        var messages: [Message] = []
        while let part = try? channel.readInbound(as: HTTPServerRequestPart.self) {
            switch part {
            case .head(let head):
                messages.append(Message(head: NIOReferenceDecoder.head(head), body: [], ended: false))
            case .body(let chunk):
                if !messages.isEmpty { messages[messages.count - 1].body += Array(chunk.readableBytesView) }
            case .end:
                if !messages.isEmpty { messages[messages.count - 1].ended = true }
            }
        }
        return (messages, failure)
    }
}
