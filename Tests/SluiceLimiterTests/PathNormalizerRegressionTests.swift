import Foundation
import Testing

@testable import SluiceLimiter

/// Inputs the `path` fuzz target (Fuzz/, docs/fuzzing.md) broke, kept as files in `Regressions/` (`path-*`) and
/// replayed through the checks that target makes.
@Suite struct PathNormalizerRegressionTests {
    /// The `Regressions/` files whose names start with `prefix`, with their bytes.
    static func regressions(_ prefix: String) throws -> [(name: String, bytes: [UInt8])] {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Regressions")
        return try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasPrefix(prefix) }.sorted()
            .map { name in (name, Array(try Data(contentsOf: folder.appendingPathComponent(name)))) }
    }

    @Test func normalisingTwiceGivesWhatNormalisingOnceGives() throws {
        let inputs = try Self.regressions("path-")
        #expect(inputs.count >= 2)
        for (name, bytes) in inputs {
            let once = PathNormalizer.normalize(String(decoding: bytes, as: UTF8.self))
            #expect(PathNormalizer.normalize(String(once)) == once, "\(name): \(once)")
        }
    }

    /// An escape is not decoded when its character would make a new escape with a `%` before it.
    @Test(arguments: [
        ("/%4%31", "/%4%31"),
        ("/a/ap%a%44hb", "/a/ap%a%44hb"),
        ("/%%34%31", "/%%341"),
        ("/%4%7e", "/%4~"),
        ("/%4%31%32", "/%4%312"),
        ("/%%2e%2e/x", "/%../x"),
    ])
    func escapesThatDecodingWouldMakeStayEncoded(input: String, expected: String) {
        #expect(PathNormalizer.normalize(input) == expected[...])
        #expect(PathNormalizer.normalize(expected) == expected[...])
    }
}
