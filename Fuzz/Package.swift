// swift-tools-version:6.0
// libFuzzer targets for every parser of untrusted bytes (docs/fuzzing.md), kept out of the main package so that its
// build stays as it is. Build and run them with scripts/fuzz; by hand:
//   swift build -c release --package-path Fuzz --scratch-path Fuzz/.build \
//     -Xswiftc -sanitize=fuzzer,address -Xswiftc -enable-testing
import Foundation
import PackageDescription

// A path dependency is named after its folder, which depends on where the repository was cloned.
let sluicePackage = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .lastPathComponent.lowercased()

/// One executable per fuzz target: `Sources/NAME/main.swift` hands `LLVMFuzzerTestOneInput` to libFuzzer.
func fuzzTarget(_ name: String, _ dependencies: [Target.Dependency]) -> Target {
    .executableTarget(name: name, dependencies: ["FuzzSupport"] + dependencies, path: "Sources/\(name)")
}

let sluice: Target.Dependency = .product(name: "SluiceForFuzzing", package: sluicePackage)

let package = Package(
    name: "SluiceFuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: ".."),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.0"),
    ],
    targets: [
        /// libFuzzer's `LLVMFuzzerRunDriver`, declared for Swift.
        .target(name: "CLibFuzzer"),
        /// The driver, checks and split plans every target shares.
        .target(name: "FuzzSupport", dependencies: ["CLibFuzzer"]),
        fuzzTarget("request-head", [sluice, .product(name: "NIOCore", package: "swift-nio")]),
        fuzzTarget("chunked-body", [sluice]),
        fuzzTarget("differential", [sluice]),
        fuzzTarget("response-head", [sluice]),
        fuzzTarget("resp", [sluice, .product(name: "NIOCore", package: "swift-nio")]),
        fuzzTarget("memcached", [sluice, .product(name: "NIOCore", package: "swift-nio")]),
        fuzzTarget("config", [sluice]),
        fuzzTarget("syntax", [sluice]),
        fuzzTarget("path", [sluice]),
    ]
)
