import FuzzSupport
import SluiceHTTP1

/// The chunked-body decoder of the request path (``ChunkedBodyParser``) on arbitrary bytes after a head.
///
/// Each read is handed over once, as the proxy does: the parser keeps no bytes and no offsets between reads. Checks,
/// under the default limits and under tiny ones (so that every limit is reached):
/// - fed all at once, byte by byte and in random splits, the data, where the body ends and any failure are the same;
/// - every data range lies inside its read; the data bytes counted equal the bytes reported; the end is inside the
///   input.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzChunkedBody(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = FuzzInput.bytes(data, size)
    var tiny = ChunkedBodyParser.Limits(maxBodyBytes: 64, maxTrailerBytes: 32)
    tiny.maxChunkLineBytes = 16
    tiny.extensionAllowance = 24
    for limits in [ChunkedBodyParser.Limits(), tiny] {
        let whole = ChunkedFeeding.parse(input, pieces: [input.count], limits: limits)
        for pieces in FuzzInput.splits(of: input) {
            let split = ChunkedFeeding.parse(input, pieces: pieces, limits: limits)
            fuzzCheck(split == whole, "split \(pieces) gave \(split), whole gave \(whole): \(FuzzInput.escaped(input))")
        }
        if case .body(let body, let end) = whole {
            fuzzCheck(end > 0 && end <= input.count, "end \(end) of \(input.count)")
            if limits.maxBodyBytes > 0 { fuzzCheck(body.count <= limits.maxBodyBytes, "\(body.count) data bytes over the limit") }
        }
    }
    return 0
}

enum ChunkedFeeding {
    enum Outcome: Equatable {
        case body(data: [UInt8], end: Int)
        case failed(ChunkedBodyParser.Failure)
        case incomplete(data: [UInt8])
    }

    /// Feeds `bytes` as separate reads of the given sizes, collecting the data.
    static func parse(_ bytes: [UInt8], pieces: [Int], limits: ChunkedBodyParser.Limits) -> Outcome {
        var parser = ChunkedBodyParser(limits: limits)
        var data: [UInt8] = []
        var offset = 0
        for piece in pieces where offset < bytes.count {
            let read = Array(bytes[offset..<min(bytes.count, offset + piece)])
            var last = 0
            let result = read.withUnsafeBytes { raw in
                parser.parse(raw) { range in
                    fuzzCheck(range.lowerBound >= last && range.upperBound <= read.count, "data \(range) outside the read of \(read.count)")
                    last = range.upperBound
                    data.append(contentsOf: read[range])
                }
            }
            fuzzCheck(parser.bodyDataBytes == data.count, "\(parser.bodyDataBytes) data bytes counted, \(data.count) reported")
            switch result {
            case .needMoreBytes:
                break
            case .end(let end):
                fuzzCheck(end >= last && end <= read.count, "end \(end) outside the read of \(read.count)")
                return .body(data: data, end: offset + end)
            case .error(let failure):
                return .failed(failure)
            }
            offset += read.count
        }
        return .incomplete(data: data)
    }
}
