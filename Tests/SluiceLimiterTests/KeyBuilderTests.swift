import SluiceConfig
import Testing
@testable import SluiceLimiter

@Suite struct KeyBuilderTests {
    let request = TestRequest(
        method: "POST",
        uri: "//login/?api_key=abc%20d&x=1&empty=&plus=a+b",
        host: "API.Example.com:8443",
        clientIP: IPAddress("203.0.113.7")!,
        headers: [("X-Api-Key", "secret"), ("Cookie", "session=s1; theme=dark; blank=")]
    )

    func value(_ part: KeyPart, _ request: TestRequest? = nil) -> String? {
        let r = request ?? self.request
        return KeyBuilder.value(of: part, request: r, path: PathNormalizer.normalize(r.uri))
    }

    @Test func everyPart() {
        #expect(self.value(.ip) == "203.0.113.7")
        #expect(self.value(.ipPrefix(24)) == "203.0.113.0/24")
        #expect(self.value(.header("x-api-key")) == "secret")
        #expect(self.value(.query("api_key")) == "abc d")
        #expect(self.value(.query("plus")) == "a b")
        #expect(self.value(.cookie("theme")) == "dark")
        #expect(self.value(.cookie("session")) == "s1")
        #expect(self.value(.path) == "/login/")
        #expect(self.value(.method) == "POST")
        #expect(self.value(.host) == "api.example.com")
        #expect(self.value(.const("global")) == "global")
    }

    /// Values without surrounding whitespace (RFC 9110 §5.5); the host without one trailing dot.
    @Test func valuesAreTrimmedAndHostsNormalised() {
        let padded = TestRequest(
            uri: "/?k=%20A%09&plain=A+",
            host: "\tAPI.example.com.:8443 ",
            headers: [("X-Api-Key", " secret\t"), ("Cookie", " sid = s1 ;x=1")]
        )
        #expect(self.value(.header("x-api-key"), padded) == "secret")
        #expect(self.value(.query("k"), padded) == "A")
        #expect(self.value(.query("plain"), padded) == "A")
        #expect(self.value(.cookie("sid"), padded) == "s1")
        #expect(self.value(.host, padded) == "api.example.com")
        // Only whitespace is absent, like an empty value.
        let blank = TestRequest(uri: "/?k=%20", host: ".", headers: [("X-Api-Key", " \t ")])
        #expect(self.value(.header("x-api-key"), blank) == nil)
        #expect(self.value(.query("k"), blank) == nil)
        #expect(self.value(.host, blank) == nil)
        #expect(self.value(.host, TestRequest(host: ":8080")) == nil)
        // The digest agrees with the values.
        let builder = KeyBuilder(parts: [.header("x-api-key"), .host, .query("k"), .cookie("sid")])
        let plain = TestRequest(uri: "/?k=A", host: "api.example.com", headers: [("X-Api-Key", "secret"), ("Cookie", "sid=s1")])
        #expect(self.digest(builder, padded) == self.digest(builder, plain))
        #expect(self.digest(builder, blank) == nil)
        #expect(self.value(.host, TestRequest(host: "[::1]:80")) == "[::1]")
    }

    /// `cookie:NAME` reads every `Cookie` field in order; the first occurrence wins, even when empty.
    @Test func cookieInAnyCookieField() {
        func sid(_ fields: [String]) -> String? {
            self.value(.cookie("sid"), TestRequest(headers: fields.map { ("Cookie", $0) }))
        }
        #expect(sid(["a=1", "sid=s2"]) == "s2")
        #expect(sid(["a=1", "b=2; sid=s3", "sid=s4"]) == "s3")
        #expect(sid(["sid=s1", "sid=s2"]) == "s1")
        #expect(sid(["sid=", "sid=s2"]) == nil)
        #expect(sid(["a=1", "b=2"]) == nil)
        #expect(sid([]) == nil)
    }

    @Test func ipv6Prefix() {
        let r = TestRequest(clientIP: IPAddress("2001:db8:1:2:3:4:5:6")!)
        #expect(self.value(.ip, r) == "2001:db8:1:2:3:4:5:6")
        #expect(self.value(.ipPrefix(64), r) == "2001:db8:1:2::/64")
        let mapped = TestRequest(clientIP: IPAddress("::ffff:10.1.2.3")!)
        #expect(self.value(.ip, mapped) == "10.1.2.3")
    }

    @Test func missingParts() {
        #expect(self.value(.header("x-absent")) == nil)
        #expect(self.value(.query("absent")) == nil)
        #expect(self.value(.query("empty")) == nil)
        #expect(self.value(.cookie("absent")) == nil)
        #expect(self.value(.cookie("blank")) == nil)
        #expect(self.value(.cookie("x"), TestRequest()) == nil)
        #expect(self.value(.host, TestRequest(host: nil)) == nil)
        #expect(self.value(.query("x"), TestRequest(uri: "/p")) == nil)
        let builder = KeyBuilder(parts: [.ip, .header("x-absent")])
        #expect(builder.values(for: self.request, path: "/") == nil)
        var hasher = KeyHasher(seed: testSeed)
        #expect(!builder.combineKey(for: self.request, path: "/", into: &hasher))
    }

    func digest(_ builder: KeyBuilder, _ request: TestRequest, path: Substring = "/") -> StorageKey? {
        var hasher = KeyHasher(seed: testSeed)
        return builder.combineKey(for: request, path: path, into: &hasher) ? hasher.finalize() : nil
    }

    func digest(_ builder: KeyBuilder, display: String) -> StorageKey? {
        var hasher = KeyHasher(seed: testSeed)
        return builder.combineKey(fromDisplayKey: display, into: &hasher) ? hasher.finalize() : nil
    }

    @Test func collisionAttempts() {
        let builder = KeyBuilder(parts: [.header("x-a"), .header("x-b")])
        func key(_ a: String, _ b: String) -> StorageKey? {
            self.digest(builder, TestRequest(headers: [("X-A", a), ("X-B", b)]))
        }
        #expect(key("a|b", "c") != key("a", "b|c"))
        #expect(key("1:a|", "b") != key("1:a", "|b"))
        #expect(key("ab", "c") != key("a", "bc"))
        // A header value trying to look like a length-prefixed pair.
        #expect(key("\u{1}\0\0\0\0\0\0\0x", "y") != key("x", "\u{1}\0\0\0\0\0\0\0y"))
        #expect(key("x", "y") == key("x", "y"))
        // Another seed names every key differently (a private store's digests cannot be predicted).
        var other = KeyHasher(seed: StorageKey(high: 1, low: 2))
        _ = builder.combineKey(for: TestRequest(headers: [("X-A", "x"), ("X-B", "y")]), path: "/", into: &other)
        #expect(other.finalize() != key("x", "y"))
    }

    @Test func displayKeyGivesTheRequestsDigest() {
        let builder = KeyBuilder(parts: [.ip, .path])
        let values = builder.values(for: TestRequest(uri: "/login"), path: "/login")!
        let display = KeyBuilder.displayKey(values)
        #expect(display == "203.0.113.7|/login")
        #expect(self.digest(builder, display: display) == self.digest(builder, TestRequest(uri: "/login"), path: "/login"))
        #expect(self.digest(builder, display: "203.0.113.7") == nil)
        #expect(self.digest(builder, display: "not-an-ip|/login") == nil)
        // Only the last value may hold "|".
        #expect(self.digest(builder, display: "1.2.3.4|/a|b") == self.digest(builder, TestRequest(clientIP: IPAddress("1.2.3.4")!), path: "/a|b"))
        // ip/N by its network, with or without "/N"; host in any case and with a port.
        let prefix = KeyBuilder(parts: [.ipPrefix(64), .host])
        let client = TestRequest(host: "API.example.com:8443", clientIP: IPAddress("2001:db8:1:2:aaaa::1")!)
        let fromRequest = self.digest(prefix, client)
        #expect(fromRequest != nil)
        #expect(self.digest(prefix, display: "2001:db8:1:2::/64|api.example.com") == fromRequest)
        #expect(self.digest(prefix, display: "2001:db8:1:2:ffff::9|API.EXAMPLE.COM") == fromRequest)
        #expect(self.digest(prefix, display: "2001:db8:1:3::/64|api.example.com") != fromRequest)
        // A host's trailing dot, and whitespace around host and header values, as for a request.
        #expect(self.digest(prefix, display: "2001:db8:1:2::/64|api.example.com.") == fromRequest)
        #expect(self.digest(prefix, display: "2001:db8:1:2::/64| api.example.com.:8443") == fromRequest)
        #expect(self.digest(prefix, display: "2001:db8:1:2::/64|") == nil)
        let header = KeyBuilder(parts: [.header("x-api-key")])
        #expect(self.digest(header, display: " secret ") == self.digest(header, TestRequest(headers: [("X-Api-Key", "secret")])))
    }
}
