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
        let label = "invalid Redis Sentinel URL"
        let userInfo: UserInfo
        switch Self.splitUserInfo(scalars[..<end], offset: scheme.count, label: label) {
        case .failure(let error): return .failure(error)
        case .success(let split): userInfo = split
        }
        let (username, password) = (userInfo.username, userInfo.password)
        if userInfo.rest.isEmpty {
            return .failure(
                ValueSyntaxError("\(label): no sentinel listed (expected host:port[,host:port...])", at: userInfo.restOffset)
            )
        }
        let sentinels: [RedisSeed]
        let messages = HostPortSyntax.ListMessages<RedisSeed>(
            empty: "missing sentinel host",
            missingHost: "missing sentinel host",
            listedTwice: { _, sentinel in "sentinel \(sentinel) is listed twice" }
        )
        switch HostPortSyntax.parseList(
            userInfo.rest,
            offset: scheme.count,
            defaultPort: Self.sentinelDefaultPort,
            label: label,
            messages: messages,
            make: RedisSeed.init
        ) {
        case .failure(let error): return .failure(error)
        case .success(let parsed): sentinels = parsed
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
