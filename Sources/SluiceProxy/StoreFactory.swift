import Logging
import NIOCore
import SluiceAdmin
import SluiceConfig
import SluiceLimiter
import SluiceMemcached
import SluiceRedis
import Synchronization

/// The counters' store for a configuration (SPEC §2 `storage`, §8).
///
/// A reload keeps the running store when the storage settings are unchanged, so counters carry over (SPEC §6);
/// a change of kind or of Redis or memcached settings makes a new one.
enum StoreFactory {
    static func store(
        for storage: StorageConfiguration,
        previous: (any RateLimitStore)?,
        group: any EventLoopGroup,
        logger: Logger,
        metrics: SluiceMetrics
    ) -> any RateLimitStore {
        switch storage.kind {
        case .redis:
            if let redis = storage.redis {
                if let previous = previous as? RedisStore, previous.configuration == redis { return previous }
                // Redis Cluster: one series per primary, made when the node is first seen (issue 12).
                let nodes = Mutex<[String: StorageServerMetrics]>([:])
                return RedisStore(
                    configuration: redis,
                    group: group,
                    localMaxKeys: storage.maxKeys,
                    logger: logger,
                    observe: { seconds, failed in
                        if failed { metrics.storageError() } else { metrics.storageObserved(seconds: seconds) }
                    },
                    observeNode: { node, seconds, failed in
                        let series = nodes.withLock { known in
                            if let series = known[node] { return series }
                            let made = metrics.storageServerMetrics(for: [node])
                            known[node] = made
                            return made
                        }
                        series.observe(server: 0, seconds: seconds, failed: failed)
                    }
                )
            }
            if let previous = previous as? MemoryStore { return previous }
            return MemoryStore(maxKeys: storage.maxKeys)
        case .memcached:
            if let memcached = storage.memcached {
                if let previous = previous as? MemcachedStore, previous.configuration == memcached { return previous }
                let servers = metrics.storageServerMetrics(for: memcached.servers.map(\.description))
                return MemcachedStore(
                    configuration: memcached,
                    group: group,
                    localMaxKeys: storage.maxKeys,
                    logger: logger,
                    observe: { seconds, failed in
                        if failed { metrics.storageError() } else { metrics.storageObserved(seconds: seconds) }
                    },
                    observeServer: { index, seconds, failed in
                        servers.observe(server: index, seconds: seconds, failed: failed)
                    }
                )
            }
            fallthrough
        case .memory:
            if let previous = previous as? MemoryStore { return previous }
            return MemoryStore(maxKeys: storage.maxKeys)
        }
    }

    /// Releases what a store holds (Redis or memcached connections).
    static func close(_ store: (any RateLimitStore)?) async {
        if let redis = store as? RedisStore { await redis.close() }
        if let memcached = store as? MemcachedStore { await memcached.close() }
    }
}
