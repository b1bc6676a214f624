import NIOCore
import NIOHTTP1
import SluiceConfig
import SluiceLimiter
import Testing

@testable import SluiceProxy

/// ``BlockedAnswer`` writes exactly the response the string path made of ``RateLimitHeaders/blockedResponse(for:now:)``:
/// the same fields in the same order, the same body, the same length and connection fields.
@Suite("BlockedAnswer")
struct BlockedAnswerTests {
    static let now = LimiterInstant(nanosecondsSinceEpoch: 1_780_000_000_000_000_000)

    static func status(_ name: String, remaining: Int, reset: Int) -> LimitStatus {
        LimitStatus(
            rule: name,
            policyName: name,
            limit: RateLimit(count: 10, periodSeconds: 60, text: "10/minute"),
            remaining: remaining,
            resetSeconds: reset
        )
    }

    static let responses: [ResponseConfiguration] = [
        ResponseConfiguration(),
        ResponseConfiguration(
            status: 503,
            contentType: "text/plain; charset=utf-8",
            body: BodyTemplate(parts: [.literal("slow down, "), .rule, .literal(" ("), .limit, .literal(") in "), .retryAfter, .literal(" s\n")], source: ""),
            headers: [HeaderField(name: "X-Why", value: "limited"), HeaderField(name: "Cache-Control", value: "no-store")],
            rateLimitHeaders: .both
        ),
        ResponseConfiguration(body: BodyTemplate(parts: [], source: ""), rateLimitHeaders: .none),
    ]

    static func outcomes(_ response: ResponseConfiguration) -> [LimitOutcome] {
        [
            LimitOutcome(
                decision: .limited, rule: "login", response: response, retryAfter: 37, deniedLimit: "10/minute",
                statuses: [status("login", remaining: 0, reset: 37)], headerMode: response.rateLimitHeaders
            ),
            LimitOutcome(
                decision: .limited, rule: "caf\u{e9}", response: response, retryAfter: nil, deniedLimit: "1/second",
                statuses: [status("caf\u{e9}", remaining: 0, reset: 1), status("other", remaining: 3, reset: 9)],
                headerMode: response.rateLimitHeaders
            ),
            LimitOutcome(
                decision: .limited, rule: "big", response: response, retryAfter: 1_234_567, deniedLimit: "",
                statuses: [], headerMode: response.rateLimitHeaders
            ),
        ]
    }

    /// The response the string path wrote (``ProxyConnectionHandler/writeLocalResponse``'s layout).
    static func expected(_ outcome: LimitOutcome, minorVersion: Int, close: Bool) -> String {
        let blocked = RateLimitHeaders.blockedResponse(for: outcome, now: Self.now)!
        let status = HTTPResponseStatus(statusCode: blocked.status)
        var text = "HTTP/1.\(minorVersion) \(status.code) \(status.reasonPhrase)\r\n"
        for (name, value) in blocked.headers { text += "\(name): \(value)\r\n" }
        text += "Content-Length: \(blocked.body.utf8.count)\r\n"
        if close {
            if minorVersion >= 1 { text += "Connection: close\r\n" }
        } else if minorVersion == 0 {
            text += "Connection: keep-alive\r\n"
        }
        return text + "\r\n" + blocked.body
    }

    @Test func writtenAnswerEqualsTheRenderedOne() {
        for response in Self.responses {
            for outcome in Self.outcomes(response) {
                let answer = BlockedAnswer(outcome: outcome, now: Self.now)
                for minorVersion in [0, 1] {
                    for close in [false, true] {
                        var buffer = ByteBuffer()
                        answer.write(minorVersion: minorVersion, close: close, into: &buffer)
                        #expect(
                            String(buffer: buffer) == Self.expected(outcome, minorVersion: minorVersion, close: close),
                            "rule \(outcome.rule ?? "-"), HTTP/1.\(minorVersion), close \(close)"
                        )
                    }
                }
                // The string forms used on the rare paths say the same.
                let rendered = RateLimitHeaders.blockedResponse(for: outcome, now: Self.now)!
                #expect(answer.body == rendered.body)
                #expect(answer.bodyLength == rendered.body.utf8.count)
                #expect(answer.headerPairs.map { "\($0.name): \($0.value)" } == rendered.headers.map { "\($0.name): \($0.value)" })
            }
        }
    }

    @Test func decimalLengths() {
        for value in [0, 7, 9, 10, 99, 100, 12_345, -1, -10, Int.max] {
            #expect(BlockedAnswer.decimalLength(value) == String(value).utf8.count)
        }
    }
}
