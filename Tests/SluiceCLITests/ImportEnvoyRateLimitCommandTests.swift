import Foundation
import Testing

/// `sluice import-envoy-ratelimit FILE` (issue 14), round-tripped through `sluice check`.
@Suite("sluice import-envoy-ratelimit")
struct ImportEnvoyRateLimitCommandTests {
    /// Every example of config/envoy-ratelimit converts, and `sluice check` accepts the result.
    @Test func examplesRoundTripThroughCheck() async throws {
        let directory = "config/envoy-ratelimit"
        let files = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".yaml") }.sorted()
        #expect(files.count == 9)
        for file in files {
            let (status, output) = try await SluiceProcess.run(["import-envoy-ratelimit", "\(directory)/\(file)"])
            #expect(status == 0, "\(file): \(output)")
            // Warnings go to standard error (collected here with standard output), each on its own line.
            let yaml = output.split(separator: "\n", omittingEmptySubsequences: false)
                .filter { !$0.hasPrefix("warning: ") }.joined(separator: "\n")
            #expect(yaml.contains("grpc_rls:"), "\(file)")
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-import-\(UUID()).yaml").path
            try yaml.write(toFile: path, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(atPath: path) }
            let (checkStatus, checkOutput) = try await SluiceProcess.run(["check", "--config", path])
            #expect(checkStatus == 0 && checkOutput == "ok\n", "\(file): \(checkOutput)\n\(yaml)")
        }
    }

    @Test func unsupportedFeaturesWarn() async throws {
        let (status, output) = try await SluiceProcess.run(["import-envoy-ratelimit", "config/envoy-ratelimit/example7-replaces.yaml"])
        #expect(status == 0)
        #expect(output.contains("warning: config/envoy-ratelimit/example7-replaces.yaml:"))
        #expect(output.contains("replaces is not supported"))
    }

    @Test func badFileExits1WithPosition() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-envoy-\(UUID()).yaml").path
        try "domain: d\ndescriptors:\n  - key: a\n    rate_limit: { unit: second }\n".write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let (status, output) = try await SluiceProcess.run(["import-envoy-ratelimit", path])
        #expect(status == 1)
        #expect(output.hasPrefix("\(path):4:"))
        #expect(output.contains("requests_per_unit"))
    }
}
