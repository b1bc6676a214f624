import SluiceConfig
import SluiceLimiter

/// Decides the descriptors of one `ShouldRateLimit` call with the proxy's limiter (issue 14).
///
/// Each descriptor is one request to the engine (``DescriptorRequest``): the rules whose `match.descriptor` it meets
/// apply, in file order, all or nothing for that descriptor, through the same ``RateLimiter`` and store as the proxy
/// (so a proxy rule and a descriptor rule of one `shared` budget count together). Descriptors are decided one after
/// the other, in the order sent; one over its limit does not undo the others (as in envoyproxy/ratelimit, which
/// increments every descriptor's counter).
public struct DescriptorDecider: Sendable {
    public let limiter: RateLimiter

    public init(limiter: RateLimiter) {
        self.limiter = limiter
    }

    /// The outcome of each descriptor, in order.
    ///
    /// - Parameters:
    ///   - descriptors: the call's descriptors.
    ///   - now: the time of the decision (the store may use its own clock).
    public func decide(_ descriptors: [DescriptorRequest], now: LimiterInstant) async -> [LimitOutcome] {
        var outcomes: [LimitOutcome] = []
        outcomes.reserveCapacity(descriptors.count)
        for descriptor in descriptors {
            outcomes.append(await self.limiter.decide(descriptor, now: now))
        }
        return outcomes
    }
}
