import Foundation

/// Starts a child process that inherits nothing from the test process but its environment.
///
/// Foundation's `Process` is not used for test servers because of two things it passes on:
/// - the signal mask of the calling thread, and the threads Swift concurrency runs on block
///   SIGTERM, so a server would ignore it;
/// - every descriptor not marked close-on-exec (NIO's sockets among them), so a child would
///   keep another test's listener open and its port taken after that test closed it.
///
/// Here the child gets an empty signal mask, default signal handlers, `/dev/null` as stdin,
/// stdout and stderr (or `output` as stdout and stderr), and no other descriptor.
public enum CleanSpawn {
    /// Spawns `executable` with `arguments`; returns its pid (reap it with `waitpid`).
    /// - Parameter environment: the child's whole environment; the test process's when `nil`.
    public static func spawn(
        _ executable: String,
        _ arguments: [String],
        output: Int32? = nil,
        environment: [String: String]? = nil
    ) throws -> pid_t {
        #if canImport(Darwin)
        var attributes: posix_spawnattr_t? = nil
        var actions: posix_spawn_file_actions_t? = nil
        #else
        var attributes = posix_spawnattr_t()
        var actions = posix_spawn_file_actions_t()
        #endif
        posix_spawnattr_init(&attributes)
        posix_spawn_file_actions_init(&actions)
        defer {
            posix_spawnattr_destroy(&attributes)
            posix_spawn_file_actions_destroy(&actions)
        }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)
        var flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF
        #if canImport(Darwin)
        flags |= POSIX_SPAWN_CLOEXEC_DEFAULT
        #endif
        posix_spawnattr_setflags(&attributes, Int16(flags))
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        if let output {
            posix_spawn_file_actions_adddup2(&actions, output, 1)
            posix_spawn_file_actions_adddup2(&actions, output, 2)
        } else {
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        }
        #if !canImport(Darwin)
        Self.closeDescriptors(from: 3, &actions)
        #endif
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let envp = environment.map { $0.map { strdup("\($0.key)=\($0.value)") } + [nil] }
        defer { envp?.forEach { free($0) } }
        var pid = pid_t()
        let result = envp == nil
            ? posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
            : posix_spawn(&pid, executable, &actions, &attributes, argv, envp!)
        guard result == 0 else {
            throw RedisServerError(description: "cannot spawn \(executable): errno \(result)")
        }
        return pid
    }

    /// Runs `executable` to completion and returns what it printed (stdout and stderr).
    /// Blocks the calling thread meanwhile: for short commands only.
    public static func run(_ executable: String, _ arguments: [String]) throws -> String {
        var fds: [Int32] = [0, 0]
        guard Self.makePipe(&fds) == 0 else { throw RedisServerError(description: "pipe failed: errno \(errno)") }
        let reader = FileHandle(fileDescriptor: fds[0], closeOnDealloc: true)
        let pid: pid_t
        do {
            pid = try Self.spawn(executable, arguments, output: fds[1])
        } catch {
            close(fds[1])
            throw error
        }
        close(fds[1])
        let data = reader.readDataToEndOfFile()
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        return String(decoding: data, as: UTF8.self)
    }

    /// A pipe whose ends are close-on-exec from the start: a child spawned meanwhile by
    /// another test (through Foundation) must not hold the write end, or the read would wait
    /// for that child to exit. `pipe2` is looked up at run time (not in Swift's Glibc module).
    public static func makePipe(_ fds: inout [Int32]) -> Int32 {
        #if !canImport(Darwin)
        typealias Pipe2 = @convention(c) (UnsafeMutablePointer<Int32>, Int32) -> Int32
        if let symbol = dlsym(nil, "pipe2") {
            return fds.withUnsafeMutableBufferPointer { unsafeBitCast(symbol, to: Pipe2.self)($0.baseAddress!, O_CLOEXEC) }
        }
        #endif
        guard pipe(&fds) == 0 else { return -1 }
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        return 0
    }

    #if !canImport(Darwin)
    /// `posix_spawn_file_actions_addclosefrom_np` (glibc 2.34+), looked up at run time because
    /// Swift's Glibc module does not declare it; else each descriptor open right now.
    private static func closeDescriptors(from first: Int32, _ actions: inout posix_spawn_file_actions_t) {
        typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
        if let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") {
            _ = unsafeBitCast(symbol, to: AddCloseFrom.self)(&actions, first)
            return
        }
        let open = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        for fd in open.compactMap({ Int32($0) }) where fd >= first {
            posix_spawn_file_actions_addclose(&actions, fd)
        }
    }
    #endif
}
