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
        var key = ""
        #expect(!builder.appendEncodedKey(for: self.request, path: "/", to: &key))
    }

    @Test func collisionAttempts() {
        #expect(KeyBuilder.encode(["a|b", "c"]) != KeyBuilder.encode(["a", "b|c"]))
        #expect(KeyBuilder.encode(["1:a|", "b"]) != KeyBuilder.encode(["1:a", "|b"]))
        #expect(KeyBuilder.encode(["", "ab"]) != KeyBuilder.encode(["a", "b"]))
        #expect(KeyBuilder.encode(["ab"]) != KeyBuilder.encode(["a", "b"]))
        // A header value trying to look like an encoded oneSecond part.
        let builder = KeyBuilder(parts: [.header("x-a"), .header("x-b")])
        let forged = TestRequest(headers: [("X-A", "1:x|1:y"), ("X-B", "z")])
        let honest = TestRequest(headers: [("X-A", "x"), ("X-B", "y|1:z")])
        var k1 = ""
        var k2 = ""
        _ = builder.appendEncodedKey(for: forged, path: "/", to: &k1)
        _ = builder.appendEncodedKey(for: honest, path: "/", to: &k2)
        #expect(k1 != k2)
    }

    @Test func displayKeyRoundTrip() {
        let builder = KeyBuilder(parts: [.ip, .path])
        let values = builder.values(for: TestRequest(uri: "/login"), path: "/login")!
        let display = KeyBuilder.displayKey(values)
        #expect(display == "203.0.113.7|/login")
        var encoded = ""
        _ = builder.appendEncodedKey(for: TestRequest(uri: "/login"), path: "/login", to: &encoded)
        #expect(builder.encodedKey(fromDisplayKey: display) == encoded)
        #expect(builder.encodedKey(fromDisplayKey: "203.0.113.7") == nil)
        // Only the last value may hold "|".
        #expect(builder.encodedKey(fromDisplayKey: "1.2.3.4|/a|b") == KeyBuilder.encode(["1.2.3.4", "/a|b"]))
    }
}
