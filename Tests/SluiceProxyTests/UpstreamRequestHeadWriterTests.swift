import Foundation
import NIOCore
import NIOEmbedded
import NIOHTTP1
import SluiceHTTP1
import SluiceTestSupport
import Testing

@testable import SluiceProxy

/// The raw upstream-head writer against the NIOHTTP1 rewrite the proxy uses today: for every head both accept, the
/// upstream gets the same request line and the same fields (order aside).
@Suite("UpstreamRequestHeadWriter, differential against the NIOHTTP1 rewrite")
struct UpstreamRequestHeadWriterTests {
    static let settings = UpstreamRequestHeadWriter.Settings(
        preserveHost: true,
        upstreamHost: "127.0.0.1:3000",
        forwardedProto: "http",
        peer: "203.0.113.9"
    )

    static let corpus: [String] = [
        "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /p?q=1 HTTP/1.1\r\nHost: a.example:8080\r\nAccept: */*\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-For: 5.6.7.8\r\n\r\n",
        "POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: keep-alive, X-Drop, Content-Length, Host\r\nX-Drop: 1\r\n\r\n",
        "POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\nTE: trailers\r\nTrailer: X\r\n\r\n",
        "PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\nProxy-Authorization: Basic x\r\n\r\n",
        "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, X-Y\r\nUpgrade: websocket\r\nX-Y: 1\r\nSec-WebSocket-Key: k\r\n\r\n",
        "GET http://api.example.com/p?x HTTP/1.1\r\nHost: decoy\r\n\r\n",
        "GET HTTP://API.example.com:8443?x HTTP/1.1\r\nHost: decoy\r\n\r\n",
        "GET / HTTP/1.0\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\nX-Tab:\tv\t\r\nClose: 1\r\nConnection: close\r\n\r\n",
    ]

    static let extraLines: [String] = [
        "Connection: x-a\r\n", "X-A: 1\r\n", "x-forwarded-for: 9.9.9.9\r\n", "Expect: 100-continue\r\n", "Upgrade: h2c\r\n",
        "Connection: upgrade\r\n", "Keep-Alive: 1\r\n", "Connection: TE\r\n", "X-Forwarded-Host: z\r\n",
    ]

    /// Method, target, version and the fields (lower-cased names, list values normalised) of a head NIO decoded.
    static func summary(_ head: HTTPRequestHead) -> [String] {
        var lines = ["\(head.method.rawValue) \(head.uri) \(head.version)"]
        for (name, value) in head.headers {
            let normalised = value.split(separator: ",", omittingEmptySubsequences: false)
                .map { $0.trimmingWhitespace() }.joined(separator: ", ")
            lines.append("\(name.lowercased()): \(normalised)")
        }
        return [lines[0]] + lines.dropFirst().sorted()
    }

    static func decode(_ bytes: [UInt8]) -> HTTPRequestHead? {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes)))
        defer { _ = try? channel.finish() }
        var buffer = channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        _ = try? channel.writeInbound(buffer)
        while let part = try? channel.readInbound(as: HTTPServerRequestPart.self) {
            if case .head(let head) = part { return head }
        }
        return nil
    }

    /// `nil` when the writer and the NIOHTTP1 path agree (or the parser refuses the head).
    static func disagreement(_ bytes: [UInt8]) -> String? {
        var parser = HTTPRequestHeadParser()
        guard case .head(let parsed) = bytes.withUnsafeBytes({ parser.parse($0) }) else { return nil }
        var output = ByteBuffer()
        bytes.withUnsafeBytes { UpstreamRequestHeadWriter.write(parsed, bytes: $0, settings: Self.settings, into: &output) }
        guard let written = Self.decode(Array(output.readableBytesView)) else {
            return "the writer's head does not parse: \(String(buffer: output).debugDescription)"
        }
        guard var reference = Self.decode(bytes) else { return "NIO refused what the parser accepted" }
        switch AbsoluteFormTarget.parse(reference.uri) {
        case .notAbsolute: break
        case .absolute(let authority, let originForm):
            reference.uri = originForm
            reference.headers.replaceOrAdd(name: "Host", value: String(authority))
        case .invalid: return nil
        }
        guard let framing = RequestFraming(head: reference) else { return "no framing for a head NIO accepted" }
        NIOUpstreamRewrite.rewriteForUpstream(&reference, framing: framing, settings: Self.settings)
        let ours = Self.summary(written)
        let theirs = Self.summary(reference)
        return ours == theirs ? nil : "\(String(decoding: bytes, as: UTF8.self).debugDescription):\n ours   \(ours)\n theirs \(theirs)"
    }

    @Test func corpusAgrees() {
        for text in Self.corpus {
            var parser = HTTPRequestHeadParser()
            let bytes = Array(text.utf8)
            guard case .head = bytes.withUnsafeBytes({ parser.parse($0) }) else {
                Issue.record("the corpus head is refused: \(text.debugDescription)")
                continue
            }
            if let problem = Self.disagreement(bytes) { Issue.record("\(problem)") }
        }
    }

    @Test func mutatedHeadsAgree() async throws {
        // Loads the machine: never beside the timing tests (TestLoadGate).
        try await TestLoadGate.exclusive { try await self.mutatedHeadsAgreeGated() }
    }

    func mutatedHeadsAgreeGated() async throws {
        var random = SplitMix64(seed: 0x0B5E_0019)
        var problems: [String] = []
        for round in 0..<(Int(ProcessInfo.processInfo.environment["SLUICE_DIFF_ROUNDS"] ?? "") ?? 3000) {
            var bytes = Array(Self.corpus[round % Self.corpus.count].utf8)
            for _ in 0..<(1 + Int(random.next() % 3)) {
                let line = Self.extraLines[Int(random.next() % UInt64(Self.extraLines.count))]
                // Insert after the request line or one of the field lines (never after the final empty line).
                var starts: [Int] = []
                for i in 1..<bytes.count where bytes[i] == 0x0A && bytes[i - 1] == 0x0D && i + 2 < bytes.count {
                    starts.append(i + 1)
                }
                let at = starts[Int(random.next() % UInt64(starts.count))]
                bytes.insert(contentsOf: Array((random.next() % 2 == 0 ? line : line.uppercased()).utf8), at: at)
            }
            if let problem = Self.disagreement(bytes), problems.count < 10 { problems.append(problem) }
        }
        #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))")
    }
}

extension Substring {
    fileprivate func trimmingWhitespace() -> String {
        var s = self
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}
