import Testing

@testable import SluiceConfig

/// `concurrency:` in a rule (issue 22): the model it loads into, and every bad value as `file:line:column`.
@Suite("Concurrency config")
struct ConcurrencyConfigTests {
    private func rules(_ body: String) -> String {
        minimalYAML + "rules:\n" + body
    }

    @Test("concurrency alone: max, queue and retry_after; limits stay empty")
    func concurrencyAlone() throws {
        let configuration = try loadValid(
            self.rules(
                """
                  - name: generate
                    key: [header:X-Api-Key]
                    concurrency: { max: 2, queue: { size: 10, timeout: 5s }, retry_after: 3s }

                """
            )
        )
        let rule = try #require(configuration.rules.first)
        #expect(rule.limits.isEmpty)
        #expect(rule.concurrency == ConcurrencyConfiguration(max: 2, queue: .init(size: 10, timeout: .seconds(5)), retryAfter: .seconds(3)))
        #expect(rule.concurrency?.retryAfterSeconds == 3)
    }

    @Test("defaults: no queue, retry_after 1s, queue timeout 1s; beside limits and cost")
    func defaultsBesideLimits() throws {
        let configuration = try loadValid(
            self.rules(
                """
                  - name: generate
                    limits: ["100000/minute"]
                    cost: { header: X-Tokens, default: 1000, max: 100000 }
                    concurrency: { max: 4 }
                    mode: shadow
                    response: { status: 503 }
                  - name: queued
                    concurrency:
                      max: 1
                      queue: { size: 3 }
                      retry_after: 1500ms

                """
            )
        )
        #expect(configuration.rules.count == 2)
        let first = configuration.rules[0]
        #expect(first.limits.map(\.text) == ["100000/minute"])
        #expect(first.concurrency == ConcurrencyConfiguration(max: 4))
        #expect(first.concurrency?.queue == nil)
        #expect(first.concurrency?.retryAfterSeconds == 1)
        #expect(first.mode == .shadow)
        #expect(first.response.status == 503)
        let second = configuration.rules[1]
        #expect(second.concurrency?.queue == ConcurrencyConfiguration.Queue(size: 3, timeout: .seconds(1)))
        // 1.5 s rounds up.
        #expect(second.concurrency?.retryAfterSeconds == 2)
    }

    @Test("a tier gives concurrency.max; the mapping form may leave limits out")
    func tiers() throws {
        let configuration = try loadValid(
            self.rules(
                """
                  - name: plans
                    key: [header:X-Api-Key]
                    limits: ["10/minute"]
                    concurrency: { max: 1 }
                    tiers:
                      by: header:X-Plan
                      values:
                        free: ["10/minute"]
                        pro: { limits: ["1000/minute"], concurrency: { max: 8 } }
                        team: { concurrency: { max: 4 } }
                      default: { concurrency: { max: 2 } }

                """
            )
        )
        let tiers = try #require(configuration.rules.first?.tiers)
        #expect(tiers.values.keys.sorted() == ["free", "pro"])
        #expect(tiers.concurrencyMax == ["pro": 8, "team": 4])
        #expect(tiers.defaultConcurrencyMax == 2)
        #expect(tiers.defaultLimits == nil)
    }

    @Test("every bad value is an error at its position")
    func badValues() {
        let lines = errorLines(
            yaml: self.rules(
                """
                  - name: a
                    concurrency: { max: 0 }
                  - name: b
                    concurrency: { queue: { size: 2 } }
                  - name: c
                    concurrency: { max: 2, queue: { size: 0, timeout: 0s } }
                  - name: d
                    concurrency: { max: 2, retry_after: soon, maxx: 3 }
                  - name: e
                    concurrency: { max: 2, queue: { timeout: 2h } }
                  - name: f
                    concurrency: 4
                  - name: g
                    concurrency: { max: two }

                """
            )
        )
        #expect(
            lines == [
                "test.yaml:5:25: max: must be at least 1, got 0",
                "test.yaml:7:18: concurrency: 'max' is required",
                "test.yaml:9:43: size: must be between 1 and 1000000, got 0",
                "test.yaml:9:55: timeout: must be greater than 0",
                "test.yaml:11:41: retry_after: invalid duration 'soon' (expected a number and a unit: 250ms, 2s, 5m, 1h, 1d)",
                "test.yaml:11:47: unknown key 'maxx' (did you mean 'max'?)",
                "test.yaml:13:35: queue: 'size' is required",
                "test.yaml:13:46: timeout: at most 1h, got '2h'",
                "test.yaml:15:18: concurrency: expected a mapping, got '4'",
                "test.yaml:17:25: max: expected an integer, got 'two'",
            ]
        )
    }

    @Test("a rule needs limits, tiers or concurrency; rate-only keys need limits; tier concurrency needs the rule's")
    func ruleShape() {
        let lines = errorLines(
            yaml: self.rules(
                """
                  - name: nothing
                    key: [ip]
                  - name: only-concurrency
                    concurrency: { max: 2 }
                    algorithm: gcra
                    cost: 5
                  - name: tier-without
                    limits: ["5/minute"]
                    tiers:
                      by: header:X-Plan
                      values: { pro: { concurrency: { max: 3 } } }
                  - name: empty-tier
                    concurrency: { max: 2 }
                    tiers:
                      by: header:X-Plan
                      values: { pro: {} }
                      default: { concurrency: {} }

                """
            )
        )
        #expect(
            lines == [
                "test.yaml:4:5: rule 'nothing': 'limits', 'tiers' or 'concurrency' is required",
                "test.yaml:8:5: algorithm applies to 'limits'; rule 'only-concurrency' has only 'concurrency'",
                "test.yaml:9:5: cost applies to 'limits'; rule 'only-concurrency' has only 'concurrency'",
                "test.yaml:12:5: tiers: a tier gives concurrency.max but rule 'tier-without' has no 'concurrency'",
                "test.yaml:19:22: values.pro: expected limits, or a mapping with 'limits' and/or 'concurrency'",
                "test.yaml:20:31: concurrency: 'max' is required",
            ]
        )
    }
}
