/// Splits `host:port` authorities as found in listen addresses and URLs.
///
/// IPv6 literals must be bracketed (`[::1]:8080`) because their colons would be ambiguous; the host comes back
/// without brackets. Host names are restricted to letters, digits, `-`, `.` and `_`, and a host made only of
/// digits and dots must be a valid IPv4 address (so `300.1.1.1` is an error, not a name to resolve).
enum HostPortSyntax {
    /// Parses `host`, `host:port`, `[v6]` or `[v6]:port` starting at `offset` in the original text.
    static func parse(
        _ text: Substring,
        offset: Int,
        defaultPort: Int?,
        portRange: ClosedRange<Int>
    ) -> Result<(host: String, port: Int), ValueSyntaxError> {
        let scalars = Array(text.unicodeScalars)
        var host: String
        var portText: [Unicode.Scalar]?
        var portOffset = offset
        if scalars.first == "[" {
            guard let close = scalars.firstIndex(of: "]") else {
                return .failure(ValueSyntaxError("missing ']' after the IPv6 address", at: offset))
            }
            host = String(String.UnicodeScalarView(scalars[1..<close]))
            guard host.contains(":"), IPAddress(host) != nil else {
                return .failure(ValueSyntaxError("invalid IPv6 address '\(host)'", at: offset + 1))
            }
            let rest = scalars[(close + 1)...]
            if !rest.isEmpty {
                guard rest.first == ":" else {
                    return .failure(ValueSyntaxError("expected ':' and a port after ']'", at: offset + close + 1))
                }
                portText = Array(rest.dropFirst())
                portOffset = offset + close + 2
            }
        } else {
            if let colon = scalars.lastIndex(of: ":") {
                if scalars[..<colon].contains(":") {
                    return .failure(ValueSyntaxError("IPv6 addresses must be written in brackets, e.g. [::1]:8080", at: offset))
                }
                host = String(String.UnicodeScalarView(scalars[..<colon]))
                portText = Array(scalars[(colon + 1)...])
                portOffset = offset + colon + 1
            } else {
                host = String(String.UnicodeScalarView(scalars))
            }
            if let problem = Self.hostNameProblem(host) {
                return .failure(ValueSyntaxError(problem, at: offset))
            }
            host = host.lowercased()
        }
        let port: Int
        if let portText {
            guard !portText.isEmpty, portText.allSatisfy({ $0.asciiDigit != nil }), portText.count <= 5,
                let value = Int(String(String.UnicodeScalarView(portText))), portRange.contains(value)
            else {
                let written = String(String.UnicodeScalarView(portText))
                return .failure(
                    ValueSyntaxError(
                        "invalid port '\(written)' (expected \(portRange.lowerBound)...\(portRange.upperBound))",
                        at: portOffset
                    )
                )
            }
            port = value
        } else if let defaultPort {
            port = defaultPort
        } else {
            return .failure(ValueSyntaxError("missing port (expected host:port, e.g. 127.0.0.1:8080)", at: offset + scalars.count))
        }
        return .success((host, port))
    }

    /// Why `host` is not a usable host name or IPv4 address, or `nil` if it is. Empty hosts are the caller's call.
    static func hostNameProblem(_ host: String) -> String? {
        if host.isEmpty { return nil }
        if host.unicodeScalars.allSatisfy({ $0.asciiDigit != nil || $0 == "." }) {
            return IPAddress(host) == nil ? "invalid IPv4 address '\(host)'" : nil
        }
        let allowed = host.unicodeScalars.allSatisfy {
            $0.isASCII && ($0.properties.isAlphabetic || $0.asciiDigit != nil || $0 == "-" || $0 == "." || $0 == "_")
        }
        return allowed ? nil : "invalid host name '\(host)'"
    }
}

extension ListenAddress {
    /// Parses a listener address: `127.0.0.1:8080`, `[::]:8080`, `localhost:8080`, or `:8080` / `*:8080` / `8080`
    /// for every IPv4 interface (`0.0.0.0`), as nginx reads `listen 8080`. Port 0 picks a free port.
    static func parse(_ text: String) -> Result<ListenAddress, ValueSyntaxError> {
        if text.isEmpty {
            return .failure(ValueSyntaxError("empty address (expected host:port, e.g. 127.0.0.1:8080)"))
        }
        if text.unicodeScalars.allSatisfy({ $0.asciiDigit != nil }) {
            return Self.parse(":" + text)
        }
        var authority = Substring(text)
        var offset = 0
        if text.hasPrefix("*:") {
            authority = authority.dropFirst()
            offset = 1
        }
        switch HostPortSyntax.parse(authority, offset: offset, defaultPort: nil, portRange: 0...65535) {
        case .failure(let problem):
            return .failure(problem)
        case .success(let (host, port)):
            return .success(ListenAddress(host: host.isEmpty ? "0.0.0.0" : host, port: port))
        }
    }
}

extension HostPortSyntax {
    /// The messages of ``parseList(_:offset:defaultPort:label:messages:make:)``.
    struct ListMessages<Server> {
        /// For an empty entry (`a,,b`) and an entry without a host (`:7000`).
        var empty: String
        var missingHost: String
        /// For an entry named twice: the entry as written, and the server it names.
        var listedTwice: (Substring, Server) -> String
    }

    /// `host[:port][,host[:port]...]` (a Redis Cluster's seeds, Sentinel's sentinels, memcached's servers), in the
    /// order written: no empty entry, no server twice. `offset`: where `list`'s index 0 is in the text.
    static func parseList<Server: Equatable>(
        _ list: ArraySlice<Unicode.Scalar>,
        offset: Int,
        defaultPort: Int,
        label: String,
        messages: ListMessages<Server>,
        make: (_ host: String, _ port: Int) -> Server
    ) -> Result<[Server], ValueSyntaxError> {
        var servers: [Server] = []
        var start = list.startIndex
        while start <= list.endIndex {
            let stop = list[start...].firstIndex(of: ",") ?? list.endIndex
            let position = offset + start
            let piece = Substring(String(String.UnicodeScalarView(list[start..<stop])))
            if piece.isEmpty {
                return .failure(ValueSyntaxError("\(label): \(messages.empty)", at: position))
            }
            switch Self.parse(piece, offset: position, defaultPort: defaultPort, portRange: 1...65535) {
            case .failure(let problem):
                return .failure(ValueSyntaxError("\(label): \(problem.message)", at: problem.offset))
            case .success(let parsed):
                if parsed.host.isEmpty {
                    return .failure(ValueSyntaxError("\(label): \(messages.missingHost)", at: position))
                }
                let server = make(parsed.host, parsed.port)
                if servers.contains(server) {
                    return .failure(ValueSyntaxError("\(label): \(messages.listedTwice(piece, server))", at: position))
                }
                servers.append(server)
            }
            start = stop + 1
        }
        return .success(servers)
    }
}
