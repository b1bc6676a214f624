import Testing
@testable import SluiceLimiter

@Suite struct SlidingWindowTests {
    @Test func previousWindowIsWeightedExactly() {
        // count 2, previous window 3: 3 × (1 − f) + 1 ≤ 2 ⇔ f ≥ 2/3, i.e. 40 s into a 60 s window. No rounding.
        let limit = LimitParameters(count: 2, periodNanoseconds: 60 * oneSecond)
        let state = SlidingWindow.State(windowStart: 0, current: 3, previous: 0)
        let early = SlidingWindow.step(state, now: LimiterInstant(nanosecondsSinceEpoch: 100 * oneSecond - 1), cost: 1, limit: limit)
        #expect(early.verdict == .denied(retryAfterNanoseconds: 1))
        let exact = SlidingWindow.step(state, now: at(100), cost: 1, limit: limit)
        #expect(exact.verdict == .admitted)
        #expect(exact.state == .init(windowStart: 60 * oneSecond, current: 1, previous: 3))
        #expect(exact.remaining == 0)
        #expect(exact.resetNanoseconds == 20 * oneSecond)
    }

    @Test func halfwayAdmitsHalf() {
        let limit = LimitParameters(count: 10, periodNanoseconds: 60 * oneSecond)
        var state: SlidingWindow.State? = .init(windowStart: 0, current: 10, previous: 0)
        var admitted = 0
        for _ in 0..<10 {
            let step = SlidingWindow.step(state, now: at(90), cost: 1, limit: limit)
            if step.verdict.isAdmitted {
                admitted += 1
                state = step.state
            }
        }
        #expect(admitted == 5)
    }

    @Test func retryAfterWhenThePreviousWindowIsInTheWay() {
        let limit = LimitParameters(count: 10, periodNanoseconds: 60 * oneSecond)
        let state = SlidingWindow.State(windowStart: 60 * oneSecond, current: 10, previous: 0)
        // At 120 the previous count weighs 10; one unit fits once 10 × (60 − e)/60 ≤ 9, e ≥ 6 s.
        let step = SlidingWindow.step(state, now: at(120), cost: 1, limit: limit)
        #expect(step.verdict == .denied(retryAfterNanoseconds: 6 * oneSecond))
        #expect(!SlidingWindow.step(state, now: at(125, ms: 999), cost: 1, limit: limit).verdict.isAdmitted)
        #expect(SlidingWindow.step(state, now: at(126), cost: 1, limit: limit).verdict.isAdmitted)
    }

    @Test func retryAfterWhenTheCurrentWindowIsFull() {
        let limit = LimitParameters(count: 10, periodNanoseconds: 60 * oneSecond)
        let state = SlidingWindow.State(windowStart: 60 * oneSecond, current: 10, previous: 0)
        // 59 s to the window's end, then 6 s of decay.
        let step = SlidingWindow.step(state, now: at(61), cost: 1, limit: limit)
        #expect(step.verdict == .denied(retryAfterNanoseconds: 65 * oneSecond))
        #expect(SlidingWindow.step(state, now: at(126), cost: 1, limit: limit).verdict.isAdmitted)
        #expect(!SlidingWindow.step(state, now: at(125), cost: 1, limit: limit).verdict.isAdmitted)
    }

    @Test func oldStateIsForgotten() {
        let limit = LimitParameters(count: 1, periodNanoseconds: 60 * oneSecond)
        let state = SlidingWindow.State(windowStart: 0, current: 1, previous: 1)
        let step = SlidingWindow.step(state, now: at(120), cost: 1, limit: limit)
        #expect(step.verdict == .admitted)
        #expect(step.state == .init(windowStart: 120 * oneSecond, current: 1, previous: 0))
    }

    @Test func longPeriodsDoNotOverflow() {
        let limit = LimitParameters(count: 1_000_000_000, periodNanoseconds: 86_400 * oneSecond)
        let state = SlidingWindow.State(windowStart: 0, current: 999_999_999, previous: 0)
        let step = SlidingWindow.step(state, now: at(86_400 + 43_200), cost: 1, limit: limit)
        #expect(step.verdict == .admitted)
        #expect(step.remaining == 499_999_999)
    }
}
