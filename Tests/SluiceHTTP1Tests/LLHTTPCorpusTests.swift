import Foundation
import SluiceHTTP1
import Testing

/// llhttp's own request corpus (`test/request/*.md` of nodejs/llhttp) replayed through the byte-level parser.
///
/// Point `SLUICE_LLHTTP_CORPUS` at a copy of that folder, of its sibling `test/response` or of `test` (the corpus is
/// not committed; `fetch` brings the repository); the test is skipped without it. Every case that strict llhttp (`"type": "request"`) refuses while
/// reading a head must be refused by ``HTTPRequestHeadParser`` too, and every case it refuses in a body by
/// ``ChunkedBodyParser`` (or by the connection closing after a message that does not keep it alive). llhttp's
/// pause on CONNECT/Upgrade is not a refusal.
@Suite("llhttp request corpus")
struct LLHTTPCorpusTests {
    struct Case {
        var file: String
        var line: Int
        var type: String
        /// `"skipBody": true`: the message has no body whatever its fields say (a response to `HEAD`).
        var skipBody = false
        var input: [UInt8]
        var log: [String]
    }

    /// Reads the cases of one markdown file the way llhttp's `test/md-test.ts` does.
    static func cases(in url: URL) throws -> [Case] {
        let text = try String(contentsOf: url, encoding: .utf8)
        let lines = text.components(separatedBy: "\n")
        var result: [Case] = []
        var meta: [String: Any]? = nil
        var metaLine = 0
        var index = 0
        var input: String? = nil
        while index < lines.count {
            let line = lines[index]
            if line.hasPrefix("<!-- meta="), let json = line.dropFirst("<!-- meta=".count).split(separator: " -->").first {
                meta = (try? JSONSerialization.jsonObject(with: Data(json.utf8))) as? [String: Any]
                metaLine = index + 1
                input = nil
            } else if line == "```http" || line == "```log" {
                var block: [String] = []
                index += 1
                while index < lines.count, lines[index] != "```" {
                    block.append(lines[index])
                    index += 1
                }
                let body = block.joined(separator: "\n") + "\n"
                if line == "```http" {
                    input = body
                } else if let raw = input, let meta {
                    result.append(
                        Case(
                            file: url.lastPathComponent,
                            line: metaLine,
                            type: meta["type"] as? String ?? "",
                            skipBody: meta["skipBody"] as? Bool ?? false,
                            input: Self.decodeInput(raw),
                            log: body.components(separatedBy: "\n").filter { !$0.isEmpty }
                        )
                    )
                    input = nil
                }
            }
            index += 1
        }
        return result
    }

    /// md-test.ts's input rules: drop the final newline and escaped newlines, every newline is CRLF, then `\r`,
    /// `\n`, `\t`, `\f`, `\xHH` and octal escapes.
    static func decodeInput(_ raw: String) -> [UInt8] {
        var text = raw
        if text.hasSuffix("\n") { text.removeLast() }
        text = text.replacingOccurrences(of: "\\\n", with: "")
        text = text.replacingOccurrences(of: "\n", with: "\r\n")
        var bytes: [UInt8] = []
        let source = Array(text.utf8)
        var i = 0
        while i < source.count {
            if source[i] == UInt8(ascii: "\\"), i + 1 < source.count {
                let next = source[i + 1]
                switch next {
                case UInt8(ascii: "r"): bytes.append(0x0D); i += 2; continue
                case UInt8(ascii: "n"): bytes.append(0x0A); i += 2; continue
                case UInt8(ascii: "t"): bytes.append(0x09); i += 2; continue
                case UInt8(ascii: "f"): bytes.append(0x0C); i += 2; continue
                case UInt8(ascii: "x"):
                    var j = i + 2
                    var value = 0
                    while j < source.count, let digit = Int(String(UnicodeScalar(source[j])), radix: 16) {
                        value = value * 16 + digit
                        j += 1
                    }
                    if j > i + 2 {
                        bytes.append(contentsOf: Array(String(UnicodeScalar(UInt32(value)).map(Character.init) ?? " ").utf8))
                        i = j
                        continue
                    }
                case UInt8(ascii: "0")...UInt8(ascii: "7"):
                    var j = i + 1
                    var value = 0
                    while j < source.count, j < i + 4, source[j] >= 0x30, source[j] <= 0x37 {
                        value = value * 8 + Int(source[j] - 0x30)
                        j += 1
                    }
                    bytes.append(contentsOf: Array(String(UnicodeScalar(UInt32(value)).map(Character.init) ?? " ").utf8))
                    i = j
                    continue
                default:
                    break
                }
            }
            bytes.append(source[i])
            i += 1
        }
        return bytes
    }

    /// Where llhttp's log says an error happened, and where the message it happened in began; `inHead` when no
    /// `headers complete` came between the two.
    static func llhttpError(_ log: [String]) -> (messageStart: Int, inHead: Bool)? {
        var messageStart = 0
        var headComplete = false
        for line in log {
            guard line.hasPrefix("off=") else { continue }
            let offset = Int(line.dropFirst(4).prefix { $0.isNumber }) ?? 0
            if line.contains(" message begin") {
                messageStart = offset
                headComplete = false
            } else if line.contains(" headers complete") {
                headComplete = true
            } else if line.contains(" error code=22 ") || line.contains(" error code=23 ") {
                // HPE_PAUSED_UPGRADE / HPE_PAUSED_H2_UPGRADE: llhttp hands the rest to the application, which is no
                // refusal (Sluice refuses CONNECT with 405, and tunnels an admitted upgrade).
                return nil
            } else if line.contains(" error code=") {
                return (messageStart, !headComplete)
            }
        }
        return nil
    }

    /// llhttp's `test/<kind>` folder, found from `SLUICE_LLHTTP_CORPUS` (that folder, its parent `test`, or a
    /// sibling), or `nil` when the variable is not set or names no such folder.
    static func corpusFolder(_ kind: String) -> String? {
        guard let root = ProcessInfo.processInfo.environment["SLUICE_LLHTTP_CORPUS"] else { return nil }
        let url = URL(fileURLWithPath: root).standardizedFileURL
        let candidates = [
            url, url.appendingPathComponent(kind), url.deletingLastPathComponent().appendingPathComponent(kind),
        ]
        for candidate in candidates where candidate.lastPathComponent == kind {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: candidate.path, isDirectory: &isDirectory), isDirectory.boolValue {
                return candidate.path
            }
        }
        Issue.record("SLUICE_LLHTTP_CORPUS=\(root) is not llhttp's test/\(kind), test/ or a sibling of test/\(kind)")
        return nil
    }

    @Test func everyHeadStrictLLHTTPRefusesIsRefused() throws {
        guard let folder = Self.corpusFolder("request") else { return }
        let files = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasSuffix(".md") }.sorted()
        var strict = 0
        var headRefusals = 0
        var bodyRefusals = 0
        var stricterHere = 0
        var missed: [String] = []
        for file in files {
            for testCase in try Self.cases(in: URL(fileURLWithPath: folder).appendingPathComponent(file))
            where testCase.type == "request" {
                strict += 1
                guard let error = Self.llhttpError(testCase.log) else {
                    // llhttp accepts: Sluice may refuse (stricter), which is counted.
                    if case .error = Self.parseFirstHead(testCase.input, from: 0) { stricterHere += 1 }
                    continue
                }
                guard error.inHead else {
                    bodyRefusals += 1
                    if !Self.bodyIsRefused(testCase.input, messageStart: error.messageStart) {
                        missed.append("\(testCase.file):\(testCase.line) (body)")
                    }
                    continue
                }
                headRefusals += 1
                guard error.messageStart <= testCase.input.count else { continue }
                if case .error = Self.parseFirstHead(testCase.input, from: error.messageStart) { continue }
                missed.append("\(testCase.file):\(testCase.line)")
            }
        }
        print(
            "llhttp corpus: \(strict) strict request cases, \(headRefusals + bodyRefusals) refused by llhttp "
                + "(\(headRefusals) in a head, \(bodyRefusals) in a body), \(missed.count) of them not refused by Sluice; "
                + "\(stricterHere) accepted by llhttp and refused by Sluice"
        )
        #expect(strict > 100, "the corpus folder looks wrong")
        #expect(missed.isEmpty, "llhttp refuses these heads and Sluice does not: \(missed)")
    }

    /// Whether the head at `messageStart` and then its body, read by ``ChunkedBodyParser`` when chunked, are refused
    /// (an incomplete body is not a refusal).
    static func bodyIsRefused(_ input: [UInt8], messageStart: Int) -> Bool {
        guard case .head(let head) = Self.parseFirstHead(input, from: messageStart) else { return true }
        guard head.framing == .chunked else {
            // Bytes after a message that does not keep the connection alive: Sluice answers that message and
            // closes, never reading them (llhttp: "Data after `Connection: close`").
            if case .length(let length) = head.framing, !head.isKeepAlive,
                messageStart + head.length + length < input.count
            {
                return true
            }
            if head.framing == .none, !head.isKeepAlive, messageStart + head.length < input.count { return true }
            return false
        }
        var parser = ChunkedBodyParser()
        let body = Array(input[(messageStart + head.length)...])
        if case .error = body.withUnsafeBytes({ parser.parse($0) { _ in } }) { return true }
        return false
    }

    static func parseFirstHead(_ input: [UInt8], from start: Int) -> HTTPRequestHeadParser.Result {
        var parser = HTTPRequestHeadParser()
        return input[start...].withUnsafeBytes { parser.parse($0) }
    }
}
