import SluiceConfig
import Synchronization
import Testing

@testable import SluiceLimiter

/// ``AdaptiveConcurrencyLimiter``: the shared controller, the in-flight count and the tickets, with a clock the test
/// moves.
@Suite struct AdaptiveConcurrencyLimiterTests {
    static let ms: Int64 = 1_000_000

    final class TestClock: Sendable {
        let value = Atomic<Int64>(0)
        func advance(_ nanoseconds: Int64) { self.value.add(nanoseconds, ordering: .relaxed) }
        var read: @Sendable () -> Int64 { { self.value.load(ordering: .relaxed) } }
    }

    static func limiter(_ clock: TestClock, min: Int = 2, max: Int = 100, samples: Int = 3) -> AdaptiveConcurrencyLimiter {
        AdaptiveConcurrencyLimiter(
            configuration: AdaptiveConcurrencyConfiguration(
                min: min,
                max: max,
                sampleInterval: .milliseconds(100),
                minRTTInterval: .seconds(60),
                jitter: 0,
                minRTTSamples: samples
            ),
            targets: [],
            seed: 1,
            clock: clock.read
        )
    }

    @Test func admitsUpToTheLimitAndCountsRefusals() {
        let clock = TestClock()
        let limiter = Self.limiter(clock)
        let first = limiter.admit()
        let second = limiter.admit()
        #expect(first != nil && second != nil)
        #expect(limiter.admit() == nil)
        #expect(limiter.inFlight == 2 && limiter.refusals == 1)
        first!.release()
        #expect(limiter.inFlight == 1)
        #expect(limiter.admit() != nil)
        #expect(limiter.inFlight == 2)
    }

    @Test func onlyCompletedTicketsAreSamplesAndTheirLatencyEndsAtTheResponseHead() {
        let clock = TestClock()
        let limiter = Self.limiter(clock, samples: 3)
        // Released without completing (client gone, upstream error): no sample.
        limiter.admit()!.release()
        var noHead = limiter.admit()!
        noHead.completed = true  // completed without a head can't happen, but must not count either
        noHead.release()
        #expect(limiter.samples == 0 && limiter.inFlight == 0)
        for _ in 0..<3 {
            var ticket = limiter.admit()!
            clock.advance(20 * Self.ms)
            ticket.responded()
            clock.advance(500 * Self.ms)  // a long body: not part of the latency
            ticket.completed = true
            ticket.release()
        }
        #expect(limiter.samples == 3 && limiter.inFlight == 0)
        let state = limiter.state
        #expect(state.minRTT == 20 * Self.ms)
        #expect(!state.measuringMinRTT)
        #expect(state.limit == 2)
    }

    @Test func admissionsEndIntervalsWithoutCompletions() {
        let clock = TestClock()
        let limiter = Self.limiter(clock, min: 2, max: 100, samples: 1)
        var ticket = limiter.admit()!
        clock.advance(10 * Self.ms)
        ticket.responded()
        ticket.completed = true
        ticket.release()
        #expect(limiter.state.minRTT == 10 * Self.ms)
        // A full interval at the limit, with fast completions recorded...
        var held = [limiter.admit()!, limiter.admit()!]
        clock.advance(10 * Self.ms)
        for index in held.indices {
            held[index].responded()
            held[index].completed = true
            held[index].release()
        }
        let before = limiter.state.limit
        // ... ends at the next admission once the interval is over, and the limit grows (fast, at the limit).
        clock.advance(100 * Self.ms)
        let next = limiter.admit()
        #expect(next != nil)
        #expect(limiter.state.limit > before)
        next?.release()
        #expect(limiter.inFlight == 0)
    }

    @Test func concurrentAdmissionsNeverExceedTheLimit() async {
        let clock = TestClock()
        let limiter = Self.limiter(clock, min: 5, max: 5, samples: 1_000_000)
        let peakBox = TestClock()  // an atomic in a class, so the tasks can share it
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    for _ in 0..<2000 {
                        guard let ticket = limiter.admit() else { continue }
                        let now = limiter.inFlight
                        var seen = peakBox.value.load(ordering: .relaxed)
                        while Int64(now) > seen {
                            let (exchanged, original) = peakBox.value.compareExchange(
                                expected: seen,
                                desired: Int64(now),
                                ordering: .relaxed
                            )
                            if exchanged { break }
                            seen = original
                        }
                        ticket.release()
                    }
                }
            }
        }
        #expect(peakBox.value.load(ordering: .relaxed) <= 5)
        #expect(peakBox.value.load(ordering: .relaxed) >= 1)
        #expect(limiter.inFlight == 0)
    }

    @Test func servesTheSameUpstreamWithTheSameSettingsOnly() {
        let target = UpstreamTarget(scheme: .http, host: "127.0.0.1", port: 3000)
        let settings = AdaptiveConcurrencyConfiguration(min: 4, max: 40)
        let limiter = AdaptiveConcurrencyLimiter(configuration: settings, targets: [target])
        #expect(limiter.serves(settings, targets: [target]))
        var other = settings
        other.max = 41
        #expect(!limiter.serves(other, targets: [target]))
        #expect(!limiter.serves(settings, targets: [UpstreamTarget(scheme: .http, host: "127.0.0.1", port: 3001)]))
    }
}
