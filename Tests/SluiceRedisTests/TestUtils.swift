import Foundation
import Logging
import NIOCore
import NIOPosix
import SluiceRedis
import SluiceTestSupport
import Synchronization
import Testing

/// The tests that run a real `redis-server`, one at a time.
///
/// Serialized so that they never load both cores of a small machine at once: the end-to-end
/// suites of other targets, running in the same process, measure delays to within 150 ms.
/// Each test has a time limit, and every command a timeout: a hang fails instead of stalling.
@Suite(.serialized, .timeLimit(.minutes(1))) enum RedisIntegrationTests {}

/// Shared by every socket test of this target; never shut down (it is the process singleton).
let testGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton

/// Connection state lines are not wanted in test output.
let quietLogger: Logger = {
    var logger = Logger(label: "sluice.redis.test")
    logger.logLevel = .critical
    return logger
}()

struct TestTimeout: Error, CustomStringConvertible {
    var description: String
}

/// Polls `condition` until it holds, failing after `timeout` (swift-nio's `assert(_:within:)`).
func eventually(
    within timeout: Duration = .seconds(5),
    _ what: String,
    _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while !(try await condition()) {
        if ContinuousClock.now >= deadline { throw TestTimeout(description: "\(what): not true within \(timeout)") }
        try await Task.sleep(for: .milliseconds(10))
    }
}

/// A loopback port nothing listens on, outside the ephemeral range (see ``RedisServer``).
///
/// Checked with a plain socket that is bound, never listens, and is closed at once: a NIO
/// listener closed through its channel may still complete a handshake or two right after.
func closedPort() throws -> Int {
    for _ in 0..<200 {
        let candidate = Int.random(in: 20_000..<32_000)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { break }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(candidate).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
        close(fd)
        if bound { return candidate }
    }
    throw TestTimeout(description: "no closed port found")
}

/// The error a future failed with, or `nil` if it succeeded.
func failure<T: Sendable>(of future: EventLoopFuture<T>) async -> RedisError? {
    do {
        _ = try await future.get()
        return nil
    } catch let error as RedisError {
        return error
    } catch {
        Issue.record("not a RedisError: \(error)")
        return nil
    }
}

extension RedisServer {
    var endpoint: RedisEndpoint { RedisEndpoint(host: "127.0.0.1", port: self.port, password: self.password) }

    func connect(
        database: Int = 0,
        username: String? = nil,
        password: String?? = .none,
        commandTimeout: TimeAmount = .seconds(5)
    ) async throws -> RedisConnection {
        var endpoint = self.endpoint
        endpoint.database = database
        endpoint.username = username
        if case .some(let password) = password { endpoint.password = password }
        return try await RedisConnection.connect(
            to: endpoint,
            on: testGroup.next(),
            connectTimeout: .seconds(2),
            commandTimeout: commandTimeout,
            logger: quietLogger
        ).get()
    }

    /// Client connections other than the `redis-cli` asking.
    func clientCount() -> Int {
        self.cli("CLIENT", "LIST").split(separator: "\n").filter { !$0.contains("cmd=client|list") }.count
    }
}

/// Collects the log lines (`level message`) of the loggers it makes, at info and above.
final class LogRecorder: Sendable {
    private let lines = Mutex<[String]>([])

    var messages: [String] { self.lines.withLock { $0 } }

    func logger() -> Logger {
        Logger(label: "sluice.redis.test") { _ in Handler(recorder: self) }
    }

    fileprivate func append(_ line: String) {
        self.lines.withLock { $0.append(line) }
    }

    private struct Handler: LogHandler {
        let recorder: LogRecorder
        var metadata: Logger.Metadata = [:]
        var metadataProvider: Logger.MetadataProvider?
        var logLevel: Logger.Level = .info

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { self.metadata[key] }
            set { self.metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            self.recorder.append("\(event.level) \(event.message)")
        }
    }
}
