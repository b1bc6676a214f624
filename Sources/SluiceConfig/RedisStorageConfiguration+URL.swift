import Foundation

extension RedisStorageConfiguration {
    /// The parts of a `redis://[user][:password]@host[:port][/db]` URL (`rediss://` for TLS).
    ///
    /// User and password are percent-decoded, so a password holding `@`, `:` or `/` is written `%40`, `%3A`,
    /// `%2F`. The port defaults to 6379 and the database to 0; query parameters are refused.
    struct URLParts: Sendable {
        var useTLS: Bool
        var host: String
        var port: Int
        var username: String?
        var password: String?
        var database: Int
        var deployment: RedisDeployment = .single
    }

    static func parseURL(_ text: String) -> Result<URLParts, ValueSyntaxError> {
        let lowered = text.lowercased()
        if lowered.hasPrefix("redis+sentinel://") || lowered.hasPrefix("rediss+sentinel://") {
            return Self.parseSentinelURL(text)
        }
        let useTLS: Bool
        if lowered.hasPrefix("redis://") {
            useTLS = false
        } else if lowered.hasPrefix("rediss://") {
            useTLS = true
        } else {
            return .failure(ValueSyntaxError("invalid Redis URL: expected redis://, rediss:// or redis+sentinel://"))
        }
        let schemeLength = useTLS ? 9 : 8
        let scalars = Array(text.unicodeScalars.dropFirst(schemeLength))
        let end = scalars.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? scalars.count
        let userInfo: UserInfo
        switch Self.splitUserInfo(scalars[..<end], offset: schemeLength, label: "invalid Redis URL") {
        case .failure(let error): return .failure(error)
        case .success(let split): userInfo = split
        }
        let (username, password, authority, authorityOffset) = (userInfo.username, userInfo.password, userInfo.rest, userInfo.restOffset)
        let hostPort = Substring(String(String.UnicodeScalarView(authority)))
        if hostPort.isEmpty {
            return .failure(ValueSyntaxError("invalid Redis URL: missing host", at: authorityOffset))
        }
        let host: String
        let port: Int
        switch HostPortSyntax.parse(hostPort, offset: authorityOffset, defaultPort: 6379, portRange: 1...65535) {
        case .failure(let problem):
            return .failure(ValueSyntaxError("invalid Redis URL: \(problem.message)", at: problem.offset))
        case .success(let parsed):
            (host, port) = parsed
        }
        if host.isEmpty {
            return .failure(ValueSyntaxError("invalid Redis URL: missing host", at: authorityOffset))
        }
        var database = 0
        let tail = scalars[end...]
        if let first = tail.first {
            guard first == "/" else {
                return .failure(ValueSyntaxError("invalid Redis URL: query parameters are not supported", at: schemeLength + end))
            }
            let digits = tail.dropFirst()
            if !digits.isEmpty {
                guard digits.allSatisfy({ $0.asciiDigit != nil }), digits.count <= 6,
                    let number = Int(String(String.UnicodeScalarView(digits)))
                else {
                    return .failure(
                        ValueSyntaxError("invalid Redis URL: the path must be a database number, as in /0", at: schemeLength + end + 1)
                    )
                }
                database = number
            }
        }
        return .success(URLParts(useTLS: useTLS, host: host, port: port, username: username, password: password, database: database))
    }

    /// `[user][:password@]` at the start of a URL's authority (the URL's scalars after the scheme, up to the path),
    /// percent-decoded; an empty user or password is none. The rest of the authority and its offset in the URL follow.
    struct UserInfo {
        var username: String?
        var password: String?
        var rest: ArraySlice<Unicode.Scalar>
        var restOffset: Int
    }

    static func splitUserInfo(_ authority: ArraySlice<Unicode.Scalar>, offset: Int, label: String) -> Result<UserInfo, ValueSyntaxError> {
        guard let at = authority.lastIndex(of: "@") else {
            return .success(UserInfo(rest: authority, restOffset: offset + authority.startIndex))
        }
        let userInfo = String(String.UnicodeScalarView(authority[..<at]))
        let pieces = userInfo.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        guard let user = String(pieces[0]).removingPercentEncoding,
            let secret = pieces.count > 1 ? String(pieces[1]).removingPercentEncoding : ""
        else {
            return .failure(ValueSyntaxError("\(label): bad percent-encoding in user or password", at: offset))
        }
        return .success(
            UserInfo(
                username: user.isEmpty ? nil : user,
                password: secret.isEmpty ? nil : secret,
                rest: authority[(at + 1)...],
                restOffset: offset + at + 1
            )
        )
    }
}
