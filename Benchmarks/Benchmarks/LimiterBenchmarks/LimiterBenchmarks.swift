import Benchmark
import Dispatch
import Synchronization
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
                    ),
                    closure: { benchmark in
                        let workload = Workload.current.withLock { $0 }!
                        let perThread = 1_000_000
                        let from = workload.claimTime(decisions: perThread)
                        benchmark.startMeasurement()
                        let start = ContinuousClock.now
                        DispatchQueue.concurrentPerform(iterations: threads) { thread in
                            workload.run(decisions: perThread, thread: thread, of: threads, from: from)
                        }
                        let elapsed = ContinuousClock.now - start
                        benchmark.stopMeasurement()
                        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
                        benchmark.measurement(decisionsPerSecond, Int(Double(perThread * threads) / seconds))
                    },
                    setup: { Workload.current.withLock { $0 = Workload(algorithm: algorithm, keys: keys) } },
                    teardown: { Workload.current.withLock { $0 = nil } }
                )
            }
        }
    }

    for algorithm in algorithms {
        Benchmark(
            "memory \(algorithm.rawValue), 1000000 keys",
            configuration: .init(metrics: [bytesPerKey, .peakMemoryResident], scalingFactor: .one, maxIterations: 1)
        ) { benchmark in
            // Bounded at exactly the key count, as an operator would set `max_keys`.
            let workload = Workload(algorithm: algorithm, keys: 1_000_000, bound: 1_000_000)
            benchmark.measurement(bytesPerKey, workload.store.tableBytes / workload.store.trackedKeys)
        }
    }
}

/// A store filled with `keys` live keys of one algorithm, and a scattered walk over them.
final class Workload: Sendable {
    /// The workload of the running `decide` benchmark, built once in its setup.
    static let current = Mutex<Workload?>(nil)
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
    let keys: [StorageKey]
    let algorithm: Algorithm
    let parameters: LimitParameters

    /// - Parameter bound: `max_keys`; by default twice the keys, because the per-shard LRU would otherwise evict a
    ///   few of them (shards fill unevenly) and every decision of the walk must find its key.
    init(algorithm: Algorithm, keys: Int, bound: Int? = nil) {
        self.store = MemoryStore(maxKeys: bound ?? 2 * keys)
        self.algorithm = algorithm
        self.parameters = LimitParameters(Self.limit(algorithm))
        self.keys = (0..<keys).map { index in
            var hasher = KeyHasher(seed: StorageKey(high: 1, low: 2))
            hasher.combine(UInt64(index))
            return hasher.finalize()
        }
        var batch = DecisionBatch()
        for key in self.keys {
            batch.removeAll()
            batch.append(self.item(key))
            self.store.decide(&batch, now: Self.start)
        }
    }

    func item(_ key: StorageKey) -> StoreItem {
        StoreItem(key: key, algorithm: self.algorithm, limit: self.parameters, cost: 1)
    }

    /// The simulated clock: each run starts where the previous one ended, so no key ever sees time go back.
    private let clock = Atomic<Int64>(Workload.start.nanosecondsSinceEpoch)

    /// The start of a run of `decisions` decisions per thread.
    func claimTime(decisions: Int) -> LimiterInstant {
        let step = Self.step(self.algorithm).components
        let span = Int64(decisions + 1) * (step.seconds * 1_000_000_000 + step.attoseconds / 1_000_000_000)
        return LimiterInstant(nanosecondsSinceEpoch: self.clock.add(span, ordering: .relaxed).oldValue)
    }

    /// `decisions` decisions over this thread's share of the keys (every `threads`-th key, so no key sees two
    /// threads' clocks), in a scattered order (a stride coprime with the share's size).
    func run(decisions: Int, thread: Int, of threads: Int, from start: LimiterInstant) {
        var batch = DecisionBatch()
        var now = start
        let step = Self.step(self.algorithm)
        let share = self.keys.count / threads
        var position = 0
        for _ in 0..<decisions {
            now = now.advanced(by: step)
            batch.removeAll()
            batch.append(self.item(self.keys[position * threads + thread]))
            self.store.decide(&batch, now: now)
            precondition(batch.isAdmitted)
            position += 1_000_003
            if position >= share { position %= share }
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
    func forEachHeaderValue(_ name: String, _ body: (String) -> Bool) {
        if let value = self.header(name) { _ = body(value) }
    }
}
