import Foundation
import SluiceTestSupport
import Testing

/// What of deploy/ can be checked without Docker or a running systemd: the systemd unit (syntax, the commands it
/// runs, its hardening score) and the files the compose setup refers to.
@Suite("deploy/ lint") struct DeployLintTests {
    static let systemdAnalyze = "/usr/bin/systemd-analyze"
    static var hasSystemdAnalyze: Bool { FileManager.default.isExecutableFile(atPath: systemdAnalyze) }

    /// The unit with its paths pointed at this checkout (verify checks that the binaries it runs exist).
    static func localUnit() throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-unit-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let unit = try String(contentsOfFile: "deploy/sluice.service", encoding: .utf8)
            .replacingOccurrences(of: "/usr/local/bin/sluice", with: SluiceProcess.binaryPath)
            .replacingOccurrences(of: "/etc/sluice/sluice.yaml", with: FileManager.default.currentDirectoryPath + "/config/sluice.yaml")
        let path = directory.appendingPathComponent("sluice.service").path
        try unit.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test(.enabled(if: hasSystemdAnalyze, "systemd-analyze is not installed"))
    func systemdUnitVerifiesAndIsHardened() throws {
        let unit = try Self.localUnit()
        defer { try? FileManager.default.removeItem(atPath: (unit as NSString).deletingLastPathComponent) }
        let text = try String(contentsOfFile: "deploy/sluice.service", encoding: .utf8)
        #expect(text.contains("ExecReload=/bin/kill -HUP $MAINPID"))
        #expect(text.contains("DynamicUser=yes"))
        let verify = try CleanSpawn.run(Self.systemdAnalyze, ["verify", unit])
        #expect(verify.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "\(verify)")
        // "Overall exposure level for sluice.service: 1.6 OK": 0 is locked down, 10 is fully exposed.
        let security = try CleanSpawn.run(Self.systemdAnalyze, ["security", "--offline=yes", unit])
        let line = security.split(separator: "\n").first { $0.contains("Overall exposure level") }
        let score = line.flatMap { $0.split(separator: ":").last?.split(separator: " ").first }.flatMap { Double($0) }
        #expect(score.map { $0 <= 2.0 } == true, "\(line ?? "no score")")
    }

    /// The rules embedded in the Kubernetes ConfigMap pass `sluice check`.
    @Test func kubernetesConfigMapRulesAreValid() async throws {
        let manifest = try String(contentsOfFile: "deploy/kubernetes/sluice.yaml", encoding: .utf8)
        let start = try #require(manifest.range(of: "  sluice.yaml: |\n"))
        let block = manifest[start.upperBound...]
        var lines: [Substring] = []
        for line in block.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("---") { break }
            lines.append(line.hasPrefix("    ") ? line.dropFirst(4) : line)
        }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-k8s-\(UUID()).yaml").path
        try lines.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let (status, output) = try await SluiceProcess.run(["check", "--config", path])
        #expect(status == 0 && output == "ok\n", "\(output)")
        #expect(manifest.contains("path: /readyz") && manifest.contains("path: /healthz"))
        #expect(manifest.contains("pkill -HUP -x sluice"))
    }

    /// The image's config passes `sluice check`, listens beyond the container's loopback, and has the admin port
    /// the HEALTHCHECK asks.
    @Test func imageConfigIsValidAndReachable() async throws {
        let dockerfile = try String(contentsOfFile: "deploy/Dockerfile", encoding: .utf8)
        #expect(dockerfile.contains("COPY deploy/sluice-container.yaml /etc/sluice/sluice.yaml"))
        #expect(dockerfile.contains("/dev/tcp/127.0.0.1/9090"))
        let config = try String(contentsOfFile: "deploy/sluice-container.yaml", encoding: .utf8)
        #expect(config.contains("listen: \"0.0.0.0:8080\"") && config.contains("admin: \"0.0.0.0:9090\""))
        let (status, output) = try await SluiceProcess.run(["check", "--config", "deploy/sluice-container.yaml"])
        #expect(status == 0 && output == "ok\n", "\(output)")
    }

    @Test func composeRefersToFilesThatExist() throws {
        let compose = try String(contentsOfFile: "deploy/docker-compose.yml", encoding: .utf8)
        for path in ["../config/examples/multi-instance.yaml", "./haproxy-lb.cfg"] {
            #expect(compose.contains(path))
            #expect(FileManager.default.fileExists(atPath: "deploy/" + path), "\(path)")
        }
        #expect(compose.components(separatedBy: "<<: *sluice").count - 1 == 2, "three Sluice instances")
        let dockerfile = try String(contentsOfFile: "deploy/Dockerfile", encoding: .utf8)
        #expect(dockerfile.contains("HEALTHCHECK"))
        #expect(dockerfile.contains("USER sluice"))
        #expect(dockerfile.components(separatedBy: "\nFROM ").count - 1 >= 1, "multi-stage")
    }
}
