import FuzzSupport
import NIOCore
import SluiceMemcached

/// The meta-protocol reply decoder (``MemcachedReplyDecoder``) on arbitrary bytes from a memcached server: partial
/// lines and data blocks, huge and malformed lengths, flags, error lines, bare LF and CR.
///
/// Each read is appended to one buffer and the decoder is called until it needs more bytes, as NIO's
/// `ByteToMessageHandler` does. Checks, under the default limits and under tiny ones:
/// - fed all at once, byte by byte and in random splits, the same replies are decoded and the same error (if any)
///   ends the stream;
/// - a reply is only returned once whole: the reader index moves only forward, and only when a reply is returned;
/// - a `VA` reply carries a value, any other meta reply none; a value never exceeds the decoder's limit.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzMemcachedReplies(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = FuzzInput.bytes(data, size)
    let tiny = MemcachedReplyDecoder(maximumLineLength: 32, maximumValueLength: 16)
    for decoder in [MemcachedReplyDecoder(), tiny] {
        let whole = MemcachedFeeding.decode(input, pieces: [input.count], decoder: decoder)
        for pieces in FuzzInput.splits(of: input) {
            let split = MemcachedFeeding.decode(input, pieces: pieces, decoder: decoder)
            fuzzCheck(split == whole, "split \(pieces) gave \(split), whole gave \(whole): \(FuzzInput.escaped(input))")
        }
    }
    return 0
}

enum MemcachedFeeding {
    /// The replies decoded (as text) and the error that ended the stream.
    struct Outcome: Equatable, CustomStringConvertible {
        var replies: [String] = []
        var error: String?

        var description: String { "\(self.replies.count) replies \(self.replies), error \(self.error ?? "none")" }
    }

    static func render(_ reply: MemcachedReply) -> String {
        switch reply {
        case .meta(let meta):
            var text = meta.status.rawValue
            if let opaque = meta.opaque { text += " O\(opaque)" }
            if let cas = meta.cas { text += " c\(cas)" }
            if let ttl = meta.ttl { text += " t\(ttl)" }
            if let value = meta.value { text += " value \"\(FuzzInput.escaped(value.readableBytesView))\"" }
            return text
        case .clientError(let message): return "CLIENT_ERROR \(message.debugDescription)"
        case .serverError(let message): return "SERVER_ERROR \(message.debugDescription)"
        case .error: return "ERROR"
        }
    }

    static func decode(_ bytes: [UInt8], pieces: [Int], decoder: MemcachedReplyDecoder) -> Outcome {
        var decoder = decoder
        var buffer = ByteBuffer()
        var outcome = Outcome()
        var offset = 0
        for piece in pieces where offset < bytes.count {
            let end = min(bytes.count, offset + piece)
            buffer.writeBytes(bytes[offset..<end])
            offset = end
            while true {
                let before = buffer.readerIndex
                do {
                    guard let reply = try decoder.decode(buffer: &buffer) else {
                        fuzzCheck(buffer.readerIndex == before, "the reader index moved without a reply")
                        break
                    }
                    fuzzCheck(buffer.readerIndex > before, "a reply decoded from no bytes")
                    if case .meta(let meta) = reply {
                        fuzzCheck((meta.status == .value) == (meta.value != nil), "a value on \(meta.status) or none on VA")
                        fuzzCheck((meta.value?.readableBytes ?? 0) <= decoder.maximumValueLength, "a value over the limit")
                    }
                    outcome.replies.append(Self.render(reply))
                } catch {
                    outcome.error = "\(error)"
                    return outcome
                }
            }
        }
        return outcome
    }
}
