import SluiceConfig
import Testing

@testable import SluiceProxy

/// SPEC §4: the TCP peer, unless trusted; then the right-most untrusted hop of the header.
@Suite("ClientIPResolver")
struct ClientIPResolverTests {
    private func ip(_ s: String) -> IPAddress { IPAddress(s)! }

    private func resolver(_ trusted: [String], _ header: ClientIPHeader = .xForwardedFor) -> ClientIPResolver {
        ClientIPResolver(trustedProxies: trusted.map { CIDR($0)! }, header: header)
    }

    @Test func untrustedPeerIgnoresHeader() {
        let r = self.resolver(["10.0.0.0/8"])
        #expect(r.resolve(peer: self.ip("203.0.113.9"), headerValues: ["1.2.3.4"]) == self.ip("203.0.113.9"))
    }

    @Test func noTrustedProxiesIgnoresHeader() {
        let r = self.resolver([])
        #expect(r.resolve(peer: self.ip("10.0.0.1"), headerValues: ["1.2.3.4"]) == self.ip("10.0.0.1"))
    }

    @Test func trustedPeerUsesRightMostUntrustedHop() {
        let r = self.resolver(["10.0.0.0/8", "192.168.0.0/16"])
        // The client forged 6.6.6.6; 1.2.3.4 is what our own proxies saw.
        #expect(
            r.resolve(peer: self.ip("10.0.0.1"), headerValues: ["6.6.6.6, 1.2.3.4, 192.168.1.1", "10.1.1.1"])
                == self.ip("1.2.3.4")
        )
    }

    @Test func everyHopTrustedGivesLeftMost() {
        let r = self.resolver(["10.0.0.0/8"])
        #expect(r.resolve(peer: self.ip("10.0.0.1"), headerValues: ["10.0.0.7, 10.0.0.8"]) == self.ip("10.0.0.7"))
    }

    @Test func trustedPeerWithoutHeaderIsThePeer() {
        let r = self.resolver(["10.0.0.0/8"])
        #expect(r.resolve(peer: self.ip("10.0.0.1"), headerValues: []) == self.ip("10.0.0.1"))
    }

    @Test func garbageHopEndsTheChain() {
        let r = self.resolver(["10.0.0.0/8"])
        // Nothing left of an unparseable hop is believed; as with nginx's recursive realip, the
        // walk stops at the last address it could read.
        #expect(r.resolve(peer: self.ip("10.0.0.1"), headerValues: ["6.6.6.6, garbage, 10.0.0.2"]) == self.ip("10.0.0.2"))
        #expect(r.resolve(peer: self.ip("10.0.0.1"), headerValues: ["garbage, 5.5.5.5"]) == self.ip("5.5.5.5"))
        #expect(r.resolve(peer: self.ip("10.0.0.1"), headerValues: ["1.2.3.4, 999.1.1.1"]) == self.ip("10.0.0.1"))
        #expect(r.resolve(peer: self.ip("10.0.0.1"), headerValues: ["01.2.3.4"]) == self.ip("10.0.0.1"))
    }

    @Test func hopsWithPortsAndSpaces() {
        let r = self.resolver(["10.0.0.0/8"])
        #expect(r.resolve(peer: self.ip("10.0.0.1"), headerValues: [" 1.2.3.4:5678 ,10.0.0.2"]) == self.ip("1.2.3.4"))
        #expect(r.resolve(peer: self.ip("10.0.0.1"), headerValues: ["[2001:db8::1]:443"]) == self.ip("2001:db8::1"))
        #expect(r.resolve(peer: self.ip("10.0.0.1"), headerValues: ["2001:db8::2"]) == self.ip("2001:db8::2"))
    }

    @Test func xRealIP() {
        let r = self.resolver(["10.0.0.0/8"], .xRealIP)
        #expect(r.resolve(peer: self.ip("10.0.0.1"), headerValues: ["198.51.100.4"]) == self.ip("198.51.100.4"))
        #expect(r.resolve(peer: self.ip("8.8.8.8"), headerValues: ["198.51.100.4"]) == self.ip("8.8.8.8"))
    }

    @Test func forwardedHeader() {
        let r = self.resolver(["10.0.0.0/8"], .forwarded)
        #expect(
            r.resolve(peer: self.ip("10.0.0.1"), headerValues: ["for=192.0.2.60;proto=http;by=203.0.113.43"])
                == self.ip("192.0.2.60")
        )
        #expect(
            r.resolve(peer: self.ip("10.0.0.1"), headerValues: ["For=\"[2001:db8:cafe::17]:4711\""])
                == self.ip("2001:db8:cafe::17")
        )
        #expect(
            r.resolve(peer: self.ip("10.0.0.1"), headerValues: ["for=6.6.6.6, for=198.51.100.17;proto=https, for=10.0.0.3"])
                == self.ip("198.51.100.17")
        )
        #expect(r.resolve(peer: self.ip("10.0.0.1"), headerValues: ["for=\"192.0.2.43:47011\""]) == self.ip("192.0.2.43"))
        // Obfuscated identifiers are not addresses: the chain ends there.
        #expect(r.resolve(peer: self.ip("10.0.0.1"), headerValues: ["for=1.2.3.4, for=_hidden"]) == self.ip("10.0.0.1"))
        #expect(r.resolve(peer: self.ip("10.0.0.1"), headerValues: ["for=unknown, for=5.6.7.8"]) == self.ip("5.6.7.8"))
    }

    @Test func ipv4MappedIPv6CountsAsIPv4() {
        let r = self.resolver(["10.0.0.0/8"])
        // A mapped peer is trusted by an IPv4 CIDR...
        #expect(r.resolve(peer: self.ip("::ffff:10.0.0.1"), headerValues: ["1.2.3.4"]) == self.ip("1.2.3.4"))
        // ...and a mapped hop equals its IPv4 form.
        let resolved = r.resolve(peer: self.ip("10.0.0.1"), headerValues: ["::ffff:1.2.3.4"])
        #expect(resolved == self.ip("1.2.3.4"))
        #expect(resolved.description == "1.2.3.4")
        #expect(r.resolve(peer: self.ip("10.0.0.1"), headerValues: ["::ffff:10.9.9.9, 7.7.7.7"]) == self.ip("7.7.7.7"))
    }

    @Test func ipv6TrustedProxies() {
        let r = self.resolver(["2001:db8::/32"])
        #expect(r.resolve(peer: self.ip("2001:db8::5"), headerValues: ["3.3.3.3, 2001:db8::9"]) == self.ip("3.3.3.3"))
        #expect(r.resolve(peer: self.ip("2001:db9::5"), headerValues: ["3.3.3.3"]) == self.ip("2001:db9::5"))
    }
}
