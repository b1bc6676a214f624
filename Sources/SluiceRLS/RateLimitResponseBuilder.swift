import Foundation
import SluiceConfig
import SluiceLimiter
import SluiceRLSProto
import SwiftProtobuf

/// Turns the limiter's outcomes for a call's descriptors into Envoy's `RateLimitResponse` (issue 14).
///
/// - Each descriptor gets one status, in order: `OVER_LIMIT` when an enforced rule refused it, else `OK` (shadow
///   rules answer `OK`; the metrics count `shadow_limited`). When a rule applied, `current_limit` is the limit with
///   the least remaining quota (``LimitOutcome/statuses`` first): `requests_per_unit` its COUNT, `unit` its period
///   when that is exactly a second, minute, hour, day, 30 days (`MONTH`) or 365 days (`YEAR`), else `UNKNOWN`, and
///   `name` its policy name (`RULE`, or `RULE-WINDOW`); `limit_remaining` and `duration_until_reset` are that
///   limit's. A descriptor no rule applied to (or exempt) has `OK` and no `current_limit`.
/// - `overall_code` is `OVER_LIMIT` when any descriptor is.
/// - `response_headers_to_add` are the fields Sluice writes on its own responses (SPEC §5), over every descriptor's
///   limits: the one with the least remaining quota first, in the header mode of the refusing rule (else of that
///   limit's rule); `Retry-After` (the longest) when over the limit, unless refused for good.
/// - Over the limit, `raw_body` is the refusing rule's blocked body and `Content-Type` and its `response.headers`
///   are added too, for Envoy's local reply (its status is Envoy's `rate_limited_status`, 429 by default).
public enum RateLimitResponseBuilder {
    public typealias Response = Envoy_Service_Ratelimit_V3_RateLimitResponse

    public static func response(for outcomes: [LimitOutcome], now: LimiterInstant) -> Response {
        var response = Response()
        response.overallCode = .ok
        var blocking: LimitOutcome?
        var longestRetry: Int?
        var all: [(status: LimitStatus, mode: ResponseConfiguration.RateLimitHeaders)] = []
        for outcome in outcomes {
            var status = Response.DescriptorStatus()
            status.code = .ok
            if let primary = outcome.statuses.first {
                status.currentLimit = Self.rateLimit(primary)
                status.limitRemaining = UInt32(clamping: primary.remaining)
                status.durationUntilReset = Google_Protobuf_Duration(seconds: Int64(primary.resetSeconds), nanos: 0)
            }
            if outcome.isBlocked {
                status.code = .overLimit
                response.overallCode = .overLimit
                if blocking == nil { blocking = outcome }
                if let retry = outcome.retryAfter { longestRetry = max(longestRetry ?? 0, retry) }
            }
            for limit in outcome.statuses { all.append((limit, outcome.headerMode)) }
            response.statuses.append(status)
        }
        // The least remaining quota first; the earliest on a tie (a stable order, as the proxy's).
        let ordered = all.enumerated().sorted { a, b in
            a.element.status.remaining != b.element.status.remaining
                ? a.element.status.remaining < b.element.status.remaining : a.offset < b.offset
        }.map(\.element)
        var statuses = SmallArray<2, LimitStatus>()
        for entry in ordered { statuses.append(entry.status) }
        let mode = blocking?.headerMode ?? ordered.first?.mode ?? .none
        var fields = RateLimitHeaders.fields(statuses: statuses, mode: mode, nowSeconds: now.unixSeconds)
        if let blocking {
            if let longestRetry { fields.append(("Retry-After", String(longestRetry))) }
            let blocked = blocking.response ?? ResponseConfiguration()
            fields.insert(("Content-Type", blocked.contentType), at: 0)
            for (index, header) in blocked.headers.enumerated() { fields.insert((header.name, header.value), at: 1 + index) }
            response.rawBody = Data(RateLimitHeaders.blockedBody(for: blocking).utf8)
        }
        response.responseHeadersToAdd = fields.map { field in
            var header = Envoy_Config_Core_V3_HeaderValue()
            header.key = field.name
            header.value = field.value
            return header
        }
        return response
    }

    /// `current_limit` of one limit.
    static func rateLimit(_ status: LimitStatus) -> Response.RateLimit {
        var limit = Response.RateLimit()
        limit.name = status.policyName
        limit.requestsPerUnit = UInt32(clamping: status.quota)
        limit.unit = Self.unit(seconds: status.windowSeconds)
        return limit
    }

    /// The unit of a period that is exactly one; `UNKNOWN` otherwise.
    static func unit(seconds: Int) -> Response.RateLimit.Unit {
        switch seconds {
        case 1: .second
        case 60: .minute
        case 3600: .hour
        case 86_400: .day
        case 30 * 86_400: .month
        case 365 * 86_400: .year
        default: .unknown
        }
    }
}
