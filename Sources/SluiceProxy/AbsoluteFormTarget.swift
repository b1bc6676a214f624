/// Reads an absolute-form request target (RFC 9112 §3.2.2), `GET http://api.example.com/p?q HTTP/1.1`.
///
/// A server receiving one must take the host from the target and ignore `Host`. Sluice turns such a request into
/// its origin form (`/p?q`) with `Host` set to the target's authority as soon as its head arrives, so that the
/// limiter (`match.host`, the `host` key part, paths, `query:`) and the upstream read one and the same request.
///
/// Only `http` and `https` (in any case) are accepted, with a non-empty host, an optional numeric port and no
/// userinfo; anything else is a malformed request (400). Origin-form (`/…`) and asterisk-form (`*`) targets are
/// left alone.
enum AbsoluteFormTarget: Equatable {
    /// Origin form or `*`: nothing to change.
    case notAbsolute
    /// The authority (`api.example.com:8080`, for `Host`) and the origin form (`/p?q`; `/` when the target has
    /// no path).
    case absolute(authority: Substring, originForm: String)
    /// Not a request target Sluice forwards: 400.
    case invalid

    static func parse(_ target: String) -> AbsoluteFormTarget {
        let utf8 = target.utf8
        guard let first = utf8.first else { return .invalid }
        if first == UInt8(ascii: "/") || target == "*" { return .notAbsolute }

        // scheme "://"
        guard let colon = utf8.firstIndex(of: UInt8(ascii: ":")) else { return .invalid }
        let scheme = utf8[..<colon]
        guard Self.equalsIgnoringCase(scheme, "http") || Self.equalsIgnoringCase(scheme, "https") else {
            return .invalid
        }
        let afterColon = utf8[utf8.index(after: colon)...]
        guard afterColon.starts(with: "//".utf8) else { return .invalid }
        let authorityStart = utf8.index(colon, offsetBy: 3)

        // authority: up to the path, query or fragment.
        var end = authorityStart
        while end < utf8.endIndex, utf8[end] != UInt8(ascii: "/"), utf8[end] != UInt8(ascii: "?"),
            utf8[end] != UInt8(ascii: "#")
        {
            end = utf8.index(after: end)
        }
        let authority = target[authorityStart..<end]
        guard Self.isValidAuthority(authority) else { return .invalid }

        let rest = target[end...]
        let originForm = rest.utf8.first == UInt8(ascii: "/") ? String(rest) : "/" + rest
        return .absolute(authority: authority, originForm: originForm)
    }

    /// `host [":" port]`: a registered name or IPv4 address of RFC 3986 characters (no `,`, which would make a
    /// list of hosts, and no `@`: no userinfo), or an IPv6 literal in brackets; the port, if given, 1–5 digits.
    static func isValidAuthority(_ authority: Substring) -> Bool {
        let utf8 = authority.utf8
        var hostEnd = utf8.startIndex
        if utf8.first == UInt8(ascii: "[") {
            guard let close = utf8.firstIndex(of: UInt8(ascii: "]")) else { return false }
            let literal = utf8[utf8.index(after: utf8.startIndex)..<close]
            guard !literal.isEmpty, literal.allSatisfy(Self.isIPLiteralByte) else { return false }
            hostEnd = utf8.index(after: close)
        } else {
            while hostEnd < utf8.endIndex, utf8[hostEnd] != UInt8(ascii: ":") {
                guard Self.isRegNameByte(utf8[hostEnd]) else { return false }
                hostEnd = utf8.index(after: hostEnd)
            }
            guard hostEnd > utf8.startIndex else { return false }
        }
        guard hostEnd < utf8.endIndex else { return true }
        guard utf8[hostEnd] == UInt8(ascii: ":") else { return false }
        let port = utf8[utf8.index(after: hostEnd)...]
        return (1...5).contains(port.count) && port.allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
    }

    /// RFC 3986 `reg-name`: unreserved, `%`-escapes, sub-delims but `,`.
    private static func isRegNameByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"), UInt8(ascii: "%"),
            UInt8(ascii: "!"), UInt8(ascii: "$"), UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "("),
            UInt8(ascii: ")"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: ";"), UInt8(ascii: "="):
            return true
        default:
            return false
        }
    }

    /// Inside `[...]`: hex digits, `:` and `.` (IPv6, with an embedded IPv4 tail).
    private static func isIPLiteralByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "f"),
            UInt8(ascii: "A")...UInt8(ascii: "F"), UInt8(ascii: ":"), UInt8(ascii: "."):
            return true
        default:
            return false
        }
    }

    private static func equalsIgnoringCase(_ bytes: Substring.UTF8View, _ lowercased: StaticString) -> Bool {
        guard bytes.count == lowercased.utf8CodeUnitCount else { return false }
        var i = 0
        for byte in bytes {
            let folded = byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
            guard folded == lowercased.utf8Start[i] else { return false }
            i += 1
        }
        return true
    }
}
