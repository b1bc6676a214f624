import Foundation
import NIOConcurrencyHelpers
import NIOHTTP1
import SluiceConfig

/// One JSON object per request (SPEC §2 `access_log`), written off the event loops.
///
/// Event loops only append to an in-memory buffer under a short lock; a background thread
/// writes the buffer out every 100 ms, so a slow disk or a blocked stdout pipe never stalls
/// request handling. If the buffer outgrows 8 MiB (the writer cannot keep up), new lines are
/// dropped and counted rather than growing memory without bound.
final class AccessLog: Sendable {
    private struct Buffer {
        var bytes: [UInt8] = []
        var dropped = 0
        var stopped = false
    }

    private let enabled: Bool
    private let buffer = NIOLockedValueBox(Buffer())
    private let handle: FileHandle?
    private static let maxBuffered = 8 << 20

    init(_ setting: AccessLog.Setting) {
        switch setting {
        case .off:
            self.enabled = false
            self.handle = nil
        case .stdout:
            self.enabled = true
            self.handle = FileHandle.standardOutput
        case .file(let path):
            if !FileManager.default.fileExists(atPath: path) {
                _ = FileManager.default.createFile(atPath: path, contents: nil)
            }
            let handle = FileHandle(forWritingAtPath: path)
            _ = try? handle?.seekToEnd()
            self.enabled = handle != nil
            self.handle = handle
        }
        if self.enabled {
            let thread = Thread { [self] in self.writerLoop() }
            thread.name = "sluice-access-log"
            thread.start()
        }
    }

    typealias Setting = SluiceConfig.AccessLog

    func record(
        exchange: GateContext,
        method: HTTPMethod,
        uri: String,
        status: Int,
        upstreamMs: Int?,
        bytesIn: Int,
        bytesOut: Int
    ) {
        guard self.enabled else { return }
        var line = "{\"time\":\""
        line += Self.timestamp()
        line += "\",\"client_ip\":\"\(exchange.clientIP)\",\"method\":"
        Self.appendJSONString(method.rawValue, to: &line)
        line += ",\"path\":"
        Self.appendJSONString(uri, to: &line)
        line += ",\"status\":\(status),\"rule\":"
        if let rule = exchange.rule { Self.appendJSONString(rule, to: &line) } else { line += "null" }
        line += ",\"decision\":\"\(exchange.decision)\",\"upstream_ms\":"
        line += upstreamMs.map(String.init) ?? "null"
        line += ",\"bytes_in\":\(bytesIn),\"bytes_out\":\(bytesOut)}\n"
        self.buffer.withLockedValue { buffer in
            if buffer.bytes.count > Self.maxBuffered {
                buffer.dropped += 1
            } else {
                buffer.bytes.append(contentsOf: line.utf8)
            }
        }
    }

    /// Writes what is buffered now (tests and shutdown).
    func flush() {
        let bytes = self.buffer.withLockedValue { buffer -> [UInt8] in
            defer { buffer.bytes.removeAll(keepingCapacity: true) }
            return buffer.bytes
        }
        if !bytes.isEmpty {
            try? self.handle?.write(contentsOf: bytes)
        }
    }

    private func writerLoop() {
        while true {
            Thread.sleep(forTimeInterval: 0.1)
            self.flush()
        }
    }

    private static func timestamp() -> String {
        var tv = timeval()
        gettimeofday(&tv, nil)
        var t = time_t(tv.tv_sec)
        var tmValue = tm()
        gmtime_r(&t, &tmValue)
        func pad(_ v: Int32, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        let ms = Int32(tv.tv_usec / 1000)
        return "\(pad(tmValue.tm_year + 1900, 4))-\(pad(tmValue.tm_mon + 1, 2))-\(pad(tmValue.tm_mday, 2))T"
            + "\(pad(tmValue.tm_hour, 2)):\(pad(tmValue.tm_min, 2)):\(pad(tmValue.tm_sec, 2)).\(pad(ms, 3))Z"
    }

    static func appendJSONString(_ s: String, to out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }
}
