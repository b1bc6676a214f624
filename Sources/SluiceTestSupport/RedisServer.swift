import Foundation

/// A throwaway `redis-server` for tests, on 127.0.0.1 and a port of its own.
///
/// Started with no persistence (`--save '' --appendonly no`) in a fresh temporary directory.
/// The port is picked at random below the kernel's ephemeral range (32768–60999), where
/// port-0 listeners of tests running at the same time cannot take it, and outside the
/// 20000–31999 band other tests probe for closed ports; a port found taken ("Address already
/// in use") is simply replaced by another. Use ``withRedisServer(password:extraArguments:_:)``
/// so the server is stopped whatever the test does.
public final class RedisServer: @unchecked Sendable {
    // @unchecked: the only mutable field, `current`, is read and written under `lock`; each
    // `RedisProcess` guards its own state.
    public let port: Int
    /// The TLS port when started with ``TLSFiles``, else `nil`.
    public let tlsPort: Int?
    public let password: String?
    private let extraArguments: [String]
    private let directory: URL
    private let lock = NSLock()
    private var current: RedisProcess?

    /// Certificates for a TLS port beside the plain one (`rediss://` tests).
    public struct TLSFiles: Sendable {
        public var cert: String
        public var key: String
        public var ca: String

        public init(cert: String, key: String, ca: String) {
            self.cert = cert
            self.key = key
            self.ca = ca
        }
    }

    private init(port: Int, tls: TLSFiles?, password: String?, extraArguments: [String]) throws {
        self.port = port
        self.password = password
        var arguments = extraArguments
        if let tls {
            // Picked with the plain port, so a taken one is replaced like it.
            let tlsPort = Int.random(in: 12_000..<20_000)
            self.tlsPort = tlsPort
            arguments += [
                "--tls-port", String(tlsPort), "--tls-cert-file", tls.cert, "--tls-key-file", tls.key,
                "--tls-ca-cert-file", tls.ca, "--tls-auth-clients", "no",
            ]
        } else {
            self.tlsPort = nil
        }
        self.extraArguments = arguments
        self.directory = FileManager.default.temporaryDirectory.appendingPathComponent("redis-\(UUID())")
        try FileManager.default.createDirectory(at: self.directory, withIntermediateDirectories: true)
    }

    deinit {
        self.current?.signal(SIGKILL)
        try? FileManager.default.removeItem(at: self.directory)
    }

    /// Launches a server and returns once it answers `PING`.
    public static func start(
        password: String? = nil,
        tls: TLSFiles? = nil,
        extraArguments: [String] = []
    ) async throws -> RedisServer {
        for _ in 0..<20 {
            let server = try RedisServer(
                port: Int.random(in: 12_000..<20_000),
                tls: tls,
                password: password,
                extraArguments: extraArguments
            )
            if try await server.launch() { return server }
        }
        throw RedisServerError(description: "no free port for redis-server after 20 tries")
    }

    /// Stops the server (SIGTERM, then SIGKILL after 5 s) and waits until it has exited.
    public func stop() async {
        let process = self.lock.withLock { () -> RedisProcess? in
            defer { self.current = nil }
            return self.current
        }
        guard let process else { return }
        process.signal(SIGTERM)
        let watchdog = Task {
            try await Task.sleep(for: .seconds(5))
            process.signal(SIGKILL)
        }
        await process.exited()
        watchdog.cancel()
    }

    /// Stops the server and starts a new one on the same port (its data is gone).
    public func restart() async throws {
        await self.stop()
        for _ in 0..<50 {
            if try await self.launch() { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw RedisServerError(description: "port \(self.port) stayed in use; cannot restart redis-server")
    }

    /// Runs `redis-cli` against this server (with its password) and returns its output, trimmed.
    /// Blocks the calling thread until `redis-cli` exits (a few milliseconds): for assertions.
    @discardableResult
    public func cli(_ arguments: String...) -> String {
        self.cli(arguments)
    }

    /// ``cli(_:)-(String...)`` with the arguments in an array.
    @discardableResult
    public func cli(_ arguments: [String]) -> String {
        var all = ["-h", "127.0.0.1", "-p", String(self.port)]
        if let password = self.password { all += ["-a", password, "--no-auth-warning"] }
        do {
            let output = try CleanSpawn.run(Self.executable("redis-cli"), all + arguments)
            return output.trimmingCharacters(in: .whitespacesAndNewlines)
        } catch {
            return "redis-cli failed to start: \(error)"
        }
    }

    /// Everything the current server process has printed (for failure messages).
    public var output: String {
        self.lock.withLock { self.current }?.output ?? ""
    }

    /// `true` when the server is up and answering; `false` when the port was taken.
    private func launch() async throws -> Bool {
        var arguments = [
            "--port", String(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", self.directory.path,
        ]
        if let password = self.password { arguments += ["--requirepass", password] }
        let logFile = self.directory.appendingPathComponent("redis-\(UUID()).log").path
        arguments += ["--logfile", logFile]
        let process = try RedisProcess(Self.executable("redis-server"), arguments + self.extraArguments, logFile: logFile)
        let deadline = ContinuousClock.now + .seconds(20)
        while true {
            let output = process.output
            if output.contains("Address already in use") {
                process.signal(SIGKILL)
                await process.exited()
                return false
            }
            if output.contains("Ready to accept connections") { break }
            if !process.isRunning || ContinuousClock.now > deadline {
                process.signal(SIGKILL)
                throw RedisServerError(description: "redis-server did not start: \(output)")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        self.lock.withLock { self.current = process }
        let pong = self.cli("PING")
        guard pong == "PONG" else { throw RedisServerError(description: "redis-server answered PING with \(pong)") }
        return true
    }

    /// The first `name` on `PATH`, else `/usr/bin/name`.
    static func executable(_ name: String) -> String {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return "/usr/bin/\(name)"
    }
}

/// Starts a ``RedisServer``, runs `body` with it, and stops it on every path out.
public func withRedisServer<T>(
    password: String? = nil,
    tls: RedisServer.TLSFiles? = nil,
    extraArguments: [String] = [],
    _ body: (RedisServer) async throws -> T
) async throws -> T {
    let server = try await RedisServer.start(password: password, tls: tls, extraArguments: extraArguments)
    do {
        let result = try await body(server)
        await server.stop()
        return result
    } catch {
        await server.stop()
        throw error
    }
}

public struct RedisServerError: Error, CustomStringConvertible {
    public var description: String
}

/// One `redis-server` process, started by ``CleanSpawn`` (so SIGTERM reaches it and it holds
/// no descriptor of the test process). It logs to a file (`--logfile`), which is where
/// readiness is read from.
private final class RedisProcess: @unchecked Sendable {
    // @unchecked: `exitStatus` is only touched under `lock`; `pid` and `logFile` are immutable.
    let pid: pid_t
    private let logFile: String
    private let lock = NSLock()
    private var exitStatus: Int32?

    init(_ executable: String, _ arguments: [String], logFile: String) throws {
        self.logFile = logFile
        _ = FileManager.default.createFile(atPath: logFile, contents: nil)
        self.pid = try CleanSpawn.spawn(executable, arguments)
    }

    /// What the server has logged so far.
    var output: String {
        (try? String(contentsOfFile: self.logFile, encoding: .utf8)) ?? ""
    }

    /// Reaps the process if it has exited (never blocks).
    var isRunning: Bool {
        self.lock.withLock {
            if self.exitStatus != nil { return false }
            var status: Int32 = 0
            if waitpid(self.pid, &status, WNOHANG) == self.pid {
                self.exitStatus = status
                return false
            }
            return true
        }
    }

    func signal(_ signal: Int32) {
        guard self.isRunning else { return }
        kill(self.pid, signal)
    }

    /// Returns once the process has exited (polls `waitpid` without blocking a thread).
    func exited() async {
        while self.isRunning {
            // A cancelled test must still wait for its server to go: then sleep the thread.
            if (try? await Task.sleep(for: .milliseconds(5))) == nil { usleep(5_000) }
        }
    }
}
