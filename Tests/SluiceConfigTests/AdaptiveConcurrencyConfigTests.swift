import Testing

@testable import SluiceConfig

/// `upstream.adaptive_concurrency` (issue 22 item 7): the model it loads into, its defaults, and every bad value as
/// `file:line:column`.
@Suite("Adaptive concurrency config")
struct AdaptiveConcurrencyConfigTests {
    private func upstream(_ body: String) -> String {
        "upstream:\n  url: http://127.0.0.1:3000\n" + body
    }

    @Test("absent: no adaptive limit")
    func absent() throws {
        let configuration = try loadValid(minimalYAML)
        #expect(configuration.upstream.adaptiveConcurrency == nil)
    }

    @Test("min and max only: Envoy's defaults for the rest")
    func defaults() throws {
        let configuration = try loadValid(self.upstream("  adaptive_concurrency: { min: 8, max: 1000 }\n"))
        let adaptive = try #require(configuration.upstream.adaptiveConcurrency)
        #expect(adaptive == AdaptiveConcurrencyConfiguration())
        #expect(adaptive.min == 8 && adaptive.max == 1000)
        #expect(adaptive.sampleInterval == .milliseconds(100))
        #expect(adaptive.minRTTInterval == .seconds(60))
        #expect(adaptive.jitter == 0.15)
        #expect(adaptive.minRTTSamples == 50)
        #expect(adaptive.buffer == 0.25)
        #expect(adaptive.percentile == 0.5)
        #expect(adaptive.retryAfterSeconds == 1)
        // An empty mapping is all defaults too.
        let empty = try loadValid(self.upstream("  adaptive_concurrency: {}\n"))
        #expect(empty.upstream.adaptiveConcurrency == AdaptiveConcurrencyConfiguration())
    }

    @Test("every tuning key, fractions as numbers or percentages")
    func everyKey() throws {
        let configuration = try loadValid(
            self.upstream(
                """
                  adaptive_concurrency:
                    min: 2
                    max: 64
                    sample_interval: 50ms
                    min_rtt_interval: 2s
                    jitter: 0
                    min_rtt_samples: 10
                    buffer: 10%
                    percentile: 0.9
                    retry_after: 1500ms

                """
            )
        )
        let adaptive = try #require(configuration.upstream.adaptiveConcurrency)
        #expect(
            adaptive
                == AdaptiveConcurrencyConfiguration(
                    min: 2,
                    max: 64,
                    sampleInterval: .milliseconds(50),
                    minRTTInterval: .seconds(2),
                    jitter: 0,
                    minRTTSamples: 10,
                    buffer: 0.1,
                    percentile: 0.9,
                    retryAfter: .milliseconds(1500)
                )
        )
        // 1.5 s rounds up.
        #expect(adaptive.retryAfterSeconds == 2)
    }

    @Test("every bad value is an error at its position")
    func badValues() {
        let lines = errorLines(
            yaml: self.upstream(
                """
                  adaptive_concurrency:
                    min: 0
                    max: lots
                    sample_interval: 0s
                    min_rtt_interval: 2d
                    jitter: 150%
                    min_rtt_samples: -1
                    buffer: -0.1
                    percentile: 90
                    retry_after: soon
                    sample_intervall: 1s

                """
            )
        )
        #expect(
            lines == [
                "test.yaml:4:10: min: must be between 1 and 1000000, got 0",
                "test.yaml:5:10: max: expected an integer, got 'lots'",
                "test.yaml:6:22: sample_interval: must be greater than 0",
                "test.yaml:7:23: min_rtt_interval: at most 24h, got '2d'",
                "test.yaml:8:13: jitter: must be between 0 and 1 (100%), got '150%'",
                "test.yaml:9:22: min_rtt_samples: must be between 1 and 100000, got -1",
                "test.yaml:10:13: buffer: expected a number such as 0.25 or a percentage such as 25%, got '-0.1'",
                "test.yaml:11:17: percentile: must be between 0 and 1 (100%), got '90'",
                "test.yaml:12:18: retry_after: invalid duration 'soon' (expected a number and a unit: 250ms, 2s, 5m, 1h, 1d)",
                "test.yaml:13:5: unknown key 'sample_intervall' (did you mean 'sample_interval'?)",
            ]
        )
    }

    @Test("max below min, and a value that is not a mapping")
    func maxBelowMinAndShape() {
        let below = errorLines(yaml: self.upstream("  adaptive_concurrency: { min: 10, max: 5 }\n"))
        #expect(below == ["test.yaml:3:41: adaptive_concurrency: max (5) must be at least min (10)"])
        let scalar = errorLines(yaml: self.upstream("  adaptive_concurrency: yes\n"))
        #expect(scalar == ["test.yaml:3:25: adaptive_concurrency: expected a mapping, got 'yes'"])
    }
}
