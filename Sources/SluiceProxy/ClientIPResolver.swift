import NIOCore
import SluiceConfig

/// Computes the client IP of a request (SPEC §4).
///
/// The TCP peer is the client unless it is a trusted proxy; then the client is the right-most
/// address of the configured forwarding header that is not itself trusted. Walking from the
/// right matters: everything left of the first untrusted hop was written by the client and
/// can be forged.
struct ClientIPResolver: Sendable {
    var trustedProxies: [CIDR]
    var header: ClientIPHeader

    init(trustedProxies: [CIDR], header: ClientIPHeader) {
        self.trustedProxies = trustedProxies
        self.header = header
    }

    func isTrusted(_ address: IPAddress) -> Bool {
        for cidr in self.trustedProxies where cidr.contains(address) {
            return true
        }
        return false
    }

    /// - Parameters:
    ///   - peer: the TCP peer address.
    ///   - headerValues: every value of the configured header, in order of appearance.
    func resolve(peer: IPAddress, headerValues: some Sequence<String>) -> IPAddress {
        guard !self.trustedProxies.isEmpty, self.isTrusted(peer) else { return peer }
        var hops: [IPAddress] = []
        for value in headerValues {
            switch self.header {
            case .xForwardedFor, .xRealIP:
                for item in value.split(separator: ",") {
                    // An unparseable hop ends the chain: nothing left of it can be trusted.
                    guard let ip = Self.parseHop(item) else {
                        hops.removeAll(keepingCapacity: true)
                        continue
                    }
                    hops.append(ip)
                }
            case .forwarded:
                for element in value.split(separator: ",") {
                    var found: IPAddress?
                    for pair in element.split(separator: ";") {
                        let kv = pair.split(separator: "=", maxSplits: 1)
                        guard kv.count == 2,
                            kv[0].trimmingSpaces().lowercased() == "for"
                        else { continue }
                        var v = kv[1].trimmingSpaces()
                        if v.hasPrefix("\"") && v.hasSuffix("\"") && v.count >= 2 { v = v.dropFirst().dropLast() }
                        found = Self.parseHop(v)
                    }
                    if let ip = found { hops.append(ip) } else { hops.removeAll(keepingCapacity: true) }
                }
            }
        }
        for ip in hops.reversed() where !self.isTrusted(ip) {
            return ip
        }
        // Every hop is trusted (or there are none): the left-most known hop is the best guess.
        return hops.first ?? peer
    }

    /// Parses one hop: an address, optionally `[v6]:port` or `v4:port`.
    static func parseHop(_ raw: Substring) -> IPAddress? {
        let s = raw.trimmingSpaces()
        if let ip = IPAddress(s) { return ip }
        if s.hasPrefix("["), let close = s.firstIndex(of: "]") {
            return IPAddress(s[s.index(after: s.startIndex)..<close])
        }
        if let colon = s.lastIndex(of: ":"), s.firstIndex(of: ":") == colon {
            return IPAddress(s[..<colon])
        }
        return nil
    }
}

extension Substring {
    func trimmingSpaces() -> Substring {
        var s = self
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return s
    }
}

extension IPAddress {
    /// The address of a NIO socket address; IPv4-mapped IPv6 peers become IPv4 (SPEC §4).
    init?(_ socketAddress: SocketAddress?) {
        guard let socketAddress else { return nil }
        switch socketAddress {
        case .v4(let a):
            self.init(ipv4: UInt32(bigEndian: a.address.sin_addr.s_addr))
        case .v6(let a):
            var addr = a.address.sin6_addr
            let (high, low): (UInt64, UInt64) = withUnsafeBytes(of: &addr) { raw in
                var h: UInt64 = 0
                var l: UInt64 = 0
                for i in 0..<8 { h = h << 8 | UInt64(raw[i]) }
                for i in 8..<16 { l = l << 8 | UInt64(raw[i]) }
                return (h, l)
            }
            self.init(high: high, low: low)
        case .unixDomainSocket:
            return nil
        }
    }
}
