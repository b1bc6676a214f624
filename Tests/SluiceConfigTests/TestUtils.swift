import Foundation
import Testing

@testable import SluiceConfig

/// Where the test fixtures were copied by SwiftPM (`.copy("Fixtures")`).
enum Fixtures {
    static var directory: URL {
        Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
    }

    static var invalidDirectory: URL { Self.directory.appendingPathComponent("invalid") }

    /// Names (without `.yaml`) of the invalid fixtures, each with a `NAME.expected` beside it.
    static var invalidNames: [String] {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: Self.invalidDirectory.path)) ?? []
        return files.filter { $0.hasSuffix(".yaml") }.map { String($0.dropLast(5)) }.sorted()
    }

    /// `config/sluice.yaml` of the repository, found from this source file's location (symlinks resolved, so a
    /// helper package that links the test folder finds the real repository).
    static var exampleConfigPath: String {
        URL(fileURLWithPath: #filePath).resolvingSymlinksInPath()
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("config/sluice.yaml").path
    }
}

/// The errors of a YAML text, one `file:line:column: message` line each; fails the test if it loads.
func errorLines(
    yaml: String,
    environment: [String: String] = [:],
    sourceLocation: SourceLocation = #_sourceLocation
) -> [String] {
    do {
        _ = try ConfigLoader.parse(yaml: yaml, file: "test.yaml", environment: environment)
        Issue.record("expected errors, the configuration loaded", sourceLocation: sourceLocation)
        return []
    } catch {
        return error.errors.map(\.description)
    }
}

/// Loads a YAML text that must be valid.
func loadValid(
    _ yaml: String,
    environment: [String: String] = [:],
    sourceLocation: SourceLocation = #_sourceLocation
) throws -> SluiceConfiguration {
    do {
        return try ConfigLoader.parse(yaml: yaml, file: "test.yaml", environment: environment)
    } catch {
        Issue.record("unexpected errors:\n\(error)", sourceLocation: sourceLocation)
        throw error
    }
}

/// The smallest valid file, to which tests append what they exercise.
let minimalYAML = """
    upstream:
      url: http://127.0.0.1:3000

    """
