import Foundation
import Testing

/// The `sluice` binary built next to this test bundle, run as a child process.
final class SluiceProcess: @unchecked Sendable {
    // @unchecked: `output` is only touched under `lock`.
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

    let process = Process()
    private let lock = NSLock()
    private var output = ""

    /// Starts `sluice ARGS` and collects stdout and stderr together.
    init(_ arguments: [String], environment: [String: String] = [:]) throws {
        self.process.executableURL = URL(fileURLWithPath: Self.binaryPath)
        self.process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        self.process.environment = env
        let pipe = Pipe()
        self.process.standardOutput = pipe
        self.process.standardError = pipe
        pipe.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            guard let self, !data.isEmpty else { return }
            self.lock.lock()
            self.output += String(decoding: data, as: UTF8.self)
            self.lock.unlock()
        }
        try self.process.run()
    }

    var outputSoFar: String {
        self.lock.lock()
        defer { self.lock.unlock() }
        return self.output
    }

    /// Waits (bounded) until the output contains `text`.
    func waitForOutput(_ text: String, timeout: Duration = .seconds(20)) async throws {
        let deadline = ContinuousClock.now + timeout
        while !self.outputSoFar.contains(text) {
            if !self.process.isRunning {
                Issue.record("sluice exited (\(self.process.terminationStatus)) before printing '\(text)': \(self.outputSoFar)")
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
        kill(self.process.processIdentifier, sig)
    }

    /// Waits (bounded) for exit; returns the exit status.
    func waitForExit(timeout: Duration = .seconds(20)) async throws -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while self.process.isRunning {
            if ContinuousClock.now > deadline {
                self.process.terminate()
                Issue.record("sluice did not exit in time")
                throw CancellationError()
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        return self.process.terminationStatus
    }

    deinit {
        if self.process.isRunning { self.process.terminate() }
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
