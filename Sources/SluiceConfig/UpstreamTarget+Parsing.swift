extension UpstreamTarget {
    /// Parses an upstream URL: `http://` or `https://`, a host (IPv6 in brackets) and an optional port.
    ///
    /// The path must be empty or `/`: Sluice forwards each request with its own path and does not rewrite it,
    /// so a base path would silently be ignored. User info, query and fragment are refused for the same reason.
    static func parse(_ text: String) -> Result<UpstreamTarget, ValueSyntaxError> {
        let lowered = text.lowercased()
        let scheme: Scheme
        let rest: Substring
        if lowered.hasPrefix("http://") {
            scheme = .http
            rest = Substring(text.unicodeScalars.dropFirst(7))
        } else if lowered.hasPrefix("https://") {
            scheme = .https
            rest = Substring(text.unicodeScalars.dropFirst(8))
        } else {
            return .failure(ValueSyntaxError("invalid upstream URL '\(text)': expected http:// or https://"))
        }
        let offset = text.unicodeScalars.count - rest.unicodeScalars.count
        let scalars = Array(rest.unicodeScalars)
        let end = scalars.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? scalars.count
        let authority = Substring(String(String.UnicodeScalarView(scalars[..<end])))
        let tail = String(String.UnicodeScalarView(scalars[end...]))
        if authority.contains("@") {
            return .failure(ValueSyntaxError("invalid upstream URL: user info (user:password@) is not supported", at: offset))
        }
        if authority.isEmpty {
            return .failure(ValueSyntaxError("invalid upstream URL '\(text)': missing host", at: offset))
        }
        let defaultPort = scheme == .http ? 80 : 443
        switch HostPortSyntax.parse(authority, offset: offset, defaultPort: defaultPort, portRange: 1...65535) {
        case .failure(let problem):
            return .failure(ValueSyntaxError("invalid upstream URL '\(text)': \(problem.message)", at: problem.offset))
        case .success(let (host, port)):
            if host.isEmpty {
                return .failure(ValueSyntaxError("invalid upstream URL '\(text)': missing host", at: offset))
            }
            guard tail.isEmpty || tail == "/" else {
                return .failure(
                    ValueSyntaxError(
                        "invalid upstream URL '\(text)': a path, query or fragment is not supported "
                            + "(requests are forwarded with their own path)",
                        at: offset + end
                    )
                )
            }
            return .success(UpstreamTarget(scheme: scheme, host: host, port: port))
        }
    }
}
