import Foundation
import Testing

/// `sluice check` with `upstream.adaptive_concurrency` (issue 22 item 7): accepted, and bad values reported at their
/// `file:line:column`.
@Suite("sluice check: adaptive concurrency")
struct AdaptiveConcurrencyCheckTests {
    @Test func acceptedAndBadValuesPositioned() async throws {
        let good = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-adaptive-\(UUID()).yaml").path
        try "upstream:\n  url: http://127.0.0.1:1\n  adaptive_concurrency: { min: 8, max: 1000, jitter: 15%, retry_after: 2s }\n"
            .write(toFile: good, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: good) }
        let (okStatus, okOutput) = try await SluiceProcess.run(["check", "--config", good])
        #expect(okStatus == 0)
        #expect(okOutput == "ok\n")

        let bad = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-adaptive-bad-\(UUID()).yaml").path
        try "upstream:\n  url: http://127.0.0.1:1\n  adaptive_concurrency: { min: 8, max: 4, buffer: 2000% }\n"
            .write(toFile: bad, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: bad) }
        let (status, output) = try await SluiceProcess.run(["check", "--config", bad])
        #expect(status == 1)
        #expect(
            output == """
                \(bad):3:40: adaptive_concurrency: max (4) must be at least min (8)
                \(bad):3:51: buffer: must be between 0 and 10 (1000%), got '2000%'

                """
        )
    }
}
