import Benchmark
import SluiceLimiterForBenchmarks

/// The limiter decision on the hot path: one rule, key from a header, an existing key.
/// The interesting metrics are wall clock and mallocs (the decision for an existing key
/// should allocate as little as possible).
let benchmarks: @Sendable () -> Void = {
    let metrics: [BenchmarkMetric] = [.wallClock, .mallocCountTotal, .instructions]

    for algorithm in [Algorithm.fixedWindow, .slidingWindow, .gcra, .tokenBucket] {
        Benchmark(
            "evaluate existing key (\(algorithm.rawValue))",
            configuration: .init(metrics: metrics, scalingFactor: .kilo)
        ) { benchmark in
            var configuration = SluiceConfiguration()
            configuration.rules = [
                RuleConfiguration(
                    name: "bench",
                    key: [.header("x-api-key")],
                    limits: [RateLimit(count: 100_000_000, periodSeconds: 1, text: "100000000/second")],
                    algorithm: algorithm
                )
            ]
            let limiter = RateLimiter(configuration: configuration, previous: nil)
            let request = BenchRequest(apiKey: "key-42")
            let now = LimiterInstant.now()
            _ = limiter.evaluate(request, now: now)
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                blackHole(limiter.evaluate(request, now: now))
            }
        }
    }
}

struct BenchRequest: RequestAttributes {
    var apiKey: String
    var method: String { "GET" }
    var uri: String { "/api/items?page=2" }
    var host: String? { "api.example.com" }
    var clientIP: IPAddress { IPAddress(ipv4: 0x7F00_0001) }
    func header(_ name: String) -> String? { name == "x-api-key" ? self.apiKey : nil }
}
