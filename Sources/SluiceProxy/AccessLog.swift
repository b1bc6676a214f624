import Atomics
import Foundation
import NIOConcurrencyHelpers
import NIOHTTP1
import SluiceAdmin
import SluiceConfig
import SluiceLimiter

/// One JSON object per request (SPEC §2 `access_log`), written off the event loops.
///
/// Besides SPEC §2's fields, `key_hash` is the ``StorageKey/displayHash`` of the request's key under `rule` (the
/// status page shows the same value), `null` when no rule with a key applied: one client can be followed through
/// the log without its key (an API key, say) being written anywhere.
///
/// Event loops only append to an in-memory buffer under a short lock; a background thread
/// writes the buffer out every 100 ms, so a slow disk or a blocked stdout pipe never stalls
/// request handling. If the buffer outgrows 8 MiB (the writer cannot keep up), new lines are
/// dropped and counted rather than growing memory without bound.
///
/// The destination follows reloads (SPEC §6): ``reconfigure(_:)`` flushes what is buffered to the
/// old destination, then switches; lines of requests that started before the reload may land in
/// either.
final class AccessLog: Sendable {
    private struct Buffer {
        var bytes: [UInt8] = []
        var dropped = 0
        var stopped = false
    }

    /// Where lines go: the setting it was opened for and its handle (`nil` when off).
    private struct Destination {
        var setting: Setting
        var handle: FileHandle?
        var writerStarted = false
    }

    private let enabled = ManagedAtomic<Bool>(false)
    private let buffer = NIOLockedValueBox(Buffer())
    /// Also serialises writes, so a flush and a switch of destination never interleave.
    private let destination: NIOLockedValueBox<Destination>
    private static let maxBuffered = 8 << 20

    init(_ setting: AccessLog.Setting) {
        self.destination = NIOLockedValueBox(Destination(setting: .off, handle: nil))
        self.reconfigure(setting)
    }

    /// Switches to `setting` (on reload); does nothing when it is unchanged.
    func reconfigure(_ setting: AccessLog.Setting) {
        let startWriter = self.destination.withLockedValue { destination -> Bool in
            guard destination.setting != setting else { return false }
            // Lines buffered so far belong to the old destination.
            Self.write(self.takeBuffered(), to: destination.handle)
            if case .file = destination.setting { try? destination.handle?.close() }
            destination.setting = setting
            destination.handle = Self.open(setting)
            self.enabled.store(destination.handle != nil, ordering: .releasing)
            guard destination.handle != nil, !destination.writerStarted else { return false }
            destination.writerStarted = true
            return true
        }
        if startWriter {
            let thread = Thread { [self] in self.writerLoop() }
            thread.name = "sluice-access-log"
            thread.start()
        }
    }

    /// Closes and reopens a file destination at its path (SIGUSR1, after logrotate moved the file away): lines
    /// buffered so far go to the old file, the next ones to the new. Nothing to do for stdout or off.
    func reopen() {
        self.destination.withLockedValue { destination in
            guard case .file = destination.setting else { return }
            Self.write(self.takeBuffered(), to: destination.handle)
            try? destination.handle?.close()
            destination.handle = Self.open(destination.setting)
            self.enabled.store(destination.handle != nil, ordering: .releasing)
        }
    }

    private static func open(_ setting: AccessLog.Setting) -> FileHandle? {
        switch setting {
        case .off:
            return nil
        case .stdout:
            return FileHandle.standardOutput
        case .file(let path):
            if !FileManager.default.fileExists(atPath: path) {
                _ = FileManager.default.createFile(atPath: path, contents: nil)
            }
            let handle = FileHandle(forWritingAtPath: path)
            _ = try? handle?.seekToEnd()
            return handle
        }
    }

    typealias Setting = SluiceConfig.AccessLog

    /// Whether lines are written (a caller can skip computing what only the line needs).
    var isEnabled: Bool { self.enabled.load(ordering: .relaxed) }

    func record(
        exchange: GateContext,
        method: String,
        uri: String,
        protocol httpProtocol: StaticString,
        status: Int,
        upstreamMs: Int?,
        bytesIn: Int,
        bytesOut: Int
    ) {
        guard self.enabled.load(ordering: .relaxed) else { return }
        var line = "{\"time\":\""
        line += Self.timestamp()
        line += "\",\"client_ip\":\"\(exchange.clientIP)\",\"method\":"
        JSONText.appendString(method, to: &line)
        line += ",\"path\":"
        JSONText.appendString(uri, to: &line)
        line += ",\"protocol\":\""
        line += httpProtocol.description
        line += "\",\"status\":\(status),\"rule\":"
        if let rule = exchange.rule { JSONText.appendString(rule, to: &line) } else { line += "null" }
        line += ",\"key_hash\":"
        if let key = exchange.keyDigest { line += "\"" + key.displayHash + "\"" } else { line += "null" }
        if let failure = exchange.jwt { line += ",\"jwt\":\"" + failure.rawValue + "\"" }
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
        self.destination.withLockedValue { destination in
            Self.write(self.takeBuffered(), to: destination.handle)
        }
    }

    private func takeBuffered() -> [UInt8] {
        self.buffer.withLockedValue { buffer -> [UInt8] in
            defer { buffer.bytes.removeAll(keepingCapacity: true) }
            return buffer.bytes
        }
    }

    private static func write(_ bytes: [UInt8], to handle: FileHandle?) {
        if !bytes.isEmpty {
            try? handle?.write(contentsOf: bytes)
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
}
