import Yams

/// `storage:` (SPEC §2, §8).
extension ConfigReader {
    private static let redisOnlyKeys = ["url", "pool_size", "timeout", "key_prefix", "on_error", "instances"]

    func readStorage(_ node: Node) -> StorageConfiguration {
        var storage = StorageConfiguration()
        guard let fields = self.fields(node, "storage", allowed: ["kind", "max_keys"] + Self.redisOnlyKeys) else {
            return storage
        }
        if let entry = fields["kind"], let kind = self.choice(entry.value, "kind", [("memory", StorageConfiguration.Kind.memory), ("redis", .redis)]) {
            storage.kind = kind
        }
        if let entry = fields["max_keys"], let value = self.integer(entry.value, "max_keys", in: 1...Int.max) {
            storage.maxKeys = value
        }
        guard storage.kind == .redis else {
            // A Redis setting under `kind: memory` means the operator believes counters are shared: say they are not.
            for key in Self.redisOnlyKeys {
                if let entry = fields[key] {
                    self.error("'\(key)' is only valid with storage kind redis (kind is memory)", at: entry.keyNode)
                }
            }
            return storage
        }
        // Placeholder values until the URL is read; if it is missing or bad, the errors make the file invalid.
        var redis = RedisStorageConfiguration(url: "")
        if let urlEntry = fields["url"] {
            if let url = self.text(urlEntry.value, "url") {
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
                }
            }
        } else {
            self.error("storage.url is required when kind is redis", at: node)
        }
        if let entry = fields["pool_size"], let value = self.integer(entry.value, "pool_size", in: 1...Int.max) {
            redis.poolSize = value
        }
        if let entry = fields["timeout"], let value = self.duration(entry.value, "timeout", allowZero: false) {
            redis.timeout = value
        }
        if let entry = fields["key_prefix"], let value = self.string(entry.value, "key_prefix") {
            redis.keyPrefix = value
        }
        if let entry = fields["on_error"] {
            let choices: [(String, RedisStorageConfiguration.OnError)] = [("allow", .allow), ("deny", .deny), ("local", .local)]
            if let value = self.choice(entry.value, "on_error", choices) { redis.onError = value }
        }
        if let entry = fields["instances"], let value = self.integer(entry.value, "instances", in: 1...Int.max) {
            redis.instances = value
        }
        storage.redis = redis
        return storage
    }
}
