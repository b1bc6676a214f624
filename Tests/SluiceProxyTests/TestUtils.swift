import NIOCore
import NIOPosix
import SluiceConfig
import SluiceTestSupport
import Testing

struct TestTimeout: Error, CustomStringConvertible {
    var description: String
}

/// Runs `body`, failing with ``TestTimeout`` if it takes longer than `timeout` (a hang fails
/// instead of stalling the suite).
func withTimeout<T: Sendable>(
    _ timeout: Duration = .seconds(10),
    _ what: String = "operation",
    _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: timeout)
            throw TestTimeout(description: "\(what) did not finish within \(timeout)")
        }
        defer { group.cancelAll() }
        return try await group.next()!
    }
}

/// Polls `condition` until it holds, failing after `timeout` (swift-nio's `assert(_:within:)`).
func eventually(
    within timeout: Duration = .seconds(5),
    _ what: String,
    _ condition: () async -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while !(await condition()) {
        if ContinuousClock.now >= deadline { throw TestTimeout(description: "\(what): not true within \(timeout)") }
        try await Task.sleep(for: .milliseconds(10))
    }
}

/// A loopback port nothing listens on (bound, then closed). Taken outside the kernel's
/// ephemeral range (32768–60999), where the port-0 listeners of concurrently running tests
/// could otherwise be given the same port.
func closedPort() async throws -> Int {
    for _ in 0..<200 {
        let candidate = Int.random(in: 20_000..<32_000)
        if let channel = try? await ServerBootstrap(group: ProxyHarness.group).bind(host: "127.0.0.1", port: candidate).get() {
            try await channel.close()
            return candidate
        }
    }
    throw CancellationError()
}

extension ProxyHarness {
    func streamingClient(autoRead: Bool = true) async throws -> StreamingHTTPClient {
        try await StreamingHTTPClient.connect(port: self.port, group: Self.group, autoRead: autoRead)
    }

    /// Asserts the proxy still answers a plain request on a fresh connection.
    func expectStillServing(sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let response = try await self.get("/hello")
        #expect(response.status == 200, sourceLocation: sourceLocation)
        #expect(response.bodyString == "hello", sourceLocation: sourceLocation)
    }
}

/// Body lines of `/echo-headers` as (name, value) pairs; the first line is `METHOD URI`.
func echoedHeaders(_ body: String) -> (requestLine: String, headers: [(String, String)]) {
    var lines = body.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
    let first = lines.isEmpty ? "" : lines.removeFirst()
    let headers = lines.compactMap { line -> (String, String)? in
        guard let colon = line.firstIndex(of: ":") else { return nil }
        return (String(line[..<colon]), String(line[line.index(colon, offsetBy: 2)...]))
    }
    return (first, headers)
}

extension Array where Element == (String, String) {
    func values(_ name: String) -> [String] {
        self.filter { $0.0 == name.lowercased() }.map(\.1)
    }
}
