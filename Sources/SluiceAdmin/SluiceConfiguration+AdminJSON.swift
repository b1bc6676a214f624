import SluiceConfig

/// The running configuration as `GET /config` shows it (SPEC §7): every section, secrets redacted.
///
/// Values are shown as they are in effect, after `${VAR}` expansion and defaults, in the YAML file's vocabulary
/// (`snake_case` keys, durations such as `250ms`, limits as written), so the output can be compared with the file.
/// Redacted: `admin_token` (`"***"` when set) and the Redis password (only ``RedisStorageConfiguration/redactedURL``
/// is shown, and `password` is `"***"` when set). A Redis username is shown: it is not a secret.
extension SluiceConfiguration {
    /// The placeholder for a secret that is set.
    static let redacted = "***"

    /// The redacted JSON form.
    var adminJSON: AdminJSON {
        var fields: [(String, AdminJSON)] = [
            ("source", .string(self.sourcePath)),
            ("version", .int(self.version)),
            ("server", self.server.adminJSON),
            ("upstream", self.upstream.adminJSON),
            ("storage", self.storage.adminJSON),
            ("response", self.response.adminJSON),
        ]
        if let jwt = self.jwt { fields.append(("jwt", jwt.adminJSON)) }
        fields.append(("rules", .array(self.rules.map(\.adminJSON))))
        return .object(fields)
    }
}

extension JWTConfiguration {
    /// The `jwt:` section (issue 15); the HS256 secret is redacted (`"***"` when set).
    var adminJSON: AdminJSON {
        .object([
            ("token", .string(self.token.description)),
            ("hs256_secret", .string(self.hs256Secret.map { _ in SluiceConfiguration.redacted })),
            (
                "keys",
                .array(
                    self.keys.map { key in
                        .object([("alg", .string(key.algorithm.rawValue)), ("file", .string(key.path)), ("kid", .string(key.kid))])
                    }
                )
            ),
            ("jwks_file", .string(self.jwksFile)),
            ("issuer", .array(self.issuers.map(AdminJSON.string))),
            ("audience", .array(self.audiences.map(AdminJSON.string))),
            ("clock_skew", .string(DurationText.format(self.clockSkew))),
            ("cache_size", .int(self.cacheSize)),
        ])
    }
}

extension ServerConfiguration {
    var adminJSON: AdminJSON {
        let accessLog: AdminJSON =
            switch self.accessLog {
            case .stdout: .string("stdout")
            case .off: .string("off")
            case .file(let path): .string(path)
            }
        let token = self.adminToken.flatMap { $0.isEmpty ? nil : SluiceConfiguration.redacted }
        return .object([
            ("listen", .array(self.listen.map { .string($0.description) })),
            (
                "tls",
                self.tls.map { .object([("cert", .string($0.cert)), ("key", .string($0.key))]) } ?? .null
            ),
            ("admin", .string(self.admin?.description)),
            ("admin_token", .string(token)),
            ("threads", self.threads.map(AdminJSON.int) ?? .string("auto")),
            ("max_header_bytes", .int(self.maxHeaderBytes)),
            ("max_body_bytes", .int(self.maxBodyBytes)),
            (
                "timeouts",
                .object([
                    ("header_read", .duration(self.timeouts.headerRead)),
                    ("idle", .duration(self.timeouts.idle)),
                    ("upstream_connect", .duration(self.timeouts.upstreamConnect)),
                    ("upstream_response", .duration(self.timeouts.upstreamResponse)),
                    ("shutdown", .duration(self.timeouts.shutdown)),
                    ("body_read", .duration(self.timeouts.bodyRead)),
                    ("send", .duration(self.timeouts.send)),
                    ("tunnel_idle", .duration(self.timeouts.tunnelIdle)),
                ])
            ),
            ("trusted_proxies", .array(self.trustedProxies.map { .string($0.description) })),
            ("client_ip_header", .string(self.clientIPHeader.rawValue)),
            ("access_log", accessLog),
            ("max_connections", .int(self.effectiveMaxConnections)),
            ("admin_max_connections", .int(self.adminMaxConnections)),
            ("http2", .bool(self.http2)),
            ("h2c", .bool(self.h2c)),
            ("http2_max_concurrent_streams", .int(self.http2MaxConcurrentStreams)),
            ("grpc_rls", self.grpcRLS.map(\.adminJSON) ?? .null),
        ])
    }
}

extension GRPCRateLimitServiceConfiguration {
    var adminJSON: AdminJSON {
        .object([
            ("listen", .string(self.listen.description)),
            ("tls", self.tls.map { .object([("cert", .string($0.cert)), ("key", .string($0.key))]) } ?? .null),
        ])
    }
}

extension UpstreamConfiguration {
    var adminJSON: AdminJSON {
        .object([
            ("targets", .array(self.targets.map { .string($0.description) })),
            ("preserve_host", .bool(self.preserveHost)),
            ("max_idle_per_loop", .int(self.maxIdlePerLoop)),
            ("tls", .object([("verify", .bool(self.tls.verify)), ("ca", .string(self.tls.ca))])),
            ("adaptive_concurrency", self.adaptiveConcurrency?.adminJSON ?? .null),
        ])
    }
}

extension AdaptiveConcurrencyConfiguration {
    /// Fractions as percentages (`15%`), as the file may write them.
    var adminJSON: AdminJSON {
        .object([
            ("min", .int(self.min)),
            ("max", .int(self.max)),
            ("sample_interval", .duration(self.sampleInterval)),
            ("min_rtt_interval", .duration(self.minRTTInterval)),
            ("jitter", .string(Self.percentage(self.jitter))),
            ("min_rtt_samples", .int(self.minRTTSamples)),
            ("buffer", .string(Self.percentage(self.buffer))),
            ("percentile", .string(Self.percentage(self.percentile))),
            ("retry_after", .duration(self.retryAfter)),
        ])
    }

    /// `0.15` as `15%`, `0.125` as `12.5%` (to a thousandth of a percent).
    static func percentage(_ fraction: Double) -> String {
        let thousandths = (fraction * 100_000).rounded()
        if thousandths.truncatingRemainder(dividingBy: 1000) == 0 { return "\(Int(thousandths / 1000))%" }
        return "\(thousandths / 1000)%"
    }
}

extension StorageConfiguration {
    var adminJSON: AdminJSON {
        var members: [(String, AdminJSON)] = [
            ("kind", .string(self.kind.rawValue)),
            ("max_keys", .int(self.maxKeys)),
        ]
        if let redis = self.redis {
            members.append(("redis", redis.adminJSON))
        }
        if let memcached = self.memcached {
            members.append(("memcached", memcached.adminJSON))
        }
        return .object(members)
    }
}

extension RedisStorageConfiguration {
    /// Never the written `url`: it may hold the password.
    var adminJSON: AdminJSON {
        var sentinel: [(String, AdminJSON)] = []
        if case .sentinel(let sentinels, let masterName) = self.deployment {
            sentinel = [
                ("sentinels", .array(sentinels.map { .string($0.description) })),
                ("master_name", .string(masterName)),
                ("sentinel_password", .string(self.sentinelPassword.map { _ in SluiceConfiguration.redacted })),
            ]
        }
        return .object([
            ("url", .string(self.redactedURL)),
            ("tls", .bool(self.useTLS)),
            ("host", .string(self.host)),
            ("port", .int(self.port)),
            ("username", .string(self.username)),
            ("password", .string(self.password.map { _ in SluiceConfiguration.redacted })),
            ("database", .int(self.database)),
            ("pool_size", .int(self.poolSize)),
            ("timeout", .duration(self.timeout)),
            ("key_prefix", .string(self.keyPrefix)),
            ("on_error", .string(self.onError.rawValue)),
            ("instances", .int(self.instances)),
        ] + sentinel)
    }
}

extension MemcachedStorageConfiguration {
    /// The URL holds no secret (memcached has no login), so it is shown as written.
    var adminJSON: AdminJSON {
        .object([
            ("url", .string(self.url)),
            ("servers", .array(self.servers.map { .string($0.description) })),
            ("pool_size", .int(self.poolSize)),
            ("timeout", .duration(self.timeout)),
            ("key_prefix", .string(self.keyPrefix)),
            ("on_error", .string(self.onError.rawValue)),
            ("instances", .int(self.instances)),
        ])
    }
}

extension ResponseConfiguration {
    var adminJSON: AdminJSON {
        .object([
            ("status", .int(self.status)),
            ("content_type", .string(self.contentType)),
            ("body", .string(self.body.source)),
            // A list, not an object: the same header name may be given twice.
            (
                "headers",
                .array(self.headers.map { .object([("name", .string($0.name)), ("value", .string($0.value))]) })
            ),
            ("rate_limit_headers", .string(self.rateLimitHeaders.rawValue)),
        ])
    }
}

extension RuleConfiguration {
    var adminJSON: AdminJSON {
        let cost: AdminJSON =
            switch self.cost {
            case .fixed(let units): .int(units)
            case .header(let name, let defaultUnits, let maxUnits):
                .object([("header", .string(name)), ("default", .int(defaultUnits)), ("max", .int(maxUnits))])
            }
        let onMissingKey: AdminJSON =
            switch self.onMissingKey {
            case .skip: .string("skip")
            case .deny: .string("deny")
            case .fallback(let parts): .object([("fallback", .keyParts(parts))])
            }
        let countWhen: AdminJSON = self.countWhen.map { statuses in
            let codes = statuses.codes.sorted().map { AdminJSON.string(String($0)) }
            let classes = statuses.classes.sorted().map { AdminJSON.string("\($0)xx") }
            return .object([("status", .array(codes + classes))])
        } ?? .null
        let tiers: AdminJSON = self.tiers.map { tiers in
            var fields: [(String, AdminJSON)] = [
                ("by", .string(tiers.by.description)),
                ("values", .object(tiers.values.sorted { $0.key < $1.key }.map { ($0.key, .limits($0.value)) })),
                ("default", tiers.defaultLimits.map(AdminJSON.limits) ?? .null),
            ]
            // Issue 22: only when a tier gives one, so the shape of configurations without concurrency is unchanged.
            if !tiers.concurrencyMax.isEmpty || tiers.defaultConcurrencyMax != nil {
                fields.append(
                    ("concurrency_max", .object(tiers.concurrencyMax.sorted { $0.key < $1.key }.map { ($0.key, .int($0.value)) }))
                )
                fields.append(("default_concurrency_max", tiers.defaultConcurrencyMax.map(AdminJSON.int) ?? .null))
            }
            return .object(fields)
        } ?? .null
        var fields: [(String, AdminJSON)] = [
            ("name", .string(self.name)),
            ("match", self.match.adminJSON),
            ("key", .keyParts(self.key)),
            ("limits", .limits(self.limits)),
            ("algorithm", .string(self.algorithm.rawValue)),
            ("burst", .int(self.burst)),
            ("cost", cost),
            ("mode", .string(self.mode.rawValue)),
            ("on_missing_key", onMissingKey),
            ("exempt", .array(self.exempt.map { .string($0.description) })),
            ("block_for", .duration(self.blockFor)),
            ("shared", .string(self.shared)),
            ("delay", .duration(self.delay)),
            ("count_when", countWhen),
            ("tiers", tiers),
            ("response", self.response.adminJSON),
        ]
        if let concurrency = self.concurrency {
            fields.append(
                (
                    "concurrency",
                    .object([
                        ("max", .int(concurrency.max)),
                        (
                            "queue",
                            concurrency.queue.map { .object([("size", .int($0.size)), ("timeout", .duration($0.timeout))]) } ?? .null
                        ),
                        ("retry_after", .duration(concurrency.retryAfter)),
                    ])
                )
            )
        }
        return .object(fields)
    }
}

extension RuleMatch {
    var adminJSON: AdminJSON {
        var fields: [(String, AdminJSON)] = [
            ("methods", self.methods.map { .array($0.map(AdminJSON.string)) } ?? .null),
            ("path", .string(self.path?.yamlText)),
            ("host", .string(self.host)),
            ("headers", .object(self.headers.map { ($0.name, .string($0.value ?? "*")) })),
        ]
        if !self.claims.isEmpty { fields.append(("jwt", .object(self.claims.map { ($0.path, .string($0.value ?? "*")) }))) }
        if let descriptor = self.descriptor {
            fields.append(
                (
                    "descriptor",
                    .object([
                        ("domain", .string(descriptor.domain)),
                        ("entries", .object(descriptor.entries.map { ($0.key, .string($0.value ?? "*")) })),
                        ("exact", .bool(descriptor.exact)),
                    ])
                )
            )
        }
        return .object(fields)
    }
}

extension PathPattern {
    /// The pattern as it would be written in YAML.
    var yamlText: String {
        switch self {
        case .exact(let path): path
        case .prefix(let path): path + "/*"
        case .glob(let segments): "/" + segments.map { $0 ?? "*" }.joined(separator: "/")
        case .regex(let expression): "~" + expression
        }
    }
}

extension AdminJSON {
    static func duration(_ duration: Duration) -> AdminJSON {
        .string(DurationText.format(duration))
    }

    static func limits(_ limits: [RateLimit]) -> AdminJSON {
        .array(limits.map { .string($0.text) })
    }

    static func keyParts(_ parts: [KeyPart]) -> AdminJSON {
        .array(parts.map { .string($0.description) })
    }
}
