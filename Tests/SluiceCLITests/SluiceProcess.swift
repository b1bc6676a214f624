import Foundation
import SluiceTestSupport
import Testing

/// The `sluice` binary built next to this test bundle, run as a child process.
final class SluiceProcess: @unchecked Sendable {
    // @unchecked: `output` and `exitStatus` are only touched under `lock`; `pid` is immutable.
    static var binaryPath: String {
        let testBinary = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL
        var dir = testBinary.deletingLastPathComponent()
        // The test runner may sit inside a bundle directory (xctest); walk up to the build folder.
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("sluice").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return ".build/debug/sluice"
    }

    /// The child, started by ``CleanSpawn`` (Foundation's `Process` would pass on the test process's sockets and
    /// blocked signals).
    let pid: pid_t
    private let lock = NSLock()
    private var output = ""
    private var exitStatus: Int32?

    /// Starts `sluice ARGS` (or another program, such as the browser of the status page test) and collects stdout
    /// and stderr together.
    init(
        _ arguments: [String],
        executable: String = SluiceProcess.binaryPath,
        environment: [String: String] = [:]
    ) throws {
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        var fds: [Int32] = [0, 0]
        guard CleanSpawn.makePipe(&fds) == 0 else { throw CancellationError() }
        do {
            self.pid = try CleanSpawn.spawn(executable, arguments, output: fds[1], environment: env)
        } catch {
            close(fds[0])
            close(fds[1])
            throw error
        }
        close(fds[1])
        let reader = FileHandle(fileDescriptor: fds[0], closeOnDealloc: true)
        // A plain thread reads until the child (and anything it started) closes the pipe.
        Thread.detachNewThread { [weak self] in
            while true {
                let data = reader.availableData
                if data.isEmpty { return }
                guard let self else { return }
                self.lock.lock()
                self.output += String(decoding: data, as: UTF8.self)
                self.lock.unlock()
            }
        }
    }

    var outputSoFar: String {
        self.lock.lock()
        defer { self.lock.unlock() }
        return self.output
    }

    /// Whether the child still runs (reaps it once it has exited; never blocks).
    var isRunning: Bool {
        self.lock.lock()
        defer { self.lock.unlock() }
        if self.exitStatus != nil { return false }
        var status: Int32 = 0
        if waitpid(self.pid, &status, WNOHANG) == self.pid {
            // Exit code, or 128 + the signal that ended it.
            let signal = status & 0x7f
            self.exitStatus = signal == 0 ? (status >> 8) & 0xff : 128 + signal
            return false
        }
        return true
    }

    /// The exit status once ``isRunning`` has turned false.
    var terminationStatus: Int32 {
        self.lock.lock()
        defer { self.lock.unlock() }
        return self.exitStatus ?? -1
    }

    /// Waits (bounded) until the output contains `text`.
    func waitForOutput(_ text: String, timeout: Duration = .seconds(20)) async throws {
        let deadline = ContinuousClock.now + timeout
        while !self.outputSoFar.contains(text) {
            if !self.isRunning {
                Issue.record("sluice exited (\(self.terminationStatus)) before printing '\(text)': \(self.outputSoFar)")
                throw CancellationError()
            }
            if ContinuousClock.now > deadline {
                Issue.record("timed out waiting for '\(text)' in: \(self.outputSoFar)")
                throw CancellationError()
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// The port of the first `sluice listening on HOST:PORT` line.
    func listeningPort() async throws -> Int {
        try await self.waitForOutput("listening on ")
        let line = self.outputSoFar.split(separator: "\n").first { $0.contains("listening on ") }!
        return Int(line.split(separator: ":").last!)!
    }

    func signal(_ sig: Int32) {
        if self.isRunning { kill(self.pid, sig) }
    }

    /// Waits (bounded) for exit; returns the exit status.
    func waitForExit(timeout: Duration = .seconds(20)) async throws -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while self.isRunning {
            if ContinuousClock.now > deadline {
                kill(self.pid, SIGKILL)
                Issue.record("child \(self.pid) did not exit within \(timeout): \(self.outputSoFar.suffix(2000))")
                throw CancellationError()
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        return self.terminationStatus
    }

    deinit {
        if self.isRunning {
            kill(self.pid, SIGKILL)
            var status: Int32 = 0
            waitpid(self.pid, &status, 0)
        }
    }

    /// Runs `sluice ARGS` to completion: (exit status, combined output).
    static func run(_ arguments: [String], environment: [String: String] = [:]) async throws -> (Int32, String) {
        let p = try SluiceProcess(arguments, environment: environment)
        let status = try await p.waitForExit()
        // Let the pipe drain.
        try await Task.sleep(for: .milliseconds(50))
        return (status, p.outputSoFar)
    }
}
