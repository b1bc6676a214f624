import NIOCore
import NIOHTTP1
import SluiceConfig
import SluiceLimiter

/// A blocked request's answer (SPEC §2 `response:`, §5) kept as the limiter's values and written straight into the
/// client's buffer: no array of fields, no `String` per value and no rendered body per 429 (issue 19: a flood of
/// refused requests is the limit scenario's whole load). ``RateLimitHeaders/blockedResponse(for:now:)`` renders the
/// same answer as strings; `BlockedAnswerTests` holds the two together.
struct BlockedAnswer: Sendable {
    let response: ResponseConfiguration
    let fields: RateLimitFieldValues
    /// `Retry-After`; `nil` for a request refused for good.
    let retryAfter: Int?
    let rule: String
    /// The limit that refused, for `{limit}`.
    let limit: String

    init(outcome: LimitOutcome, now: LimiterInstant) {
        self.response = outcome.response ?? ResponseConfiguration()
        self.fields = RateLimitFieldValues(statuses: outcome.statuses, mode: outcome.headerMode, nowSeconds: now.unixSeconds)
        self.retryAfter = outcome.retryAfter
        self.rule = outcome.rule ?? ""
        self.limit = outcome.deniedLimit ?? ""
    }

    init(response: ResponseConfiguration, fields: RateLimitFieldValues, retryAfter: Int?, rule: String, limit: String) {
        self.response = response
        self.fields = fields
        self.retryAfter = retryAfter
        self.rule = rule
        self.limit = limit
    }

    var status: HTTPResponseStatus { HTTPResponseStatus(statusCode: self.response.status) }

    /// The fields as strings, in the order they are written (the rare paths: a decision that came back from Redis).
    var headerPairs: [(name: String, value: String)] {
        var headers: [(name: String, value: String)] = [("Content-Type", self.response.contentType)]
        for header in self.response.headers { headers.append((header.name, header.value)) }
        headers += self.fields.pairs
        if let retryAfter = self.retryAfter { headers.append(("Retry-After", String(retryAfter))) }
        return headers
    }

    /// The body as a string.
    var body: String {
        self.response.body.render(rule: self.rule, retryAfter: self.retryAfter, limit: self.limit)
    }

    /// Writes the whole response: status line, `Content-Type`, the configured headers, the rate-limit fields,
    /// `Retry-After`, `Content-Length`, the connection field when needed, and the body.
    func write(minorVersion: Int, close: Bool, into buffer: inout ByteBuffer) {
        buffer.writeHeadBytes(estimate: self.estimatedBytes) { out in
            LocalResponseHead.writeStatusLine(self.status, minorVersion: minorVersion, into: &out)
            out.append("Content-Type: ")
            out.append(self.response.contentType)
            out.append("\r\n")
            for header in self.response.headers {
                out.append(header.name)
                out.append(": ")
                out.append(header.value)
                out.append("\r\n")
            }
            self.fields.write(into: &out)
            if let retryAfter = self.retryAfter {
                out.append("Retry-After: ")
                out.appendDecimal(Int64(retryAfter))
                out.append("\r\n")
            }
            LocalResponseHead.writeEnd(bodyLength: self.bodyLength, minorVersion: minorVersion, close: close, into: &out)
            for part in self.response.body.parts {
                switch part {
                case .literal(let text): out.append(text)
                case .rule: out.append(self.rule)
                case .retryAfter: out.appendDecimal(Int64(self.retryAfter ?? 0))
                case .limit: out.append(self.limit)
                }
            }
        }
    }

    /// Room for the whole answer (a first guess; ``HeadBytes`` retries with more when it is short).
    private var estimatedBytes: Int {
        var bytes = 256 + self.response.contentType.utf8.count + self.fields.estimatedBytes
        for header in self.response.headers { bytes += header.name.utf8.count + header.value.utf8.count + 4 }
        for part in self.response.body.parts {
            if case .literal(let text) = part { bytes += text.utf8.count } else { bytes += 32 + self.rule.utf8.count + self.limit.utf8.count }
        }
        return bytes
    }

    /// The body's length in bytes, without rendering it.
    var bodyLength: Int {
        var length = 0
        for part in self.response.body.parts {
            switch part {
            case .literal(let text): length += text.utf8.count
            case .rule: length += self.rule.utf8.count
            case .retryAfter: length += Self.decimalLength(self.retryAfter ?? 0)
            case .limit: length += self.limit.utf8.count
            }
        }
        return length
    }

    static func decimalLength(_ value: Int) -> Int {
        var length = value < 0 ? 2 : 1
        var rest = value.magnitude
        while rest >= 10 {
            rest /= 10
            length += 1
        }
        return length
    }
}
