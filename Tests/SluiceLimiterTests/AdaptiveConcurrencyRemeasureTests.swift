import Testing

@testable import SluiceLimiter

/// A re-measurement of the minimum latency counts only requests that started after it began (issue 22 item 7).
///
/// When the measurement starts the limit drops to `min`, but the requests admitted under the old, higher limit are
/// still in flight, and they complete first, with the latency of the load they started under. Counted, they are the
/// whole measurement as soon as more than `min_rtt_samples` of them were in flight: the "minimum" latency becomes the
/// loaded one, and the gradient then tolerates that latency as if it were the upstream's best.
@Suite struct AdaptiveConcurrencyRemeasureTests {
    static let ms: Int64 = 1_000_000

    static func parameters() -> AdaptiveConcurrencyController.Parameters {
        .init(
            minLimit: 4,
            maxLimit: 500,
            sampleIntervalNanoseconds: 100 * ms,
            minRTTIntervalNanoseconds: 10_000 * ms,
            jitter: 0,
            minRTTSamples: 20,
            buffer: 0.25,
            percentile: 0.5
        )
    }

    /// A controller measured at 10 ms and grown to a high limit; returns the time.
    static func grown(_ controller: inout AdaptiveConcurrencyController) -> Int64 {
        var now: Int64 = 0
        for _ in 0..<20 {
            _ = controller.admits(inFlight: 0)
            now += ms
            controller.completed(latency: 10 * ms, now: now)
        }
        while controller.limit < 100 {
            for n in 0..<controller.limit { _ = controller.admits(inFlight: n) }
            for i in 0..<10 { controller.completed(latency: 10 * ms, now: now + Int64(i) * ms) }
            now += 100 * ms
            controller.tick(now: now)
        }
        return now
    }

    @Test func requestsInFlightBeforeTheMeasurementBeganAreNotCounted() {
        var controller = AdaptiveConcurrencyController(parameters: Self.parameters(), now: 0, seed: 1)
        _ = Self.grown(&controller)
        let grownLimit = controller.limit
        let due = controller.nextMinRTTAt
        controller.tick(now: due)
        #expect(controller.phase == .measuringMinRTT(resumeAt: grownLimit))
        // 80 requests admitted under load (40 ms) complete during the measurement: none of them counts.
        var now = due
        for _ in 0..<80 {
            now += Self.ms * 4 / 10  // all within 32 ms of the start, so all started before it
            controller.completed(latency: 40 * Self.ms, now: now)
        }
        #expect(controller.phase == .measuringMinRTT(resumeAt: grownLimit))
        // The requests admitted at the minimum limit are the measurement.
        for _ in 0..<20 {
            now += 11 * Self.ms
            controller.completed(latency: 10 * Self.ms, now: now)
        }
        #expect(controller.minRTT == 10 * Self.ms)
        #expect(controller.phase == .adjusting)
        #expect(controller.limit == grownLimit)
    }

    @Test func theStartMayBeGivenExactly() {
        var controller = AdaptiveConcurrencyController(parameters: Self.parameters(), now: 0, seed: 1)
        _ = Self.grown(&controller)
        let due = controller.nextMinRTTAt
        controller.tick(now: due)
        // Started 1 ms before the measurement, its head came 5 ms later, its body ended much later: not counted.
        controller.completed(startedAt: due - Self.ms, latency: 5 * Self.ms, now: due + 500 * Self.ms)
        // Started at the measurement's start: counted.
        for i in 0..<20 {
            controller.completed(startedAt: due + Int64(i) * Self.ms, latency: 6 * Self.ms, now: due + 600 * Self.ms)
        }
        #expect(controller.minRTT == 6 * Self.ms)
    }

    @Test func theFirstMeasurementCountsEveryCompletion() {
        // Nothing was admitted before the controller existed, so at the start every completion counts (the usual
        // "latency longer than the time since start" of a test clock included).
        var controller = AdaptiveConcurrencyController(parameters: Self.parameters(), now: 1_000 * Self.ms, seed: 1)
        for i in 0..<20 {
            controller.completed(latency: 50 * Self.ms, now: 1_000 * Self.ms + Int64(i) * Self.ms)
        }
        #expect(controller.minRTT == 50 * Self.ms)
    }
}
