import Yams

/// `storage:` (SPEC §2, §8; memcached: issue 21).
extension ConfigReader {
    /// The options of a shared store (Redis or memcached).
    private static let sharedOnlyKeys = ["url", "pool_size", "timeout", "key_prefix", "on_error", "instances"]

    /// The options both shared stores take, with Redis's defaults.
    private struct SharedOptions {
        var poolSize = 4
        var timeout: Duration = .milliseconds(50)
        var keyPrefix = "sluice:"
        var onError = RedisStorageConfiguration.OnError.local
        var instances = 1
    }

    func readStorage(_ node: Node) -> StorageConfiguration {
        var storage = StorageConfiguration()
        guard let fields = self.fields(node, "storage", allowed: ["kind", "max_keys", "lease_ttl", "sentinel_password"] + Self.sharedOnlyKeys) else {
            return storage
        }
        let kinds: [(String, StorageConfiguration.Kind)] = [("memory", .memory), ("redis", .redis), ("memcached", .memcached)]
        if let entry = fields["kind"], let kind = self.choice(entry.value, "kind", kinds) {
            storage.kind = kind
        }
        if let entry = fields["max_keys"], let value = self.integer(entry.value, "max_keys", in: 1...Int.max) {
            storage.maxKeys = value
        }
        if storage.kind != .redis, let entry = fields["sentinel_password"] {
            self.error("'sentinel_password' is only valid with storage kind redis (kind is \(storage.kind.rawValue))", at: entry.keyNode)
        }
        if storage.kind != .redis, let entry = fields["lease_ttl"] {
            // Leases are how Redis shares concurrency slots; elsewhere the slots are this instance's own.
            self.error("'lease_ttl' is only valid with storage kind redis (kind is \(storage.kind.rawValue))", at: entry.keyNode)
        }
        switch storage.kind {
        case .memory:
            // A shared store's setting under `kind: memory` means the operator believes counters are shared: say
            // they are not.
            for key in Self.sharedOnlyKeys {
                if let entry = fields[key] {
                    self.error("'\(key)' is only valid with storage kind redis or memcached (kind is memory)", at: entry.keyNode)
                }
            }
        case .redis:
            storage.redis = self.readRedis(fields, node: node)
        case .memcached:
            storage.memcached = self.readMemcached(fields, node: node)
        }
        return storage
    }

    private func readShared(_ fields: MappingFields) -> SharedOptions {
        var options = SharedOptions()
        if let entry = fields["pool_size"], let value = self.integer(entry.value, "pool_size", in: 1...Int.max) {
            options.poolSize = value
        }
        if let entry = fields["timeout"], let value = self.duration(entry.value, "timeout", allowZero: false) {
            options.timeout = value
        }
        if let entry = fields["key_prefix"], let value = self.string(entry.value, "key_prefix") {
            options.keyPrefix = value
        }
        if let entry = fields["on_error"] {
            let choices: [(String, RedisStorageConfiguration.OnError)] = [("allow", .allow), ("deny", .deny), ("local", .local)]
            if let value = self.choice(entry.value, "on_error", choices) { options.onError = value }
        }
        if let entry = fields["instances"], let value = self.integer(entry.value, "instances", in: 1...Int.max) {
            options.instances = value
        }
        return options
    }

    private func readRedis(_ fields: MappingFields, node: Node) -> RedisStorageConfiguration {
        // Placeholder values until the URL is read; if it is missing or bad, the errors make the file invalid.
        var redis = RedisStorageConfiguration(url: "")
        if let urlEntry = fields["url"] {
            let url = self.text(urlEntry.value, "url")
            if let url, RedisStorageConfiguration.isClusterURL(url.value) {
                self.readRedisCluster(url, into: &redis)
            } else if let url {
                switch RedisStorageConfiguration.parseURL(url.value) {
                case .failure(let problem):
                    self.error("url: \(problem.message)", at: url.position(atOffset: problem.offset))
                case .success(let parts):
                    redis.url = url.value
                    redis.useTLS = parts.useTLS
                    redis.host = parts.host
                    redis.port = parts.port
                    redis.username = parts.username
                    redis.password = parts.password
                    redis.database = parts.database
                    redis.deployment = parts.deployment
                }
            }
        } else {
            self.error("storage.url is required when kind is redis", at: node)
        }
        if let entry = fields["sentinel_password"], let value = self.string(entry.value, "sentinel_password") {
            if case .sentinel = redis.deployment {
                redis.sentinelPassword = value.isEmpty ? nil : value
            } else if fields["url"] != nil, redis.url != "" {
                self.error("'sentinel_password' is only valid with a redis+sentinel:// url", at: entry.keyNode)
            }
        }
        let options = self.readShared(fields)
        redis.poolSize = options.poolSize
        redis.timeout = options.timeout
        redis.keyPrefix = options.keyPrefix
        redis.onError = options.onError
        redis.instances = options.instances
        if case .cluster = redis.deployment, let entry = fields["key_prefix"], options.keyPrefix.contains("{") {
            // Redis Cluster hashes the first `{...}` of a key: a brace in the prefix would put every key in one slot.
            self.error("key_prefix must not contain '{' with a Redis Cluster (it would hash every key to one slot)", at: entry.value)
        }
        if let entry = fields["lease_ttl"], let value = self.duration(entry.value, "lease_ttl", allowZero: false) {
            if value < .seconds(1) {
                // A lease is renewed every third of it: shorter than a second, renewals would race the expiry.
                self.error("lease_ttl must be at least 1s", at: entry.value)
            } else {
                redis.leaseTTL = value
            }
        }
        return redis
    }

    /// `redis+cluster://` (issue 12): the seeds, and the first seed as `host`/`port`.
    private func readRedisCluster(_ url: LocatedText, into redis: inout RedisStorageConfiguration) {
        switch RedisStorageConfiguration.parseClusterURL(url.value) {
        case .failure(let problem):
            self.error("url: \(problem.message)", at: url.position(atOffset: problem.offset))
        case .success(let (parts, seeds)):
            redis.url = url.value
            redis.useTLS = parts.useTLS
            redis.host = parts.host
            redis.port = parts.port
            redis.username = parts.username
            redis.password = parts.password
            redis.database = 0
            redis.deployment = .cluster(seeds: seeds)
        }
    }

    private func readMemcached(_ fields: MappingFields, node: Node) -> MemcachedStorageConfiguration {
        var memcached = MemcachedStorageConfiguration(url: "")
        if let urlEntry = fields["url"] {
            if let url = self.text(urlEntry.value, "url") {
                switch MemcachedStorageConfiguration.parseURL(url.value) {
                case .failure(let problem):
                    self.error("url: \(problem.message)", at: url.position(atOffset: problem.offset))
                case .success(let servers):
                    memcached.url = url.value
                    memcached.servers = servers
                }
            }
        } else {
            self.error("storage.url is required when kind is memcached", at: node)
        }
        let options = self.readShared(fields)
        memcached.poolSize = options.poolSize
        memcached.timeout = options.timeout
        memcached.onError = options.onError
        memcached.instances = options.instances
        memcached.keyPrefix = options.keyPrefix
        if let entry = fields["key_prefix"], let problem = MemcachedStorageConfiguration.keyPrefixProblem(options.keyPrefix) {
            self.error(problem, at: entry.value)
        }
        if let kind = fields["kind"] {
            for caveat in MemcachedStorageConfiguration.caveats {
                self.warning("memcached storage: \(caveat) (docs/behaviour.md)", at: kind.value)
            }
        }
        return memcached
    }
}
