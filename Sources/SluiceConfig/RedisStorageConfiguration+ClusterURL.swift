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
        var authority = scalars[..<end]
        var authorityOffset = schemeLength
        var username: String?
        var password: String?
        if let at = authority.lastIndex(of: "@") {
            let userInfo = String(String.UnicodeScalarView(authority[..<at]))
            let pieces = userInfo.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            guard let user = String(pieces[0]).removingPercentEncoding,
                let secret = pieces.count > 1 ? String(pieces[1]).removingPercentEncoding : ""
            else {
                return .failure(ValueSyntaxError("invalid Redis URL: bad percent-encoding in user or password", at: schemeLength))
            }
            username = user.isEmpty ? nil : user
            password = secret.isEmpty ? nil : secret
            authority = authority[(at + 1)...]
            authorityOffset = schemeLength + at + 1
        }
        if authority.isEmpty {
            return .failure(ValueSyntaxError("invalid Redis URL: missing host", at: authorityOffset))
        }
        var seeds: [RedisSeed] = []
        var start = authority.startIndex
        while start <= authority.endIndex {
            let stop = authority[start...].firstIndex(of: ",") ?? authority.endIndex
            let offset = schemeLength + start
            let piece = Substring(String(String.UnicodeScalarView(authority[start..<stop])))
            if piece.isEmpty {
                return .failure(ValueSyntaxError("invalid Redis URL: empty cluster seed (expected host:port)", at: offset))
            }
            switch HostPortSyntax.parse(piece, offset: offset, defaultPort: 6379, portRange: 1...65535) {
            case .failure(let problem):
                return .failure(ValueSyntaxError("invalid Redis URL: \(problem.message)", at: problem.offset))
            case .success(let parsed):
                if parsed.host.isEmpty {
                    return .failure(ValueSyntaxError("invalid Redis URL: missing host", at: offset))
                }
                let seed = RedisSeed(host: parsed.host, port: parsed.port)
                if seeds.contains(seed) {
                    return .failure(ValueSyntaxError("invalid Redis URL: cluster seed \(piece) is listed twice", at: offset))
                }
                seeds.append(seed)
            }
            start = stop + 1
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
