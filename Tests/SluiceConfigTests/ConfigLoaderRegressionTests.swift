import Foundation
import Testing

@testable import SluiceConfig

/// Inputs the `config` fuzz target (Fuzz/, docs/fuzzing.md) broke, kept as files in `Regressions/` (`config-*`) and
/// fed through what that target does: the file loads or is refused with positioned errors, promptly.
@Suite(.timeLimit(.minutes(1)))
struct ConfigLoaderRegressionTests {
    static func regressions(_ prefix: String) throws -> [(name: String, text: String)] {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Regressions")
        return try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasPrefix(prefix) }.sorted()
            .map { name in (name, String(decoding: try Data(contentsOf: folder.appendingPathComponent(name)), as: UTF8.self)) }
    }

    @Test func regressionInputsAreRefusedWithPositionsPromptly() throws {
        let inputs = try Self.regressions("config-")
        #expect(!inputs.isEmpty)
        for (name, text) in inputs {
            let start = ContinuousClock.now
            do {
                _ = try ConfigLoader.parse(yaml: text, file: name, environment: [:])
                Issue.record("\(name) loaded")
            } catch {
                #expect(!error.errors.isEmpty)
                for problem in error.errors {
                    #expect(problem.file == name && problem.line >= 1 && problem.column >= 1 && !problem.message.isEmpty)
                }
            }
            #expect(ContinuousClock.now - start < .seconds(2), "\(name) took \(ContinuousClock.now - start)")
        }
    }

    /// `config-alias-as-key`: a mapping key that is an alias of a tree of 10^8 nodes (nested anchors) made Yams hash
    /// that tree to look for duplicate keys, for minutes. Aliases may stand for 100,000 nodes at most; the error is at
    /// the alias that goes over.
    @Test func aliasesStandingForTooManyNodesAreRefusedAtTheAlias() {
        let laughs = """
            a: &a [x, x, x, x, x, x, x, x, x, x]
            b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
            c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
            d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
            e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
            f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
            upstream: {url: "http://127.0.0.1:8080"}
            rules: *f

            """
        // a is 11 nodes, b 111, c 1,111, d 11,111: the aliases of b, c and d stand for 12,330 nodes, and the eighth *d
        // in e goes over 100,000.
        #expect(errorLines(yaml: laughs) == [
            "test.yaml:5:36: aliases stand for more than 100000 nodes (nested anchors, as in a billion laughs)"
        ])
    }

    /// Anchors and aliases within the budget still load: a rule's match reused.
    @Test func reusedAnchorsLoad() throws {
        let yaml = """
            upstream: {url: "http://127.0.0.1:8080"}
            rules:
              - name: a
                match: &api {path: /api/*, methods: [GET, POST]}
                limits: 10/minute
              - name: b
                match: *api
                limits: 20/minute

            """
        let configuration = try ConfigLoader.parse(yaml: yaml, file: "test.yaml", environment: [:])
        #expect(configuration.rules.map(\.match) == [configuration.rules[0].match, configuration.rules[0].match])
        #expect(configuration.rules.count == 2)
    }
}
