// swift-tools-version:6.0
import PackageDescription

/// Release builds of the request path skip the runtime exclusivity checks (`swift_beginAccess` on every mutation of a
/// class's stored property, ~6 % of Sluice's user time per request, measured in docs/performance.md). Debug builds, and
/// so every test run, keep them: a violation would show there.
let requestPathSettings: [SwiftSetting] = [.unsafeFlags(["-enforce-exclusivity=unchecked", "-cross-module-optimization"], .when(configuration: .release))]

let package = Package(
    name: "sluice",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "sluice", targets: ["sluice"]),
        /// For Benchmarks/ only: the limiter and the config model, re-exported.
        .library(name: "SluiceLimiterForBenchmarks", targets: ["SluiceLimiterForBenchmarks"]),
        /// For Benchmarks/ only: the metrics and the status page's tables (what the request path feeds).
        .library(name: "SluiceAdminForBenchmarks", targets: ["SluiceAdmin"]),
        /// For Benchmarks/ only: the JWT verifier (issue 15) and the config model, re-exported.
        .library(name: "SluiceJWTForBenchmarks", targets: ["SluiceJWTForBenchmarks"]),
        /// For Fuzz/ only: every module that parses untrusted bytes, and the NIOHTTP1 differential reference. Built
        /// with `-enable-testing` there, so the fuzz targets reach internal parsers through `@testable import`.
        .library(
            name: "SluiceForFuzzing",
            targets: ["SluiceHTTP1", "SluiceDifferential", "SluiceConfig", "SluiceLimiter", "SluiceRedis", "SluiceMemcached", "SluiceProxy"]
        ),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.0"),
        .package(url: "https://github.com/apple/swift-nio-http2.git", from: "1.46.0"),
        .package(url: "https://github.com/apple/swift-atomics.git", from: "1.2.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-http-structured-headers.git", from: "1.7.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        /// Only `SluiceJWT` uses it (issue 15): signature checks for JWT-keyed rules.
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.7.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", "4.1.0"..<"6.0.0"),
        /// Only `SluiceRLSProto`, `SluiceRLS` and the `sluice` command use them (issue 14): Envoy's rate-limit service
        /// over gRPC. The proxy path (`SluiceProxy`) and the Fuzz package never import gRPC.
        .package(url: "https://github.com/grpc/grpc-swift-2.git", from: "2.4.0"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", from: "2.9.0"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", from: "2.4.0"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
    ],
    targets: [
        /// YAML file -> validated, immutable, Sendable model. No NIO. `YAMLAliasBudget` imports `CYaml`, the libyaml
        /// module Yams is built on (not a product of Yams: visible here through the Yams dependency).
        .target(
            name: "SluiceConfig",
            dependencies: [.product(name: "Yams", package: "Yams")],
            swiftSettings: requestPathSettings
        ),
        /// Matching, keys, algorithms, the Store protocol and the memory store. No NIO.
        .target(
            name: "SluiceLimiter",
            dependencies: [
                "SluiceConfig",
                .product(name: "RawStructuredFieldValues", package: "swift-http-structured-headers"),
                /// StorageCircuitBreaker logs; without it declared, Benchmarks' LimiterProfile failed to link.
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: requestPathSettings
        ),
        .target(
            name: "SluiceJWTForBenchmarks",
            dependencies: ["SluiceJWT", "SluiceConfig"]
        ),
        .target(
            name: "SluiceLimiterForBenchmarks",
            dependencies: ["SluiceLimiter", "SluiceConfig"]
        ),
        /// HTTP/1.1 on raw bytes: the strict request-head parser (offsets into the read buffer, no Strings).
        .target(name: "SluiceHTTP1", swiftSettings: requestPathSettings),
        /// The byte-level request-head parser held against NIOHTTP1's decoder (llhttp): the comparison the differential
        /// tests and the `differential` fuzz target share.
        .target(
            name: "SluiceDifferential",
            dependencies: [
                "SluiceHTTP1",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
        /// What every listening socket gets: a shared connection cap and a pause after a failed accept.
        .target(
            name: "SluiceListener",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        /// Keys from verified JWT claims (issue 15): key loading (HMAC secret, PEM, JWKS file), synchronous
        /// verification through jwt-kit's algorithms, the per-event-loop cache by token digest. No NIO.
        .target(
            name: "SluiceJWT",
            dependencies: [
                "SluiceConfig",
                "SluiceLimiter",
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: requestPathSettings
        ),
        /// The NIO pipeline: client side, upstream pool, forwarding, limiting, answers.
        .target(
            name: "SluiceProxy",
            dependencies: [
                "SluiceConfig",
                "SluiceJWT",
                "SluiceHTTP1",
                "SluiceLimiter",
                "SluiceRedis",
                "SluiceMemcached",
                "SluiceAdmin",
                "SluiceListener",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: requestPathSettings
        ),
        /// Redis on NIO: RESP codec, pipelined connections, pool; and the Redis store (Lua scripts, SPEC §8).
        .target(
            name: "SluiceRedis",
            dependencies: [
                "SluiceConfig",
                "SluiceLimiter",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: requestPathSettings
        ),
        /// memcached on NIO (issue 21): meta-protocol codec, pipelined connections, a pool per server, a ketama
        /// continuum; and the memcached store.
        .target(
            name: "SluiceMemcached",
            dependencies: [
                "SluiceConfig",
                "SluiceLimiter",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: requestPathSettings
        ),
        /// The admin listener (SPEC §7): health, readiness, Prometheus metrics, config, per-key limits.
        .target(
            name: "SluiceAdmin",
            dependencies: [
                "SluiceConfig",
                "SluiceLimiter",
                "SluiceListener",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        /// The Swift code generated from `Protos/` (Envoy's `envoy.service.ratelimit.v3` and the messages it uses) by
        /// `scripts/generate-rls-proto`; committed, never generated by the build.
        .target(
            name: "SluiceRLSProto",
            dependencies: [
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        /// Envoy's rate-limit service (issue 14): `ShouldRateLimit` over gRPC, decided by the proxy's limiter.
        .target(
            name: "SluiceRLS",
            dependencies: [
                "SluiceConfig",
                "SluiceLimiter",
                "SluiceAdmin",
                "SluiceRLSProto",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        /// Load for the gRPC rate-limit service (issue 14): `ShouldRateLimit` calls over C connections, S in flight on
        /// each; scripts/bench-rls runs it against `sluice serve`.
        .executableTarget(
            name: "sluice-rls-bench",
            dependencies: [
                "SluiceRLSProto",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
            ]
        ),
        /// Thin command line: serve, check, demo, import-envoy-ratelimit.
        .executableTarget(
            name: "sluice",
            dependencies: [
                "SluiceConfig",
                "SluiceRLS",
                "SluiceProxy",
                "SluiceAdmin",
                "SluiceJWT",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        /// Real peers for tests: an HTTP upstream, clients, SHA-256. Optimised even in debug
        /// builds so 50 MB transfers are checked in well under a second.
        .target(
            name: "SluiceTestSupport",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
            ],
            swiftSettings: [.unsafeFlags(["-O"])]
        ),
        .testTarget(
            name: "SluiceConfigTests",
            dependencies: ["SluiceConfig"],
            /// Inputs the fuzz targets broke (Fuzz/), read by the regression tests through `#filePath`.
            exclude: ["Regressions"],
            resources: [.copy("Fixtures")]
        ),
        .testTarget(
            name: "SluiceAdminTests",
            dependencies: [
                "SluiceAdmin",
                "SluiceLimiter",
                "SluiceConfig",
                "SluiceTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                /// To hold the status page's own histograms against swift-prometheus's rendering.
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .testTarget(
            name: "SluiceRedisTests",
            dependencies: [
                "SluiceRedis",
                "SluiceLimiter",
                "SluiceConfig",
                "SluiceTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            /// Inputs the fuzz targets broke (Fuzz/), read by the regression tests through `#filePath`.
            exclude: ["Regressions"]
        ),
        .testTarget(
            name: "SluiceMemcachedTests",
            dependencies: [
                "SluiceMemcached",
                "SluiceLimiter",
                "SluiceConfig",
                "SluiceTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "SluiceLimiterTests",
            dependencies: ["SluiceLimiter", "SluiceConfig", "SluiceTestSupport"],
            /// Inputs the fuzz targets broke (Fuzz/), read by the regression tests through `#filePath`.
            exclude: ["Regressions"]
        ),
        /// Black-box tests of the `sluice` binary: command line, signals, limiting end to end.
        .testTarget(
            name: "SluiceCLITests",
            dependencies: [
                "SluiceTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        /// The gRPC rate-limit service (issue 14) over real sockets, with a grpc-swift client of the same generated code.
        .testTarget(
            name: "SluiceRLSTests",
            dependencies: [
                "SluiceRLS",
                "SluiceRLSProto",
                "SluiceProxy",
                "SluiceConfig",
                "SluiceLimiter",
                "SluiceAdmin",
                "SluiceTestSupport",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        /// The byte-level parser, differentially against NIOHTTP1's decoder (llhttp).
        .testTarget(
            name: "SluiceHTTP1Tests",
            dependencies: [
                "SluiceHTTP1",
                "SluiceDifferential",
                "SluiceTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            /// Inputs the fuzz targets broke (Fuzz/), read by the regression tests through `#filePath`.
            exclude: ["Regressions"]
        ),
        .testTarget(
            name: "SluiceProxyTests",
            dependencies: [
                "SluiceProxy",
                "SluiceAdmin",
                "SluiceListener",
                "SluiceTestSupport",
                "SluiceConfig",
                "SluiceJWT",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                /// Tokens for the JWT tests are signed with jwt-kit itself (RSA keys made with CryptoExtras).
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
            ]
        ),
    ]
)
