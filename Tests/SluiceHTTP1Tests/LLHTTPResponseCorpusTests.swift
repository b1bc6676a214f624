import Foundation
import SluiceHTTP1
import Testing

/// llhttp's own response corpus (`test/response/*.md` of nodejs/llhttp) replayed through the response-head parser.
///
/// `SLUICE_LLHTTP_CORPUS` points at llhttp's `test/response`, `test/request` or `test` (see
/// ``LLHTTPCorpusTests/corpusFolder(_:)``); skipped without it. Each strict case (`"type": "response"`) is read the
/// way Sluice reads an upstream: heads by ``HTTPResponseHeadParser``, chunked bodies by ``ChunkedBodyParser``, a
/// length skipped, a body until the close or a 101 ending the replay, and bytes after a response that does not keep
/// the connection alive never read (the connection is closed). Every case strict llhttp refuses must be refused no
/// later than llhttp refuses it (after no more heads than llhttp completed); where both take a case, they must see
/// the same responses (status and version of each head).
@Suite("llhttp response corpus")
struct LLHTTPResponseCorpusTests {
    /// What Sluice makes of an upstream's bytes.
    struct Replay: Equatable {
        /// Status and minor version of each head read.
        var heads: [String] = []
        /// A head or a chunked body was refused.
        var refused = false
        /// Bytes were left after a response that closes the connection.
        var closedBeforeTheEnd = false

        var stopsReading: Bool { self.refused || self.closedBeforeTheEnd }
    }

    static func replay(_ input: [UInt8], requestIsHEAD: Bool) -> Replay {
        var replay = Replay()
        var offset = 0
        while offset < input.count {
            var parser = HTTPResponseHeadParser(requestIsHEAD: requestIsHEAD)
            let result = input[offset...].withUnsafeBytes { parser.parse($0) }
            guard case .head(let head) = result else {
                if case .error = result { replay.refused = true }
                return replay
            }
            replay.heads.append("\(head.status) v=1/\(head.minorVersion)")
            offset += head.length
            if head.isSwitchingProtocols { return replay }  // a tunnel from here
            switch head.framing {
            case .none:
                break
            case .length(let length):
                guard length <= input.count - offset else { return replay }
                offset += length
            case .chunked:
                var body = ChunkedBodyParser()
                switch input[offset...].withUnsafeBytes({ body.parse($0) { _ in } }) {
                case .end(let end):
                    offset += end
                case .needMoreBytes:
                    return replay
                case .error:
                    replay.refused = true
                    return replay
                }
            case .untilClose:
                return replay
            }
            if !head.isKeepAlive && offset < input.count {
                replay.closedBeforeTheEnd = true
                return replay
            }
        }
        return replay
    }

    /// The heads llhttp completed (status and version), and whether and after how many of them it refused.
    static func llhttpRun(_ log: [String]) -> (heads: [String], refusedAfter: Int?) {
        var heads: [String] = []
        for line in log {
            if let range = line.range(of: " headers complete status=") {
                let rest = line[range.upperBound...]
                let status = rest.prefix { $0.isNumber }
                let version = rest.split(separator: " ").first { $0.hasPrefix("v=") } ?? ""
                heads.append("\(status) \(version)")
            } else if line.contains(" error code=22 ") || line.contains(" error code=23 ") {
                // HPE_PAUSED_UPGRADE / HPE_PAUSED_H2_UPGRADE: the rest belongs to another protocol, no refusal.
                return (heads, nil)
            } else if line.contains(" error code=") {
                return (heads, heads.count)
            }
        }
        return (heads, nil)
    }

    @Test func everyResponseStrictLLHTTPRefusesIsRefused() throws {
        guard let folder = LLHTTPCorpusTests.corpusFolder("response") else { return }
        let files = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasSuffix(".md") }.sorted()
        var strict = 0
        var refusedByLLHTTP = 0
        var stricterHere: [String] = []
        var missed: [String] = []
        var disagreements: [String] = []
        for file in files {
            for testCase in try LLHTTPCorpusTests.cases(in: URL(fileURLWithPath: folder).appendingPathComponent(file))
            where testCase.type == "response" {
                strict += 1
                let name = "\(testCase.file):\(testCase.line)"
                let llhttp = Self.llhttpRun(testCase.log)
                let sluice = Self.replay(testCase.input, requestIsHEAD: testCase.skipBody)
                if let refusedAfter = llhttp.refusedAfter {
                    refusedByLLHTTP += 1
                    if !sluice.stopsReading || sluice.heads.count > refusedAfter {
                        missed.append("\(name): llhttp \(llhttp), Sluice \(sluice)")
                    }
                } else if sluice.stopsReading {
                    // llhttp takes it: Sluice may refuse (stricter), which is counted and listed.
                    stricterHere.append(name)
                } else if sluice.heads != llhttp.heads {
                    disagreements.append("\(name): llhttp \(llhttp.heads), Sluice \(sluice.heads)")
                }
            }
        }
        print(
            "llhttp response corpus: \(strict) strict cases, \(refusedByLLHTTP) refused by llhttp, "
                + "\(missed.count) of them not refused by Sluice; \(stricterHere.count) accepted by llhttp and "
                + "refused by Sluice: \(stricterHere)"
        )
        #expect(strict > 50, "the corpus folder looks wrong")
        #expect(missed.isEmpty, "llhttp refuses these and Sluice does not: \(missed)")
        #expect(disagreements.isEmpty, "\(disagreements)")
    }
}
