import SluiceConfig

/// The DNS-rebinding defence of the admin listener without `admin_token` (SPEC §3, "Hostile clients").
///
/// A web page can make a browser send requests to `127.0.0.1:9090` by pointing a name it controls at that address
/// (DNS rebinding); the browser then sends that name as `Host`. Answering only `localhost` and IP literals refuses
/// every such request, since a rebinding attack needs a name, while every way of reaching the listener on purpose
/// (`curl localhost:9090`, a probe at the pod's IP, Prometheus at `10.0.0.5:9090`) keeps working.
enum AdminHostCheck {
    /// Whether a `Host` value names `localhost` (any case, one optional trailing dot) or an IP literal (IPv4
    /// dotted quad, or IPv6 in brackets), with an optional port.
    static func isLocalOrIPLiteral(_ host: String) -> Bool {
        var value = Substring(host)
        while value.first == " " || value.first == "\t" { value = value.dropFirst() }
        while value.last == " " || value.last == "\t" { value = value.dropLast() }
        let name: Substring
        let rest: Substring
        if value.first == "[" {
            guard let close = value.firstIndex(of: "]") else { return false }
            let inner = value[value.index(after: value.startIndex)..<close]
            guard inner.contains(":"), IPAddress(inner) != nil else { return false }
            return Self.isPortSuffix(value[value.index(after: close)...])
        }
        if let colon = value.firstIndex(of: ":") {
            name = value[..<colon]
            rest = value[colon...]
        } else {
            name = value
            rest = ""
        }
        guard Self.isPortSuffix(rest), !name.isEmpty else { return false }
        var lowered = name.lowercased()[...]
        if lowered.last == "." { lowered = lowered.dropLast() }
        if lowered == "localhost" { return true }
        // A dotted quad only (IPAddress refuses anything else without a colon).
        return IPAddress(name) != nil
    }

    /// Empty, or `:` and up to five digits (RFC 9110 §4.2.3 allows an empty port).
    private static func isPortSuffix(_ text: Substring) -> Bool {
        guard let first = text.first else { return true }
        let digits = text.dropFirst()
        return first == ":" && digits.count <= 5 && digits.allSatisfy { $0.isASCII && $0.isNumber }
    }
}
