// swift-tools-version:6.1
// Micro-benchmarks (ordo-one/benchmark), kept out of the main package so its build stays fast.
// Run: cd Benchmarks && swift package --disable-sandbox benchmark
import Foundation
import PackageDescription

// A path dependency is named after its folder, which depends on where the repository was cloned.
let sluicePackage = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .lastPathComponent.lowercased()

let package = Package(
    name: "SluiceBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.0", traits: ["MallocInterposer"]),
        /// The JWT benchmarks sign their tokens with jwt-kit (RSA keys made with CryptoExtras).
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.7.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", "4.1.0"..<"6.0.0"),
    ],
    targets: [
        .executableTarget(
            name: "LimiterBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "SluiceLimiterForBenchmarks", package: sluicePackage),
            ],
            path: "Benchmarks/LimiterBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "MetricsBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "SluiceLimiterForBenchmarks", package: sluicePackage),
                .product(name: "SluiceAdminForBenchmarks", package: sluicePackage),
            ],
            path: "Benchmarks/MetricsBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "JWTBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "SluiceJWTForBenchmarks", package: sluicePackage),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
            ],
            path: "Benchmarks/JWTBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "LimiterProfile",
            dependencies: [.product(name: "SluiceLimiterForBenchmarks", package: sluicePackage)],
            path: "Profile/LimiterProfile"
        ),
    ]
)
