import Foundation
import Testing

/// `sluice check` with a rule's `concurrency` and `storage.lease_ttl` (issue 22 item 8, audit of issue 22): a good file
/// is `ok`, every bad value is reported at its `file:line:column`, all of them in one run, exit status 1. (The loader's
/// own tests check the messages; this checks that the command reports them with the file's path.)
@Suite("sluice check: concurrency")
struct ConcurrencyCheckTests {
    static func write(_ text: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-concurrency-\(UUID()).yaml").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func acceptedAndBadValuesPositioned() async throws {
        let good = try Self.write(
            """
            upstream:
              url: http://127.0.0.1:1
            storage: { kind: redis, url: "redis://127.0.0.1:6379/0", lease_ttl: 2s }
            rules:
              - name: gen
                key: [header:X-Api-Key]
                concurrency: { max: 2, queue: { size: 10, timeout: 5s }, retry_after: 2s }

            """
        )
        defer { try? FileManager.default.removeItem(atPath: good) }
        let (okStatus, okOutput) = try await SluiceProcess.run(["check", "--config", good])
        #expect(okStatus == 0)
        #expect(okOutput == "ok\n")

        let bad = try Self.write(
            """
            upstream:
              url: http://127.0.0.1:1
            storage: { kind: redis, url: "redis://127.0.0.1:6379/0", lease_ttl: 0s }
            rules:
              - name: gen
                key: [header:X-Api-Key]
                concurrency: { max: 0, queue: { size: 10, timeout: never }, retry_after: soon }

            """
        )
        defer { try? FileManager.default.removeItem(atPath: bad) }
        let (status, output) = try await SluiceProcess.run(["check", "--config", bad])
        #expect(status == 1)
        #expect(
            output == """
                \(bad):3:69: lease_ttl: must be greater than 0
                \(bad):7:25: max: must be at least 1, got 0
                \(bad):7:56: timeout: invalid duration 'never' (expected a number and a unit: 250ms, 2s, 5m, 1h, 1d)
                \(bad):7:78: retry_after: invalid duration 'soon' (expected a number and a unit: 250ms, 2s, 5m, 1h, 1d)

                """
        )
    }
}
