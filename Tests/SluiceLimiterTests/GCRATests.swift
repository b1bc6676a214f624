import Testing
@testable import SluiceLimiter

@Suite struct GCRATests {
    @Test func burstThenOneEveryInterval() {
        // 10/oneSecond: one every 100 ms; burst 2: three back to back.
        let limit = LimitParameters(count: 10, periodNanoseconds: oneSecond, burst: 2)
        var state: GCRA.State?
        var remaining: [Int64] = []
        for _ in 0..<3 {
            let step = GCRA.step(state, now: at(1000), cost: 1, limit: limit)
            #expect(step.verdict == .admitted)
            remaining.append(step.remaining)
            state = step.state
        }
        #expect(remaining == [2, 1, 0])
        let denied = GCRA.step(state, now: at(1000), cost: 1, limit: limit)
        #expect(denied.verdict == .denied(retryAfterNanoseconds: 100_000_000))
        #expect(GCRA.step(state, now: at(1000, ms: 100), cost: 1, limit: limit).verdict == .admitted)
    }

    @Test func withoutBurstOneAtATime() {
        let limit = LimitParameters(count: 1, periodNanoseconds: 10 * oneSecond)
        let first = GCRA.step(nil, now: at(0), cost: 1, limit: limit)
        #expect(first.verdict == .admitted && first.remaining == 0)
        #expect(GCRA.step(first.state, now: at(5), cost: 1, limit: limit).verdict == .denied(retryAfterNanoseconds: 5 * oneSecond))
        #expect(GCRA.step(first.state, now: at(10), cost: 1, limit: limit).verdict == .admitted)
    }

    @Test func delayHoldsRequestsThatFitSoon() {
        let limit = LimitParameters(count: 10, periodNanoseconds: oneSecond, burst: 0, delayNanoseconds: 150_000_000)
        let first = GCRA.step(nil, now: at(0), cost: 1, limit: limit)
        let secondStep = GCRA.step(first.state, now: at(0), cost: 1, limit: limit)
        #expect(secondStep.verdict == .delayed(nanoseconds: 100_000_000))
        let third = GCRA.step(secondStep.state, now: at(0), cost: 1, limit: limit)
        #expect(third.verdict == .denied(retryAfterNanoseconds: 200_000_000))
    }
}

@Suite struct TokenBucketTests {
    @Test func fullAtFirstThenRefilled() {
        // 2/oneSecond + burst 1: capacity 3, one token every 500 ms.
        let limit = LimitParameters(count: 2, periodNanoseconds: oneSecond, burst: 1)
        var state: TokenBucket.State?
        for expected: Int64 in [2, 1, 0] {
            let step = TokenBucket.step(state, now: at(50), cost: 1, limit: limit)
            #expect(step.verdict == .admitted && step.remaining == expected)
            state = step.state
        }
        #expect(TokenBucket.step(state, now: at(50), cost: 1, limit: limit).verdict == .denied(retryAfterNanoseconds: 500_000_000))
        let later = TokenBucket.step(state, now: at(51), cost: 2, limit: limit)
        #expect(later.verdict == .admitted && later.remaining == 0)
    }

    @Test func wholeCostMustBeAvailable() {
        let limit = LimitParameters(count: 4, periodNanoseconds: 4 * oneSecond)
        let first = TokenBucket.step(nil, now: at(0), cost: 3, limit: limit)
        #expect(first.verdict == .admitted && first.remaining == 1)
        #expect(TokenBucket.step(first.state, now: at(0), cost: 2, limit: limit).verdict == .denied(retryAfterNanoseconds: oneSecond))
    }
}

@Suite struct MovingWindowTests {
    @Test func exactLog() {
        let limit = LimitParameters(count: 3, periodNanoseconds: 10 * oneSecond)
        var state: MovingWindow.State?
        for t: Int64 in [0, 1, 2] {
            let step = MovingWindow.step(state, now: at(t), cost: 1, limit: limit)
            #expect(step.verdict == .admitted)
            state = step.state
        }
        #expect(MovingWindow.step(state, now: at(3), cost: 1, limit: limit).verdict == .denied(retryAfterNanoseconds: 7 * oneSecond))
        #expect(MovingWindow.step(state, now: at(3), cost: 2, limit: limit).verdict == .denied(retryAfterNanoseconds: 8 * oneSecond))
        let later = MovingWindow.step(state, now: at(10), cost: 1, limit: limit)
        #expect(later.verdict == .admitted)
        #expect(later.state.log == [1 * oneSecond, 2 * oneSecond, 10 * oneSecond])
    }
}
