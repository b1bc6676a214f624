import Foundation
import SluiceDifferential
import SluiceHTTP1
import SluiceTestSupport
import Testing

/// The byte-level parser against NIOHTTP1's decoder (llhttp): on every input it may be stricter, never laxer, and
/// where both accept they agree on method, target, version, fields and framing (issue 19's correctness guard).
@Suite("HTTPRequestHeadParser, differential against NIOHTTP1")
struct HTTPRequestHeadParserDifferentialTests {
    /// Valid heads and the request-smuggling literature (RFC 9112; CL.TE, TE.CL, TE.TE, duplicate CL, ...).
    static let corpus: [String] = [
        "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /p?q=1 HTTP/1.1\r\nHost: a.example:8080\r\nAccept: */*\r\nX-Empty:\r\n\r\n",
        "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.0\r\n\r\n",
        "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        "POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        "POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        "POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET http://a.example/p HTTP/1.1\r\nHost: b\r\n\r\n",
        "GET HTTP://A.EXAMPLE:80/p?x HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET http://[::1]:8080?x HTTP/1.1\r\nHost: a\r\n\r\n",
        "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
        "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        "PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
        "GET / HTTP/1.1\r\nHost: a\r\nX-Obs: caf\u{e9}\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-Tab:\tv\t\r\n\r\n",
        // CL.TE, TE.CL, TE.TE
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\u{0B}chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip;q=1, chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip,\tchunked\r\n\r\n0\r\n\r\n",
        // Content-Length
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\nhello",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\nhello",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:  5 \r\n\r\nhello",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\t\r\n\r\nhello",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\t5\r\n\r\nhello",
        "CONNECT a\"b:443 HTTP/1.1\r\nHost: a\r\n\r\n",
        // Line ends, NUL, folding, names
        "GET / HTTP/1.1\nHost: a\n\n",
        "GET / HTTP/1.1\r\nHost: a\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\u{0}b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\u{7F}b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX\u{0}Y: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX Y: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX(Y): a\r\n\r\n",
        // Request line
        "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
        "GET /\u{0}x HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.2\r\nHost: a\r\n\r\n",
        "GET / HTTP/0.9\r\nHost: a\r\n\r\n",
        "GET / http/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/11\r\nHost: a\r\n\r\n",
        "GET /\r\nHost: a\r\n\r\n",
        "get / HTTP/1.1\r\nHost: a\r\n\r\n",
        "FOO / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET x HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET * HTTP/1.1\r\nHost: a\r\n\r\n",
        "M-SEARCH * HTTP/1.1\r\nHost: a\r\n\r\n",
        // Host
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a, b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: user@a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
        "GET / HTTP/1.1\r\nHost:\r\n\r\n",
    ]

    /// The corpus starts with this many valid heads.
    static let validCount = 18

    /// A disagreement worth reporting.
    typealias Finding = RequestHeadDifferential.Finding

    /// `nil` when the two agree or Sluice is stricter; the finding otherwise (``RequestHeadDifferential``, shared with
    /// the `differential` fuzz target).
    static func compare(_ input: [UInt8]) -> Finding? {
        RequestHeadDifferential.compare(input)
    }

    @Test func corpusNeverLaxerAndAgreesWhereBothAccept() {
        var findings: [Finding] = []
        for text in Self.corpus {
            if let finding = Self.compare(Array(text.utf8)) { findings.append(finding) }
        }
        #expect(findings.isEmpty, "\(findings.map(\.description).joined(separator: "\n"))")
    }

    @Test func validHeadsOfTheCorpusAreAccepted() {
        // The differential test alone would pass a parser that refuses everything.
        let valid = Self.corpus.prefix(Self.validCount)
        for text in valid {
            guard case .accepted = SluiceOutcome.parse(Array(text.utf8)) else {
                Issue.record("refused a valid head: \(text.debugDescription)")
                continue
            }
        }
    }

    /// Bytes an attacker varies: separators, whitespace, line ends, controls, obs-text, digits.
    static let interestingBytes: [UInt8] = [
        0x00, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x22, 0x2C, 0x2B, 0x2D, 0x3A, 0x3B, 0x40, 0x7F, 0x80, 0xFF,
        UInt8(ascii: "0"), UInt8(ascii: "9"), UInt8(ascii: "a"), UInt8(ascii: "A"), UInt8(ascii: "/"),
    ]
    static let interestingLines: [String] = [
        "Transfer-Encoding: chunked\r\n", "Content-Length: 0\r\n", "Content-Length: 7\r\n", "Host: x\r\n",
        "Connection: close\r\n", "Transfer-Encoding: identity\r\n", " x\r\n", "\r\n",
    ]

    /// Mutates `input` one to three times; `lines` are the whole lines it may insert.
    static func mutate(
        _ input: [UInt8],
        _ random: inout SplitMix64,
        lines: [String] = Self.interestingLines
    ) -> [UInt8] {
        var bytes = input
        let mutations = 1 + Int(random.next() % 3)
        for _ in 0..<mutations {
            let position = bytes.isEmpty ? 0 : Int(random.next() % UInt64(bytes.count))
            switch random.next() % 7 {
            case 0:
                bytes.insert(Self.interestingBytes[Int(random.next() % UInt64(Self.interestingBytes.count))], at: position)
            case 1:
                if !bytes.isEmpty { bytes.remove(at: position) }
            case 2:
                if !bytes.isEmpty {
                    bytes[position] = Self.interestingBytes[Int(random.next() % UInt64(Self.interestingBytes.count))]
                }
            case 3:
                // Insert a whole line after some line end.
                if let lineEnd = bytes[position...].firstIndex(of: 0x0A) {
                    let line = lines[Int(random.next() % UInt64(lines.count))]
                    bytes.insert(contentsOf: Array(line.utf8), at: lineEnd + 1)
                }
            case 4:
                if !bytes.isEmpty { bytes[position] = UInt8(truncatingIfNeeded: random.next()) }
            case 5:
                // Flip the case of a letter.
                if !bytes.isEmpty, (bytes[position] | 0x20) >= 0x61, (bytes[position] | 0x20) <= 0x7A {
                    bytes[position] ^= 0x20
                }
            default:
                // Duplicate a line.
                if let lineEnd = bytes[position...].firstIndex(of: 0x0A) {
                    let lineStart = (bytes[..<position].lastIndex(of: 0x0A) ?? -1) + 1
                    bytes.insert(contentsOf: Array(bytes[lineStart...lineEnd]), at: lineEnd + 1)
                }
            }
        }
        return bytes
    }

    @Test func mutatedHeadsNeverLaxer() async throws {
        // Loads the machine: never beside the timing tests (TestLoadGate).
        try await TestLoadGate.exclusive { try await self.mutatedHeadsNeverLaxerGated() }
    }

    func mutatedHeadsNeverLaxerGated() async throws {
        // SLUICE_DIFF_SEED / SLUICE_DIFF_ROUNDS run a longer or different search by hand.
        let environment = ProcessInfo.processInfo.environment
        let seed = environment["SLUICE_DIFF_SEED"].flatMap { UInt64($0) } ?? 0x5EED_0019
        let rounds = environment["SLUICE_DIFF_ROUNDS"].flatMap { Int($0) } ?? 6000
        var random = SplitMix64(seed: seed)
        var findings: [Finding] = []
        var accepted = 0
        for round in 0..<rounds {
            // Every other round starts from a valid head, so that many mutants stay valid.
            let seedIndex = round % 2 == 0 ? (round / 2) % Self.validCount : round % Self.corpus.count
            let base = Array(Self.corpus[seedIndex].utf8)
            let input = Self.mutate(base, &random)
            if case .accepted = SluiceOutcome.parse(input) { accepted += 1 }
            if let finding = Self.compare(input), findings.count < 20 { findings.append(finding) }
        }
        #expect(findings.isEmpty, "seed \(seed):\n\(findings.map(\.description).joined(separator: "\n"))")
        // The mutations must leave enough valid heads for the agreement check to mean something.
        #expect(accepted > rounds / 10)
    }

    @Test func splitsGiveTheSameResultAsOneRead() {
        var random = SplitMix64(seed: 0x5EED_0020)
        for text in Self.corpus {
            let bytes = Array(text.utf8)
            let whole = SluiceOutcome.parse(bytes)
            #expect(SluiceOutcome.parse(bytes, pieces: Array(repeating: 1, count: bytes.count)) == whole, "\(text.debugDescription)")
            for _ in 0..<8 {
                var pieces: [Int] = []
                var left = bytes.count
                while left > 0 {
                    let piece = 1 + Int(random.next() % UInt64(min(left, 16)))
                    pieces.append(piece)
                    left -= piece
                }
                #expect(SluiceOutcome.parse(bytes, pieces: pieces) == whole, "\(text.debugDescription) in \(pieces)")
            }
        }
    }

    @Test func sizeLimitIs431LikeTheDecoder() {
        let big = "GET / HTTP/1.1\r\nHost: a\r\nX: " + String(repeating: "v", count: 20000) + "\r\n\r\n"
        #expect(SluiceOutcome.parse(Array(big.utf8)) == .rejected(.tooLarge))
        // Without its end, too: a head that never ends is refused once it passes the limit.
        let endless = Array(big.utf8.prefix(17000))
        #expect(SluiceOutcome.parse(endless) == .rejected(.tooLarge))
        guard case .rejected = NIOReferenceDecoder.decode(Array(big.utf8)) else {
            Issue.record("NIOHTTP1 accepted a head over its limit")
            return
        }
    }
}
