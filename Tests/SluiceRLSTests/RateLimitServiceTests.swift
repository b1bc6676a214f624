import Foundation
import GRPCCore
import SluiceConfig
import SluiceRLSProto
import Testing

/// `ShouldRateLimit` over real sockets (issue 14): a grpc-swift client of the same generated code sends what Envoy's
/// ratelimit filter sends (`remote_address`, `request_headers`, `generic_key` actions, nested into one descriptor).
@Suite("RateLimitService")
struct RateLimitServiceTests {
    static let rules = """
        rules:
          - name: per-ip
            match:
              descriptor:
                domain: edge
                entries: { remote_address: "*" }
                exact: true
            key: [ip]
            limits: 2/minute
          - name: checkout-per-client
            match:
              descriptor:
                domain: edge
                entries: { generic_key: checkout, client_id: "*" }
            key: [descriptor:client_id]
            limits: 1/minute
          - name: proxy-only
            key: [ip]
            limits: 1/minute
        """

    @Test("remote_address: OK until the limit, then OVER_LIMIT with statuses, headers and body")
    func remoteAddress() async throws {
        try await withRLS(rules: Self.rules) { harness in
            try await harness.withClient { client in
                let ip1 = rlsRequest(domain: "edge", [[("remote_address", "10.0.0.1")]])
                let first = try await client.shouldRateLimit(ip1)
                #expect(first.overallCode == .ok)
                #expect(first.statuses.count == 1)
                #expect(first.statuses[0].code == .ok)
                #expect(first.statuses[0].currentLimit.requestsPerUnit == 2)
                #expect(first.statuses[0].currentLimit.unit == .minute)
                #expect(first.statuses[0].currentLimit.name == "per-ip")
                #expect(first.statuses[0].limitRemaining == 1)
                #expect((1...60).contains(first.statuses[0].durationUntilReset.seconds))
                #expect(first.header("RateLimit-Policy") == #""per-ip";q=2;w=60"#)
                #expect(first.header("RateLimit")?.hasPrefix(#""per-ip";r=1;t="#) == true)
                #expect(first.header("Retry-After") == nil)
                #expect(first.rawBody.isEmpty)

                let second = try await client.shouldRateLimit(ip1)
                #expect(second.overallCode == .ok)
                #expect(second.statuses[0].limitRemaining == 0)

                let third = try await client.shouldRateLimit(ip1)
                #expect(third.overallCode == .overLimit)
                #expect(third.statuses[0].code == .overLimit)
                #expect(third.statuses[0].limitRemaining == 0)
                #expect(third.header("RateLimit")?.hasPrefix(#""per-ip";r=0;t="#) == true)
                let retry = try #require(third.header("Retry-After").flatMap { Int($0) })
                // The sliding window frees a slot within two windows.
                #expect((1...120).contains(retry))
                #expect(third.header("Content-Type") == "application/json")
                let body = String(decoding: third.rawBody, as: UTF8.self)
                #expect(body.contains(#""rule":"per-ip""#))

                // Another address has its own counter.
                let other = try await client.shouldRateLimit(rlsRequest(domain: "edge", [[("remote_address", "10.0.0.2")]]))
                #expect(other.overallCode == .ok)
                #expect(other.statuses[0].limitRemaining == 1)

                // `exact: true`: a descriptor with one more entry is not this rule's; the proxy-only rule never
                // applies to a descriptor, so no limit at all.
                let longer = try await client.shouldRateLimit(
                    rlsRequest(domain: "edge", [[("remote_address", "10.0.0.1"), ("path", "/x")]])
                )
                #expect(longer.overallCode == .ok)
                #expect(longer.statuses.count == 1)
                #expect(!longer.statuses[0].hasCurrentLimit)
                #expect(longer.responseHeadersToAdd.isEmpty)
            }
        }
    }

    @Test("generic_key and request_headers nested in one descriptor, beside a remote_address descriptor")
    func nestedEntries() async throws {
        try await withRLS(rules: Self.rules) { harness in
            try await harness.withClient { client in
                // Envoy: actions [generic_key: checkout, request_headers: x-client-id -> client_id] and [remote_address].
                let request = rlsRequest(
                    domain: "edge",
                    [[("generic_key", "checkout"), ("client_id", "acme")], [("remote_address", "10.0.0.9")]]
                )
                let first = try await client.shouldRateLimit(request)
                #expect(first.overallCode == .ok)
                #expect(first.statuses.map(\.code) == [.ok, .ok])
                #expect(first.statuses[0].currentLimit.name == "checkout-per-client")
                #expect(first.statuses[0].limitRemaining == 0)
                #expect(first.statuses[1].currentLimit.name == "per-ip")
                #expect(first.statuses[1].limitRemaining == 1)
                // The least remaining quota comes first in the fields, the others follow.
                #expect(first.header("RateLimit-Policy") == #""checkout-per-client";q=1;w=60, "per-ip";q=2;w=60"#)

                let second = try await client.shouldRateLimit(request)
                #expect(second.overallCode == .overLimit)
                #expect(second.statuses.map(\.code) == [.overLimit, .ok])
                // Each descriptor counts on its own, as in envoyproxy/ratelimit.
                #expect(second.statuses[1].limitRemaining == 0)

                let otherClient = try await client.shouldRateLimit(
                    rlsRequest(domain: "edge", [[("generic_key", "checkout"), ("client_id", "globex")]])
                )
                #expect(otherClient.overallCode == .ok)
                #expect(otherClient.statuses[0].limitRemaining == 0)

                let otherKey = try await client.shouldRateLimit(
                    rlsRequest(domain: "edge", [[("generic_key", "search"), ("client_id", "acme")]])
                )
                #expect(otherKey.overallCode == .ok)
                #expect(!otherKey.statuses[0].hasCurrentLimit)

                let otherDomain = try await client.shouldRateLimit(rlsRequest(domain: "internal", [[("remote_address", "10.0.0.9")]]))
                #expect(otherDomain.overallCode == .ok)
                #expect(!otherDomain.statuses[0].hasCurrentLimit)
            }
        }
    }

    @Test("hits_addend is the cost: 0 counts 1, a descriptor's own hits_addend overrides the request's")
    func hitsAddend() async throws {
        let rules = """
            rules:
              - name: tokens
                match: { descriptor: { domain: llm, entries: { user: "*" } } }
                key: [descriptor:user]
                algorithm: fixed_window
                limits: 5/hour
            """
        try await withRLS(rules: rules) { harness in
            try await harness.withClient { client in
                let three = try await client.shouldRateLimit(rlsRequest(domain: "llm", [[("user", "u1")]], hitsAddend: 3))
                #expect(three.overallCode == .ok)
                #expect(three.statuses[0].limitRemaining == 2)
                #expect(three.statuses[0].currentLimit.unit == .hour)

                let zero = try await client.shouldRateLimit(rlsRequest(domain: "llm", [[("user", "u1")]], hitsAddend: 0))
                #expect(zero.statuses[0].limitRemaining == 1)

                // Over: refused, and a refused call takes nothing.
                let two = try await client.shouldRateLimit(rlsRequest(domain: "llm", [[("user", "u1")]], hitsAddend: 2))
                #expect(two.overallCode == .overLimit)
                #expect(two.statuses[0].limitRemaining == 1)

                var perDescriptor = rlsRequest(domain: "llm", [[("user", "u1")]], hitsAddend: 4)
                perDescriptor.descriptors[0].hitsAddend = .init(1)
                let one = try await client.shouldRateLimit(perDescriptor)
                #expect(one.overallCode == .ok)
                #expect(one.statuses[0].limitRemaining == 0)

                // Above the limit's COUNT: refused for good, no Retry-After.
                let huge = try await client.shouldRateLimit(rlsRequest(domain: "llm", [[("user", "u2")]], hitsAddend: 6))
                #expect(huge.overallCode == .overLimit)
                #expect(huge.header("Retry-After") == nil)
            }
        }
    }

    @Test("a shadow rule answers OK and counts shadow_limited in the metrics")
    func shadowMode() async throws {
        let rules = """
            rules:
              - name: soft
                match: { descriptor: { domain: edge, entries: { user: "*" } } }
                key: [descriptor:user]
                limits: 1/minute
                mode: shadow
            """
        try await withRLS(rules: rules) { harness in
            try await harness.withClient { client in
                let request = rlsRequest(domain: "edge", [[("user", "a")]])
                let first = try await client.shouldRateLimit(request)
                let second = try await client.shouldRateLimit(request)
                #expect(first.overallCode == .ok)
                #expect(second.overallCode == .ok)
                #expect(second.statuses[0].code == .ok)
                #expect(second.statuses[0].limitRemaining == 0)
                #expect(second.header("Retry-After") == nil)
                #expect(second.rawBody.isEmpty)
            }
            let counts = harness.server.metrics.totals().requests["soft"]
            #expect(counts?.admitted == 1)
            #expect(counts?.shadowLimited == 1)
            #expect(counts?.limited == 0)
        }
    }

    @Test("the proxy and the gRPC front end spend one budget (one shared rule budget)")
    func sharedBudget() async throws {
        let rules = """
            rules:
              - name: web
                key: [ip]
                limits: 3/minute
                shared: per-client
              - name: edge
                match: { descriptor: { domain: edge, entries: { remote_address: "*" } } }
                key: [ip]
                limits: 3/minute
                shared: per-client
            """
        try await withRLS(rules: rules) { harness in
            #expect(try await harness.get("/hello").status == 200)
            #expect(try await harness.get("/hello?b").status == 200)
            try await harness.withClient { client in
                let request = rlsRequest(domain: "edge", [[("remote_address", "127.0.0.1")]])
                let third = try await client.shouldRateLimit(request)
                #expect(third.overallCode == .ok)
                #expect(third.statuses[0].limitRemaining == 0)
                #expect(try await harness.get("/hello").status == 429)
                let fourth = try await client.shouldRateLimit(request)
                #expect(fourth.overallCode == .overLimit)
                // Another address is untouched by the proxy's client.
                let other = try await client.shouldRateLimit(rlsRequest(domain: "edge", [[("remote_address", "10.1.1.1")]]))
                #expect(other.statuses[0].limitRemaining == 2)
            }
        }
    }

    @Test("a reload changes the limits the gRPC front end decides with")
    func reload() async throws {
        let rule = { (limit: String) in
            """
            rules:
              - name: per-user
                match: { descriptor: { domain: edge, entries: { user: "*" } } }
                key: [descriptor:user]
                limits: \(limit)
            """
        }
        try await withRLS(rules: rule("1/minute")) { harness in
            try await harness.withClient { client in
                let request = rlsRequest(domain: "edge", [[("user", "a")]])
                #expect(try await client.shouldRateLimit(request).statuses[0].currentLimit.requestsPerUnit == 1)
                #expect(try await client.shouldRateLimit(request).overallCode == .overLimit)

                let reloaded = try RLSHarness.configuration(rules: rule("5/hour"), upstreamPort: harness.upstream.port)
                try await harness.server.reload(reloaded)

                let after = try await client.shouldRateLimit(request)
                #expect(after.overallCode == .ok)
                #expect(after.statuses[0].currentLimit.requestsPerUnit == 5)
                #expect(after.statuses[0].currentLimit.unit == .hour)
                #expect(after.statuses[0].limitRemaining == 4)
            }
        }
    }

    @Test("a call without domain or descriptors is INVALID_ARGUMENT")
    func invalidArguments() async throws {
        try await withRLS(rules: Self.rules) { harness in
            try await harness.withClient { client in
                await #expect {
                    _ = try await client.shouldRateLimit(rlsRequest(domain: "", [[("remote_address", "10.0.0.1")]]))
                } throws: { error in
                    (error as? RPCError)?.code == .invalidArgument
                }
                await #expect {
                    _ = try await client.shouldRateLimit(rlsRequest(domain: "edge", []))
                } throws: { error in
                    (error as? RPCError)?.code == .invalidArgument
                }
            }
        }
    }
}
