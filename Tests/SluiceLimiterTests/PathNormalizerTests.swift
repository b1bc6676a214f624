import Testing
@testable import SluiceLimiter

@Suite struct PathNormalizerTests {
    @Test(arguments: [
        ("/login", "/login"),
        ("//login", "/login"),
        ("/./login", "/login"),
        ("/%6Cogin", "/login"),
        ("/%6cogin", "/login"),
        ("/login?x=1", "/login"),
        ("/login#frag", "/login"),
        ("/a/b/../login", "/a/login"),
        ("/../../login", "/login"),
        ("/..", "/"),
        ("/%2e%2e/admin", "/admin"),
        ("/a/%2E/b", "/a/b"),
        ("/a%2Fb", "/a%2Fb"),
        ("/a%2fb", "/a%2Fb"),
        ("/a%20b", "/a%20b"),
        ("/%7euser", "/~user"),
        ("/%zz", "/%zz"),
        ("/a%4", "/a%4"),
        ("/a/b/", "/a/b/"),
        ("/a/b/..", "/a/"),
        ("/a/.", "/a/"),
        ("/a//b///c", "/a/b/c"),
        ("/", "/"),
        ("", "/"),
        ("/?q", "/"),
        ("http://example.com/login?x=1", "/login"),
        ("http://example.com", "/"),
        ("https://example.com:8443//x/../login", "/login"),
        ("*", "*"),
        ("/.well-known/x", "/.well-known/x"),
        ("/a..b/..c", "/a..b/..c"),
    ])
    func normalizes(input: String, expected: String) {
        #expect(PathNormalizer.normalize(input) == expected[...])
    }

    @Test func unchangedPathIsASliceOfTheTarget() {
        let target = "/some/long/path/that/is/not/a/small/string?x=1"
        let path = PathNormalizer.normalize(target)
        #expect(path == "/some/long/path/that/is/not/a/small/string")
        #expect(path.startIndex == target.startIndex)
    }
}
