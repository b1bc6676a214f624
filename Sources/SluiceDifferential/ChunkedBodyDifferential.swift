import NIOCore
import NIOEmbedded
import NIOHTTP1
import SluiceHTTP1

/// The chunked body of a request both parsers accepted the head of, through ``ChunkedBodyParser`` and through
/// NIOHTTP1's decoder (llhttp); shared by the differential tests and the `differential` fuzz target.
///
/// Where Sluice finds the end of the body, llhttp must end the body at the same byte with the same data: Sluice may
/// refuse a body llhttp takes (stricter), never the other way round.
public enum ChunkedBodyDifferential {
    /// What llhttp made of a whole request (its head and chunked body, nothing after).
    public enum Reference: Equatable, Sendable {
        /// `.end` arrived after these body bytes.
        case ended([UInt8])
        case refused(String)
        /// No `.end`: llhttp wants more bytes.
        case unfinished([UInt8])
    }

    /// `nil` when the request's head is not accepted with chunked framing, when Sluice does not find the end of the
    /// body in `input`, or when llhttp agrees; otherwise what went wrong.
    public static func compare(_ input: [UInt8]) -> String? {
        guard case .accepted(let head, let length) = SluiceOutcome.parse(input), head.framing == .chunked else {
            return nil
        }
        var parser = ChunkedBodyParser()
        var ours: [UInt8] = []
        let body = Array(input[length...])
        let result = body.withUnsafeBytes { raw in parser.parse(raw) { ours.append(contentsOf: body[$0]) } }
        guard case .end(let end) = result else { return nil }
        let theirs = Self.reference(Array(input[0..<length + end]))
        guard theirs != .ended(ours) else { return nil }
        return "Sluice ends the chunked body after \(end) bytes with \"\(RequestHeadDifferential.escaped(ours))\", "
            + "llhttp: \(theirs); input \"\(RequestHeadDifferential.escaped(input))\""
    }

    /// What NIOHTTP1's decoder makes of `request`.
    public static func reference(_ request: [UInt8]) -> Reference {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes)))
        defer { _ = try? channel.finish() }
        var failure: (any Error)? = nil
        do {
            try channel.writeInbound(ByteBuffer(bytes: request))
        } catch {
            failure = error
        }
        var data: [UInt8] = []
        while let part = try? channel.readInbound(as: HTTPServerRequestPart.self) {
            switch part {
            case .head: break
            case .body(let chunk): data.append(contentsOf: chunk.readableBytesView)
            case .end: return .ended(data)
            }
        }
        if let failure { return .refused("\(failure)") }
        return .unfinished(data)
    }
}
