import NIOCore
import SluiceConfig
import SluiceLimiter

/// The rate-limit fields of an admitted request (SPEC §5), kept as the limiter's statuses and written straight into
/// the client's response head: no `String` per field or value, and no array (issue 19). ``RateLimitHeaders`` renders
/// the same fields as strings; `RateLimitFieldValuesTests` holds the two together.
struct RateLimitFieldValues: Sendable {
    /// What the fields say of one limit: a ``LimitStatus`` without the names and texts the fields do not show, so
    /// that handing the values along (outcome, plan, exchange) copies one `String` per limit, not three.
    struct Status: Sendable {
        var policyName: String
        var policyNameIsPlain: Bool
        var quota: Int
        var windowSeconds: Int
        var remaining: Int
        var resetSeconds: Int

        init(_ status: LimitStatus) {
            self.policyName = status.policyName
            self.policyNameIsPlain = status.policyNameIsPlain
            self.quota = status.quota
            self.windowSeconds = status.windowSeconds
            self.remaining = status.remaining
            self.resetSeconds = status.resetSeconds
        }

        var limitStatus: LimitStatus {
            LimitStatus(
                rule: self.policyName,
                policyName: self.policyName,
                limit: RateLimit(count: self.quota, periodSeconds: self.windowSeconds, text: ""),
                remaining: self.remaining,
                resetSeconds: self.resetSeconds
            )
        }
    }

    /// The statuses of the limits that applied, the primary (least remaining quota) first.
    var statuses: SmallArray<2, Status>
    var mode: ResponseConfiguration.RateLimitHeaders
    /// Unix time of the decision, for `X-RateLimit-Reset`.
    var nowSeconds: Int64

    init(statuses: SmallArray<2, LimitStatus>, mode: ResponseConfiguration.RateLimitHeaders, nowSeconds: Int64) {
        var compact = SmallArray<2, Status>()
        for status in statuses { compact.append(Status(status)) }
        self.statuses = compact
        self.mode = mode
        self.nowSeconds = nowSeconds
    }

    /// The fields as name and value strings (local answers, which are rare, and the reference for tests).
    var pairs: [(name: String, value: String)] {
        RateLimitHeaders.fields(
            statuses: SmallArray(self.statuses.map(\.limitStatus)),
            mode: self.mode,
            nowSeconds: self.nowSeconds
        )
    }

    /// Writes the fields as `Name: value\r\n` lines.
    func write(into buffer: inout ByteBuffer) {
        guard !self.statuses.isEmpty, self.mode != .none else { return }
        buffer.writeHeadBytes(estimate: self.estimatedBytes) { self.write(into: &$0) }
    }

    /// Room for the fields of plain policy names (a structured-field rendering may need more: the writer retries).
    var estimatedBytes: Int {
        var bytes = 256
        for index in self.statuses.indices { bytes += 2 * self.statuses[index].policyName.utf8.count + 64 }
        return bytes
    }

    /// Writes the fields as `Name: value\r\n` lines.
    func write(into out: inout HeadBytes) {
        guard let primary = self.statuses.first, self.mode != .none else { return }
        if self.mode == .draft || self.mode == .both {
            // Policy names of `[a-z0-9_-]`-like text serialise as plain sf-strings; anything else goes through the
            // structured-field serializer, as ``RateLimitHeaders`` does.
            if self.statuses.allSatisfy(\.policyNameIsPlain) {
                out.append("RateLimit-Policy: ")
                for index in self.statuses.indices {
                    let status = self.statuses[index]
                    if index > 0 { out.append(", ") }
                    out.append(byte: UInt8(ascii: "\""))
                    out.append(status.policyName)
                    out.append("\";q=")
                    out.appendDecimal(Int64(status.quota))
                    out.append(";w=")
                    out.appendDecimal(Int64(status.windowSeconds))
                }
                out.append("\r\n")
            } else {
                Self.writeField("RateLimit-Policy", RateLimitHeaders.policyField(self.statuses.map(\.limitStatus)), into: &out)
            }
            if primary.policyNameIsPlain && primary.remaining >= 0 && primary.resetSeconds >= 0 {
                out.append("RateLimit: \"")
                out.append(primary.policyName)
                out.append("\";r=")
                out.appendDecimal(Int64(primary.remaining))
                out.append(";t=")
                out.appendDecimal(Int64(primary.resetSeconds))
                out.append("\r\n")
            } else {
                Self.writeField("RateLimit", RateLimitHeaders.rateLimitField(primary.limitStatus), into: &out)
            }
        }
        if self.mode == .legacy || self.mode == .both {
            out.append("X-RateLimit-Limit: ")
            out.appendDecimal(Int64(primary.quota))
            out.append("\r\nX-RateLimit-Remaining: ")
            out.appendDecimal(Int64(primary.remaining))
            out.append("\r\nX-RateLimit-Reset: ")
            out.appendDecimal(self.nowSeconds + Int64(primary.resetSeconds))
            out.append("\r\n")
        }
    }

    private static func writeField(_ name: StaticString, _ value: String, into out: inout HeadBytes) {
        out.append(name)
        out.append(": ")
        out.append(value)
        out.append("\r\n")
    }

    /// `value` in decimal, as `String(value)` writes it.
    static func writeDecimal(_ value: Int64, into buffer: inout ByteBuffer) {
        buffer.writeHeadBytes(estimate: 24) { $0.appendDecimal(value) }
    }
}
