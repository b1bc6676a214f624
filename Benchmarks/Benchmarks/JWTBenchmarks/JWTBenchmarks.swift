import Benchmark
import Crypto
import CryptoExtras
import Foundation
import JWTKit
import SluiceJWTForBenchmarks
import Synchronization

/// Issue 15: a JWT check per request, uncached (signature and claims, per algorithm) and cached (a token seen before on
/// the same event loop: its SHA-256 digest and one LRU lookup).
///
/// Run: `cd Benchmarks && swift package --disable-sandbox benchmark --target JWTBenchmarks`
let benchmarks: @Sendable () -> Void = {
    for algorithm in JWTBench.Algorithm.allCases {
        Benchmark(
            "jwt verify \(algorithm.rawValue), uncached",
            configuration: .init(
                metrics: [.wallClock, .throughput, .mallocCountTotal],
                timeUnits: .nanoseconds,
                units: [.throughput: .count],
                scalingFactor: .one,
                maxDuration: .seconds(3)
            ),
            closure: { benchmark in
                let bench = JWTBench.current.withLock { $0 }!
                let now = JWTVerifier.now()
                benchmark.startMeasurement()
                for i in benchmark.scaledIterations {
                    blackHole(bench.verifier.verify(token: bench.tokens[i % bench.tokens.count][...], now: now))
                }
                benchmark.stopMeasurement()
                // Every token verifies (checked in `prepare`): the loop measured the full check, not an early failure.
            },
            setup: { try await JWTBench.prepare(algorithm) },
            teardown: { JWTBench.current.withLock { $0 = nil } }
        )
        Benchmark(
            "jwt check \(algorithm.rawValue), cached",
            // 1000 checks per sample: the time and mallocs are reported per check (scaled); a throughput metric would
            // count samples, not checks, so it is left out (checks per second = 10^9 / ns per check).
            configuration: .init(
                metrics: [.wallClock, .mallocCountTotal],
                timeUnits: .nanoseconds,
                scalingFactor: .kilo,
                maxDuration: .seconds(3)
            ),
            closure: { benchmark in
                let bench = JWTBench.current.withLock { $0 }!
                let cache = JWTVerificationCache()
                let now = JWTVerifier.now()
                for token in bench.tokens { _ = bench.verifier.check(token: token[...], now: now, cache: cache) }
                benchmark.startMeasurement()
                for i in benchmark.scaledIterations {
                    blackHole(bench.verifier.check(token: bench.tokens[i % bench.tokens.count][...], now: now, cache: cache))
                }
                benchmark.stopMeasurement()
                // The loop must have been answered from the cache alone: one miss per token (the warm-up), the rest hits.
                let iterations = benchmark.scaledIterations.count
                if cache.misses != bench.tokens.count || cache.hits != iterations {
                    benchmark.error("cache not hit: \(cache.hits) hits, \(cache.misses) misses for \(iterations) checks")
                }
                guard case .verified = bench.verifier.check(token: bench.tokens[0][...], now: now, cache: cache) else {
                    benchmark.error("a cached token does not read as verified")
                    return
                }
            },
            setup: { try await JWTBench.prepare(algorithm) },
            teardown: { JWTBench.current.withLock { $0 = nil } }
        )
    }
}

/// A verifier for one algorithm and 100 tokens (distinct `sub`) signed with its key.
final class JWTBench: Sendable {
    enum Algorithm: String, CaseIterable, Sendable {
        case hs256 = "HS256"
        case rs256 = "RS256"
        case es256 = "ES256"
        case eddsa = "EdDSA"
    }

    static let current = Mutex<JWTBench?>(nil)
    let verifier: JWTVerifier
    let tokens: [String]

    init(verifier: JWTVerifier, tokens: [String]) {
        self.verifier = verifier
        self.tokens = tokens
    }

    static func prepare(_ algorithm: Algorithm) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-jwt-bench-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let signers = JWTKeyCollection()
        let secret = "bench-secret-0123456789abcdef0123456789"
        var jwt = JWTConfiguration()
        let pem = directory + "/key.pem"
        switch algorithm {
        case .hs256:
            await signers.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
            jwt.hs256Secret = secret
        case .rs256:
            let key = try JWTKit.Insecure.RSA.PrivateKey(backing: _RSA.Signing.PrivateKey(keySize: .bits2048))
            try key.publicKey.pemRepresentation.write(toFile: pem, atomically: true, encoding: .utf8)
            await signers.add(rsa: key, digestAlgorithm: .sha256)
            jwt.keys = [.init(algorithm: .rs256, path: pem)]
        case .es256:
            let key = ES256PrivateKey()
            try key.publicKey.pemRepresentation.write(toFile: pem, atomically: true, encoding: .utf8)
            await signers.add(ecdsa: key)
            jwt.keys = [.init(algorithm: .es256, path: pem)]
        case .eddsa:
            let key = try EdDSA.PrivateKey()
            try key.publicKey.pemRepresentation.write(toFile: pem, atomically: true, encoding: .utf8)
            await signers.add(eddsa: key)
            jwt.keys = [.init(algorithm: .eddsa, path: pem)]
        }
        var configuration = SluiceConfiguration()
        configuration.jwt = jwt
        configuration.rules = [RuleConfiguration(name: "bench", key: [.jwt("sub")], limits: [RateLimit(count: 1, periodSeconds: 1, text: "1/second")])]
        let verifier = try JWTVerifier(configuration: configuration)
        try await verifier.prepare()
        var tokens: [String] = []
        let exp = Int(Date().timeIntervalSince1970) + 86_400
        for i in 0..<100 {
            tokens.append(try await signers.sign(BenchClaims(sub: "user\(i)", exp: exp)))
        }
        // A token that fails (a key or claim mistake here) would be measured as a cheap early refusal: refuse to run.
        let now = JWTVerifier.now()
        for (i, token) in tokens.enumerated() {
            guard case .verified(let claims) = verifier.verify(token: token[...], now: now).0, claims.keyValue("sub") == "user\(i)"
            else {
                throw BenchSetupError(message: "\(algorithm.rawValue): benchmark token \(i) does not verify to its sub")
            }
        }
        Self.current.withLock { $0 = JWTBench(verifier: verifier, tokens: tokens) }
    }
}

struct BenchSetupError: Error, CustomStringConvertible {
    var message: String
    var description: String { self.message }
}

struct BenchClaims: JWTPayload {
    var sub: String
    var exp: Int
    func verify(using algorithm: some JWTAlgorithm) async throws {}
}
