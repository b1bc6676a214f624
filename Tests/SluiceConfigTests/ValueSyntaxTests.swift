import Testing

@testable import SluiceConfig

/// The small grammars of SPEC §2: paths, key parts, body templates and `${VAR}` expansion.
@Suite("Value syntax")
struct ValueSyntaxTests {
    @Test("paths", arguments: [
        ("/login", PathPattern.exact("/login")),
        ("/", .exact("/")),
        ("/api/", .exact("/api/")),
        ("/api/*", .prefix("/api")),
        ("/*", .prefix("")),
        ("/users/*/orders", .glob(["users", nil, "orders"])),
        ("/*/x", .glob([nil, "x"])),
        ("/a/*/", .glob(["a", nil, ""])),
        ("~^/v[0-9]+/", .regex("^/v[0-9]+/")),
    ])
    func paths(text: String, expected: PathPattern) throws {
        #expect(try PathPattern.parse(text).get() == expected)
    }

    @Test("refused paths", arguments: [
        ("/a*b", 2), ("login", 0), ("/users/*/orders/*", 7), ("//login", 1), ("/a/../b", 3), ("/a?x=1", 2), ("~(", 1), ("~", 0),
    ])
    func refusedPaths(text: String, offset: Int) {
        switch PathPattern.parse(text) {
        case .success(let pattern): Issue.record("'\(text)' parsed as \(pattern)")
        case .failure(let problem): #expect(problem.offset == offset)
        }
    }

    @Test("key parts", arguments: [
        ("ip", KeyPart.ip), ("IP", .ip), ("ip/24", .ipPrefix(24)), ("ip/128", .ipPrefix(128)),
        ("header:X-Api-Key", .header("x-api-key")), ("query:api_key", .query("api_key")),
        ("cookie:Session", .cookie("Session")), ("path", .path), ("method", .method), ("host", .host),
        ("const:all:of:it", .const("all:of:it")),
    ])
    func keyParts(text: String, expected: KeyPart) throws {
        #expect(try KeyPart.parse(text).get() == expected)
    }

    @Test("refused key parts", arguments: ["ip/0", "ip/129", "ip/x", "user", "header:", "header:X Y", "cookies:s", ""])
    func refusedKeyParts(text: String) {
        #expect(throws: ValueSyntaxError.self) { try KeyPart.parse(text).get() }
    }

    @Test("body templates")
    func bodies() throws {
        #expect(try BodyTemplate.parse(BodyTemplate.defaultBody.source).get() == BodyTemplate.defaultBody)
        #expect(try BodyTemplate.parse("{limit} {{rule}} { x } {").get().parts == [
            .limit, .literal(" {"), .rule, .literal("} { x } {"),
        ])
        #expect(try BodyTemplate.parse("").get().parts == [])
        let failure = BodyTemplate.parse(#"{"k":"{key}"}"#)
        #expect(throws: ValueSyntaxError.self) { try failure.get() }
    }

    @Test("environment expansion")
    func expansion() {
        let environment = ["A": "1", "EMPTY": ""]
        func expand(_ text: String) -> String? {
            if case .expanded(let value) = EnvironmentExpansion.expand(text, environment: environment) { return value }
            return nil
        }
        #expect(expand("x${A}y") == "x1y")
        #expect(expand("${B:-two}") == "two")
        #expect(expand("${EMPTY:-d}") == "d")
        #expect(expand("${EMPTY}") == "")
        #expect(expand("${B:-}") == "")
        #expect(expand("$$ $A $${A} $") == "$$ $A $${A} $")
        #expect(expand("${B}") == nil)
        #expect(expand("${A") == nil)
        #expect(expand("${1A}") == nil)
        if case .failed(let problems) = EnvironmentExpansion.expand("ab${X}c${Y}", environment: [:]) {
            #expect(problems.map(\.offset) == [2, 7])
        } else {
            Issue.record("expected failures")
        }
    }
}
