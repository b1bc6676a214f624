import FuzzSupport
import NIOCore
import SluiceRedis

/// The RESP2/RESP3 reply decoder (``RESPDecoder``) on arbitrary bytes from a Redis server: partial replies, nested
/// aggregates, huge and negative lengths, attributes.
///
/// Each read is appended to one buffer and the decoder is called until it needs more bytes, as NIO's
/// `ByteToMessageHandler` does. Checks, under the default limits and under tiny ones:
/// - fed all at once, byte by byte and in random splits, the same values are decoded and the same error (if any)
///   ends the stream;
/// - a value is only returned once whole: the reader index moves only forward, and only when a value is returned.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRESP(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = FuzzInput.bytes(data, size)
    let tiny = RESPDecoder(maximumBulkLength: 64, maximumDepth: 4, maximumLineLength: 64)
    for decoder in [RESPDecoder(), tiny] {
        let whole = RESPFeeding.decode(input, pieces: [input.count], decoder: decoder)
        for pieces in FuzzInput.splits(of: input) {
            let split = RESPFeeding.decode(input, pieces: pieces, decoder: decoder)
            fuzzCheck(split == whole, "split \(pieces) gave \(split), whole gave \(whole): \(FuzzInput.escaped(input))")
        }
    }
    return 0
}

enum RESPFeeding {
    /// The values decoded (rendered by ``render(_:)``, so that a NaN equals itself) and the error that ended the
    /// stream.
    struct Outcome: Equatable, CustomStringConvertible {
        var values: [String] = []
        var error: String?

        var description: String { "\(self.values.count) values \(self.values), error \(self.error ?? "none")" }
    }

    /// One value as text: its kind, and its contents with bulk bytes escaped.
    static func render(_ value: RESPValue) -> String {
        switch value {
        case .simpleString(let text): return "+\(text.debugDescription)"
        case .error(let text): return "-\(text.debugDescription)"
        case .integer(let number): return ":\(number)"
        case .bulkString(let bytes?): return "$\"\(FuzzInput.escaped(bytes.readableBytesView))\""
        case .bulkString(nil): return "$nil"
        case .array(let elements?): return "*[\(elements.map(Self.render).joined(separator: ", "))]"
        case .array(nil): return "*nil"
        case .null: return "_"
        case .double(let number): return ",\(number)"
        case .boolean(let flag): return "#\(flag)"
        case .bigNumber(let digits): return "(\(digits)"
        case .verbatimString(let text): return "=\(text.debugDescription)"
        case .map(let elements): return "%[\(elements.map(Self.render).joined(separator: ", "))]"
        case .set(let elements): return "~[\(elements.map(Self.render).joined(separator: ", "))]"
        case .push(let elements): return ">[\(elements.map(Self.render).joined(separator: ", "))]"
        }
    }

    static func decode(_ bytes: [UInt8], pieces: [Int], decoder: RESPDecoder) -> Outcome {
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
                    guard let value = try decoder.decode(buffer: &buffer) else {
                        fuzzCheck(buffer.readerIndex == before, "the reader index moved without a value")
                        break
                    }
                    fuzzCheck(buffer.readerIndex > before, "a value decoded from no bytes")
                    outcome.values.append(Self.render(value))
                } catch {
                    outcome.error = "\(error)"
                    return outcome
                }
            }
        }
        return outcome
    }
}
