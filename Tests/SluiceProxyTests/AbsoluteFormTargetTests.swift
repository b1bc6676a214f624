import Testing
@testable import SluiceProxy

@Suite struct AbsoluteFormTargetTests {
    @Test(arguments: ["/", "/login?x=1", "//a", "*"])
    func originAndAsteriskFormAreLeftAlone(target: String) {
        #expect(AbsoluteFormTarget.parse(target) == .notAbsolute)
    }

    @Test(arguments: [
        ("http://api.example.com/p?q=1", "api.example.com", "/p?q=1"),
        ("HTTPS://API.example.com:8443/p", "API.example.com:8443", "/p"),
        ("http://api.example.com", "api.example.com", "/"),
        ("http://api.example.com?q", "api.example.com", "/?q"),
        ("http://api.example.com.//login", "api.example.com.", "//login"),
        ("http://[::1]:8080/x", "[::1]:8080", "/x"),
        ("http://192.0.2.1/x", "192.0.2.1", "/x"),
        ("http://h/a:b@c", "h", "/a:b@c"),
    ])
    func absoluteForm(target: String, authority: String, originForm: String) {
        #expect(AbsoluteFormTarget.parse(target) == .absolute(authority: authority[...], originForm: originForm))
    }

    @Test(arguments: [
        "", "ftp://h/p", "httpx://h/p", "http:/h/p", "http:h", "h/p", "http://user@h/p", "http://u:p@h/p",
        "http:///p", "http://:80/p", "http://h:/p", "http://h:123456/p", "http://h:8x/p", "http://a,b/p",
        "http://[::1/p", "http://[]/p", "http://[::1]x/p", "http://h h/p",
    ])
    func invalid(target: String) {
        #expect(AbsoluteFormTarget.parse(target) == .invalid)
    }
}
