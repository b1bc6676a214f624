import Foundation
import NIOPosix
import SluiceTestSupport
import Testing

/// SIGHUP reload under load (SPEC §6).
@Suite("reload")
struct ReloadTests {
    static func config(upstreamPort: Int, targetLimit: String, broken: Bool = false) -> String {
        E2E.config(
            upstreamPort: upstreamPort,
            rest: """
                rules:
                  - name: bulk
                    match: { path: /hello }
                    key: [ip]
                    limits: ["1000000/minute"]
                  - name: target
                    match: { path: /echo-headers }
                    key: [ip]
                    limits: ["\(targetLimit)"]
                    algorithm: moving_window
                  - name: keep
                    match: { path: /conn }
                    key: [ip]
                    limits: ["10/hour"]
                    algorithm: moving_window
                \(broken ? "    colour: red\n" : "")
                """
        )
    }

    /// Background traffic: `loops` keep-alive connections sending `/hello` until stopped.
    final class Traffic: @unchecked Sendable {
        // @unchecked: every mutable field is behind `lock`.
        private let lock = NSLock()
        private var _stop = false
        private var _ok = 0
        private var _failures: [String] = []

        var ok: Int { self.lock.withLock { self._ok } }
        var failures: [String] { self.lock.withLock { self._failures } }
        var stopped: Bool { self.lock.withLock { self._stop } }
        func stop() { self.lock.withLock { self._stop = true } }
        func record(_ status: Int) {
            self.lock.withLock {
                if status == 200 { self._ok += 1 } else { self._failures.append("status \(status)") }
            }
        }
        func record(_ error: any Error) { self.lock.withLock { self._failures.append("\(error)") } }

        func run(port: Int, loops: Int) -> Task<Void, Never> {
            Task {
                await withTaskGroup(of: Void.self) { group in
                    for _ in 0..<loops {
                        group.addTask {
                            do {
                                var client = try await RawHTTPClient.connect(port: port, group: E2E.group)
                                var onConnection = 0
                                while !self.stopped {
                                    // A fresh connection now and then, so reloads meet new connections too.
                                    if onConnection == 50 {
                                        await client.close()
                                        client = try await RawHTTPClient.connect(port: port, group: E2E.group)
                                        onConnection = 0
                                    }
                                    try await client.send(E2E.requestText("/hello"))
                                    self.record(try await client.readResponse().status)
                                    onConnection += 1
                                }
                                await client.close()
                            } catch {
                                self.record(error)
                            }
                        }
                    }
                }
            }
        }
    }

    @Test func reloadUnderTraffic() async throws {
        try await E2E.withSluice({ Self.config(upstreamPort: $0, targetLimit: "100/minute") }) { sluice async throws in
            let port = sluice.port
            let traffic = Traffic()
            let background = traffic.run(port: port, loops: 4)
            defer { traffic.stop() }
            try await E2E.eventually("background traffic flows") { traffic.ok >= 20 }

            // Counters of `keep` before any reload: 9, 8, 7 left.
            for expected in [9, 8, 7] {
                #expect(try await E2E.request(port: port, "/conn").rateLimit?.remaining == expected)
            }
            let before = try await E2E.request(port: port, "/echo-headers")
            #expect(before.header("RateLimit-Policy") == #""target";q=100;w=60"#)

            // (a) Lower `target` to 2/minute: the next requests see it.
            try E2E.rewrite(sluice.path, Self.config(upstreamPort: sluice.upstream.port, targetLimit: "2/minute"))
            sluice.process.signal(SIGHUP)
            var newPolicy: RawHTTPClient.Response?
            try await E2E.eventually("the new limit applies") {
                let r = try await E2E.request(port: port, "/echo-headers")
                if r.header("RateLimit-Policy") == #""target";q=2;w=60"# {
                    newPolicy = r
                    return true
                }
                #expect(r.status == 200)
                return false
            }
            // A changed limit starts from a fresh budget.
            #expect(newPolicy?.status == 200)
            #expect(newPolicy?.rateLimit?.remaining == 1)
            #expect(try await E2E.request(port: port, "/echo-headers").status == 200)
            #expect(try await E2E.request(port: port, "/echo-headers").status == 429)
            // (c) `keep` is unchanged: its counter continues.
            #expect(try await E2E.request(port: port, "/conn").rateLimit?.remaining == 6)

            // (b) A broken file: logged with its position, the process keeps running on the old config.
            try E2E.rewrite(
                sluice.path,
                Self.config(upstreamPort: sluice.upstream.port, targetLimit: "1000/minute", broken: true)
            )
            let brokenLine = try String(contentsOfFile: sluice.path, encoding: .utf8)
                .split(separator: "\n", omittingEmptySubsequences: false)
                .firstIndex { $0.contains("colour") }! + 1
            sluice.process.signal(SIGHUP)
            try await E2E.eventually("the reload error is logged") {
                sluice.process.outputSoFar.contains("\(sluice.path):\(brokenLine):5:")
            }
            #expect(sluice.process.isRunning)
            let stillOld = try await E2E.request(port: port, "/echo-headers")
            #expect(stillOld.status == 429)
            #expect(stillOld.header("RateLimit-Policy") == #""target";q=2;w=60"#)
            #expect(try await E2E.request(port: port, "/conn").rateLimit?.remaining == 5)

            // A good file after the broken one is picked up again.
            try E2E.rewrite(sluice.path, Self.config(upstreamPort: sluice.upstream.port, targetLimit: "7/minute"))
            sluice.process.signal(SIGHUP)
            try await E2E.eventually("the fixed file applies") {
                try await E2E.request(port: port, "/echo-headers").header("RateLimit-Policy") == #""target";q=7;w=60"#
            }
            #expect(try await E2E.request(port: port, "/conn").rateLimit?.remaining == 4)

            let okBeforeStop = traffic.ok
            traffic.stop()
            await background.value
            #expect(traffic.failures.isEmpty, "background failures: \(traffic.failures.prefix(5))")
            #expect(okBeforeStop > 50)
            #expect(sluice.process.isRunning)
        }
    }

    /// Upstream and listener changes take effect on reload (SPEC §6).
    @Test func reloadMovesUpstreamAndListener() async throws {
        let second = try await TestUpstream(group: E2E.group)
        defer { Task { await second.close() } }
        let freePort = try await Self.freePort()
        try await E2E.withSluice({ E2E.config(upstreamPort: $0, rest: "rules: []\n") }) { sluice async throws in
            // A pooled keep-alive connection to the first upstream exists.
            #expect(try await E2E.request(port: sluice.port, "/conn").status == 200)
            let edited = """
                version: 1
                server:
                  listen: ["127.0.0.1:0", "127.0.0.1:\(freePort)"]
                  threads: 1
                  access_log: "off"
                upstream:
                  url: http://127.0.0.1:\(second.port)
                rules: []
                """
            try E2E.rewrite(sluice.path, edited)
            sluice.process.signal(SIGHUP)
            try await E2E.eventually("the new listener is announced") {
                sluice.process.outputSoFar.contains("sluice listening on 127.0.0.1:\(freePort)")
            }
            try await E2E.eventually("requests reach the new upstream") {
                _ = try await E2E.request(port: sluice.port, "/hello")
                return second.requestURIs.contains("/hello")
            }
            let viaNew = try await E2E.request(port: freePort, "/hello")
            #expect(viaNew.status == 200)
            let firstCount = sluice.upstream.requestURIs.count
            for _ in 0..<3 { _ = try await E2E.request(port: sluice.port, "/hello") }
            #expect(sluice.upstream.requestURIs.count == firstCount)
        }
    }

    /// A listener that cannot bind on reload: the old listeners keep serving (and no half of the new list is
    /// opened), the reason is logged, the rest of the file applies; the next reload tries again.
    @Test func reloadWithUnbindableListenerKeepsOldOne() async throws {
        let free = try await Self.freePort()
        try await E2E.withSluice({ E2E.config(upstreamPort: $0, rest: "rules: []\n") }) { sluice async throws in
            let busy = sluice.upstream.port
            func file(listen: String) -> String {
                """
                version: 1
                server:
                  listen: \(listen)
                  threads: 1
                  access_log: "off"
                upstream:
                  url: http://127.0.0.1:\(sluice.upstream.port)
                rules:
                  - name: after
                    key: [ip]
                    limits: ["100/minute"]
                """
            }
            try E2E.rewrite(sluice.path, file(listen: #"["127.0.0.1:\#(free)", "127.0.0.1:\#(busy)"]"#))
            sluice.process.signal(SIGHUP)
            try await E2E.eventually("the bind failure is logged") {
                sluice.process.outputSoFar.contains("cannot listen on 127.0.0.1:\(busy)")
            }
            #expect(sluice.process.isRunning)
            let r = try await E2E.request(port: sluice.port, "/hello")
            #expect(r.status == 200)
            #expect(r.rateLimit?.name == "after")
            #expect(!sluice.process.outputSoFar.contains("listening on 127.0.0.1:\(free)"))
            #expect((try? await E2E.request(port: free, "/hello")) == nil, "half of the new listeners was opened")

            // Fixed file: the same listen list minus the busy address now binds.
            try E2E.rewrite(sluice.path, file(listen: #"["127.0.0.1:0", "127.0.0.1:\#(free)"]"#))
            sluice.process.signal(SIGHUP)
            try await E2E.eventually("the new listener is announced") {
                sluice.process.outputSoFar.contains("sluice listening on 127.0.0.1:\(free)")
            }
            #expect(try await E2E.request(port: free, "/hello").status == 200)
            #expect(try await E2E.request(port: sluice.port, "/hello").status == 200)
        }
    }

    /// `server.access_log` is part of the reloaded configuration too.
    @Test func reloadAppliesAccessLogSetting() async throws {
        try await E2E.withSluice({ E2E.config(upstreamPort: $0, rest: "rules: []\n") }) { sluice async throws in
            #expect(try await E2E.request(port: sluice.port, "/hello?before").status == 200)
            try E2E.rewrite(
                sluice.path,
                E2E.config(upstreamPort: sluice.upstream.port, accessLog: "stdout", rest: "rules: []\n")
            )
            sluice.process.signal(SIGHUP)
            try await E2E.eventually("access log lines appear after the reload") {
                _ = try await E2E.request(port: sluice.port, "/hello?after")
                return sluice.process.outputSoFar.contains(#""path":"/hello?after""#)
            }
            #expect(!sluice.process.outputSoFar.contains("/hello?before"))
        }
    }

    /// A port that is free now and stays out of the kernel's ephemeral range (32768–60999 on
    /// Linux), so no client connection of a concurrently running test can take it as its source
    /// port before the test binds it.
    /// A port nothing listens on, found by connecting (refused: free), never by binding: a socket this process
    /// binds, even for a moment, is inherited by any child started meanwhile (sluice, redis-server), which then
    /// keeps the port busy for its whole life.
    static func freePort() async throws -> Int {
        for _ in 0..<200 {
            let candidate = Int.random(in: 20_000..<32_000)
            do {
                let channel = try await ClientBootstrap(group: E2E.group).connect(host: "127.0.0.1", port: candidate).get()
                try? await channel.close()
            } catch {
                return candidate
            }
        }
        throw CancellationError()
    }

    /// SIGHUP as soon as the listening line appears must reload, never kill the process.
    @Test func sighupRightAfterStartDoesNotKill() async throws {
        try await E2E.withSluice({ Self.config(upstreamPort: $0, targetLimit: "100/minute") }) { sluice async throws in
            sluice.process.signal(SIGHUP)
            try await E2E.eventually("configuration reloaded") {
                sluice.process.outputSoFar.contains("reloaded") || !sluice.process.isRunning
            }
            #expect(sluice.process.isRunning, "\(sluice.process.outputSoFar)")
            #expect(try await E2E.request(port: sluice.port, "/hello").status == 200)
        }
    }
}
