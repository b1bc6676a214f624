import Foundation

/// A throwaway Redis under Sentinel for tests: a primary, one replica (`--replicaof`) and three sentinels
/// (`redis-server FILE --sentinel`, so `redis-server` alone is needed), all on 127.0.0.1.
///
/// The sentinels watch the primary as ``masterName`` with quorum 2, `down-after-milliseconds 1000` and
/// `failover-timeout 3000`, announcing 127.0.0.1: a killed primary is replaced within about 2–4 s. Their
/// configuration files (which Sentinel rewrites) live in a temporary directory. ``start(masterName:)`` returns once
/// the replica is in sync and every sentinel knows the replica and the two other sentinels (a failover needs them).
/// Use ``withRedisSentinelSet(masterName:_:)`` so every process is stopped whatever the test does.
public final class RedisSentinelSet: Sendable {
    public let primary: RedisServer
    public let replica: RedisServer
    public let sentinels: [SentinelProcess]
    public let masterName: String

    private init(primary: RedisServer, replica: RedisServer, sentinels: [SentinelProcess], masterName: String) {
        self.primary = primary
        self.replica = replica
        self.sentinels = sentinels
        self.masterName = masterName
    }

    /// `redis+sentinel://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/NAME`.
    public var url: String {
        "redis+sentinel://" + self.sentinels.map { "127.0.0.1:\($0.port)" }.joined(separator: ",") + "/\(self.masterName)"
    }

    /// - Parameters:
    ///   - password: `requirepass` of the primary and the replica (and the sentinels' `auth-pass`).
    ///   - sentinelPassword: `requirepass` of the sentinels (and their `sentinel-pass` among themselves).
    public static func start(
        masterName: String = "sluice-primary",
        password: String? = nil,
        sentinelPassword: String? = nil
    ) async throws -> RedisSentinelSet {
        let primary = try await RedisServer.start(password: password, extraArguments: password.map { ["--masterauth", $0] } ?? [])
        var replica: RedisServer?
        var sentinels: [SentinelProcess] = []
        do {
            replica = try await RedisServer.start(
                password: password,
                extraArguments: ["--replicaof", "127.0.0.1", String(primary.port)] + (password.map { ["--masterauth", $0] } ?? [])
            )
            try await Self.waitUntil("the replica is in sync") {
                replica!.cli("INFO", "replication").contains("master_link_status:up")
            }
            for _ in 0..<3 {
                sentinels.append(
                    try await SentinelProcess.start(
                        masterName: masterName,
                        primaryPort: primary.port,
                        primaryPassword: password,
                        password: sentinelPassword
                    )
                )
            }
            for sentinel in sentinels {
                try await Self.waitUntil("sentinel \(sentinel.port) knows the replica and the other sentinels") {
                    let master = sentinel.cli("SENTINEL", "master", masterName)
                    return Self.field("num-slaves", in: master) == "1" && Self.field("num-other-sentinels", in: master) == "2"
                }
            }
        } catch {
            for sentinel in sentinels { await sentinel.stop() }
            await replica?.stop()
            await primary.stop()
            throw error
        }
        return RedisSentinelSet(primary: primary, replica: replica!, sentinels: sentinels, masterName: masterName)
    }

    /// SIGKILLs the primary (no shutdown, no goodbye to its clients); ``stop()`` still reaps it.
    public func killPrimary() throws {
        let info = self.primary.cli("INFO", "server")
        guard let pid = Self.field("process_id", in: info, separator: ":").flatMap({ pid_t($0) }) else {
            throw RedisServerError(description: "no process_id in INFO server: \(info)")
        }
        kill(pid, SIGKILL)
    }

    /// What the sentinels name as the primary now (`host:port`), asked of the first that answers.
    public func primaryNamedBySentinels() -> String? {
        for sentinel in self.sentinels {
            let lines = sentinel.cli("SENTINEL", "get-master-addr-by-name", self.masterName).split(whereSeparator: \.isNewline)
            if lines.count == 2 { return "\(lines[0]):\(lines[1])" }
        }
        return nil
    }

    /// Whether at least one sentinel names `address` (`host:port`) as the primary (the leader of a failover
    /// switches first; the others learn it from its hello messages a moment later).
    public func someSentinelNames(_ address: String) -> Bool {
        self.sentinels.contains { sentinel in
            let lines = sentinel.cli("SENTINEL", "get-master-addr-by-name", self.masterName).split(whereSeparator: \.isNewline)
            return lines.count == 2 && "\(lines[0]):\(lines[1])" == address
        }
    }

    public func stop() async {
        for sentinel in self.sentinels { await sentinel.stop() }
        await self.replica.stop()
        await self.primary.stop()
    }

    /// The value after `name` in `redis-cli`'s one-item-per-line output of a flat list (`SENTINEL master`), or in
    /// `INFO`'s `name:value` lines.
    static func field(_ name: String, in output: String, separator: Character? = nil) -> String? {
        let lines = output.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        if let separator {
            for line in lines where line.hasPrefix(name + String(separator)) {
                return String(line.dropFirst(name.count + 1))
            }
            return nil
        }
        guard let index = lines.firstIndex(of: name), index + 1 < lines.count else { return nil }
        return lines[index + 1]
    }

    static func waitUntil(_ what: String, within timeout: Duration = .seconds(20), _ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while !condition() {
            if ContinuousClock.now > deadline { throw RedisServerError(description: "\(what): not within \(timeout)") }
            try await Task.sleep(for: .milliseconds(50))
        }
    }
}

/// Starts a ``RedisSentinelSet``, runs `body` with it, and stops every process on every path out.
public func withRedisSentinelSet<T>(
    masterName: String = "sluice-primary",
    password: String? = nil,
    sentinelPassword: String? = nil,
    _ body: (RedisSentinelSet) async throws -> T
) async throws -> T {
    let set = try await RedisSentinelSet.start(masterName: masterName, password: password, sentinelPassword: sentinelPassword)
    do {
        let result = try await body(set)
        await set.stop()
        return result
    } catch {
        await set.stop()
        throw error
    }
}

/// One `redis-server FILE --sentinel` process with its configuration file in a temporary directory of its own.
public final class SentinelProcess: @unchecked Sendable {
    // @unchecked: `exitStatus` is only touched under `lock`; everything else is immutable.
    public let port: Int
    /// Its `requirepass`, sent by ``cli(_:)``.
    public let password: String?
    private let pid: pid_t
    private let directory: URL
    private let logFile: String
    private let lock = NSLock()
    private var exitStatus: Int32?

    private init(port: Int, password: String?, pid: pid_t, directory: URL, logFile: String) {
        self.port = port
        self.password = password
        self.pid = pid
        self.directory = directory
        self.logFile = logFile
    }

    deinit {
        if self.isRunning { _ = Foundation.kill(self.pid, SIGKILL) }
        try? FileManager.default.removeItem(at: self.directory)
    }

    /// Launches a sentinel on a free port watching `127.0.0.1:primaryPort`; returns once it answers `PING`.
    static func start(
        masterName: String,
        primaryPort: Int,
        primaryPassword: String?,
        password: String?
    ) async throws -> SentinelProcess {
        var secrets = ""
        if let primaryPassword { secrets += "sentinel auth-pass \(masterName) \(primaryPassword)\n" }
        if let password { secrets += "requirepass \(password)\nsentinel sentinel-pass \(password)\n" }
        for _ in 0..<20 {
            let port = Int.random(in: 12_000..<20_000)
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sentinel-\(UUID())")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let config = directory.appendingPathComponent("sentinel.conf").path
            let logFile = directory.appendingPathComponent("sentinel.log").path
            try """
            port \(port)
            bind 127.0.0.1
            daemonize no
            dir \(directory.path)
            logfile \(logFile)
            sentinel resolve-hostnames no
            sentinel announce-ip 127.0.0.1
            sentinel announce-port \(port)
            sentinel monitor \(masterName) 127.0.0.1 \(primaryPort) 2
            sentinel down-after-milliseconds \(masterName) 1000
            sentinel failover-timeout \(masterName) 3000
            sentinel parallel-syncs \(masterName) 1
            \(secrets)
            """.write(toFile: config, atomically: true, encoding: .utf8)
            _ = FileManager.default.createFile(atPath: logFile, contents: nil)
            let pid = try CleanSpawn.spawn(Self.redisServer, [config, "--sentinel"])
            let sentinel = SentinelProcess(port: port, password: password, pid: pid, directory: directory, logFile: logFile)
            if try await sentinel.ready() { return sentinel }
        }
        throw RedisServerError(description: "no free port for a sentinel after 20 tries")
    }

    /// `true` once it answers; `false` when its port was taken (it has exited then).
    private func ready() async throws -> Bool {
        let deadline = ContinuousClock.now + .seconds(20)
        while true {
            let log = self.output
            if log.contains("Address already in use") {
                await self.stop()
                return false
            }
            if log.contains("Sentinel ID is"), self.cli("PING") == "PONG" { return true }
            if !self.isRunning || ContinuousClock.now > deadline {
                await self.stop()
                throw RedisServerError(description: "sentinel did not start: \(log)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// What it has logged so far.
    public var output: String {
        (try? String(contentsOfFile: self.logFile, encoding: .utf8)) ?? ""
    }

    /// Runs `redis-cli` against it and returns the output, trimmed (blocks for a few milliseconds).
    @discardableResult
    public func cli(_ arguments: String...) -> String {
        do {
            var all = ["-h", "127.0.0.1", "-p", String(self.port)]
            if let password = self.password { all += ["-a", password, "--no-auth-warning"] }
            let output = try CleanSpawn.run(Self.redisCLI, all + arguments)
            return output.trimmingCharacters(in: .whitespacesAndNewlines)
        } catch {
            return "redis-cli failed to start: \(error)"
        }
    }

    /// SIGKILLs it (a sentinel that dies without a word).
    public func kill() {
        if self.isRunning { _ = Foundation.kill(self.pid, SIGKILL) }
    }

    /// SIGTERM, SIGKILL after 5 s; returns once it has exited.
    public func stop() async {
        guard self.isRunning else { return }
        Foundation.kill(self.pid, SIGTERM)
        let deadline = ContinuousClock.now + .seconds(5)
        while self.isRunning {
            if ContinuousClock.now > deadline { Foundation.kill(self.pid, SIGKILL) }
            if (try? await Task.sleep(for: .milliseconds(5))) == nil { usleep(5_000) }
        }
    }

    private var isRunning: Bool {
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

    private static var redisServer: String { Self.executable("redis-server") }
    private static var redisCLI: String { Self.executable("redis-cli") }

    private static func executable(_ name: String) -> String {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return "/usr/bin/\(name)"
    }
}
