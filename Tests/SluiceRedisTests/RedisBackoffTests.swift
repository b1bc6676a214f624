import NIOCore
import Testing

@testable import SluiceRedis

@Suite struct RedisBackoffTests {
    @Test func doublesFrom25MillisecondsUpTo2Seconds() {
        let delays = (1...10).map { RedisBackoff.delay(attempt: $0, jitter: 1) }
        #expect(delays == [25, 50, 100, 200, 400, 800, 1600, 2000, 2000, 2000].map { TimeAmount.milliseconds($0) })
        #expect(RedisBackoff.delay(attempt: 1_000, jitter: 1) == .seconds(2))
    }

    @Test func jitterStaysBetweenHalfAndAll() {
        for attempt in 1...10 {
            let full = RedisBackoff.delay(attempt: attempt, jitter: 1)
            let drawn = RedisBackoff.delay(attempt: attempt)
            #expect(drawn <= full && drawn >= .nanoseconds(full.nanoseconds / 2))
        }
    }
}
