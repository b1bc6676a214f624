import SluiceConfig
import SluiceLimiter
import Synchronization
import Testing

@testable import SluiceAdmin

/// `/config` and `/metrics` for `upstream.adaptive_concurrency` (issue 22 item 7), as plain function calls.
@Suite struct AdaptiveConcurrencyAdminTests {
    struct Backend: AdminBackend {
        var configuration: SluiceConfiguration
        var limiter: RateLimiter?
        var isReady: Bool { true }
    }

    final class Clock: Sendable {
        let nanoseconds = Atomic<Int64>(0)
        var read: @Sendable () -> Int64 { { self.nanoseconds.load(ordering: .relaxed) } }
    }

    static let settings = AdaptiveConcurrencyConfiguration(
        min: 2,
        max: 64,
        sampleInterval: .milliseconds(50),
        minRTTInterval: .seconds(30),
        jitter: 0.125,
        minRTTSamples: 1,
        buffer: 0.1,
        percentile: 0.9,
        retryAfter: .seconds(2)
    )

    @Test func configShowsTheBlockAndNullWithoutIt() async {
        var configuration = testConfiguration()
        let router = AdminRouter(backend: Backend(configuration: configuration), metrics: SluiceMetrics(), clock: { testNow })
        let without = await router.respond(method: .GET, uri: "/config", authorization: nil).body
        #expect(without.contains("\"adaptive_concurrency\": null"))

        configuration.upstream.adaptiveConcurrency = Self.settings
        let withBlock = AdminRouter(backend: Backend(configuration: configuration), metrics: SluiceMetrics(), clock: { testNow })
        let config = await withBlock.respond(method: .GET, uri: "/config", authorization: nil).body
        for expected in [
            "\"adaptive_concurrency\": {", "\"min\": 2,", "\"max\": 64,", "\"sample_interval\": \"50ms\"",
            "\"min_rtt_interval\": \"30s\"", "\"jitter\": \"12.5%\"", "\"min_rtt_samples\": 1,", "\"buffer\": \"10%\"",
            "\"percentile\": \"90%\"", "\"retry_after\": \"2s\"",
        ] {
            #expect(config.contains(expected), "\(expected) in \(config)")
        }
    }

    @Test func metricsShowTheLimiterAndKeepCountersAcrossAReplacement() async throws {
        let clock = Clock()
        let first = AdaptiveConcurrencyLimiter(configuration: Self.settings, targets: [], seed: 1, clock: clock.read)
        let current = Mutex<AdaptiveConcurrencyLimiter?>(nil)
        let metrics = SluiceMetrics()
        #expect(!metrics.exposition().contains("sluice_adaptive_concurrency_limit"))
        metrics.setAdaptiveConcurrencySource { current.withLock { $0 } }
        #expect(!metrics.exposition().contains("sluice_adaptive_concurrency_limit"))
        current.withLock { $0 = first }

        var ticket = try #require(first.admit())
        _ = try #require(first.admit())  // held: in flight 1 after the first is released
        #expect(first.admit() == nil)  // the limit is 2 while measuring: one refusal
        clock.nanoseconds.add(20_000_000, ordering: .relaxed)
        ticket.responded()
        ticket.completed = true
        ticket.release()
        var text = metrics.exposition()
        #expect(text.contains("# TYPE sluice_adaptive_concurrency_limit gauge\nsluice_adaptive_concurrency_limit 2\n"))
        #expect(text.contains("sluice_adaptive_concurrency_in_flight 1\n"))
        #expect(text.contains("sluice_adaptive_concurrency_min_rtt_seconds 0.02\n"))
        #expect(text.contains("sluice_adaptive_concurrency_measuring_min_rtt 0\n"))
        #expect(text.contains("sluice_adaptive_concurrency_refusals_total 1\n"))
        #expect(text.contains("sluice_adaptive_concurrency_samples_total 1\n"))
        #expect(!text.contains("\nsluice_adaptive_concurrency_sample_latency_seconds "))

        // A reload replaces the limiter: the counters go on from the old one's totals.
        let second = AdaptiveConcurrencyLimiter(configuration: Self.settings, targets: [], seed: 2, clock: clock.read)
        current.withLock { $0 = second }
        _ = try #require(second.admit())
        _ = try #require(second.admit())
        #expect(second.admit() == nil)
        text = metrics.exposition()
        #expect(text.contains("sluice_adaptive_concurrency_refusals_total 2\n"))
        #expect(text.contains("sluice_adaptive_concurrency_samples_total 1\n"))
        #expect(text.contains("sluice_adaptive_concurrency_in_flight 2\n"))
        #expect(text.contains("sluice_adaptive_concurrency_measuring_min_rtt 1\n"))
    }
}
