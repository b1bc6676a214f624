import Testing

@testable import SluiceConfig

/// `server.grpc_rls`, `match.descriptor` and `descriptor:KEY` key parts (issue 14).
@Suite("Descriptor configuration")
struct DescriptorConfigTests {
    static let head = "upstream:\n  url: http://127.0.0.1:3000\n"

    @Test func grpcRLSAsAddressOrMapping() throws {
        let plain = try loadValid("server:\n  grpc_rls: \"127.0.0.1:8081\"\n" + Self.head)
        #expect(plain.server.grpcRLS == GRPCRateLimitServiceConfiguration(listen: ListenAddress(host: "127.0.0.1", port: 8081)))
        let mapped = try loadValid("server:\n  grpc_rls: { listen: \"[::1]:9000\" }\n" + Self.head)
        #expect(mapped.server.grpcRLS?.listen == ListenAddress(host: "::1", port: 9000))
        #expect(mapped.server.grpcRLS?.tls == nil)
        #expect(try loadValid(Self.head).server.grpcRLS == nil)
    }

    @Test func grpcRLSErrors() {
        #expect(errorLines(yaml: "server:\n  grpc_rls: { tls: { cert: a, key: b } }\n" + Self.head).contains {
            $0.hasPrefix("test.yaml:2:13: grpc_rls: 'listen' is required")
        })
        #expect(errorLines(yaml: "server:\n  listen: [\"127.0.0.1:8080\"]\n  grpc_rls: \"127.0.0.1:8080\"\n" + Self.head) == [
            "test.yaml:3:13: grpc_rls: 127.0.0.1:8080 is also a proxy or admin listen address"
        ])
        #expect(errorLines(yaml: "server:\n  grpc_rls: { listen: \"x\", port: 3 }\n" + Self.head).count >= 2)
    }

    @Test func matchDescriptor() throws {
        let configuration = try loadValid(
            Self.head + """
                rules:
                  - name: per-user
                    match:
                      descriptor:
                        domain: api
                        entries: { generic_key: checkout, user: "*" }
                        exact: true
                    key: [descriptor:user, ip]
                    limits: 5/minute
                """
        )
        let rule = configuration.rules[0]
        #expect(
            rule.match.descriptor
                == RuleMatch.DescriptorCondition(
                    domain: "api",
                    entries: [.init(key: "generic_key", value: "checkout"), .init(key: "user", value: nil)],
                    exact: true
                )
        )
        #expect(rule.key == [.descriptor("user"), .ip])
        #expect(KeyPart.descriptor("User").description == "descriptor:User")
    }

    @Test func descriptorRuleErrors() {
        let lines = errorLines(
            yaml: Self.head + """
                rules:
                  - name: a
                    match: { descriptor: { domain: api }, path: /x }
                    key: [header:x-user]
                    cost: 2
                    limits: 5/minute
                  - name: b
                    key: [descriptor:user]
                    limits: 5/minute
                  - name: c
                    match: { descriptor: { entries: { user: "" } } }
                    limits: 5/minute
                  - name: d
                    key: ["descriptor:"]
                    limits: 5/minute
                """
        )
        #expect(lines.contains("test.yaml:5:43: match.path: a rule with match.descriptor decides gRPC descriptors, which have no HTTP request"))
        #expect(lines.contains { $0.hasPrefix("test.yaml:6:5: key: key part 'header:x-user' reads an HTTP request") })
        #expect(lines.contains { $0.hasPrefix("test.yaml:7:5: cost: not available with match.descriptor") })
        #expect(lines.contains("test.yaml:10:5: key: key part 'descriptor:user' needs match.descriptor (it reads a gRPC descriptor's entry)"))
        #expect(lines.contains { $0.hasPrefix("test.yaml:13:26: descriptor: 'domain' is required") })
        #expect(lines.contains { $0.contains("key part 'descriptor:' needs a descriptor entry key") })
    }
}
