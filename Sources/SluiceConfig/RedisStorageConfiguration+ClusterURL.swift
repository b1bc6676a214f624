import Foundation

extension RedisStorageConfiguration {
    /// Whether `text` names a Redis Cluster (`redis+cluster://`, `rediss+cluster://`) rather than one server.
    static func isClusterURL(_ text: String) -> Bool {
        let lowered = text.lowercased()
        return lowered.hasPrefix("redis+cluster://") || lowered.hasPrefix("rediss+cluster://")
    }

    /// The parts of a `redis+cluster://[user][:password@]host[:port][,host[:port]...][/0]` URL (`rediss+cluster://`
    /// for TLS): the seeds the topology is read from, in the order written.
    ///
    /// User and password are percent-decoded and apply to every node. Ports default to 6379. A path may only name
    /// database 0 (a cluster has no other); query parameters are refused. `host` and `port` of the parts are the
    /// first seed's.
    static func parseClusterURL(_ text: String) -> Result<(URLParts, [RedisSeed]), ValueSyntaxError> {
        let lowered = text.lowercased()
        let useTLS = lowered.hasPrefix("rediss+cluster://")
        guard useTLS || lowered.hasPrefix("redis+cluster://") else {
            return .failure(ValueSyntaxError("invalid Redis URL: expected redis+cluster:// or rediss+cluster://"))
        }
        let schemeLength = useTLS ? 17 : 16
        let scalars = Array(text.unicodeScalars.dropFirst(schemeLength))
        let end = scalars.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? scalars.count
        let userInfo: UserInfo
        switch Self.splitUserInfo(scalars[..<end], offset: schemeLength, label: "invalid Redis URL") {
        case .failure(let error): return .failure(error)
        case .success(let split): userInfo = split
        }
        let (username, password) = (userInfo.username, userInfo.password)
        if userInfo.rest.isEmpty {
            return .failure(ValueSyntaxError("invalid Redis URL: missing host", at: userInfo.restOffset))
        }
        let seeds: [RedisSeed]
        let messages = HostPortSyntax.ListMessages<RedisSeed>(
            empty: "empty cluster seed (expected host:port)",
            missingHost: "missing host",
            listedTwice: { piece, _ in "cluster seed \(piece) is listed twice" }
        )
        switch HostPortSyntax.parseList(
            userInfo.rest, offset: schemeLength, defaultPort: 6379, label: "invalid Redis URL", messages: messages, make: RedisSeed.init
        ) {
        case .failure(let error): return .failure(error)
        case .success(let parsed): seeds = parsed
        }
        let tail = scalars[end...]
        if let first = tail.first {
            guard first == "/" else {
                return .failure(ValueSyntaxError("invalid Redis URL: query parameters are not supported", at: schemeLength + end))
            }
            let path = tail.dropFirst()
            if !path.isEmpty, String(String.UnicodeScalarView(path)) != "0" {
                return .failure(
                    ValueSyntaxError(
                        "invalid Redis URL: a Redis Cluster has only database 0 (remove the path)",
                        at: schemeLength + end + 1
                    )
                )
            }
        }
        let parts = URLParts(
            useTLS: useTLS,
            host: seeds[0].host,
            port: seeds[0].port,
            username: username,
            password: password,
            database: 0
        )
        return .success((parts, seeds))
    }
}
