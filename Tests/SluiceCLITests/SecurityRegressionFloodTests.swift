import Foundation
import SluiceTestSupport
import Testing

/// Issue 18, item 8: no connection flood can stop the proxy.
///
/// Driven against the real `sluice` binary, started under a low open-file limit where it matters, over real
/// loopback sockets. Nothing here depends on how the proxy is built inside.
@Suite("Security regression: connection floods")
struct SecurityRegressionFloodTests {
    /// The open-file limit the flooded process runs under.
    static let fileLimit = 64

    /// A stalled upload: a head announcing a large body, and a little of that body.
    static let stalledUpload =
        "POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000\r\n\r\n"
        + String(repeating: "x", count: 1000)

    /// More connections than the process has descriptors (uploads stalled mid-body, and connections that never
    /// send a byte), while accept keeps failing with `EMFILE`, neither spin a core nor stop the proxy: once the
    /// flood goes, a normal request gets its answer.
    @Test func floodUnderTheOpenFileLimitNeitherSpinsNorStopsTheProxy() async throws {
        // Loads the machine: never beside the timing tests (TestLoadGate).
        try await TestLoadGate.exclusive { try await self.floodUnderTheOpenFileLimitNeitherSpinsNorStopsTheProxyGated() }
    }

    func floodUnderTheOpenFileLimitNeitherSpinsNorStopsTheProxyGated() async throws {
        let upstream = try await TestUpstream(group: E2E.group)
        let config = E2E.config(
            upstreamPort: upstream.port,
            // A long head timeout: the silent connections stay for the whole test unless the client closes them.
            server: """
                  timeouts: { header_read: 60s, idle: 60s }
                """,
            rest: "rules: []\n"
        )
        let path = try E2E.writeConfig(config)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let process = try SluiceProcess(
            ["-c", "ulimit -n \(Self.fileLimit) && exec '\(SluiceProcess.binaryPath)' serve --config '\(path)'"],
            executable: "/bin/sh"
        )
        var clients: [RawHTTPClient] = []
        do {
            let port = try await process.listeningPort()
            // The cap in force is announced at start: 80 % of the open-file limit.
            #expect(process.outputSoFar.contains("max_connections"), "\(process.outputSoFar)")
            #expect(process.outputSoFar.contains("\(Self.fileLimit * 8 / 10)"), "\(process.outputSoFar)")

            // 20 uploads stalled mid-body, each holding a client and an upstream connection.
            for _ in 0..<20 {
                let client = try await RawHTTPClient.connect(port: port, group: E2E.group)
                clients.append(client)
                try await client.send(Self.stalledUpload)
            }
            try await E2E.eventually("the stalled uploads reached the upstream", timeout: .seconds(20)) {
                upstream.connectionsAccepted >= 20
            }
            // Hundreds more, far beyond the descriptors left: the kernel's backlog holds what is not accepted.
            for index in 0..<300 {
                let client = try await RawHTTPClient.connect(port: port, group: E2E.group)
                clients.append(client)
                if index % 2 == 0 { try await client.send(Self.stalledUpload) }
            }
            // The process runs out of descriptors before its cap (each upload holds two), so accept fails with
            // EMFILE while connections wait in the backlog: the case that spins.
            try await E2E.eventually("sluice's descriptor table filled up", timeout: .seconds(20)) {
                Self.openDescriptors(process.pid) >= Self.fileLimit - 1
            }
            #expect(process.isRunning)

            let load = try await Self.measureLoad(process.pid, over: .seconds(2))
            #expect(
                load.demand < 0.5,
                "sluice wanted \(load.demand) cores (CPU time: \(load.cpu) cores) while flooded: it spins on accept"
            )
            #expect(load.cpu < 0.5, "sluice used \(load.cpu) cores while flooded")

            // The flood goes; a normal request is answered well within its timeouts.
            for client in clients { await client.close() }
            clients.removeAll()
            let started = ContinuousClock.now
            let response = try await E2E.request(port: port, "/hello")
            #expect(response.status == 200)
            #expect(response.bodyString == "hello")
            #expect(ContinuousClock.now - started < .seconds(10))
            #expect(process.isRunning)

            process.signal(SIGTERM)
            let status = try await process.waitForExit()
            #expect(status == 0, "sluice exited \(status): \(process.outputSoFar.suffix(3000))")
        } catch {
            for client in clients { await client.close() }
            process.signal(SIGKILL)
            await upstream.close()
            throw error
        }
        await upstream.close()
    }

    /// With `max_connections: 5`, a sixth connection is held in the backlog, unanswered, until one of the five
    /// closes; then it is served. A reload that raises the cap lets the next one in at once.
    @Test func maxConnectionsHoldsTheNextConnectionUntilOneCloses() async throws {
        // Loads the machine: never beside the timing tests (TestLoadGate).
        try await TestLoadGate.exclusive { try await self.maxConnectionsHoldsTheNextConnectionUntilOneClosesGated() }
    }

    func maxConnectionsHoldsTheNextConnectionUntilOneClosesGated() async throws {
        let makeConfig = { (upstreamPort: Int, cap: Int) in
            E2E.config(upstreamPort: upstreamPort, server: "  max_connections: \(cap)", rest: "rules: []\n")
        }
        try await E2E.withSluice({ makeConfig($0, 5) }) { sluice async throws in
            #expect(sluice.process.outputSoFar.contains("max_connections"), "\(sluice.process.outputSoFar)")
            var open: [RawHTTPClient] = []
            for _ in 0..<5 {
                let client = try await RawHTTPClient.connect(port: sluice.port, group: E2E.group)
                try await client.send(E2E.requestText("/hello"))
                #expect(try await client.readResponse().status == 200)
                open.append(client)
            }
            // TCP connects (the kernel's backlog holds it), but nobody reads it.
            let sixth = try await RawHTTPClient.connect(port: sluice.port, group: E2E.group)
            try await sixth.send(E2E.requestText("/hello"))
            await #expect(throws: RawHTTPClient.TimeoutError.self) {
                _ = try await sixth.readResponse(timeout: .seconds(2))
            }
            #expect(sluice.upstream.requestURIs.count == 5)

            await open.removeFirst().close()
            let served = try await sixth.readResponse(timeout: .seconds(10))
            #expect(served.status == 200)
            #expect(served.bodyString == "hello")
            open.append(sixth)

            // Five open again: the next waits, until a reload raises the cap (applied at once).
            let seventh = try await RawHTTPClient.connect(port: sluice.port, group: E2E.group)
            try await seventh.send(E2E.requestText("/hello"))
            await #expect(throws: RawHTTPClient.TimeoutError.self) {
                _ = try await seventh.readResponse(timeout: .seconds(1))
            }
            try E2E.rewrite(sluice.path, makeConfig(sluice.upstream.port, 6))
            sluice.process.signal(SIGHUP)
            let afterReload = try await seventh.readResponse(timeout: .seconds(10))
            #expect(afterReload.status == 200)
            open.append(seventh)
            for client in open { await client.close() }
        }
    }

    // MARK: measuring the process

    /// Entries in `/proc/PID/fd`.
    static func openDescriptors(_ pid: pid_t) -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? 0
    }

    /// What the process's threads used and wanted over `duration`, in cores.
    ///
    /// `cpu` is the CPU time of `/proc/PID/stat` (user + system). `demand` adds the time its threads waited,
    /// runnable, for a core (`/proc/PID/task/*/schedstat`): a thread that spins wants a whole core even when a
    /// loaded machine gives it a fraction, so `demand` tells a spinning process from an idle one whatever the load.
    static func measureLoad(_ pid: pid_t, over duration: Duration) async throws -> (cpu: Double, demand: Double) {
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let cpuBefore = Self.cpuTicks(pid)
        let demandBefore = Self.scheduledNanoseconds(pid)
        let start = ContinuousClock.now
        try await Task.sleep(for: duration)
        let cpuAfter = Self.cpuTicks(pid)
        let demandAfter = Self.scheduledNanoseconds(pid)
        let elapsed = Double((ContinuousClock.now - start).milliseconds) / 1000
        let cpu = Double(cpuAfter - cpuBefore) / ticks / elapsed
        let demand = Double(demandAfter - demandBefore) / 1e9 / elapsed
        return (cpu, demand)
    }

    /// utime + stime of `/proc/PID/stat`, in clock ticks.
    static func cpuTicks(_ pid: pid_t) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return 0 }
        // Fields after the command name: state is field 3, utime 14, stime 15.
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let utime = Int(fields[11]), let stime = Int(fields[12]) else { return 0 }
        return utime + stime
    }

    /// Time on a core plus time waiting for one, summed over the process's threads, in nanoseconds.
    static func scheduledNanoseconds(_ pid: pid_t) -> Int {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        var total = 0
        for task in tasks {
            guard let text = try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/schedstat", encoding: .utf8)
            else { continue }
            let fields = text.split(separator: " ")
            if fields.count >= 2, let running = Int(fields[0]), let waiting = Int(fields[1]) {
                total += running + waiting
            }
        }
        return total
    }
}
