import Foundation
import SluiceTestSupport
import Testing

/// `sluice serve` as a process (SPEC §1): the listening line, draining signals, exit codes.
@Suite("sluice serve")
struct ServeCommandTests {
    static func plainConfig(_ upstreamPort: Int) -> String {
        E2E.config(upstreamPort: upstreamPort, rest: "rules: []\n")
    }

    @Test func printsListeningLineAndProxies() async throws {
        try await E2E.withSluice(Self.plainConfig) { sluice async throws in
            #expect(sluice.process.outputSoFar.contains("sluice listening on 127.0.0.1:\(sluice.port)\n"))
            let response = try await E2E.request(port: sluice.port, "/hello")
            #expect(response.status == 200)
            #expect(response.bodyString == "hello")
            #expect(sluice.upstream.requestURIs == ["/hello"])
        }
    }

    @Test func defaultSubcommandServes() async throws {
        try await E2E.withSluice(Self.plainConfig, arguments: { ["--config", $0] }) { sluice async throws in
            let response = try await E2E.request(port: sluice.port, "/hello")
            #expect(response.status == 200)
            #expect(response.bodyString == "hello")
        }
    }

    /// SIGTERM drains: the request in flight completes, then the process exits 0.
    @Test(arguments: [SIGTERM, SIGINT])
    func signalDrainsInFlightRequestThenExits0(signal: Int32) async throws {
        let upstream = try await TestUpstream(group: E2E.group)
        defer { Task { await upstream.close() } }
        let path = try E2E.writeConfig(Self.plainConfig(upstream.port))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let process = try SluiceProcess(["serve", "--config", path])
        let port = try await process.listeningPort()

        let client = try await RawHTTPClient.connect(port: port, group: E2E.group)
        try await client.send(E2E.requestText("/slow?ms=800"))
        try await E2E.eventually("the slow request reached the upstream") {
            upstream.requestURIs.contains("/slow?ms=800")
        }
        let signalled = ContinuousClock.now
        process.signal(signal)

        let response = try await client.readResponse()
        #expect(response.status == 200)
        #expect(response.bodyString == "slow")
        await client.close()
        let status = try await process.waitForExit()
        #expect(status == 0, "\(process.outputSoFar)")
        // It did not wait out the 15 s shutdown timeout once the last exchange finished.
        #expect(ContinuousClock.now - signalled < .seconds(10))
    }

    /// While draining, new connections are not served, and an in-flight keep-alive exchange ends its connection.
    @Test func drainingStopsAccepting() async throws {
        let upstream = try await TestUpstream(group: E2E.group)
        defer { Task { await upstream.close() } }
        let path = try E2E.writeConfig(Self.plainConfig(upstream.port))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let process = try SluiceProcess(["serve", "--config", path])
        let port = try await process.listeningPort()

        let client = try await RawHTTPClient.connect(port: port, group: E2E.group)
        try await client.send(E2E.requestText("/slow?ms=1500"))
        try await E2E.eventually("the slow request reached the upstream") {
            upstream.requestURIs.contains("/slow?ms=1500")
        }
        process.signal(SIGTERM)
        // A new connection is refused, or closed without an answer.
        try await E2E.eventually("new connections are no longer served", timeout: .seconds(1)) {
            guard let late = try? await RawHTTPClient.connect(port: port, group: E2E.group) else { return true }
            defer { Task { await late.close() } }
            try? await late.send(E2E.requestText("/hello"))
            let bytes = (try? await late.waitForClose(timeout: .milliseconds(300))) ?? [1]
            return bytes.isEmpty
        }
        // And it stays so.
        if let late = try? await RawHTTPClient.connect(port: port, group: E2E.group) {
            try? await late.send(E2E.requestText("/hello"))
            #expect(((try? await late.waitForClose(timeout: .seconds(2))) ?? [1]).isEmpty)
            await late.close()
        }
        let response = try await client.readResponse()
        #expect(response.status == 200)
        // The connection is not kept alive past the drain.
        let rest = try await client.waitForClose(timeout: .seconds(5))
        #expect(rest.isEmpty)
        #expect(try await process.waitForExit() == 0)
    }

    /// `timeouts.shutdown` bounds the drain: a request still running then is cut, and the exit is still 0.
    @Test func shutdownTimeoutBoundsTheDrain() async throws {
        let upstream = try await TestUpstream(group: E2E.group)
        defer { Task { await upstream.close() } }
        let path = try E2E.writeConfig(
            E2E.config(upstreamPort: upstream.port, server: "  timeouts: { shutdown: 500ms }", rest: "rules: []\n")
        )
        defer { try? FileManager.default.removeItem(atPath: path) }
        let process = try SluiceProcess(["serve", "--config", path])
        let port = try await process.listeningPort()
        let client = try await RawHTTPClient.connect(port: port, group: E2E.group)
        try await client.send(E2E.requestText("/slow?ms=8000"))
        try await E2E.eventually("the slow request reached the upstream") {
            upstream.requestURIs.contains("/slow?ms=8000")
        }
        let signalled = ContinuousClock.now
        process.signal(SIGTERM)
        #expect(try await process.waitForExit(timeout: .seconds(6)) == 0, "\(process.outputSoFar)")
        #expect(ContinuousClock.now - signalled < .seconds(4))
        await client.close()
    }

    @Test func idleProcessExitsOnSignal() async throws {
        let upstream = try await TestUpstream(group: E2E.group)
        defer { Task { await upstream.close() } }
        let path = try E2E.writeConfig(Self.plainConfig(upstream.port))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let process = try SluiceProcess(["serve", "--config", path])
        let port = try await process.listeningPort()
        // An idle keep-alive connection must not hold the exit back.
        let client = try await RawHTTPClient.connect(port: port, group: E2E.group)
        try await client.send(E2E.requestText("/hello"))
        #expect(try await client.readResponse().status == 200)
        process.signal(SIGINT)
        let status = try await process.waitForExit(timeout: .seconds(10))
        #expect(status == 0, "\(process.outputSoFar)")
        await client.close()
    }

    @Test func addressInUseExits1() async throws {
        // The upstream holds a listening socket: sluice cannot bind the same address.
        let upstream = try await TestUpstream(group: E2E.group)
        defer { Task { await upstream.close() } }
        let path = try E2E.writeConfig(
            """
            version: 1
            server:
              listen: "127.0.0.1:\(upstream.port)"
              access_log: "off"
            upstream:
              url: http://127.0.0.1:\(upstream.port)
            rules: []
            """
        )
        defer { try? FileManager.default.removeItem(atPath: path) }
        let (status, output) = try await SluiceProcess.run(["serve", "--config", path])
        #expect(status == 1, "\(output)")
        #expect(!output.contains("listening on"))
        #expect(output.contains("\(upstream.port)") || output.lowercased().contains("address"), "\(output)")
    }

    @Test func invalidConfigExits1WithPosition() async throws {
        let path = try E2E.writeConfig(
            """
            version: 1
            upstream:
              url: http://127.0.0.1:1
            rules:
              - name: a
                limits: ["5/minute"]
                colour: red
            """
        )
        defer { try? FileManager.default.removeItem(atPath: path) }
        for arguments in [["serve", "--config", path], ["--config", path]] {
            let (status, output) = try await SluiceProcess.run(arguments)
            #expect(status == 1, "\(output)")
            #expect(output.contains("\(path):7:5:"), "\(output)")
            #expect(!output.contains("listening on"))
        }
    }

    @Test func missingConfigFileExits1() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("absent-\(UUID()).yaml").path
        let (status, output) = try await SluiceProcess.run(["serve", "--config", path])
        #expect(status == 1, "\(output)")
        #expect(output.contains(path))
    }

    /// `--log-level` sets what the operational log shows; an unknown level is refused, not taken for `info`.
    @Test func logLevelOption() async throws {
        let (status, output) = try await SluiceProcess.run(["serve", "--config", "/nonexistent.yaml", "--log-level", "verbose"])
        #expect(status != 0 && status != 1, "a usage error, before the config is read: \(output)")
        #expect(output.contains("unknown log level 'verbose'"), "\(output)")
        let upstream = try await TestUpstream(group: E2E.group)
        defer { Task { await upstream.close() } }
        let path = try E2E.writeConfig(
            """
            version: 1
            server:
              listen: "127.0.0.1:0"
              access_log: "off"
            upstream:
              url: http://127.0.0.1:\(upstream.port)
            rules: []
            """
        )
        defer { try? FileManager.default.removeItem(atPath: path) }
        for (level, shown) in [("info", true), ("error", false)] {
            let sluice = try SluiceProcess(["serve", "--config", path, "--log-level", level])
            _ = try await sluice.listeningPort()
            sluice.signal(SIGHUP)
            if shown {
                try await sluice.waitForOutput("configuration reloaded")
            } else {
                try await Task.sleep(for: .seconds(1))
                #expect(!sluice.outputSoFar.contains("configuration reloaded"), "\(level): \(sluice.outputSoFar)")
            }
            sluice.signal(SIGTERM)
            _ = try await sluice.waitForExit()
        }
    }

    /// One line per listener, IPv6 in brackets; both serve.
    @Test func oneLinePerListener() async throws {
        let upstream = try await TestUpstream(group: E2E.group)
        defer { Task { await upstream.close() } }
        let path = try E2E.writeConfig(
            """
            version: 1
            server:
              listen: ["127.0.0.1:0", "[::1]:0"]
              threads: 1
              access_log: "off"
            upstream:
              url: http://127.0.0.1:\(upstream.port)
            rules: []
            """
        )
        defer { try? FileManager.default.removeItem(atPath: path) }
        let process = try SluiceProcess(["serve", "--config", path])
        try await E2E.eventually("two listening lines") {
            process.outputSoFar.components(separatedBy: "sluice listening on ").count == 3
        }
        let lines = process.outputSoFar.split(separator: "\n").filter { $0.hasPrefix("sluice listening on ") }
        #expect(lines.count == 2)
        let v4 = try #require(lines.first { $0.hasPrefix("sluice listening on 127.0.0.1:") })
        let v6 = try #require(lines.first { $0.hasPrefix("sluice listening on [::1]:") })
        let v4Port = try #require(Int(v4.split(separator: ":").last!))
        let v6Port = try #require(Int(v6.split(separator: ":").last!))
        #expect(try await E2E.request(port: v4Port, "/hello").status == 200)
        let client = try await RawHTTPClient.connect(host: "::1", port: v6Port, group: E2E.group)
        try await client.send(E2E.requestText("/hello"))
        #expect(try await client.readResponse().status == 200)
        await client.close()
        process.signal(SIGTERM)
        #expect(try await process.waitForExit() == 0)
    }

    /// SIGUSR1 reopens the access log at its path, as logrotate expects: lines before go to the moved-away file,
    /// lines after to a new file at the configured path.
    @Test func sigusr1ReopensTheAccessLog() async throws {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("access-\(UUID()).log").path
        let rotated = log + ".1"
        defer {
            try? FileManager.default.removeItem(atPath: log)
            try? FileManager.default.removeItem(atPath: rotated)
        }
        try await E2E.withSluice({ E2E.config(upstreamPort: $0, accessLog: "\"\(log)\"", rest: "rules: []\n") }) { sluice async throws in
            func paths(_ file: String) -> [String] {
                let text = (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
                return text.split(separator: "\n").compactMap {
                    (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["path"] as? String
                }
            }
            #expect(try await E2E.request(port: sluice.port, "/hello?before").status == 200)
            try await E2E.eventually("the first line in the log") { paths(log) == ["/hello?before"] || paths(log) == ["/hello"] }
            try FileManager.default.moveItem(atPath: log, toPath: rotated)
            sluice.process.signal(SIGUSR1)
            try await E2E.eventually("the access log reopened") { FileManager.default.fileExists(atPath: log) }
            #expect(try await E2E.request(port: sluice.port, "/conn").status == 200)
            try await E2E.eventually("the line after the reopen in the new file") { paths(log).contains("/conn") }
            #expect(paths(rotated).count == 1)
            #expect(!paths(rotated).contains("/conn"))
            #expect(sluice.process.isRunning)
        }
    }

    @Test func accessLogToFile() async throws {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("access-\(UUID()).log").path
        defer { try? FileManager.default.removeItem(atPath: log) }
        try await E2E.withSluice({ port in
            E2E.config(
                upstreamPort: port,
                accessLog: "\"\(log)\"",
                rest: """
                    rules:
                      - name: per-ip
                        match: { path: /hello }
                        key: [ip]
                        limits: ["1/hour"]
                    """
            )
        }) { sluice async throws in
            #expect(try await E2E.statuses(port: sluice.port, "/hello", count: 2) == [200, 429])
            #expect(try await E2E.request(port: sluice.port, "/conn").status == 200)
            func objects() throws -> [[String: Any]] {
                let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                return try text.split(separator: "\n").map {
                    try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
                }
            }
            // Requests are sequential: once the last one is logged, the earlier ones are too.
            try await E2E.eventually("the /conn line in the access log") {
                try objects().contains { $0["path"] as? String == "/conn" }
            }
            let lines = try objects()
            for key in ["time", "client_ip", "method", "path", "protocol", "status", "rule", "decision", "upstream_ms", "bytes_in", "bytes_out"] {
                #expect(lines.allSatisfy { $0[key] != nil }, "missing \(key)")
            }
            let admitted = try #require(lines.first)
            #expect(admitted["path"] as? String == "/hello")
            #expect(admitted["protocol"] as? String == "HTTP/1.1")
            #expect(admitted["status"] as? Int == 200)
            #expect(admitted["decision"] as? String == "admitted")
            #expect(admitted["rule"] as? String == "per-ip")
            #expect(admitted["client_ip"] as? String == "127.0.0.1")
            #expect(admitted["bytes_out"] as? Int == 5)
            #expect(lines.last?["decision"] as? String == "none")
            #expect(lines.count == 3)
            let limited = lines.first { $0["status"] as? Int == 429 }
            #expect(limited?["decision"] as? String == "limited")
            #expect(limited?["rule"] as? String == "per-ip")
            #expect(!sluice.process.outputSoFar.contains(#""path":"/hello""#))
        }
    }
}
