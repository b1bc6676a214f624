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
        guard let primary = self.statuses.first, self.mode != .none else { return }
        if self.mode == .draft || self.mode == .both {
            // Policy names of `[a-z0-9_-]`-like text serialise as plain sf-strings; anything else goes through the
            // structured-field serializer, as ``RateLimitHeaders`` does.
            if self.statuses.allSatisfy(\.policyNameIsPlain) {
                buffer.writeStaticString("RateLimit-Policy: ")
                for index in self.statuses.indices {
                    let status = self.statuses[index]
                    if index > 0 { buffer.writeStaticString(", ") }
                    buffer.writeInteger(UInt8(ascii: "\""))
                    buffer.writeString(status.policyName)
                    buffer.writeStaticString("\";q=")
                    Self.writeDecimal(Int64(status.quota), into: &buffer)
                    buffer.writeStaticString(";w=")
                    Self.writeDecimal(Int64(status.windowSeconds), into: &buffer)
                }
                buffer.writeStaticString("\r\n")
            } else {
                Self.writeField("RateLimit-Policy", RateLimitHeaders.policyField(self.statuses.map(\.limitStatus)), into: &buffer)
            }
            if primary.policyNameIsPlain && primary.remaining >= 0 && primary.resetSeconds >= 0 {
                buffer.writeStaticString("RateLimit: \"")
                buffer.writeString(primary.policyName)
                buffer.writeStaticString("\";r=")
                Self.writeDecimal(Int64(primary.remaining), into: &buffer)
                buffer.writeStaticString(";t=")
                Self.writeDecimal(Int64(primary.resetSeconds), into: &buffer)
                buffer.writeStaticString("\r\n")
            } else {
                Self.writeField("RateLimit", RateLimitHeaders.rateLimitField(primary.limitStatus), into: &buffer)
            }
        }
        if self.mode == .legacy || self.mode == .both {
            buffer.writeStaticString("X-RateLimit-Limit: ")
            Self.writeDecimal(Int64(primary.quota), into: &buffer)
            buffer.writeStaticString("\r\nX-RateLimit-Remaining: ")
            Self.writeDecimal(Int64(primary.remaining), into: &buffer)
            buffer.writeStaticString("\r\nX-RateLimit-Reset: ")
            Self.writeDecimal(self.nowSeconds + Int64(primary.resetSeconds), into: &buffer)
            buffer.writeStaticString("\r\n")
        }
    }

    private static func writeField(_ name: StaticString, _ value: String, into buffer: inout ByteBuffer) {
        buffer.writeStaticString(name)
        buffer.writeStaticString(": ")
        buffer.writeString(value)
        buffer.writeStaticString("\r\n")
    }

    /// `value` in decimal, as `String(value)` writes it.
    static func writeDecimal(_ value: Int64, into buffer: inout ByteBuffer) {
        if value < 0 {
            buffer.writeInteger(UInt8(ascii: "-"))
        }
        var magnitude = value.magnitude
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes: room for the 20 digits of UInt64.max
        let count = withUnsafeMutableBytes(of: &digits) { raw -> Int in
            var end = raw.count
            repeat {
                end -= 1
                raw[end] = UInt8(ascii: "0") &+ UInt8(magnitude % 10)
                magnitude /= 10
            } while magnitude > 0
            return raw.count - end
        }
        withUnsafeBytes(of: &digits) { raw in
            buffer.writeBytes(UnsafeRawBufferPointer(rebasing: raw[(raw.count - count)...]))
        }
    }
}
