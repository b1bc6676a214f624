import SluiceHTTP1

/// Header rewriting between the client and the upstream (SPEC §3, RFC 9110 §7.6.1).
enum HopByHop {
    /// Headers that describe one connection, never the message; removed in both directions.
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
}

/// ``HopByHop`` on raw heads: the same rules for the two head writers (``UpstreamRequestHeadWriter``,
/// ``ClientResponseHeadWriter``), read from the parser's offsets.
extension HopByHop {
    /// The field names a head's `Connection` fields list, as ranges of `bytes`; `close`, `keep-alive` and `upgrade`
    /// are about the connection, not names of fields to drop. No allocation when there are none.
    static func connectionOptions(_ fields: [ParsedRequestHead.Field], in bytes: UnsafeRawBufferPointer) -> [Range<Int>] {
        var options: [Range<Int>] = []
        for field in fields where HTTPBytes.equalsLowercased(bytes, field.name, "connection") {
            HTTPBytes.forEachListElement(bytes, field.value) { token in
                if !(HTTPBytes.equalsLowercased(bytes, token, "close") || HTTPBytes.equalsLowercased(bytes, token, "keep-alive")
                    || HTTPBytes.equalsLowercased(bytes, token, "upgrade"))
                {
                    options.append(token)
                }
            }
        }
        return options
    }

    /// Whether the field named `name` is dropped: hop-by-hop (``names``), or named by `Connection` and not one of
    /// the ``protectedNames``.
    ///
    /// - Parameters:
    ///   - dropExpect: requests: Sluice answers `Expect` itself.
    ///   - keepTransferEncoding: a chunked response passes through to an HTTP/1.1 client with its own field.
    @inline(__always)
    static func isDropped(
        _ bytes: UnsafeRawBufferPointer,
        _ name: Range<Int>,
        connectionOptions: [Range<Int>],
        dropExpect: Bool,
        keepTransferEncoding: Bool
    ) -> Bool {
        switch name.count {
        case 2: if HTTPBytes.equalsLowercased(bytes, name, "te") { return true }
        case 6: if dropExpect && HTTPBytes.equalsLowercased(bytes, name, "expect") { return true }
        case 7: if HTTPBytes.equalsLowercased(bytes, name, "upgrade") || HTTPBytes.equalsLowercased(bytes, name, "trailer") { return true }
        case 10: if HTTPBytes.equalsLowercased(bytes, name, "connection") || HTTPBytes.equalsLowercased(bytes, name, "keep-alive") { return true }
        case 16: if HTTPBytes.equalsLowercased(bytes, name, "proxy-connection") { return true }
        case 17: if HTTPBytes.equalsLowercased(bytes, name, "transfer-encoding") { return !keepTransferEncoding }
        case 18: if HTTPBytes.equalsLowercased(bytes, name, "proxy-authenticate") { return true }
        case 19: if HTTPBytes.equalsLowercased(bytes, name, "proxy-authorization") { return true }
        default: break
        }
        for option in connectionOptions where option.count == name.count {
            if HTTPBytes.equalsIgnoringCase(bytes, option, name) && !Self.isProtected(bytes, name) { return true }
        }
        return false
    }

    /// ``protectedNames``: a `Connection` option never removes these.
    static func isProtected(_ bytes: UnsafeRawBufferPointer, _ name: Range<Int>) -> Bool {
        HTTPBytes.equalsLowercased(bytes, name, "content-length") || HTTPBytes.equalsLowercased(bytes, name, "transfer-encoding")
            || HTTPBytes.equalsLowercased(bytes, name, "host") || HTTPBytes.equalsLowercased(bytes, name, "x-forwarded-for")
            || HTTPBytes.equalsLowercased(bytes, name, "x-forwarded-proto") || HTTPBytes.equalsLowercased(bytes, name, "x-forwarded-host")
    }
}
