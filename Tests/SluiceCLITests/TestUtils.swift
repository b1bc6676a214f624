import Foundation
import NIOCore
import NIOPosix
import SluiceTestSupport
import Testing

/// Shared helpers of the black-box tests: temp config files, a running `sluice serve` in front of
/// a ``TestUpstream``, and one-shot HTTP requests over real sockets.
enum E2E {
    static var group: EventLoopGroup { MultiThreadedEventLoopGroup.singleton }

    /// Writes `yaml` to a fresh temp file and returns its path.
    static func writeConfig(_ yaml: String, name: String = "sluice") throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(UUID()).yaml").path
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Replaces the file's contents in place (same inode, like an editor saving over it).
    static func rewrite(_ path: String, _ yaml: String) throws {
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.truncate(atOffset: 0)
        try handle.write(contentsOf: Data(yaml.utf8))
        try handle.close()
    }

    /// A config with the usual test server section: loopback port 0, one thread, no access log.
    static func config(
        upstreamPort: Int,
        server: String = "",
        accessLog: String = "\"off\"",
        rest: String
    ) -> String {
        """
        version: 1
        server:
          listen: "127.0.0.1:0"
          threads: 1
          access_log: \(accessLog)
        \(server)
        upstream:
          url: http://127.0.0.1:\(upstreamPort)
        \(rest)
        """
    }

    /// A running `sluice serve` in front of a fresh ``TestUpstream``.
    struct Running {
        let process: SluiceProcess
        let port: Int
        let upstream: TestUpstream
        let path: String
    }

    /// Starts an upstream and `sluice serve --config` with `makeConfig(upstreamPort)`; runs `body`;
    /// then stops sluice with SIGTERM and expects exit 0.
    static func withSluice(
        _ makeConfig: (Int) -> String,
        arguments: (String) -> [String] = { ["serve", "--config", $0] },
        _ body: (Running) async throws -> Void
    ) async throws {
        // Inside ``TestLoadGate`` (shared): many of these tests measure time.
        try await TestLoadGate.shared { try await Self.withSluiceUngated(makeConfig, arguments: arguments, body) }
    }

    private static func withSluiceUngated(
        _ makeConfig: (Int) -> String,
        arguments: (String) -> [String],
        _ body: (Running) async throws -> Void
    ) async throws {
        let upstream = try await TestUpstream(group: Self.group)
        let path = try Self.writeConfig(makeConfig(upstream.port))
        let process = try SluiceProcess(arguments(path))
        do {
            let port = try await process.listeningPort()
            try await body(Running(process: process, port: port, upstream: upstream, path: path))
            process.signal(SIGTERM)
            let status = try await process.waitForExit()
            #expect(status == 0, "sluice exited \(status): \(process.outputSoFar)")
            await upstream.close()
            try? FileManager.default.removeItem(atPath: path)
        } catch {
            process.signal(SIGTERM)
            await upstream.close()
            try? FileManager.default.removeItem(atPath: path)
            throw error
        }
    }

    /// Sends one request on a new connection and reads the response.
    static func request(
        port: Int,
        _ target: String,
        method: String = "GET",
        headers: [(String, String)] = [],
        body: String = "",
        host: String = "test.local"
    ) async throws -> RawHTTPClient.Response {
        let client = try await RawHTTPClient.connect(port: port, group: Self.group)
        let response: RawHTTPClient.Response
        do {
            try await client.send(Self.requestText(target, method: method, headers: headers, body: body, host: host))
            response = try await client.readResponse(isHEAD: method == "HEAD")
        } catch {
            await client.close()
            throw error
        }
        await client.close()
        return response
    }

    static func requestText(
        _ target: String,
        method: String = "GET",
        headers: [(String, String)] = [],
        body: String = "",
        host: String = "test.local"
    ) -> String {
        var text = "\(method) \(target) HTTP/1.1\r\nHost: \(host)\r\n"
        for (name, value) in headers { text += "\(name): \(value)\r\n" }
        if !body.isEmpty || method == "POST" { text += "Content-Length: \(body.utf8.count)\r\n" }
        text += "\r\n" + body
        return text
    }

    /// One request to the admin listener on `port`, with `Host: 127.0.0.1`: without `admin_token`, the admin
    /// listener answers other names with 421 (DNS rebinding defence).
    static func adminRequest(
        port: Int,
        _ target: String,
        method: String = "GET",
        headers: [(String, String)] = []
    ) async throws -> RawHTTPClient.Response {
        try await Self.request(port: port, target, method: method, headers: headers, host: "127.0.0.1")
    }

    /// Sends `count` requests, each on its own connection; returns their statuses.
    static func statuses(
        port: Int,
        _ target: String,
        count: Int,
        headers: [(String, String)] = []
    ) async throws -> [Int] {
        var result: [Int] = []
        for _ in 0..<count {
            result.append(try await Self.request(port: port, target, headers: headers).status)
        }
        return result
    }

    /// Polls `condition` every 20 ms until it holds; records an issue and throws after `timeout`.
    static func eventually(
        _ what: String,
        timeout: Duration = .seconds(10),
        _ condition: () async throws -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        while try await !condition() {
            if ContinuousClock.now > deadline {
                Issue.record("timed out waiting for: \(what)")
                throw CancellationError()
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Seconds since the Unix epoch.
    static var unixNow: Double { Date().timeIntervalSince1970 }

    /// `server:` lines that trust the loopback peer, so `X-Forwarded-For` names the client IP (SPEC §4).
    static let trustLoopback = "  trusted_proxies: [\"127.0.0.1/32\"]"

    /// Headers that make a request come from client `ip` behind a trusted loopback peer (``trustLoopback``).
    static func from(_ ip: String, _ more: [(String, String)] = []) -> [(String, String)] {
        [("X-Forwarded-For", ip)] + more
    }

    /// Sleeps until `instant` (returns at once if it has passed).
    static func sleep(until instant: ContinuousClock.Instant) async throws {
        let now = ContinuousClock.now
        if instant > now { try await Task.sleep(for: instant - now) }
    }

    /// A response and when its last byte had arrived.
    struct TimedResponse {
        let response: RawHTTPClient.Response
        let arrived: ContinuousClock.Instant
    }

    /// Writes `targets` as pipelined requests in ONE write on `client`, then reads one response per request,
    /// noting when each arrived.
    static func pipeline(
        _ client: RawHTTPClient,
        _ targets: [String],
        headers: [(String, String)] = [],
        timeout: Duration = .seconds(10)
    ) async throws -> [TimedResponse] {
        try await client.send(targets.map { Self.requestText($0, headers: headers) }.joined())
        var result: [TimedResponse] = []
        for _ in targets {
            let response = try await client.readResponse(timeout: timeout)
            result.append(TimedResponse(response: response, arrived: .now))
        }
        return result
    }

    /// Opens `count` connections first, then sends one request on each at (nearly) the same moment;
    /// returns the responses in connection order with their arrival times, and the moment sending began.
    static func concurrentRequests(
        port: Int,
        _ target: String,
        count: Int,
        headers: [(String, String)] = []
    ) async throws -> (start: ContinuousClock.Instant, responses: [TimedResponse]) {
        var clients: [RawHTTPClient] = []
        for _ in 0..<count { clients.append(try await RawHTTPClient.connect(port: port, group: Self.group)) }
        let text = Self.requestText(target, headers: headers)
        let start = ContinuousClock.now
        do {
            let responses = try await withThrowingTaskGroup(of: (Int, TimedResponse).self) { group in
                for (index, client) in clients.enumerated() {
                    group.addTask {
                        try await client.send(text)
                        let response = try await client.readResponse()
                        return (index, TimedResponse(response: response, arrived: .now))
                    }
                }
                var byIndex: [Int: TimedResponse] = [:]
                for try await (index, timed) in group { byIndex[index] = timed }
                return (0..<count).map { byIndex[$0]! }
            }
            for client in clients { await client.close() }
            return (start, responses)
        } catch {
            for client in clients { await client.close() }
            throw error
        }
    }
}

extension Duration {
    /// Whole milliseconds, for messages and comparisons.
    var milliseconds: Int64 {
        let (seconds, attoseconds) = self.components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}

/// `"NAME";r=N;t=T` → (name, r, t).
struct RateLimitField: Equatable {
    var name: String
    var remaining: Int
    var reset: Int

    init?(_ text: String?) {
        guard let text else { return nil }
        let parts = text.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
        guard parts.count == 3, parts[0].hasPrefix("\""), parts[0].hasSuffix("\""),
            parts[1].hasPrefix("r="), parts[2].hasPrefix("t="),
            let r = Int(parts[1].dropFirst(2)), let t = Int(parts[2].dropFirst(2))
        else { return nil }
        self.name = String(parts[0].dropFirst().dropLast())
        self.remaining = r
        self.reset = t
    }
}

extension RawHTTPClient.Response {
    /// Every rate-limit related header present.
    var rateLimitHeaderNames: [String] {
        self.headers.map(\.0).filter {
            ["ratelimit", "ratelimit-policy", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"]
                .contains($0)
        }
    }

    var rateLimit: RateLimitField? { RateLimitField(self.header("RateLimit")) }

    /// `Retry-After` as an integer; nil when absent or not a number.
    var retryAfter: Int? { self.header("Retry-After").flatMap { Int($0) } }
}
