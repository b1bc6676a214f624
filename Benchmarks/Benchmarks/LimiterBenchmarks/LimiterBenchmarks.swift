import Benchmark
import Dispatch
import SluiceLimiterForBenchmarks

/// Goals (issue 4): ≥ 5 million decisions per second per core for `gcra` on an existing key, 0 allocations per
/// decision on an existing key, ≤ 64 bytes per tracked key at 1 million keys.
///
/// Three levels:
/// - `evaluate`: the whole engine for one request (match the rule, digest the key, decide, build the outcome);
/// - `decide`: the store alone for a prepared item, over 1 thousand or 1 million live keys visited in a scattered
///   order, on one thread and on two (the custom metric `decisions/s` is the throughput of all threads together);
/// - `memory`: the store's tables after tracking 1 million keys, in bytes per key.
let benchmarks: @Sendable () -> Void = {
    let algorithms: [Algorithm] = [.fixedWindow, .slidingWindow, .movingWindow, .tokenBucket, .gcra]
    let decisionsPerSecond = BenchmarkMetric.custom("decisions/s", polarity: .prefersLarger, useScalingFactor: false)
    let bytesPerKey = BenchmarkMetric.custom("bytes per key", polarity: .prefersSmaller, useScalingFactor: false)

    for algorithm in algorithms {
        Benchmark(
            "evaluate \(algorithm.rawValue), existing key",
            configuration: .init(metrics: [.wallClock, .throughput, .mallocCountTotal, .instructions], scalingFactor: .kilo)
        ) { benchmark in
            var configuration = SluiceConfiguration()
            configuration.rules = [
                RuleConfiguration(
                    name: "bench",
                    key: [.header("x-api-key")],
                    limits: [Workload.limit(algorithm)],
                    algorithm: algorithm
                )
            ]
            let limiter = RateLimiter(configuration: configuration, previous: nil)
            let request = BenchRequest(apiKey: "key-42-abcdefghijklmnopqrstuvwxyz")
            var clock = Workload.start
            _ = limiter.evaluate(request, now: clock)
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                clock = clock.advanced(by: Workload.step(algorithm))
                blackHole(limiter.evaluate(request, now: clock))
            }
        }
    }

    for algorithm in algorithms {
        for keys in [1_000, 1_000_000] {
            for threads in [1, 2] {
                Benchmark(
                    "decide \(algorithm.rawValue), \(keys) keys, \(threads) thread\(threads == 1 ? "" : "s")",
                    configuration: .init(
                        metrics: [.wallClock, .mallocCountTotal, decisionsPerSecond],
                        scalingFactor: .one,
                        maxDuration: .seconds(3),
                        maxIterations: 20
                    )
                ) { benchmark in
                    let workload = Workload(algorithm: algorithm, keys: keys)
                    let perThread = 1_000_000
                    benchmark.startMeasurement()
                    let start = ContinuousClock.now
                    DispatchQueue.concurrentPerform(iterations: threads) { thread in
                        workload.run(decisions: perThread, thread: thread)
                    }
                    let elapsed = ContinuousClock.now - start
                    benchmark.stopMeasurement()
                    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
                    benchmark.measurement(decisionsPerSecond, Int(Double(perThread * threads) / seconds))
                }
            }
        }
    }

    for algorithm in algorithms {
        Benchmark(
            "memory \(algorithm.rawValue), 1000000 keys",
            configuration: .init(metrics: [bytesPerKey, .peakMemoryResident], scalingFactor: .one, maxIterations: 1)
        ) { benchmark in
            let workload = Workload(algorithm: algorithm, keys: 1_000_000)
            benchmark.measurement(bytesPerKey, workload.store.tableBytes / workload.store.trackedKeys)
        }
    }
}

/// A store filled with `keys` live keys of one algorithm, and a scattered walk over them.
final class Workload: Sendable {
    static let start = LimiterInstant.seconds(1_800_000_000)

    /// Limits that admit every decision of the walk, so the benchmark measures the common path (counting).
    static func limit(_ algorithm: Algorithm) -> RateLimit {
        algorithm == .movingWindow
            ? RateLimit(count: 100, periodSeconds: 1, text: "100/second")
            : RateLimit(count: 100_000_000, periodSeconds: 1, text: "100000000/second")
    }

    /// How far the clock moves per decision: a moving window then keeps at most 100 timestamps per key.
    static func step(_ algorithm: Algorithm) -> Duration {
        algorithm == .movingWindow ? .milliseconds(10) : .microseconds(1)
    }

    let store: MemoryStore
    let items: [StoreItem]

    init(algorithm: Algorithm, keys: Int) {
        self.store = MemoryStore(maxKeys: keys)
        let parameters = LimitParameters(Self.limit(algorithm))
        self.items = (0..<keys).map { index in
            var hasher = KeyHasher(seed: StorageKey(high: 1, low: 2))
            hasher.combine(UInt64(index))
            return StoreItem(key: hasher.finalize(), algorithm: algorithm, limit: parameters, cost: 1)
        }
        var batch = DecisionBatch()
        for item in self.items {
            batch.removeAll()
            batch.append(item)
            self.store.decide(&batch, now: Self.start)
        }
    }

    /// `decisions` decisions over the keys in a scattered order (a stride coprime with the key count).
    func run(decisions: Int, thread: Int) {
        var batch = DecisionBatch()
        var clock = Self.start
        let step = Self.step(self.items[0].algorithm)
        var index = thread * 7919 % self.items.count
        for _ in 0..<decisions {
            clock = clock.advanced(by: step)
            batch.removeAll()
            batch.append(self.items[index])
            self.store.decide(&batch, now: clock)
            precondition(batch.isAdmitted)
            index += 1_000_003
            if index >= self.items.count { index %= self.items.count }
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
