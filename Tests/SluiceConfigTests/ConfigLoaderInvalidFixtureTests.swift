import Foundation
import Testing

@testable import SluiceConfig

/// One invalid file per error kind, each with the exact `sluice check` output expected for it (SPEC §1).
@Suite("Invalid configuration fixtures")
struct ConfigLoaderInvalidFixtureTests {
    /// Variables the fixtures may use; `SLUICE_TEST_UNSET_*` are deliberately absent.
    static let environment = ["SLUICE_TEST_SET": "value"]

    @Test("fixtures exist")
    func fixturesExist() {
        #expect(Fixtures.invalidNames.count >= 17)
    }

    @Test("errors match NAME.expected", arguments: Fixtures.invalidNames)
    func fixture(name: String) throws {
        let directory = Fixtures.invalidDirectory
        let path = directory.appendingPathComponent("\(name).yaml").path
        let expectedText = try String(contentsOf: directory.appendingPathComponent("\(name).expected"), encoding: .utf8)
        let expected = expectedText.split(separator: "\n").map(String.init)
        let actual: [String]
        do {
            _ = try ConfigLoader.load(path: path, environment: Self.environment)
            actual = []
        } catch {
            // The loader names the file as given; the expectations are written with the base name.
            actual = error.errors.map { $0.description.replacingOccurrences(of: directory.path + "/", with: "") }
        }
        if let dump = ProcessInfo.processInfo.environment["SLUICE_DUMP_ACTUAL"] {
            try (actual.joined(separator: "\n") + "\n").write(toFile: "\(dump)/\(name).expected", atomically: true, encoding: .utf8)
        }
        #expect(actual == expected)
    }

    @Test("a missing file is one error at 1:1")
    func missingFile() {
        #expect(throws: ConfigErrorList.self) {
            try ConfigLoader.load(path: "/nonexistent/sluice.yaml", environment: [:])
        }
        do {
            _ = try ConfigLoader.load(path: "/nonexistent/sluice.yaml", environment: [:])
        } catch {
            #expect(error.description == "/nonexistent/sluice.yaml:1:1: cannot read file: no such file")
        }
    }
}
