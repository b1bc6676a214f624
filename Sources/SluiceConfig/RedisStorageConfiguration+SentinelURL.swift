import Foundation

extension RedisStorageConfiguration {
    /// The sentinels' default port.
    static let sentinelDefaultPort = 26379

    /// The parts of a `redis+sentinel://[user][:password]@host[:port][,host[:port]...]/MASTER_NAME[/db]` URL.
    ///
    /// The sentinels are listed in the order they are asked; their port defaults to 26379, IPv6 hosts are bracketed.
    /// User and password (percent-decoded) are the primary's: the sentinels get `storage.sentinel_password`, or no
    /// `AUTH`. The master name is required (printable ASCII, no space, `/`, `?`, `#`, `@` or `,`); the database
    /// defaults to 0. TLS (`rediss+sentinel://`) and query parameters are refused.
    static func parseSentinelURL(_ text: String) -> Result<URLParts, ValueSyntaxError> {
        let scheme = "redis+sentinel://"
        let lowered = text.lowercased()
        if lowered.hasPrefix("rediss+sentinel://") {
            return .failure(ValueSyntaxError("invalid Redis Sentinel URL: TLS (rediss+sentinel://) is not supported with Sentinel"))
        }
        guard lowered.hasPrefix(scheme) else {
            return .failure(ValueSyntaxError("invalid Redis Sentinel URL: expected redis+sentinel://"))
        }
        let scalars = Array(text.unicodeScalars.dropFirst(scheme.count))
        if let stop = scalars.firstIndex(where: { $0 == "?" || $0 == "#" }) {
            return .failure(
                ValueSyntaxError("invalid Redis Sentinel URL: query parameters are not supported", at: scheme.count + stop)
            )
        }
        let end = scalars.firstIndex(of: "/") ?? scalars.count
        var authority = scalars[..<end]
        var authorityOffset = scheme.count
        var username: String?
        var password: String?
        if let at = authority.lastIndex(of: "@") {
            let userInfo = String(String.UnicodeScalarView(authority[..<at]))
            let pieces = userInfo.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            guard let user = String(pieces[0]).removingPercentEncoding,
                let secret = pieces.count > 1 ? String(pieces[1]).removingPercentEncoding : ""
            else {
                return .failure(
                    ValueSyntaxError("invalid Redis Sentinel URL: bad percent-encoding in user or password", at: scheme.count)
                )
            }
            username = user.isEmpty ? nil : user
            password = secret.isEmpty ? nil : secret
            authority = authority[(at + 1)...]
            authorityOffset = scheme.count + at + 1
        }
        if authority.isEmpty {
            return .failure(
                ValueSyntaxError("invalid Redis Sentinel URL: no sentinel listed (expected host:port[,host:port...])", at: authorityOffset)
            )
        }
        var sentinels: [RedisSeed] = []
        var start = authority.startIndex
        while start <= authority.endIndex {
            let stop = authority[start...].firstIndex(of: ",") ?? authority.endIndex
            let offset = scheme.count + start
            let piece = Substring(String(String.UnicodeScalarView(authority[start..<stop])))
            if piece.isEmpty {
                return .failure(ValueSyntaxError("invalid Redis Sentinel URL: missing sentinel host", at: offset))
            }
            switch HostPortSyntax.parse(piece, offset: offset, defaultPort: Self.sentinelDefaultPort, portRange: 1...65535) {
            case .failure(let problem):
                return .failure(ValueSyntaxError("invalid Redis Sentinel URL: \(problem.message)", at: problem.offset))
            case .success(let parsed):
                if parsed.host.isEmpty {
                    return .failure(ValueSyntaxError("invalid Redis Sentinel URL: missing sentinel host", at: offset))
                }
                let seed = RedisSeed(host: parsed.host, port: parsed.port)
                if sentinels.contains(seed) {
                    return .failure(ValueSyntaxError("invalid Redis Sentinel URL: sentinel \(seed) is listed twice", at: offset))
                }
                sentinels.append(seed)
            }
            start = stop + 1
        }
        // The path: /MASTER_NAME[/db].
        let path = scalars[end...].dropFirst()
        let pathOffset = scheme.count + end + 1
        let nameEnd = path.firstIndex(of: "/") ?? path.endIndex
        let name = path[path.startIndex..<nameEnd]
        if name.isEmpty {
            return .failure(
                ValueSyntaxError(
                    "invalid Redis Sentinel URL: missing the master name (redis+sentinel://host:port/MASTER_NAME)",
                    at: end == scalars.count ? scheme.count + end : pathOffset
                )
            )
        }
        if let bad = name.firstIndex(where: { !$0.isASCII || $0.value <= 0x20 || $0.value >= 0x7F || $0 == "@" || $0 == "," }) {
            return .failure(
                ValueSyntaxError("invalid Redis Sentinel URL: the master name takes printable ASCII without spaces, '@' or ','", at: scheme.count + bad)
            )
        }
        var database = 0
        // A trailing `/` after the name is allowed; anything else must be the database number.
        let digits = path[nameEnd...].dropFirst()
        if !digits.isEmpty {
            guard digits.allSatisfy({ $0.asciiDigit != nil }), digits.count <= 6,
                let number = Int(String(String.UnicodeScalarView(digits)))
            else {
                return .failure(
                    ValueSyntaxError(
                        "invalid Redis Sentinel URL: after the master name, only a database number, as in /mymaster/0",
                        at: scheme.count + nameEnd + 1
                    )
                )
            }
            database = number
        }
        let first = sentinels[0]
        return .success(
            URLParts(
                useTLS: false,
                host: first.host,
                port: first.port,
                username: username,
                password: password,
                database: database,
                deployment: .sentinel(sentinels: sentinels, masterName: String(String.UnicodeScalarView(name)))
            )
        )
    }
}
