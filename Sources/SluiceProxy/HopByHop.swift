import NIOHTTP1

/// Header rewriting between the client and the upstream (SPEC §3, RFC 9110 §7.6.1).
enum HopByHop {
    /// Headers that describe one connection, never the message; removed in both directions.
    /// `transfer-encoding` is re-derived by the encoders from the body we actually send.
    static let names: [String] = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
        "proxy-authenticate", "proxy-authorization",
    ]

    /// Headers a `Connection` option may never remove (SPEC §3 "Hostile clients"): the message's framing, its
    /// `Host`, and the fields Sluice sets itself. `Connection: Content-Length` once made the body of a request
    /// travel unframed to the upstream, which read it as further requests (smuggled past every limit).
    /// nginx ignores the option list altogether; these names are ignored, the others are honoured (RFC 9110 §7.6.1).
    static let protectedNames: [String] = [
        "content-length", "transfer-encoding", "host", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host",
    ]

    /// Removes hop-by-hop headers, including every header the `Connection` field names except the
    /// ``protectedNames``.
    ///
    /// - Parameter keepUpgrade: keep `Upgrade` and set `Connection: upgrade` (WebSocket tunnels).
    static func strip(_ headers: inout HTTPHeaders, keepUpgrade: Bool) {
        // One scan finds which hop-by-hop names are present; most messages carry none, and the
        // usual upstream response only `Connection: keep-alive`, so `remove` (a scan per name)
        // runs only for names that are there.
        var present: UInt16 = 0
        for (name, _) in headers {
            if let index = Self.hopByHopIndex(name) { present |= 1 << index }
        }
        guard present != 0 else { return }
        var upgrade: [String] = []
        if keepUpgrade {
            upgrade = headers["upgrade"]
        }
        if present & 1 != 0 {  // connection
            for token in headers[canonicalForm: "connection"] {
                let t = token.lowercased()
                if t != "close" && t != "keep-alive" && t != "upgrade" && Self.hopByHopIndex(t) == nil
                    && !Self.isProtected(t)
                {
                    headers.remove(name: t)
                }
            }
        }
        for (index, name) in Self.names.enumerated() where present & (1 << index) != 0 {
            headers.remove(name: name)
        }
        if keepUpgrade && !upgrade.isEmpty {
            for value in upgrade { headers.add(name: "Upgrade", value: value) }
            headers.add(name: "Connection", value: "upgrade")
        }
    }

    /// Whether a `Connection` option naming `lowercasedName` must be ignored (``protectedNames``).
    static func isProtected(_ lowercasedName: String) -> Bool {
        Self.protectedNames.contains(lowercasedName)
    }

    @inline(__always)
    static func isHopByHop(_ name: String) -> Bool {
        self.hopByHopIndex(name) != nil
    }

    /// The index of `name` in ``names``, compared case-insensitively without allocating.
    @inline(__always)
    static func hopByHopIndex(_ name: String) -> Int? {
        // Length filter first: the common headers (host, accept, user-agent...) fail it cheaply.
        switch name.utf8.count {
        case 2, 7, 10, 16, 17, 18, 19:
            for (index, n) in Self.names.enumerated() where name.equalsLowercasedASCII(n) {
                return index
            }
            return nil
        default:
            return nil
        }
    }
}
