import SluiceConfig
import SluiceLimiter

/// The JSON of `GET /status`, which the status page (``StatusPage``) polls.
///
/// Everything here is read from state that exists anyway: the sampled counters (``RateHistory``), the refused-key
/// tables (``LimitedKeyTracker``), the store's own numbers and the reload record. Counts are whole numbers per
/// sampling interval with each interval's length beside them, so the page divides to get requests per second and
/// no float crosses the wire. Keys appear only as ``StorageKey/displayHash``, the access log's `key_hash`.
struct StatusReport {
    /// Rows of the "most limited keys" table.
    static let limitedKeysShown = 10
    /// The upstream and storage summaries cover this much of the history.
    static let recentMilliseconds: Int64 = 60_000

    /// What the report is made of, gathered from the running proxy by ``init(backend:history:now:)``.
    struct Facts {
        var nowMilliseconds: Int64
        var configuration: SluiceConfiguration
        var ready: Bool
        var samples: [RateHistory.Sample]
        var sampleInterval: Duration
        var limitedKeys: [LimitedKeyTracker.Entry]
        var limitedKeyMinutes: Int
        var storageAvailable: Bool
        var storageServers: [StorageServerHealth] = []
        var trackedKeys: Int
        var evictions: Int
        var reload: ReloadStatus?
    }

    let facts: Facts

    init(facts: Facts) {
        self.facts = facts
    }

    init(backend: any AdminBackend, history: RateHistory, now: LimiterInstant) {
        let store = backend.limiter?.store
        let tracker = backend.limitedKeys
        self.facts = Facts(
            nowMilliseconds: now.nanosecondsSinceEpoch / 1_000_000,
            configuration: backend.configuration,
            ready: backend.isReady,
            samples: history.samples,
            sampleInterval: history.interval,
            limitedKeys: tracker?.top(Self.limitedKeysShown, nowSeconds: now.unixSeconds) ?? [],
            limitedKeyMinutes: tracker?.minutes ?? 0,
            storageAvailable: backend.storageAvailable,
            storageServers: backend.storageServers,
            trackedKeys: store?.trackedKeys ?? 0,
            evictions: store?.evictions ?? 0,
            reload: backend.reloadStatus
        )
    }

    var json: AdminJSON {
        let recent = self.facts.samples
            .filter { $0.endMilliseconds > self.facts.nowMilliseconds - Self.recentMilliseconds }
            .reduce(MetricTotals()) { $0.adding($1.counts) }
        return .object([
            ("now_ms", .int(Int(self.facts.nowMilliseconds))),
            ("ready", .bool(self.facts.ready)),
            ("interval_ms", .int(Int(self.facts.sampleInterval.milliseconds))),
            (
                "samples",
                .object([
                    ("end_ms", .array(self.facts.samples.map { .int(Int($0.endMilliseconds)) })),
                    ("duration_ms", .array(self.facts.samples.map { .int(Int($0.durationMilliseconds)) })),
                ])
            ),
            ("rules", .array(self.facts.configuration.rules.map { self.ruleJSON($0, recent: recent) })),
            ("limited_keys", self.limitedKeysJSON),
            ("storage", self.storageJSON(recent: recent)),
            ("upstream", self.upstreamJSON(recent: recent)),
            ("reload", self.reloadJSON),
        ])
    }

    private func ruleJSON(_ rule: RuleConfiguration, recent: MetricTotals) -> AdminJSON {
        let lastMinute = recent.requests[rule.name] ?? DecisionCounts()
        var members: [(String, AdminJSON)] = [
            ("name", .string(rule.name)),
            ("mode", .string(rule.mode.rawValue)),
            ("limits", .string(rule.limits.map(\.text).joined(separator: ";"))),
            ("key", .string(rule.key.map(\.description).joined(separator: ", "))),
            ("last_minute", Self.decisionsJSON { lastMinute[$0] }),
            (
                "series",
                Self.decisionsJSON { decision in
                    .array(self.facts.samples.map { .int($0.counts.requests[rule.name]?[decision] ?? 0) })
                }
            ),
        ]
        if let concurrency = rule.concurrency {
            // Per sample: the rule's requests in flight and queued when it was read (every key together), and the
            // refusals in the interval; `last_minute_refusals` sums the recent ones.
            func series(_ value: (MetricTotals.ConcurrencyReading) -> Int) -> AdminJSON {
                .array(self.facts.samples.map { .int($0.counts.concurrency[rule.name].map(value) ?? 0) })
            }
            members.append((
                "concurrency",
                .object([
                    ("max", .int(concurrency.max)),
                    ("queue_size", .int(concurrency.queue?.size ?? 0)),
                    ("in_flight", series(\.inFlight)),
                    ("queued", series(\.queued)),
                    ("refusals", series(\.refusals)),
                    ("last_minute_refusals", .int(recent.concurrency[rule.name]?.refusals ?? 0)),
                ])
            ))
        }
        return .object(members)
    }

    /// One member per decision of `sluice_requests_total`, in slot order.
    private static func decisionsJSON(_ value: (Decision) -> Int) -> AdminJSON {
        self.decisionsJSON { .int(value($0)) }
    }

    private static func decisionsJSON(_ value: (Decision) -> AdminJSON) -> AdminJSON {
        .object(Decision.countedInMetrics.map { ($0.rawValue, value($0)) })
    }

    private var limitedKeysJSON: AdminJSON {
        .object([
            ("window_minutes", .int(self.facts.limitedKeyMinutes)),
            (
                "keys",
                .array(
                    self.facts.limitedKeys.map { entry in
                        .object([
                            ("rule", .string(entry.rule)),
                            ("key_hash", .string(entry.key.displayHash)),
                            ("decision", .string((entry.shadow ? Decision.shadowLimited : Decision.limited).rawValue)),
                            ("count", .int(entry.count)),
                            ("last_seen_ms", .int(Int(entry.lastSeenSeconds * 1000))),
                        ])
                    }
                )
            ),
        ])
    }

    private func storageJSON(recent: MetricTotals) -> AdminJSON {
        let storage = self.facts.configuration.storage
        if storage.kind == .memcached, let memcached = storage.memcached {
            return self.memcachedJSON(memcached, recent: recent)
        }
        guard storage.kind == .redis, let redis = storage.redis else {
            return .object([
                ("kind", .string("memory")),
                ("status", .string("ok")),
                ("tracked_keys", .int(self.facts.trackedKeys)),
                ("max_keys", .int(storage.maxKeys)),
                ("evictions", .int(self.facts.evictions)),
            ])
        }
        let latency: AdminJSON =
            recent.storageDecisions > 0 ? .int(recent.storageNanoseconds / recent.storageDecisions / 1000) : .null
        if case .sentinel(_, let masterName) = redis.deployment {
            return self.sentinelJSON(redis, masterName: masterName, recent: recent, latency: latency)
        }
        if case .cluster(let seeds) = redis.deployment {
            // A Redis Cluster (issue 12): each primary, `degraded` while some answer (the others' keys are shared).
            let servers = self.facts.storageServers
            let up = servers.filter(\.available).count
            let status = !servers.isEmpty && up == servers.count ? "ok" : up == 0 ? "unavailable" : "degraded"
            return .object(
                [
                    ("kind", .string("redis")),
                    ("deployment", .string("cluster")),
                    ("status", .string(status)),
                    ("address", .string(seeds.map(\.description).joined(separator: ","))),
                    ("servers", Self.serverList(servers)),
                ] + self.redisCounters(redis, recent: recent, latency: latency)
            )
        }
        return .object([
            ("kind", .string("redis")),
            ("status", .string(self.facts.storageAvailable ? "ok" : "unavailable")),
            ("address", .string("\(redis.host):\(redis.port)/\(redis.database)")),
        ] + self.redisCounters(redis, recent: recent, latency: latency))
    }

    /// The fields every Redis deployment reports after its own.
    private func redisCounters(
        _ redis: RedisStorageConfiguration,
        recent: MetricTotals,
        latency: AdminJSON
    ) -> [(String, AdminJSON)] {
        [
            ("on_error", .string(redis.onError.rawValue)),
            ("decisions_last_minute", .int(recent.storageDecisions)),
            ("errors_last_minute", .int(recent.storageErrors)),
            ("latency_us_last_minute", latency),
            // With Redis, the memory store only counts while Redis is away (`on_error: local`).
            ("local_tracked_keys", .int(self.facts.trackedKeys)),
        ]
    }

    /// Servers as `{address, status}` (a cluster's primaries, Sentinel's sentinels).
    private static func serverList(_ servers: [StorageServerHealth]) -> AdminJSON {
        .array(servers.map { .object([("address", .string($0.address)), ("status", .string($0.available ? "ok" : "unavailable"))]) })
    }

    /// Redis through Sentinel: the primary in use (`null` before one is found) and each sentinel's health; `ok`
    /// while the primary answers and every sentinel does, `degraded` while the primary answers and some sentinel
    /// does not (a failover needs a quorum of them), `unavailable` while no primary answers (`on_error` decides).
    private func sentinelJSON(
        _ redis: RedisStorageConfiguration,
        masterName: String,
        recent: MetricTotals,
        latency: AdminJSON
    ) -> AdminJSON {
        let servers = self.facts.storageServers
        let primary = servers.first { $0.role == .primary }
        let sentinels = servers.filter { $0.role == .sentinel }
        let status =
            !self.facts.storageAvailable ? "unavailable" : sentinels.allSatisfy(\.available) ? "ok" : "degraded"
        return .object([
            ("kind", .string("redis")),
            ("deployment", .string("sentinel")),
            ("status", .string(status)),
            ("master_name", .string(masterName)),
            ("address", primary.map { .string("\($0.address)/\(redis.database)") } ?? .null),
            ("primary", primary.map { .string($0.address) } ?? .null),
            ("sentinels", Self.serverList(sentinels)),
        ] + self.redisCounters(redis, recent: recent, latency: latency))
    }

    /// memcached storage: each server's health, `ok` while all answer, `degraded` while some do (their keys are
    /// still shared), `unavailable` when none does.
    private func memcachedJSON(_ memcached: MemcachedStorageConfiguration, recent: MetricTotals) -> AdminJSON {
        let latency: AdminJSON =
            recent.storageDecisions > 0 ? .int(recent.storageNanoseconds / recent.storageDecisions / 1000) : .null
        let servers = self.facts.storageServers
        let up = servers.filter(\.available).count
        let status = servers.isEmpty || up == servers.count ? "ok" : up == 0 ? "unavailable" : "degraded"
        return .object([
            ("kind", .string("memcached")),
            ("status", .string(status)),
            (
                "servers",
                .array(
                    servers.map {
                        .object([("address", .string($0.address)), ("status", .string($0.available ? "ok" : "unavailable"))])
                    }
                )
            ),
            ("on_error", .string(memcached.onError.rawValue)),
            ("decisions_last_minute", .int(recent.storageDecisions)),
            ("errors_last_minute", .int(recent.storageErrors)),
            ("latency_us_last_minute", latency),
            // The memory store only counts for the keys of servers that are away (`on_error: local`).
            ("local_tracked_keys", .int(self.facts.trackedKeys)),
        ])
    }

    private func upstreamJSON(recent: MetricTotals) -> AdminJSON {
        var byClass = [Int](repeating: 0, count: 6)
        for (status, count) in recent.upstreamResponses {
            byClass[min(5, max(1, status / 100))] += count
        }
        let responses = byClass.reduce(0, +)
        let failures = recent.upstreamUnreachable + recent.upstreamTimeouts
        let status: String
        if responses + failures == 0 {
            status = "idle"
        } else if failures == 0 && byClass[5] == 0 {
            status = "ok"
        } else if responses == 0 {
            status = "failing"
        } else {
            status = "degraded"
        }
        return .object([
            ("targets", .array(self.facts.configuration.upstream.targets.map { .string($0.description) })),
            ("status", .string(status)),
            (
                "last_minute",
                .object([
                    ("responses", .int(responses)),
                    ("1xx", .int(byClass[1])),
                    ("2xx", .int(byClass[2])),
                    ("3xx", .int(byClass[3])),
                    ("4xx", .int(byClass[4])),
                    ("5xx", .int(byClass[5])),
                    ("unreachable_502", .int(recent.upstreamUnreachable)),
                    ("timeout_504", .int(recent.upstreamTimeouts)),
                ])
            ),
        ])
    }

    private var reloadJSON: AdminJSON {
        guard let reload = self.facts.reload else { return .null }
        let last: AdminJSON =
            reload.last.map { attempt in
                .object([
                    ("time_ms", .int(Int(attempt.milliseconds))),
                    ("result", .string(attempt.succeeded ? "success" : "failure")),
                    ("error", .string(attempt.error)),
                ])
            } ?? .null
        return .object([
            ("started_ms", .int(Int(reload.startedMilliseconds))),
            ("successes", .int(reload.successes)),
            ("failures", .int(reload.failures)),
            ("last", last),
        ])
    }
}

extension Duration {
    /// Whole milliseconds.
    fileprivate var milliseconds: Int64 {
        let (seconds, attoseconds) = self.components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
