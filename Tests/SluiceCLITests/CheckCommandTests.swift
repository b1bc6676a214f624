import Foundation
import Testing

@Suite("sluice check / --version")
struct CheckCommandTests {
    @Test func exampleConfigIsOK() async throws {
        let (status, output) = try await SluiceProcess.run(["check", "--config", "config/sluice.yaml"])
        #expect(status == 0)
        #expect(output == "ok\n")
    }

    /// Every file under config/examples passes `check` (the examples are documentation; they must not rot).
    @Test func examplesAreOK() async throws {
        let directory = "config/examples"
        let files = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".yaml") }.sorted()
        #expect(files.contains("multi-instance.yaml"))
        for file in files {
            let (status, output) = try await SluiceProcess.run(["check", "--config", "\(directory)/\(file)"])
            // Warnings (memcached's caveats, on stderr, collected here with stdout) do not make a file invalid.
            let lines = output.split(separator: "\n")
            #expect(status == 0 && lines.last == "ok", "\(file): \(output)")
            #expect(lines.dropLast().allSatisfy { $0.contains(": warning: ") }, "\(file): \(output)")
        }
    }

    @Test func badConfigPrintsPositionAndExits1() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-bad-\(UUID()).yaml").path
        try "version: 1\nupstream:\n  url: http://127.0.0.1:1\nrules:\n  - name: a\n    limits: [\"0/minute\"]\n    colour: red\n"
            .write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let (status, output) = try await SluiceProcess.run(["check", "--config", path])
        #expect(status == 1)
        let lines = output.split(separator: "\n")
        #expect(lines.count == 2)
        #expect(lines.allSatisfy { $0.hasPrefix("\(path):") })
        #expect(output.contains("\(path):6:"))
        #expect(output.contains("\(path):7:5:"))
    }

    @Test func version() async throws {
        let (status, output) = try await SluiceProcess.run(["--version"])
        #expect(status == 0)
        #expect(output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty == false)
    }
}
