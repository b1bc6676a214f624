import Testing
@testable import SluiceLimiter

@Suite struct FixedWindowTests {
    let limit = LimitParameters(count: 5, periodNanoseconds: 60 * oneSecond)

    @Test func countsWithinTheWindowAndResetsAtItsEnd() {
        var state: FixedWindow.State?
        for i in 0..<5 {
            let step = FixedWindow.step(state, now: at(125, ms: Int64(i)), cost: 1, limit: self.limit)
            #expect(step.verdict == .admitted)
            #expect(step.remaining == Int64(4 - i))
            state = step.state
        }
        let denied = FixedWindow.step(state, now: at(125, ms: 500), cost: 1, limit: self.limit)
        #expect(denied.verdict == .denied(retryAfterNanoseconds: 54_500_000_000))
        #expect(FixedPoint.retryAfterSeconds(nanoseconds: 54_500_000_000) == 55)
        #expect(denied.state == state)
        #expect(denied.resetNanoseconds == 54_500_000_000)
        // The window [120, 180) ends at 180 (epoch-aligned).
        let last = FixedWindow.step(state, now: at(179, ms: 999), cost: 1, limit: self.limit)
        #expect(!last.verdict.isAdmitted)
        let next = FixedWindow.step(state, now: at(180), cost: 1, limit: self.limit)
        #expect(next.verdict == .admitted)
        #expect(next.state == .init(windowStart: 180 * oneSecond, used: 1))
    }

    @Test func costIsTakenWhole() {
        let first = FixedWindow.step(nil, now: at(0), cost: 3, limit: self.limit)
        #expect(first.verdict == .admitted && first.remaining == 2)
        let secondStep = FixedWindow.step(first.state, now: at(1), cost: 3, limit: self.limit)
        #expect(secondStep.verdict == .denied(retryAfterNanoseconds: 59 * oneSecond))
        #expect(secondStep.remaining == 2)
        let third = FixedWindow.step(first.state, now: at(1), cost: 2, limit: self.limit)
        #expect(third.verdict == .admitted && third.remaining == 0)
    }

    @Test func clockGoingBackKeepsTheNewerWindow() {
        let full = FixedWindow.State(windowStart: 120 * oneSecond, used: 5)
        let step = FixedWindow.step(full, now: at(119), cost: 1, limit: self.limit)
        #expect(!step.verdict.isAdmitted)
    }
}
