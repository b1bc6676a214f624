import NIOCore
import SluiceConfig
import SluiceLimiter
import Testing

@testable import SluiceProxy

/// ``RateLimitFieldValues`` writes into the response head exactly the fields ``RateLimitHeaders`` renders as strings.
@Suite("RateLimitFieldValues")
struct RateLimitFieldValuesTests {
    static func status(_ name: String, quota: Int, window: Int, remaining: Int, reset: Int) -> LimitStatus {
        LimitStatus(
            rule: name,
            policyName: name,
            limit: RateLimit(count: quota, periodSeconds: window, text: "\(quota)/\(window)s"),
            remaining: remaining,
            resetSeconds: reset
        )
    }

    static let cases: [SmallArray<2, LimitStatus>] = [
        [],
        [status("pass", quota: 1_000_000, window: 1, remaining: 999_999, reset: 1)],
        [status("login", quota: 5, window: 60, remaining: 0, reset: 37), status("login-hour", quota: 100, window: 3600, remaining: 93, reset: 3000)],
        [status("neg", quota: 5, window: 60, remaining: -3, reset: 0)],
        [status("quote\"d", quota: 1, window: 1, remaining: 1, reset: 1)],
        [status("caf\u{e9}", quota: 7, window: 86_400, remaining: 6, reset: 86_399), status("plain", quota: 1, window: 1, remaining: 0, reset: 1)],
        [status("big", quota: Int.max, window: Int(Int32.max), remaining: Int.max, reset: Int(Int32.max))],
    ]

    @Test(arguments: [ResponseConfiguration.RateLimitHeaders.draft, .legacy, .both, .none])
    func writtenFieldsEqualTheRenderedOnes(mode: ResponseConfiguration.RateLimitHeaders) {
        for statuses in Self.cases {
            let values = RateLimitFieldValues(statuses: statuses, mode: mode, nowSeconds: 1_780_000_000)
            var buffer = ByteBuffer()
            values.write(into: &buffer)
            let expected = values.pairs.map { "\($0.name): \($0.value)\r\n" }.joined()
            #expect(String(buffer: buffer) == expected, "\(mode) \(statuses.map(\.policyName))")
        }
    }

    @Test func decimalsAreWrittenAsStringDoes() {
        for value: Int64 in [0, 1, 9, 10, 99, 100, 12_345, -1, -10, Int64.max, Int64.min, 1_780_000_037] {
            var buffer = ByteBuffer()
            RateLimitFieldValues.writeDecimal(value, into: &buffer)
            #expect(String(buffer: buffer) == String(value))
        }
    }
}
