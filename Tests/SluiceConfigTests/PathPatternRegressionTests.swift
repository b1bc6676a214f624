import Foundation
import Testing

@testable import SluiceConfig

/// Inputs the `syntax` fuzz target (Fuzz/, docs/fuzzing.md) broke, kept in `Regressions/` (`syntax-*`) and fed to
/// what that target calls.
@Suite struct PathPatternRegressionTests {
    /// `syntax-long-regex-leak`: a 259-character `~regex` compiled fine but LeakSanitizer found Foundation's copy of
    /// it never freed (Linux's `_CFRegularExpressionCreate` leaks patterns over 256 UTF-16 units: 2 bytes per unit at
    /// every compile, so at every reload). Such patterns are refused when the config is read.
    @Test func regexesLongerThanFoundationCompilesWithoutLeakingAreRefused() throws {
        let inputs = try ConfigLoaderRegressionTests.regressions("syntax-")
        #expect(inputs.map(\.name).contains("syntax-long-regex-leak"))
        for (name, text) in inputs {
            switch PathPattern.parse(text) {
            case .success(.regex(let pattern)):
                #expect(pattern.utf16.count <= PathPattern.maximumRegexLength, "\(name) was taken")
            case .success, .failure:
                break
            }
        }
        let leak = try #require(inputs.first { $0.name == "syntax-long-regex-leak" })
        guard case .failure(let error) = PathPattern.parse(leak.text) else {
            Issue.record("the 259-character regular expression was taken")
            return
        }
        #expect(error.message == "regular expression longer than 256 characters")
    }

    @Test func theLimitIs256UTF16Units() {
        let longest = "~" + String(repeating: "a", count: 256)
        #expect((try? PathPattern.parse(longest).get()) == .regex(String(repeating: "a", count: 256)))
        #expect((try? PathPattern.parse(longest + "a").get()) == nil)
        // Counted in UTF-16 units, as Foundation counts them: 128 "é" are 128 units, 129 "𝄞" are 258.
        #expect((try? PathPattern.parse("~" + String(repeating: "é", count: 128)).get()) != nil)
        #expect((try? PathPattern.parse("~" + String(repeating: "𝄞", count: 129)).get()) == nil)
    }
}
