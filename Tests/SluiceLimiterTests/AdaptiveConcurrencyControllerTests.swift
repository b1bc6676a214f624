import Testing
@testable import SluiceLimiter

/// The gradient controller with a clock the tests move: no sleeping.
@Suite struct AdaptiveConcurrencyControllerTests {
    static let ms: Int64 = 1_000_000

    static func parameters(min: Int = 4, max: Int = 200) -> AdaptiveConcurrencyController.Parameters {
        .init(
            minLimit: min,
            maxLimit: max,
            sampleIntervalNanoseconds: 100 * ms,
            minRTTIntervalNanoseconds: 60_000 * ms,
            jitter: 0.15,
            minRTTSamples: 20,
            buffer: 0.25,
            percentile: 0.5
        )
    }

    /// A controller whose minimum latency has been measured at `latency` (starting at t = 0); returns the time.
    static func measured(_ controller: inout AdaptiveConcurrencyController, latency: Int64) -> Int64 {
        var now: Int64 = 0
        for _ in 0..<controller.parameters.minRTTSamples {
            let admitted = controller.admits(inFlight: 0)
            #expect(admitted)
            now += 1 * ms
            controller.completed(latency: latency, now: now)
        }
        return now
    }

    /// One interval of load: the controller's whole limit in flight (or `inFlight` when given), `count` requests
    /// completing with `latency(limit)`; returns the limit after the interval.
    @discardableResult
    static func interval(
        _ controller: inout AdaptiveConcurrencyController,
        now: inout Int64,
        inFlight: Int? = nil,
        count: Int = 10,
        latency: (Int) -> Int64
    ) -> Int {
        let running = inFlight ?? controller.limit
        for n in 0..<running { _ = controller.admits(inFlight: n) }
        let sample = latency(controller.limit)
        for i in 0..<count {
            controller.completed(latency: sample, now: now + Int64(i) * ms)
        }
        now += 100 * ms
        controller.tick(now: now)
        return controller.limit
    }

    @Test func measuresTheMinimumLatencyAtTheMinimumLimitFirst() {
        var controller = AdaptiveConcurrencyController(parameters: Self.parameters(), now: 0, seed: 1)
        #expect(controller.limit == 4)
        #expect(controller.phase == .measuringMinRTT(resumeAt: 4))
        // Pinned: a fifth request in flight is refused while measuring.
        let fourth = controller.admits(inFlight: 3)
        let fifth = controller.admits(inFlight: 4)
        #expect(fourth && !fifth)
        var now: Int64 = 0
        for i in 0..<19 {
            now += Self.ms
            controller.completed(latency: (10 + Int64(i % 3)) * Self.ms, now: now)
            #expect(controller.minRTT == nil)
        }
        now += Self.ms
        controller.completed(latency: 10 * Self.ms, now: now)
        // The median of 20 latencies of 10, 11 and 12 ms.
        #expect(controller.minRTT == 11 * Self.ms)
        #expect(controller.phase == .adjusting)
        let earliest = now + 60_000 * Self.ms
        #expect(controller.nextMinRTTAt >= earliest && controller.nextMinRTTAt <= earliest + 9_000 * Self.ms)
    }

    @Test func growsByItsSquareRootWhileLatencyStaysAtTheMinimum() {
        var controller = AdaptiveConcurrencyController(parameters: Self.parameters(), now: 0, seed: 1)
        var now = Self.measured(&controller, latency: 10 * Self.ms)
        var limits: [Int] = [controller.limit]
        for _ in 0..<6 {
            limits.append(Self.interval(&controller, now: &now) { _ in 10 * Self.ms })
        }
        // gradient 1.25 (clamped range 0.5...2): 4 → 5×… each step is ⌊1.25 L + √(1.25 L)⌋.
        var expected = [4]
        for _ in 0..<6 {
            let scaled = 1.25 * Double(expected.last!)
            expected.append(Int((scaled + scaled.squareRoot()).rounded(.down)))
        }
        #expect(limits == expected)
        #expect(limits == limits.sorted() && Set(limits).count == limits.count)
    }

    @Test func risingLatencyLowersTheLimitAndRecoveryRaisesItAgain() {
        var controller = AdaptiveConcurrencyController(parameters: Self.parameters(), now: 0, seed: 7)
        var now = Self.measured(&controller, latency: 10 * Self.ms)
        for _ in 0..<12 { Self.interval(&controller, now: &now) { _ in 10 * Self.ms } }
        let high = controller.limit
        #expect(high > 50)
        // The upstream queues: latency four times the minimum.
        var falling: [Int] = []
        for _ in 0..<5 { falling.append(Self.interval(&controller, now: &now) { _ in 40 * Self.ms }) }
        #expect(falling.first! < high)
        #expect(falling == falling.sorted(by: >))
        #expect(falling.last! < high / 4)
        #expect(falling.allSatisfy { $0 >= 4 })
        // Back to normal: it climbs again.
        let low = controller.limit
        for _ in 0..<5 { Self.interval(&controller, now: &now) { _ in 10 * Self.ms } }
        #expect(controller.limit > low)
    }

    @Test func neverLeavesMinAndMax() {
        var controller = AdaptiveConcurrencyController(parameters: Self.parameters(min: 4, max: 30), now: 0, seed: 3)
        var now = Self.measured(&controller, latency: 10 * Self.ms)
        for _ in 0..<30 { Self.interval(&controller, now: &now) { _ in 1 * Self.ms } }
        #expect(controller.limit == 30)
        for _ in 0..<30 { Self.interval(&controller, now: &now) { _ in 10_000 * Self.ms } }
        #expect(controller.limit == 4)
    }

    @Test func settlesBelowTheKneeOfAnUpstreamThatQueues() {
        // An upstream with 20 workers: up to 20 in flight a request takes 10 ms, beyond it waits for a worker.
        let workers = 20
        func latency(_ inFlight: Int) -> Int64 {
            inFlight <= workers ? 10 * Self.ms : Int64(10 * inFlight / workers) * Self.ms
        }
        var controller = AdaptiveConcurrencyController(parameters: Self.parameters(max: 1000), now: 0, seed: 11)
        var now = Self.measured(&controller, latency: 10 * Self.ms)
        var limits: [Int] = []
        for _ in 0..<200 { limits.append(Self.interval(&controller, now: &now, latency: latency)) }
        // Once settled, it oscillates around the knee and the latency stays bounded (at most 2.5× the minimum).
        let settled = limits.suffix(100)
        #expect(settled.max()! <= 2 * workers + 10)
        #expect(settled.allSatisfy { latency($0) <= 25 * Self.ms })
        #expect(settled.min()! >= 4)
    }

    @Test func doesNotGrowWhenTheUpstreamIsNotTheBottleneck() {
        var controller = AdaptiveConcurrencyController(parameters: Self.parameters(), now: 0, seed: 5)
        var now = Self.measured(&controller, latency: 10 * Self.ms)
        for _ in 0..<8 { Self.interval(&controller, now: &now) { _ in 10 * Self.ms } }
        let before = controller.limit
        #expect(before > 20)
        // Two requests in flight at a time: fast, but far from the limit.
        for _ in 0..<20 { Self.interval(&controller, now: &now, inFlight: 2) { _ in 10 * Self.ms } }
        #expect(controller.limit == before)
        // Slow responses still lower it (the rule only stops growth).
        Self.interval(&controller, now: &now, inFlight: 2) { _ in 50 * Self.ms }
        #expect(controller.limit < before)
    }

    @Test func anIntervalWithoutCompletionsChangesNothing() {
        var controller = AdaptiveConcurrencyController(parameters: Self.parameters(), now: 0, seed: 5)
        var now = Self.measured(&controller, latency: 10 * Self.ms)
        for _ in 0..<4 { Self.interval(&controller, now: &now) { _ in 10 * Self.ms } }
        let before = controller.limit
        for _ in 0..<10 {
            now += 100 * Self.ms
            controller.tick(now: now)
        }
        #expect(controller.limit == before)
    }

    @Test func measuresTheMinimumAgainAfterTheIntervalWithJitterAndResumes() {
        var first = AdaptiveConcurrencyController(parameters: Self.parameters(), now: 0, seed: 1)
        var second = AdaptiveConcurrencyController(parameters: Self.parameters(), now: 0, seed: 2)
        let end = Self.measured(&first, latency: 10 * Self.ms)
        _ = Self.measured(&second, latency: 10 * Self.ms)
        // Different seeds: different moments, both within 60 s + 15 %.
        #expect(first.nextMinRTTAt != second.nextMinRTTAt)
        for controller in [first, second] {
            #expect(controller.nextMinRTTAt >= end + 60_000 * Self.ms)
            #expect(controller.nextMinRTTAt <= end + 69_000 * Self.ms)
        }
        var now = end
        for _ in 0..<6 { Self.interval(&first, now: &now) { _ in 10 * Self.ms } }
        let grown = first.limit
        let due = first.nextMinRTTAt
        now = due - 1
        first.tick(now: now)
        #expect(first.phase == .adjusting)
        now = due
        first.tick(now: now)
        #expect(first.phase == .measuringMinRTT(resumeAt: grown))
        #expect(first.limit == 4)
        // The upstream got faster: the new minimum is measured, and the limit resumes where it was. (Requests that
        // started after the measurement began: the ones before it do not count, AdaptiveConcurrencyRemeasureTests.)
        for _ in 0..<20 {
            now += 5 * Self.ms
            first.completed(latency: 4 * Self.ms, now: now)
        }
        #expect(first.minRTT == 4 * Self.ms)
        #expect(first.limit == grown)
        #expect(first.phase == .adjusting)
    }

    @Test func keepsABoundedUniformSampleUnderAnyLoad() {
        var controller = AdaptiveConcurrencyController(parameters: Self.parameters(), now: 0, seed: 9)
        var now = Self.measured(&controller, latency: 10 * Self.ms)
        _ = controller.admits(inFlight: 3)
        // 50,000 completions in one interval: half fast, half slow, interleaved; the median is of the kept sample.
        for i in 0..<50_000 {
            controller.completed(latency: (i % 2 == 0 ? 10 : 80) * Self.ms, now: now)
        }
        now += 100 * Self.ms
        controller.tick(now: now)
        #expect(controller.lastSample == 10 * Self.ms || controller.lastSample == 80 * Self.ms)
        #expect(controller.limit >= 4)
    }
}
