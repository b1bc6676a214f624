import Foundation
import NIOCore
import NIOEmbedded
import NIOHTTP1
import SluiceHTTP1
import SluiceTestSupport
import Testing

/// The chunked body parser: fed whole, byte by byte and in seeded splits; bounded; and never laxer than
/// NIOHTTP1's decoder (llhttp) on chunked bodies, agreeing on the data where both accept.
@Suite("ChunkedBodyParser")
struct ChunkedBodyParserTests {
    enum Outcome: Equatable {
        case body(data: [UInt8], end: Int)
        case failed(ChunkedBodyParser.Failure)
        case incomplete
    }

    /// Parses `bytes` split into `pieces`, collecting the data.
    static func parse(_ bytes: [UInt8], pieces: [Int]? = nil, limits: ChunkedBodyParser.Limits = .init()) -> Outcome {
        var parser = ChunkedBodyParser(limits: limits)
        var data: [UInt8] = []
        var offset = 0
        for piece in pieces ?? [bytes.count] where offset < bytes.count {
            let slice = Array(bytes[offset..<min(bytes.count, offset + piece)])
            let result = slice.withUnsafeBytes { raw in
                parser.parse(raw) { range in data.append(contentsOf: slice[range]) }
            }
            switch result {
            case .needMoreBytes: break
            case .end(let end): return .body(data: data, end: offset + end)
            case .error(let failure): return .failed(failure)
            }
            offset += slice.count
        }
        return .incomplete
    }

    static func splits(_ count: Int, _ random: inout SplitMix64) -> [Int] {
        var pieces: [Int] = []
        var left = count
        while left > 0 {
            let piece = 1 + Int(random.next() % UInt64(min(left, 9)))
            pieces.append(piece)
            left -= piece
        }
        return pieces
    }

    static let valid: [(String, String)] = [
        ("5\r\nhello\r\n0\r\n\r\n", "hello"),
        ("A\r\n0123456789\r\n0\r\n\r\n", "0123456789"),
        ("3;ext\r\nabc\r\n2;a=b;c=\"d;e\\\"\"\r\nde\r\n0\r\n\r\n", "abcde"),
        ("1\r\nx\r\n0\r\nX-Trailer: 1\r\nY: \t2\r\n\r\n", "x"),
        ("00000001\r\nx\r\n000\r\n\r\n", "x"),
    ]

    @Test func validBodiesInEverySplit() {
        var random = SplitMix64(seed: 0xC4_0001)
        for (text, expected) in Self.valid {
            let bytes = Array((text + "GET /next").utf8)
            let want = Outcome.body(data: Array(expected.utf8), end: text.utf8.count)
            #expect(Self.parse(bytes) == want, "\(text.debugDescription)")
            #expect(Self.reference(Array(text.utf8)) == .body(data: Array(expected.utf8), end: -1), "NIO: \(text.debugDescription)")
            #expect(Self.parse(bytes, pieces: Array(repeating: 1, count: bytes.count)) == want)
            for _ in 0..<20 {
                #expect(Self.parse(bytes, pieces: Self.splits(bytes.count, &random)) == want)
            }
        }
    }

    @Test func malformedBodiesAreRefused() {
        for text in [
            "x\r\n", "5 \r\nhello\r\n0\r\n\r\n", " 5\r\nhello\r\n0\r\n\r\n", "5\r\nhelloX\r\n0\r\n\r\n",
            "5\nhello\r\n0\r\n\r\n", "-5\r\n", "11111111111111111\r\n", "5;\r\nhello\r\n", "5;a=\r\nhello\r\n",
            "5;a=\"b\r\n", "0\r\n bad\r\n\r\n", "0\r\nX\r\n\r\n", "0\r\n\r\r",
        ] {
            #expect(Self.parse(Array(text.utf8)) == .failed(.malformed), "\(text.debugDescription)")
        }
    }

    @Test func boundsOfExtensionsLinesBodiesAndTrailers() {
        let longLine = "1;" + String(repeating: "a", count: 4100) + "\r\nx\r\n0\r\n\r\n"
        #expect(Self.parse(Array(longLine.utf8)) == .failed(.chunkLineTooLong))
        // Each line under 4 KiB, the sum over data + 16 KiB.
        var many = ""
        for _ in 0..<6 { many += "1;" + String(repeating: "e", count: 3000) + "\r\nx\r\n" }
        #expect(Self.parse(Array((many + "0\r\n\r\n").utf8)) == .failed(.tooManyExtensionBytes))
        // Extensions count toward max_body_bytes.
        let padded = "2;" + String(repeating: "e", count: 100) + "\r\nxy\r\n0\r\n\r\n"
        #expect(Self.parse(Array(padded.utf8), limits: .init(maxBodyBytes: 50)) == .failed(.bodyTooLarge))
        #expect(Self.parse(Array("40\r\n".utf8), limits: .init(maxBodyBytes: 50)) == .failed(.bodyTooLarge))
        let trailers = "0\r\nX: " + String(repeating: " ", count: 200) + "v\r\n\r\n"
        #expect(Self.parse(Array(trailers.utf8), limits: .init(maxTrailerBytes: 100)) == .failed(.trailersTooLarge))
    }

    /// What NIOHTTP1 makes of a chunked body behind a fixed head.
    static func reference(_ body: [UInt8]) -> Outcome {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes)))
        defer { _ = try? channel.finish() }
        var buffer = channel.allocator.buffer(capacity: body.count + 64)
        buffer.writeString("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        buffer.writeBytes(body)
        var failed = false
        do { try channel.writeInbound(buffer) } catch { failed = true }
        var data: [UInt8] = []
        while let part = try? channel.readInbound(as: HTTPServerRequestPart.self) {
            switch part {
            case .head: break
            case .body(let chunk): data.append(contentsOf: chunk.readableBytesView)
            case .end: return .body(data: data, end: -1)
            }
        }
        return failed ? .failed(.malformed) : .incomplete
    }

    @Test func neverLaxerThanNIOOnMutatedBodies() async throws {
        // Loads the machine: never beside the timing tests (TestLoadGate).
        try await TestLoadGate.exclusive { try await self.neverLaxerThanNIOOnMutatedBodiesGated() }
    }

    func neverLaxerThanNIOOnMutatedBodiesGated() async throws {
        var random = SplitMix64(seed: 0xC4_0002)
        let alphabet = Array("0123456789abcdefABCDEF;=\"\\ \t\r\nxX:-".utf8)
        var findings: [String] = []
        var accepted = 0
        for round in 0..<(Int(ProcessInfo.processInfo.environment["SLUICE_DIFF_ROUNDS"] ?? "") ?? 4000) {
            var bytes = Array(Self.valid[round % Self.valid.count].0.utf8)
            for _ in 0..<(1 + Int(random.next() % 3)) {
                let position = Int(random.next() % UInt64(bytes.count))
                switch random.next() % 3 {
                case 0: bytes.insert(alphabet[Int(random.next() % UInt64(alphabet.count))], at: position)
                case 1: bytes.remove(at: position)
                default: bytes[position] = alphabet[Int(random.next() % UInt64(alphabet.count))]
                }
                if bytes.isEmpty { bytes = [0x30] }
            }
            let ours = Self.parse(bytes)
            guard case .body(let data, _) = ours else { continue }
            accepted += 1
            let theirs = Self.reference(bytes)
            if case .body(let referenceData, _) = theirs, referenceData == data { continue }
            if findings.count < 10 { findings.append("\(String(decoding: bytes, as: UTF8.self).debugDescription): ours \(ours), NIO \(theirs)") }
        }
        #expect(findings.isEmpty, "\(findings.joined(separator: "\n"))")
        #expect(accepted > 400)
    }
}
