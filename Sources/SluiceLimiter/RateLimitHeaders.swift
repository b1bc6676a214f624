import RawStructuredFieldValues
import SluiceConfig

/// Renders the rate-limit header fields and the blocked response (SPEC §5).
///
/// - `draft`: the IETF httpapi fields, as structured-field lists: `RateLimit-Policy: "login";q=5;w=60` (the limit
///   with the least remaining quota first, then the others) and `RateLimit: "login";r=2;t=37` (that limit only).
/// - `legacy`: `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` (Unix time in seconds) of the
///   limit with the least remaining quota.
/// - `both`, or `none`.
/// Exempt and unmatched requests get none (their outcome has no statuses). Blocked responses also carry
/// `Retry-After`, except those refused for good, which no wait would admit.
public enum RateLimitHeaders {
    /// The header fields to append to the upstream's response of an admitted request, or to a blocked response.
    ///
    /// - Parameters:
    ///   - outcome: the limiter's outcome.
    ///   - mode: overrides ``LimitOutcome/headerMode``.
    ///   - now: the time of the decision, for `X-RateLimit-Reset`.
    public static func fields(
        for outcome: LimitOutcome,
        mode: ResponseConfiguration.RateLimitHeaders? = nil,
        now: LimiterInstant
    ) -> [(name: String, value: String)] {
        var fields = self.fields(statuses: outcome.statuses, mode: mode ?? outcome.headerMode, nowSeconds: now.unixSeconds)
        if outcome.isBlocked, let retryAfter = outcome.retryAfter {
            fields.append(("Retry-After", String(retryAfter)))
        }
        return fields
    }

    /// The rate-limit fields of `statuses` (the first is the primary one) in `mode`, without `Retry-After`.
    ///
    /// - Parameter nowSeconds: the Unix time of the decision, for `X-RateLimit-Reset`.
    public static func fields(
        statuses: SmallArray<2, LimitStatus>,
        mode: ResponseConfiguration.RateLimitHeaders,
        nowSeconds: Int64
    ) -> [(name: String, value: String)] {
        var fields: [(name: String, value: String)] = []
        guard let primary = statuses.first else { return fields }
        if mode == .draft || mode == .both {
            fields.append(("RateLimit-Policy", self.policyField(statuses)))
            fields.append(("RateLimit", self.rateLimitField(primary)))
        }
        if mode == .legacy || mode == .both {
            fields.append(("X-RateLimit-Limit", String(primary.quota)))
            fields.append(("X-RateLimit-Remaining", String(primary.remaining)))
            fields.append(("X-RateLimit-Reset", String(nowSeconds + Int64(primary.resetSeconds))))
        }
        return fields
    }

    /// `RateLimit-Policy`: every status as `"NAME";q=COUNT;w=WINDOW`, in the given order.
    public static func policyField(_ statuses: some Collection<LimitStatus>) -> String {
        // Hot path (every admitted response): policy names are `[a-z0-9_-]` plus digits, for which
        // the RFC 9651 serialisation is plain text; anything else goes through the serializer.
        if statuses.allSatisfy({ Self.isPlainString($0.policyName) }) {
            var field = ""
            field.reserveCapacity(statuses.count * 24)
            for (index, status) in statuses.enumerated() {
                if index > 0 { field += ", " }
                field += "\""
                field += status.policyName
                field += "\";q="
                field += String(status.quota)
                field += ";w="
                field += String(status.windowSeconds)
            }
            return field
        }
        return self.serializedPolicyField(statuses)
    }

    /// `RateLimit-Policy` through swift-http-structured-headers (the reference the fast path is tested against).
    static func serializedPolicyField(_ statuses: some Collection<LimitStatus>) -> String {
        let list: [ItemOrInnerList] = statuses.map { status in
            var parameters = OrderedMap<String, RFC9651BareItem>()
            parameters["q"] = .integer(Int64(status.quota))
            parameters["w"] = .integer(Int64(status.windowSeconds))
            return .item(Item(bareItem: .string(status.policyName), parameters: parameters))
        }
        return self.serialize(list) ?? statuses.map { "\"\($0.policyName)\";q=\($0.quota);w=\($0.windowSeconds)" }
            .joined(separator: ", ")
    }

    /// `RateLimit`: `"NAME";r=REMAINING;t=SECONDS` for one status.
    public static func rateLimitField(_ status: LimitStatus) -> String {
        if Self.isPlainString(status.policyName) && status.remaining >= 0 && status.resetSeconds >= 0 {
            var field = "\""
            field += status.policyName
            field += "\";r="
            field += String(status.remaining)
            field += ";t="
            field += String(status.resetSeconds)
            return field
        }
        return self.serializedRateLimitField(status)
    }

    /// `RateLimit` through swift-http-structured-headers (the reference the fast path is tested against).
    static func serializedRateLimitField(_ status: LimitStatus) -> String {
        var parameters = OrderedMap<String, RFC9651BareItem>()
        parameters["r"] = .integer(Int64(status.remaining))
        parameters["t"] = .integer(Int64(status.resetSeconds))
        let list: [ItemOrInnerList] = [.item(Item(bareItem: .string(status.policyName), parameters: parameters))]
        return self.serialize(list) ?? "\"\(status.policyName)\";r=\(status.remaining);t=\(status.resetSeconds)"
    }

    /// Whether `text` serialises as an sf-string without escapes: printable ASCII but `"` and `\`.
    public static func isPlainString(_ text: String) -> Bool {
        text.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") }
    }

    private static func serialize(_ list: [ItemOrInnerList]) -> String? {
        var serializer = StructuredFieldValueSerializer()
        guard let bytes = try? serializer.writeListFieldValue(list) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The body of a blocked response: the rule's `response.body` with `{rule}`, `{retry_after}` (0 when refused
    /// for good) and `{limit}` filled in.
    public static func blockedBody(for outcome: LimitOutcome) -> String {
        let response = outcome.response ?? ResponseConfiguration()
        return response.body.render(
            rule: outcome.rule ?? "",
            retryAfter: outcome.retryAfter,
            limit: outcome.deniedLimit ?? ""
        )
    }

    /// The whole blocked response of a `limited` outcome, `nil` otherwise.
    ///
    /// Headers in order: `Content-Type`, the configured extra headers, the rate-limit fields, `Retry-After`.
    /// The proxy adds `Content-Length` and connection headers.
    public static func blockedResponse(for outcome: LimitOutcome, now: LimiterInstant) -> BlockedResponse? {
        guard outcome.isBlocked else { return nil }
        let response = outcome.response ?? ResponseConfiguration()
        var headers: [(name: String, value: String)] = [("Content-Type", response.contentType)]
        for header in response.headers { headers.append((header.name, header.value)) }
        headers += self.fields(for: outcome, now: now)
        return BlockedResponse(status: response.status, headers: headers, body: self.blockedBody(for: outcome))
    }
}

/// A blocked request's answer (SPEC §2 `response:`, §5).
public struct BlockedResponse: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: String
}
