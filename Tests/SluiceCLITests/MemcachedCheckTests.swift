import Foundation
import Testing

/// `sluice check` on a file with memcached storage (issue 21): valid, so `ok` on standard output and exit 0, with
/// memcached's caveats as warnings on standard error.
@Suite("sluice check with memcached storage")
struct MemcachedCheckTests {
    @Test func caveatsGoToStandardErrorAndTheFileIsOK() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-mc-check-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = directory.appendingPathComponent("sluice.yaml").path
        let stderrFile = directory.appendingPathComponent("stderr.txt").path
        try """
        upstream:
          url: http://127.0.0.1:3000
        storage:
          kind: memcached
          url: memcached://127.0.0.1:11211,127.0.0.1:11212

        """.write(toFile: config, atomically: true, encoding: .utf8)
        // Through a shell, so standard error goes to a file of its own and only standard output is collected.
        let (status, output) = try await SluiceProcess.runShell(
            "'\(SluiceProcess.binaryPath)' check --config '\(config)' 2>'\(stderrFile)'"
        )
        #expect(status == 0)
        #expect(output == "ok\n")
        let warnings = try String(contentsOfFile: stderrFile, encoding: .utf8).split(separator: "\n")
        #expect(warnings.count == 2)
        #expect(warnings.allSatisfy { $0.hasPrefix("\(config):4:9: warning: memcached storage: ") })
        #expect(warnings.contains { $0.contains("evict") })
        #expect(warnings.contains { $0.contains("NTP") })
    }

    @Test func memoryStorageHasNoWarning() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-mc-check-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = directory.appendingPathComponent("sluice.yaml").path
        try "upstream:\n  url: http://127.0.0.1:3000\n".write(toFile: config, atomically: true, encoding: .utf8)
        let (status, output) = try await SluiceProcess.run(["check", "--config", config])
        #expect(status == 0)
        #expect(output == "ok\n")
    }
}

extension SluiceProcess {
    /// Runs `/bin/sh -c command` to completion: (exit status, what reached the collected output).
    static func runShell(_ command: String) async throws -> (Int32, String) {
        let p = try SluiceProcess(["-c", command], executable: "/bin/sh")
        let status = try await p.waitForExit()
        try await Task.sleep(for: .milliseconds(50))
        return (status, p.outputSoFar)
    }
}

/// The memcached example and its compose variant (issue 21).
@Suite("memcached example and compose file")
struct MemcachedDeployTests {
    @Test func exampleIsValidWithItsCaveats() async throws {
        let stderrFile = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-mc-\(UUID()).txt").path
        defer { try? FileManager.default.removeItem(atPath: stderrFile) }
        let (status, output) = try await SluiceProcess.runShell(
            "'\(SluiceProcess.binaryPath)' check --config config/examples/memcached.yaml 2>'\(stderrFile)'"
        )
        #expect(status == 0)
        #expect(output == "ok\n")
        let warnings = try String(contentsOfFile: stderrFile, encoding: .utf8).split(separator: "\n")
        #expect(warnings.count == 2)
        #expect(warnings.allSatisfy { $0.hasPrefix("config/examples/memcached.yaml:") && $0.contains(": warning: memcached storage: ") })
    }

    @Test func composeRunsThreeInstancesAndTwoServers() throws {
        let compose = try String(contentsOfFile: "deploy/docker-compose.memcached.yml", encoding: .utf8)
        for path in ["../config/examples/memcached.yaml", "./haproxy-lb.cfg"] {
            #expect(compose.contains(path))
            #expect(FileManager.default.fileExists(atPath: "deploy/" + path), "\(path)")
        }
        #expect(compose.components(separatedBy: "<<: *sluice").count - 1 == 2, "three Sluice instances")
        #expect(compose.contains("memcached-1:") && compose.contains("memcached-2:"), "two memcached servers")
        let example = try String(contentsOfFile: "config/examples/memcached.yaml", encoding: .utf8)
        #expect(example.contains("memcached-1") && example.contains("memcached-2"), "the example names the compose servers")
        #expect(example.contains("instances: 3"))
    }
}
