import Foundation
import Testing

@testable import SluiceConfig

/// `sluice import-envoy-ratelimit` (issue 14) on envoyproxy/ratelimit's README examples (config/envoy-ratelimit/):
/// every conversion loads with Sluice's own loader, and the rules say what the examples describe.
@Suite("EnvoyRateLimitImporter")
struct EnvoyRateLimitImporterTests {
    static var examples: URL {
        URL(fileURLWithPath: #filePath).resolvingSymlinksInPath()
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("config/envoy-ratelimit")
    }

    /// Converts the example `name` and loads the result.
    static func convert(_ name: String) throws -> (SluiceConfiguration, [String]) {
        let path = Self.examples.appendingPathComponent(name).path
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let output = try EnvoyRateLimitImporter.convert(text, file: name)
        let configuration = try ConfigLoader.parse(yaml: output.yaml, file: "converted.yaml", environment: [:])
        return (configuration, output.warnings)
    }

    @Test func everyExampleConverts() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: Self.examples.path).filter { $0.hasSuffix(".yaml") }
        #expect(names.count == 9)
        for name in names {
            _ = try Self.convert(name)
        }
    }

    @Test func example1ValuesBecomeExactRules() throws {
        let (configuration, warnings) = try Self.convert("example1-mongo-cps.yaml")
        #expect(warnings.isEmpty)
        #expect(configuration.rules.map(\.name) == ["mongo_cps-database-users", "mongo_cps-database-default"])
        let rule = configuration.rules[0]
        #expect(
            rule.match.descriptor
                == RuleMatch.DescriptorCondition(domain: "mongo_cps", entries: [.init(key: "database", value: "users")], exact: true)
        )
        #expect(rule.key == [.descriptor("database")])
        #expect(rule.algorithm == .fixedWindow)
        #expect(rule.limits.map { [$0.count, $0.periodSeconds] } == [[500, 1]])
        #expect(configuration.server.grpcRLS != nil)
    }

    @Test func example2NestedDescriptorsKeepTheirPath() throws {
        let (configuration, _) = try Self.convert("example2-messaging.yaml")
        #expect(configuration.rules.count == 2)
        #expect(
            configuration.rules[0].match.descriptor?.entries
                == [.init(key: "message_type", value: "marketing"), .init(key: "to_number", value: nil)]
        )
        #expect(configuration.rules[0].key == [.descriptor("message_type"), .descriptor("to_number")])
        #expect(configuration.rules[0].limits.map(\.periodSeconds) == [86_400])
        #expect(configuration.rules[1].match.descriptor?.entries == [.init(key: "to_number", value: nil)])
        #expect(configuration.rules[1].limits.map(\.count) == [100])
    }

    @Test func example3ZeroRefusesEveryRequest() throws {
        let (configuration, _) = try Self.convert("example3-edge-per-ip.yaml")
        #expect(configuration.rules.count == 2)
        let refuse = configuration.rules[1]
        #expect(refuse.match.descriptor?.entries == [.init(key: "remote_address", value: "50.0.0.5")])
        #expect(refuse.onMissingKey == .deny)
    }

    @Test func example5UnlimitedHasNoRule() throws {
        let (configuration, _) = try Self.convert("example5-unlimited.yaml")
        #expect(configuration.rules.map(\.name) == ["internal-azure"])
    }

    @Test func example6ShadowMode() throws {
        let (configuration, _) = try Self.convert("example6-shadow.yaml")
        #expect(configuration.rules.map(\.mode) == [.shadow, .enforce])
        #expect(
            configuration.rules[0].match.descriptor?.entries
                == [.init(key: "service", value: nil), .init(key: "user", value: "user-a")]
        )
    }

    @Test func example7ReplacesIsReported() throws {
        let (configuration, warnings) = try Self.convert("example7-replaces.yaml")
        #expect(configuration.rules.first?.name == "specific_limit")
        #expect(warnings.count == 1)
        #expect(warnings.first?.contains("replaces is not supported") == true)
    }

    @Test func example8ValueSiblingBecomesATier() throws {
        let (configuration, warnings) = try Self.convert("example8-detailed-metric.yaml")
        #expect(warnings.isEmpty)
        #expect(configuration.rules.count == 1)
        let tiers = try #require(configuration.rules[0].tiers)
        #expect(tiers.by == .descriptor("key1"))
        #expect(tiers.values["value1"]?.map(\.count) == [20])
        #expect(tiers.defaultLimits?.map(\.count) == [10])
    }

    @Test func example9WildcardIsLeftOut() throws {
        let (configuration, warnings) = try Self.convert("example9-wildcard.yaml")
        #expect(configuration.rules.isEmpty)
        #expect(warnings.first?.contains("wildcard") == true)
    }

    @Test func rulesOnlyAndNames() throws {
        let output = try EnvoyRateLimitImporter.convert(
            "domain: \"A b\"\ndescriptors:\n  - key: \"K\\\"q\"\n    rate_limit: { unit: week, requests_per_unit: 7 }\n",
            file: "x.yaml",
            rulesOnly: true
        )
        #expect(output.yaml.hasPrefix("rules:\n  - name: a_b-k_q\n"))
        #expect(output.yaml.contains(#""K\"q": "*""#))
        #expect(output.yaml.contains(#"limits: "7/7 days""#))
    }

    @Test func errorsHavePositions() {
        #expect(throws: ConfigErrorList.self) { try EnvoyRateLimitImporter.convert("domain: x\n", file: "x.yaml") }
        do {
            _ = try EnvoyRateLimitImporter.convert(
                "domain: d\ndescriptors:\n  - key: a\n    rate_limit: { unit: fortnight, requests_per_unit: 1 }\n  - value: b\n",
                file: "x.yaml"
            )
            Issue.record("expected errors")
        } catch {
            let lines = error.errors.map(\.description)
            #expect(lines.contains { $0.hasPrefix("x.yaml:4:") && $0.contains("'unit' must be") })
            #expect(lines.contains { $0.hasPrefix("x.yaml:5:") && $0.contains("'key' is required") })
        }
    }
}
