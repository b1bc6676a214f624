import Foundation
import SluiceHTTP1
import SluiceTestSupport
import Testing

/// The response-head parser against NIOHTTP1's `HTTPResponseDecoder` (llhttp): on every input it may be stricter,
/// never laxer; where both accept they agree on version, status, fields and keep-alive, and NIO, fed the head and a
/// probe, delivers exactly the body Sluice's framing says (issue 19's correctness guard, for the upstream side).
@Suite("HTTPResponseHeadParser, differential against NIOHTTP1")
struct HTTPResponseHeadParserDifferentialTests {
    /// One upstream response, and whether the request it answers was `HEAD`.
    struct Sample: CustomStringConvertible {
        var bytes: [UInt8]
        var requestIsHEAD = false

        static func get(_ text: String) -> Sample { Sample(bytes: Array(text.utf8)) }
        static func head(_ text: String) -> Sample { Sample(bytes: Array(text.utf8), requestIsHEAD: true) }

        var description: String {
            let escaped = self.bytes.map { b -> String in
                switch b {
                case 0x0D: return "\\r"
                case 0x0A: return "\\n"
                case 0x20...0x7E: return String(UnicodeScalar(b))
                default: return String(format: "\\x%02X", b)
                }
            }.joined()
            return "\(self.requestIsHEAD ? "(HEAD) " : "")\"\(escaped)\""
        }
    }

    /// Valid responses first (``validCount``), then the response-splitting and smuggling literature (RFC 9112 §6;
    /// CL.TE, TE.CL, duplicate CL, obfuscated Transfer-Encoding, bodies on bodiless statuses, line ends, NUL).
    static let corpus: [Sample] = [
        .get("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
        .get("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        .get("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
        .get("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        .get("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the close"),
        .get("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nuntil the close"),
        .get("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nuntil the close"),
        .get("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\nuntil the close"),
        .get("HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nhi"),
        .get("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\nuntil the close"),
        .get("HTTP/1.0 200 OK\r\n\r\nuntil the close"),
        .get("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc"),
        .get("HTTP/1.1 204 No Content\r\n\r\n"),
        .get("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"),
        .get("HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\nETag: \"x\"\r\n\r\n"),
        .get("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n"),
        .get("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        .get("HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"),
        .get("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
        .get("HTTP/1.1 301\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n"),
        .get("HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n"),
        .get("HTTP/1.1 200  OK\r\nContent-Length: 0\r\n\r\n"),
        .get("HTTP/1.1 500 Ori\u{EB}ntatieprobleem\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        .get("\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        .get("HTTP/1.1 301 Moved\r\nContent-Length:  7  \r\nX-$Proto: 1\r\n\r\nmoved!!"),
        .get("HTTP/1.1 404 Not Found\r\nX-Empty:\r\nX-Tab:\tv\t\r\nContent-Length: 0\r\n\r\n"),
        .get("HTTP/1.1 200 OK\r\nSet-Cookie: a=b\r\nSet-Cookie: c=d\r\nContent-Length: 0\r\n\r\n"),
        .get("HTTP/1.1 200 OK\r\nConnection: keep-alive, Upgrade\r\nUpgrade: h2c\r\nContent-Length: 0\r\n\r\n"),
        .get("HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n"),
        .get("HTTP/1.1 599 Custom\r\nContent-Length: 0\r\n\r\n"),
        .head("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"),
        .head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
        .head("HTTP/1.1 200 OK\r\n\r\n"),
        .head("HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\n"),
        // CL.TE, TE.CL, TE.TE
        .get("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        .get("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"),
        .head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"),
        .get("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\t\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        .get("HTTP/1.1 200 OK\r\nTransfer-Encoding:\tchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        .get("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip,\tchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        .get("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked \r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        .get("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        .get("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        .get("HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"),
        .get("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunkedchunked\r\n\r\n0\r\n\r\n"),
        .get("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked,\r\n\r\n0\r\n\r\n"),
        .get("HTTP/1.1 200 OK\r\nTransfer-Encoding: , chunked\r\n\r\n0\r\n\r\n"),
        .get("HTTP/1.1 200 OK\r\nTransfer-Encoding: \"chunked\"\r\n\r\n0\r\n\r\n"),
        .get("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip;q=1, chunked\r\n\r\n0\r\n\r\n"),
        .get("HTTP/1.1 200 OK\r\nTransfer-Encoding:\r\n\r\nbody"),
        .get("HTTP/1.1 200 OK\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
        .get("HTTP/1.1 200 OK\r\nTransfer-Encoding:\u{0B}chunked\r\n\r\n0\r\n\r\n"),
        .get("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n abc\r\n\r\n5\r\nWorld\r\n0\r\n\r\n"),
        .get("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        // Content-Length
        .get("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"),
        .get("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
        .get("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello"),
        .get("HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello"),
        .get("HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\nhello"),
        .get("HTTP/1.1 200 OK\r\nContent-Length: 5 5\r\n\r\nhello"),
        .get("HTTP/1.1 200 OK\r\nContent-Length: 0x5\r\n\r\nhello"),
        .get("HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n"),
        .get("HTTP/1.1 200 OK\r\nContent-Length:\t5\t\r\n\r\nhello"),
        .get("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n"),
        .get("HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\n"),
        .get("HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775808\r\n\r\n"),
        .get("HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775807\r\n\r\n"),
        .get("HTTP/1.1 200 OK\r\nContent-Length-X: 0\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nOK\r\n0\r\n\r\n"),
        // Connection options llhttp does not read with a tab after them
        .get("HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\t\r\n\r\nhi"),
        .get("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\t\r\n\r\nhi"),
        // Bodiless statuses with framing fields
        .get("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello"),
        .get("HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        .get("HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\nhello"),
        .get("HTTP/1.1 100 Continue\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        .get(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: h2c\r\nContent-Length: 4\r\n\r\nbody"
        ),
        .get("HTTP/1.1 101 Switching Protocols\r\n\r\n"),
        .get("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
        // Line ends, NUL, folding, names
        .get("HTTP/1.1 200 OK\nContent-Length: 0\n\n"),
        .get("HTTP/1.1 200 OK\r\nContent-Length: 0\n\r\n"),
        .get("HTTP/1.1 200 OK\rContent-Length: 0\r\n\r\n"),
        .get("HTTP/1.1 200 OK\r\r\nContent-Length: 0\r\n\r\n"),
        .get("HTTP/1.1 200 OK\r\nFoo: 1\rBar: 2\r\n\r\n"),
        .get("\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        .get("\rHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        .get("HTTP/1.1 200 OK\r\nX: a\u{0}b\r\nContent-Length: 0\r\n\r\n"),
        .get("HTTP/1.1 200 OK\r\nX: a\u{7F}b\r\nContent-Length: 0\r\n\r\n"),
        .get("HTTP/1.1 200 O\u{0}K\r\nContent-Length: 0\r\n\r\n"),
        .get("HTTP/1.1 200 O\u{7F}K\r\nContent-Length: 0\r\n\r\n"),
        .get("HTTP/1.1 200 O\u{1}K\r\nContent-Length: 0\r\n\r\n"),
        .get("HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n"),
        .get("HTTP/1.1 200 OK\r\n Host: foo\r\nContent-Length: 0\r\n\r\n"),
        .get("HTTP/1.1 200 OK\r\nX\u{0}Y: a\r\n\r\n"),
        .get("HTTP/1.1 200 OK\r\n: a\r\n\r\n"),
        .get("HTTP/1.1 200 OK\r\nen-US Content-Type: text/xml\r\n\r\n"),
        .get("HTTP/1.1 200 OK\r\nX(Y): a\r\n\r\n"),
        // Status line
        .get("HTP/1.1 200 OK\r\n\r\n"),
        .get("HTTPER/1.1 200 OK\r\n\r\n"),
        .get("HTTP/01.1 200 OK\r\n\r\n"),
        .get("HTTP/11.1 200 OK\r\n\r\n"),
        .get("HTTP/1.01 200 OK\r\n\r\n"),
        .get("HTTP/1.1\t200 OK\r\n\r\n"),
        .get("HTTP/1.1  200 OK\r\n\r\n"),
        .get("HTTP/1.1 2 OK\r\n\r\n"),
        .get("HTTP/1.1 2000 OK\r\n\r\n"),
        .get("HTTP/1.1 200OK\r\n\r\n"),
        .get("HTTP/1.1 -20 OK\r\n\r\n"),
        .get("HTTP/1.1 000 OK\r\nContent-Length: 0\r\n\r\n"),
        .get("HTTP/1.1 099 OK\r\nContent-Length: 0\r\n\r\n"),
        .get("HTTP/1.1 600 OK\r\nContent-Length: 0\r\n\r\n"),
        .get("HTTP/1.1 999 OK\r\nContent-Length: 0\r\n\r\n"),
        .get("HTTP/5.6 200 OK\r\n\r\n"),
        .get("HTTP/2.0 200 OK\r\n\r\n"),
        .get("HTTP/0.9 200 OK\r\n\r\n"),
        .get("HTTP/1.2 200 OK\r\n\r\n"),
        .get("http/1.1 200 OK\r\n\r\n"),
        .get("RTSP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        .get("ICE/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        .get("HTTP/1.1 200 OK\r\n"),
        .get("GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
    ]

    /// The corpus starts with this many valid responses.
    static let validCount = 34

    /// A disagreement worth reporting.
    struct Finding: CustomStringConvertible {
        var sample: Sample
        var problem: String

        var description: String { "\(self.sample): \(self.problem)" }
    }

    /// `nil` when the two agree or Sluice is stricter; the finding otherwise.
    static func compare(_ sample: Sample) -> Finding? {
        let input = sample.bytes
        let reference = ResponseReference.decode(input, requestIsHEAD: sample.requestIsHEAD)
        let sluice = SluiceResponseOutcome.parse(input, requestIsHEAD: sample.requestIsHEAD)
        switch (sluice, reference) {
        case (.accepted(let ours, let parsed), .accepted(let theirs)):
            var oursButKeepAlive = ours
            oursButKeepAlive.isKeepAlive = theirs.isKeepAlive
            guard oursButKeepAlive == theirs else {
                return Finding(sample: sample, problem: "sluice \(ours), NIOHTTP1 \(theirs)")
            }
            // Closing a connection NIO would reuse is stricter (HTTP/1.0 with both `keep-alive` and `close`); reusing
            // one NIO would close is not.
            if ours.isKeepAlive == true && theirs.isKeepAlive == false {
                return Finding(sample: sample, problem: "sluice keeps the connection alive, NIOHTTP1 does not")
            }
            // The framing, observed: NIO is fed exactly the head Sluice found, then a probe.
            let observed = ResponseReference.observeBody(
                head: Array(input[0..<parsed.length]),
                probe: ResponseReference.probe,
                requestIsHEAD: sample.requestIsHEAD
            )
            let expected = ResponseReference.expectedBody(
                parsed,
                probe: ResponseReference.probe,
                chunkedData: ResponseReference.probeChunkedData
            )
            guard observed == expected else {
                return Finding(
                    sample: sample,
                    problem: "framing \(parsed.framing): NIOHTTP1 gave \(observed), expected \(expected)"
                )
            }
            return nil
        case (.accepted, _):
            // Laxer: Sluice accepts what llhttp refuses or has not finished.
            return Finding(sample: sample, problem: "sluice \(sluice), NIOHTTP1 \(reference)")
        case (.rejected, _), (.incomplete, .incomplete), (.incomplete, .rejected):
            return nil
        case (.incomplete, .accepted):
            // Sluice waits (then times out with 504, or the upstream closes: 502) for a head llhttp took: stricter.
            return nil
        }
    }

    @Test func corpusNeverLaxerAndAgreesWhereBothAccept() {
        var findings: [Finding] = []
        for sample in Self.corpus {
            if let finding = Self.compare(sample) { findings.append(finding) }
        }
        #expect(findings.isEmpty, "\(findings.map(\.description).joined(separator: "\n"))")
    }

    @Test func validResponsesOfTheCorpusAreAccepted() {
        // The differential test alone would pass a parser that refuses everything.
        for sample in Self.corpus.prefix(Self.validCount) {
            guard case .accepted = SluiceResponseOutcome.parse(sample.bytes, requestIsHEAD: sample.requestIsHEAD) else {
                Issue.record("refused a valid response: \(sample)")
                continue
            }
        }
        // ... and the rest are there because something about them is wrong: count what Sluice takes of them.
        let acceptedInvalid = Self.corpus.dropFirst(Self.validCount).filter {
            if case .accepted = SluiceResponseOutcome.parse($0.bytes, requestIsHEAD: $0.requestIsHEAD) {
                return true
            }
            return false
        }
        #expect(acceptedInvalid.count <= 8, "\(acceptedInvalid)")
    }

    static let interestingLines: [String] = [
        "Transfer-Encoding: chunked\r\n", "Content-Length: 0\r\n", "Content-Length: 7\r\n", "Connection: close\r\n",
        "Connection: keep-alive\r\n", "Transfer-Encoding: gzip\r\n", "Upgrade: websocket\r\n", " x\r\n", "\r\n",
    ]

    @Test func mutatedResponsesNeverLaxer() async throws {
        // Loads the machine: never beside the timing tests (TestLoadGate).
        try await TestLoadGate.exclusive { try await self.mutatedResponsesNeverLaxerGated() }
    }

    func mutatedResponsesNeverLaxerGated() async throws {
        // SLUICE_DIFF_SEED / SLUICE_DIFF_ROUNDS run a longer or different search by hand.
        let environment = ProcessInfo.processInfo.environment
        let seed = environment["SLUICE_DIFF_SEED"].flatMap { UInt64($0) } ?? 0x5EED_0119
        let rounds = environment["SLUICE_DIFF_ROUNDS"].flatMap { Int($0) } ?? 6000
        var random = SplitMix64(seed: seed)
        var findings: [Finding] = []
        var accepted = 0
        var framings: [String: Int] = [:]
        for round in 0..<rounds {
            // Every other round starts from a valid response, so that many mutants stay valid.
            let index = round % 2 == 0 ? (round / 2) % Self.validCount : round % Self.corpus.count
            let base = Self.corpus[index]
            let sample = Sample(
                bytes: HTTPRequestHeadParserDifferentialTests.mutate(base.bytes, &random, lines: Self.interestingLines),
                requestIsHEAD: random.next() % 8 == 0 ? !base.requestIsHEAD : base.requestIsHEAD
            )
            if case .accepted(_, let head) = SluiceResponseOutcome.parse(
                sample.bytes,
                requestIsHEAD: sample.requestIsHEAD
            ) {
                accepted += 1
                framings["\(head.framing)".prefix { $0 != "(" }.description, default: 0] += 1
            }
            if let finding = Self.compare(sample), findings.count < 20 { findings.append(finding) }
        }
        #expect(findings.isEmpty, "seed \(seed):\n\(findings.map(\.description).joined(separator: "\n"))")
        // The mutations must leave enough valid heads, of every framing, for the agreement check to mean something.
        #expect(accepted > rounds / 10)
        #expect(framings.count == 4, "\(framings)")
        print("response mutations: \(rounds) rounds, \(accepted) accepted by Sluice, framings \(framings)")
    }

    @Test func splitsGiveTheSameResultAsOneRead() {
        var random = SplitMix64(seed: 0x5EED_0120)
        for sample in Self.corpus {
            let bytes = sample.bytes
            let whole = SluiceResponseOutcome.parse(bytes, requestIsHEAD: sample.requestIsHEAD)
            #expect(
                SluiceResponseOutcome.parse(
                    bytes,
                    requestIsHEAD: sample.requestIsHEAD,
                    pieces: Array(repeating: 1, count: bytes.count)
                ) == whole,
                "\(sample)"
            )
            for _ in 0..<8 {
                var pieces: [Int] = []
                var left = bytes.count
                while left > 0 {
                    let piece = 1 + Int(random.next() % UInt64(min(left, 16)))
                    pieces.append(piece)
                    left -= piece
                }
                #expect(
                    SluiceResponseOutcome.parse(bytes, requestIsHEAD: sample.requestIsHEAD, pieces: pieces) == whole,
                    "\(sample) in \(pieces)"
                )
            }
        }
    }

    @Test func sizeLimitLikeTheDecoder() {
        let big = "HTTP/1.1 200 OK\r\nX: " + String(repeating: "v", count: 20000) + "\r\nContent-Length: 0\r\n\r\n"
        #expect(SluiceResponseOutcome.parse(Array(big.utf8), requestIsHEAD: false) == .rejected(.tooLarge))
        // Without its end, too: a head that never ends is refused once it passes the limit.
        let endless = Array(big.utf8.prefix(17000))
        #expect(SluiceResponseOutcome.parse(endless, requestIsHEAD: false) == .rejected(.tooLarge))
        guard case .rejected = ResponseReference.decode(Array(big.utf8), requestIsHEAD: false) else {
            Issue.record("NIOHTTP1 accepted a head over its limit")
            return
        }
    }
}
