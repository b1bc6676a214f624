import NIOCore

/// How long a pool slot waits before its next connect attempt.
///
/// 25 ms doubling to 2 s: a short blip (a memcached restart) is bridged within tens of
/// milliseconds, while a server that stays down costs one attempt per slot every 1–2 s. The
/// jitter (each delay drawn between half and all of its value) keeps the slots of one Sluice,
/// and many Sluice instances, from reconnecting in lockstep.
enum MemcachedBackoff {
    static let initial = TimeAmount.milliseconds(25)
    static let maximum = TimeAmount.seconds(2)

    /// The delay before attempt number `attempt` (1 = the first retry); `jitter` in 0.5...1.
    static func delay(attempt: Int, jitter: Double = Double.random(in: 0.5...1)) -> TimeAmount {
        let doublings = min(max(attempt - 1, 0), 20)
        let base = min(Self.initial.nanoseconds << doublings, Self.maximum.nanoseconds)
        return .nanoseconds(Int64(Double(base) * jitter))
    }
}
