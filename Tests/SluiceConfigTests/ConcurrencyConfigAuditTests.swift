import Testing

@testable import SluiceConfig

/// Bad values of `concurrency:` that ``ConcurrencyConfigTests/badValues()`` does not cover (audit of issue 22: "every
/// bad value" at `file:line:column`): a queue that is not a mapping, an unknown key inside `queue`, a zero
/// `retry_after`, `max` above 2^31-1 and below 1, a bad queue `timeout` and a queue `size` over its bound.
@Suite("Concurrency config: audit of issue 22")
struct ConcurrencyConfigAuditTests {
    @Test("the remaining bad values are errors at their position")
    func remainingBadValues() {
        let lines = errorLines(
            yaml: minimalYAML + "rules:\n"
                + """
                  - name: a
                    concurrency: { max: 2, queue: 5 }
                  - name: b
                    concurrency: { max: 2, queue: { size: 2, sise: 3 } }
                  - name: c
                    concurrency: { max: 2, retry_after: 0s }
                  - name: d
                    concurrency: { max: 2147483648 }
                  - name: e
                    concurrency: { max: -3 }
                  - name: f
                    concurrency: { max: 2, queue: { size: 2, timeout: soon } }
                  - name: g
                    concurrency: { max: 2, queue: { size: 1000001 } }

                """
        )
        #expect(
            lines == [
                "test.yaml:5:35: queue: expected a mapping, got '5'",
                "test.yaml:7:46: unknown key 'sise' (did you mean 'size'?)",
                "test.yaml:9:41: retry_after: must be greater than 0",
                "test.yaml:11:25: max: must be between 1 and 2147483647, got 2147483648",
                "test.yaml:13:25: max: must be at least 1, got -3",
                "test.yaml:15:55: timeout: invalid duration 'soon' (expected a number and a unit: 250ms, 2s, 5m, 1h, 1d)",
                "test.yaml:17:43: size: must be between 1 and 1000000, got 1000001",
            ]
        )
    }
}
