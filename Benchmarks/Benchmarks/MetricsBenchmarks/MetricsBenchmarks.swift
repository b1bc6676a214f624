import Benchmark
import Dispatch
import SluiceAdmin
import SluiceLimiterForBenchmarks

/// What the request path pays for its bookkeeping (issue 19 part 5): recording one rule decision in
/// `sluice_requests_total` and the status page's totals, one upstream response, one refused key.
///
/// Each run makes `calls` calls per thread; `ns per call` is the run's wall time divided by the calls of one thread
/// (so with two threads it is what each thread paid per call while the other did the same), and `mallocCountTotal`
/// counts the whole run's allocations (divide by the calls for allocations per call).
let benchmarks: @Sendable () -> Void = {
    let nsPerCall = BenchmarkMetric.custom("ns per call", polarity: .prefersSmaller, useScalingFactor: false)
    let calls = 1_000_000
    let configuration = Benchmark.Configuration(
        metrics: [nsPerCall, .mallocCountTotal],
        scalingFactor: .one,
        maxDuration: .seconds(3),
        maxIterations: 20
    )

    /// Runs `body(thread, call)` `calls` times on each of `threads` threads and reports the time per call.
    func measure(_ benchmark: Benchmark, threads: Int, _ body: @Sendable @escaping (Int, Int) -> Void) {
        benchmark.startMeasurement()
        let start = ContinuousClock.now
        if threads == 1 {
            for call in 0..<calls { body(0, call) }
        } else {
            DispatchQueue.concurrentPerform(iterations: threads) { thread in
                for call in 0..<calls { body(thread, call) }
            }
        }
        let elapsed = ContinuousClock.now - start
        benchmark.stopMeasurement()
        let nanoseconds = Double(elapsed.components.seconds) * 1e9 + Double(elapsed.components.attoseconds) / 1e9
        benchmark.measurement(nsPerCall, Int((nanoseconds / Double(calls)).rounded()))
    }

    let rules = ["login", "api", "search", "uploads"]
    for threads in [1, 2] {
        let suffix = "\(threads) thread\(threads == 1 ? "" : "s")"

        // What the gate does per applicable rule: the table of the configuration snapshot, by rule index.
        Benchmark("metrics: one rule decision, \(suffix)", configuration: configuration) { benchmark in
            let metrics = SluiceMetrics()
            let table = metrics.ruleCounters(for: rules)
            let decision = RuleDecision(rule: "search", ruleIndex: 2, decision: .admitted)
            measure(benchmark, threads: threads) { _, _ in table.record(decision) }
            blackHole(metrics.totals())
        }

        // The by-name path the request path used before (a lock and a dictionary lookup), kept for tests and tools.
        Benchmark("metrics: one rule decision by name, \(suffix)", configuration: configuration) { benchmark in
            let metrics = SluiceMetrics()
            metrics.prepare(rules: rules)
            measure(benchmark, threads: threads) { _, _ in metrics.requestDecided(rule: "search", decision: .admitted) }
            blackHole(metrics.totals())
        }

        Benchmark("metrics: one upstream response, \(suffix)", configuration: configuration) { benchmark in
            let metrics = SluiceMetrics()
            measure(benchmark, threads: threads) { _, call in
                metrics.upstreamResponded(status: call & 7 == 0 ? 404 : 200, seconds: 0.0031)
            }
            blackHole(metrics.totals())
        }

        Benchmark("limited keys: one refusal, \(suffix)", configuration: configuration) { benchmark in
            let tracker = LimitedKeyTracker()
            // A flood from 16 clients, 4 of them refused by two rules: the common case of the status page's table.
            let keys = (0..<16).map { StorageKey(high: UInt64($0) &* 0x9e37_79b9_7f4a_7c15, low: UInt64($0)) }
            measure(benchmark, threads: threads) { thread, call in
                let client = (call &+ thread &* 7) & 15
                tracker.record(
                    rule: client < 4 && call & 1 == 0 ? "api" : "login",
                    key: keys[client],
                    shadow: false,
                    nowSeconds: 1_800_000_000
                )
            }
            blackHole(tracker.top(10, nowSeconds: 1_800_000_000))
        }
    }
}
