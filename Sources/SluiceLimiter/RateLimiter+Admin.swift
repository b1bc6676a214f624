import SluiceConfig

/// The state of one key of one rule, for `GET /limits/RULE?key=...` (SPEC §7).
public struct KeyState: Sendable, Hashable {
    public var rule: String
    /// The display key as given.
    public var key: String
    /// The rule's limits (and any tier limit this key has a counter for); an untracked key shows full quotas.
    public var limits: [LimitStatus]
    /// Seconds left in the `block_for` penalty box, `nil` when not blocked.
    public var blockedForSeconds: Int?
}

extension RateLimiter {
    /// Whether a rule of this name exists (unknown rule: 404).
    public func hasRule(_ name: String) -> Bool {
        self.rule(named: name) != nil
    }

    /// The state of a key given in display form (`203.0.113.7|/login`), `nil` for an unknown rule. With a shared
    /// store it takes a round trip, and throws when the store cannot answer.
    ///
    /// The display key is split into as many values as the rule has key parts (only the last may contain `|`); a
    /// key with too few values, like one never seen, shows full quotas.
    public func keyState(rule name: String, displayKey: String, now: LimiterInstant) async throws -> KeyState? {
        guard let rule = self.rule(named: name) else { return nil }
        var state = KeyState(rule: name, key: displayKey, limits: [], blockedForSeconds: nil)
        var keyed = rule.keyPrefix
        guard rule.key.combineKey(fromDisplayKey: displayKey, into: &keyed) else {
            state.limits = rule.limits.map {
                LimitStatus(rule: name, policyName: $0.policyName, limit: $0.limit, remaining: $0.limit.count, resetSeconds: 0)
            }
            return state
        }
        let limits = rule.allLimits
        let clusterTag = self.store.usesClusterTags ? rule.clusterTag(keyed) : 0
        let items = limits.map { limit in
            var item = StoreItem(
                key: rule.storageKey(keyed, limit: limit.limit),
                algorithm: rule.configuration.algorithm,
                limit: limit.parameters,
                cost: 0
            )
            item.clusterTag = clusterTag
            return item
        }
        let inspection = try await self.store.inspect(items, penaltyKey: rule.penaltyKey(keyed), now: now)
        let configured = Set(rule.configuration.limits)
        for (limit, result) in zip(limits, inspection.results) {
            let policy = rule.limits.first { $0.limit == limit.limit }?.policyName ?? limit.policyName
            if let result {
                state.limits.append(
                    LimitStatus(
                        rule: name,
                        policyName: policy,
                        limit: limit.limit,
                        remaining: Int(clamping: result.remaining),
                        resetSeconds: FixedPoint.ceilSeconds(nanoseconds: result.resetNanoseconds)
                    )
                )
            } else if configured.contains(limit.limit) {
                state.limits.append(
                    LimitStatus(rule: name, policyName: policy, limit: limit.limit, remaining: limit.limit.count, resetSeconds: 0)
                )
            }
        }
        if let until = inspection.blockedUntil {
            state.blockedForSeconds = FixedPoint.retryAfterSeconds(
                nanoseconds: until.nanosecondsSinceEpoch - now.nanosecondsSinceEpoch
            )
        }
        return state
    }

    /// Forgets every counter and the penalty block of a key (`DELETE /limits/RULE?key=...`); `nil` for an unknown
    /// rule, else whether anything was tracked. With a shared store it returns once the keys are gone.
    ///
    /// `now` says which windows a store that names counters by window (memcached) forgets: the current and the
    /// previous one.
    @discardableResult
    public func resetKey(rule name: String, displayKey: String, now: LimiterInstant = .now()) async throws -> Bool? {
        guard let rule = self.rule(named: name) else { return nil }
        var keyed = rule.keyPrefix
        guard rule.key.combineKey(fromDisplayKey: displayKey, into: &keyed) else { return false }
        let clusterTag = self.store.usesClusterTags ? rule.clusterTag(keyed) : 0
        let items = rule.allLimits.map { limit in
            var item = StoreItem(
                key: rule.storageKey(keyed, limit: limit.limit),
                algorithm: rule.configuration.algorithm,
                limit: limit.parameters,
                cost: 0
            )
            item.clusterTag = clusterTag
            return item
        }
        return try await self.store.remove(items, penaltyKey: rule.penaltyKey(keyed), now: now)
    }
}
