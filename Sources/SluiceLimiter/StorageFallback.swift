import SluiceConfig

/// What a shared store (Redis, memcached) answers with while it cannot ask its server: the store's `on_error`
/// (SPEC §8), with the memory store that `local` keeps.
///
/// - `allow` admits every limit with its full COUNT remaining;
/// - `deny` refuses with 503 (`storageUnavailable`) and a `Retry-After` of one second;
/// - `local` decides in ``local`` with each limit's COUNT (and burst) divided among `instances`, at least 1, so a
///   fleet in degraded mode does not multiply the budget. Back with the server, the local counts are simply no
///   longer read.
///
/// One type, so Redis and memcached cannot drift apart in what a degraded decision is.
public struct StorageFallback: Sendable {
    public let onError: RedisStorageConfiguration.OnError
    public let instances: Int
    /// The counts `local` decides with (and `GET /limits` shows while the server is away).
    public let local: MemoryStore

    public init(onError: RedisStorageConfiguration.OnError, instances: Int, localMaxKeys: Int) {
        self.onError = onError
        self.instances = max(1, instances)
        self.local = MemoryStore(maxKeys: localMaxKeys)
    }

    /// `batch` decided by `on_error`.
    public func decide(_ batch: DecisionBatch, now: LimiterInstant) -> DecisionBatch {
        var decided = batch
        switch self.onError {
        case .allow:
            decided.isAdmitted = true
            for index in 0..<decided.items.count {
                decided.results[index] = StoreItemResult(
                    verdict: .admitted,
                    remaining: decided.items[index].limit.count,
                    resetNanoseconds: 0
                )
            }
        case .deny:
            decided.isAdmitted = false
            decided.storageUnavailable = true
            for index in 0..<decided.items.count {
                decided.results[index] = StoreItemResult(verdict: .denied(retryAfterNanoseconds: 1_000_000_000), remaining: 0, resetNanoseconds: 0)
            }
        case .local:
            var scaled = DecisionBatch()
            for item in self.scaled(batch.items) { scaled.append(item) }
            self.local.decide(&scaled, now: now)
            decided.isAdmitted = scaled.isAdmitted
            for index in 0..<decided.items.count { decided.results[index] = scaled.results[index] }
        }
        return decided
    }

    /// Counts `items` in the local store when `on_error` is `local` (a commit the server could not take).
    public func commitLocally(_ items: some Collection<StoreItem>, now: LimiterInstant) {
        if self.onError == .local { self.local.commit(self.scaled(items), now: now) }
    }

    /// The items with each limit's COUNT (and burst) divided among `instances`, at least 1.
    func scaled(_ items: some Collection<StoreItem>) -> [StoreItem] {
        items.map { item in
            var item = item
            item.limit = LimitParameters(
                count: max(1, item.limit.count / Int64(self.instances)),
                periodNanoseconds: item.limit.periodNanoseconds,
                burst: item.limit.burst / Int64(self.instances),
                delayNanoseconds: item.limit.delayNanoseconds
            )
            return item
        }
    }
}
