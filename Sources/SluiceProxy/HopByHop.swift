import NIOHTTP1

/// Header rewriting between the client and the upstream (SPEC §3, RFC 9110 §7.6.1).
enum HopByHop {
    /// Headers that describe one connection, never the message; removed in both directions.
    /// `transfer-encoding` is re-derived by the encoders from the body we actually send.
    static let names: [String] = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
        "proxy-authenticate", "proxy-authorization",
    ]

    /// Removes hop-by-hop headers, including every header the `Connection` field names.
    ///
    /// - Parameter keepUpgrade: keep `Upgrade` and set `Connection: upgrade` (WebSocket tunnels).
    static func strip(_ headers: inout HTTPHeaders, keepUpgrade: Bool) {
        var upgrade: [String] = []
        if keepUpgrade {
            upgrade = headers["upgrade"]
        }
        // Fast path: most requests carry none of these, and `remove` scans the whole list per name.
        var found = false
        for (name, _) in headers where Self.isHopByHop(name) {
            found = true
            break
        }
        guard found else { return }
        for token in headers[canonicalForm: "connection"] {
            let t = token.lowercased()
            if t != "close" && t != "keep-alive" && t != "upgrade" {
                headers.remove(name: String(t))
            }
        }
        for name in Self.names {
            headers.remove(name: name)
        }
        if keepUpgrade && !upgrade.isEmpty {
            for value in upgrade { headers.add(name: "Upgrade", value: value) }
            headers.add(name: "Connection", value: "upgrade")
        }
    }

    @inline(__always)
    static func isHopByHop(_ name: String) -> Bool {
        // Length filter first: the common headers (host, accept, user-agent...) fail it cheaply.
        switch name.utf8.count {
        case 2, 7, 10, 16, 17, 18, 19:
            for n in Self.names where n.utf8.count == name.utf8.count && name.lowercased() == n {
                return true
            }
            return false
        default:
            return false
        }
    }
}
