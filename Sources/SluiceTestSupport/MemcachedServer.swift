import Foundation

/// A throwaway `memcached` for tests, on 127.0.0.1 and a port of its own (issue 21).
///
/// `memcached -p 0` does not say which port it took, so a port is picked at random in the band ``RedisServer``
/// uses (below the ephemeral range, outside the closed-port probes of other tests), and the server is started as
/// `memcached -l 127.0.0.1 -p PORT -U 0 -m 64`; a server that exits at once (port taken) is replaced on another
/// port. Ready once it accepts a connection. Use ``withMemcachedServer(_:)`` so the server is stopped whatever the
/// test does.
public final class MemcachedServer: @unchecked Sendable {
    // @unchecked: the only mutable field, `current`, is read and written under `lock`.
    public let port: Int
    private let lock = NSLock()
    private var current: pid_t?
    private let logFile: String

    private init(port: Int) {
        self.port = port
        self.logFile = FileManager.default.temporaryDirectory.appendingPathComponent("memcached-\(UUID()).log").path
    }

    deinit {
        if let pid = self.current {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
        try? FileManager.default.removeItem(atPath: self.logFile)
    }

    /// `host:port` as the store's configuration writes it.
    public var address: String { "127.0.0.1:\(self.port)" }

    /// The `memcached` executable; fails with a clear message when it is not installed.
    public static func executable() throws -> String {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin"
        for directory in path.split(separator: ":") + ["/usr/bin", "/usr/local/bin"] {
            let candidate = "\(directory)/memcached"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw RedisServerError(
            description: "memcached is not installed: the memcached tests start real servers. Run scripts/test (it "
                + "installs memcached with apt-get), or install it (apt-get install -y memcached)"
        )
    }

    /// Launches a server and returns once it accepts connections.
    public static func start() async throws -> MemcachedServer {
        let executable = try Self.executable()
        for _ in 0..<20 {
            let server = MemcachedServer(port: Int.random(in: 12_000..<20_000))
            if try await server.launch(executable) { return server }
        }
        throw RedisServerError(description: "no free port for memcached after 20 tries")
    }

    /// Stops the server (SIGTERM, then SIGKILL) and waits until it has exited; its data is gone.
    public func stop() async {
        let pid = self.lock.withLock { () -> pid_t? in
            defer { self.current = nil }
            return self.current
        }
        guard let pid else { return }
        kill(pid, SIGTERM)
        let deadline = ContinuousClock.now + .seconds(5)
        while !Self.reap(pid) {
            if ContinuousClock.now > deadline { kill(pid, SIGKILL) }
            if (try? await Task.sleep(for: .milliseconds(5))) == nil { usleep(5_000) }
        }
    }

    /// Stops the server and starts a new one on the same port (empty).
    public func restart() async throws {
        await self.stop()
        let executable = try Self.executable()
        for _ in 0..<50 {
            if try await self.launch(executable) { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw RedisServerError(description: "port \(self.port) stayed in use; cannot restart memcached")
    }

    /// What the server printed (for failure messages).
    public var output: String {
        (try? String(contentsOfFile: self.logFile, encoding: .utf8)) ?? ""
    }

    /// `true` once the server accepts connections; `false` when it exited (the port was taken).
    private func launch(_ executable: String) async throws -> Bool {
        // Someone else's server on this port would pass for ours.
        if Self.accepts(port: self.port) { return false }
        var arguments = ["-l", "127.0.0.1", "-p", String(self.port), "-U", "0", "-m", "64", "-c", "1024"]
        // memcached refuses to run as root without a user to switch to.
        if getuid() == 0 { arguments += ["-u", "root"] }
        let fd = open(self.logFile, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw RedisServerError(description: "cannot open \(self.logFile)") }
        let pid: pid_t
        do {
            pid = try CleanSpawn.spawn(executable, arguments, output: fd)
            close(fd)
        } catch {
            close(fd)
            throw error
        }
        let deadline = ContinuousClock.now + .seconds(10)
        while true {
            if Self.reap(pid) { return false }
            if Self.accepts(port: self.port) { break }
            if ContinuousClock.now > deadline {
                kill(pid, SIGKILL)
                _ = Self.reap(pid)
                throw RedisServerError(description: "memcached did not start: \(self.output)")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        self.lock.withLock { self.current = pid }
        return true
    }

    /// Whether the process has exited (reaped now if so); never blocks.
    private static func reap(_ pid: pid_t) -> Bool {
        var status: Int32 = 0
        let result = waitpid(pid, &status, WNOHANG)
        return result == pid || (result == -1 && errno == ECHILD)
    }

    /// Whether something accepts TCP connections on 127.0.0.1:`port`.
    static func accepts(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }
}

/// Starts a ``MemcachedServer``, runs `body` with it, and stops it on every path out.
public func withMemcachedServer<T>(_ body: (MemcachedServer) async throws -> T) async throws -> T {
    let server = try await MemcachedServer.start()
    do {
        let result = try await body(server)
        await server.stop()
        return result
    } catch {
        await server.stop()
        throw error
    }
}
