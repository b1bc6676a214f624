import NIOCore
import NIOPosix
import Prometheus
import SluiceLimiter
import Testing

@testable import SluiceAdmin

/// The request path's counters (issue 19 part 5): resolved once per configuration, indexed by rule, one atomic add
/// on the calling loop's own stripe; read back and rendered exactly as before.
@Suite struct StripedMetricsTests {
    // MARK: Rule counters by index

    @Test func indexedDecisionsLandUnderTheirRuleAfterAReloadThatReordersRules() {
        let metrics = SluiceMetrics()
        let first = metrics.ruleCounters(for: ["a", "b", "c"])
        first.record(RuleDecision(rule: "b", ruleIndex: 1, decision: .limited))
        first.record(ruleIndex: 0, decision: .admitted)
        first.record(ruleIndex: 2, decision: .noRule)  // not a rule's verdict: ignored

        // Reload: `b` removed, `c` first, `a` last, `d` new.
        let second = metrics.ruleCounters(for: ["c", "d", "a"])
        second.record(ruleIndex: 0, decision: .exempt)
        second.record(ruleIndex: 2, decision: .shadowLimited)
        second.record(ruleIndex: 1, decision: .admitted)
        // A request still finishing on the old snapshot counts by the old indices.
        first.record(ruleIndex: 1, decision: .admitted)
        first.record(ruleIndex: 0, decision: .limited)
        // The by-name path (tests, tools) counts into the same series.
        metrics.requestDecided(rule: "a", decision: .admitted)

        let totals = metrics.totals()
        #expect(totals.requests["a"] == DecisionCounts(admitted: 2, limited: 1, shadowLimited: 1))
        #expect(totals.requests["b"] == DecisionCounts(admitted: 1, limited: 1))
        #expect(totals.requests["c"] == DecisionCounts(exempt: 1))
        #expect(totals.requests["d"] == DecisionCounts(admitted: 1))
        #expect(totals.requests.count == 4)

        let text = metrics.exposition()
        #expect(text.contains(#"sluice_requests_total{rule="a",decision="admitted"} 2"# + "\n"))
        #expect(text.contains(#"sluice_requests_total{rule="a",decision="limited"} 1"# + "\n"))
        #expect(text.contains(#"sluice_requests_total{rule="a",decision="shadow_limited"} 1"# + "\n"))
        #expect(text.contains(#"sluice_requests_total{rule="b",decision="limited"} 1"# + "\n"), "removed rules keep their series")
        #expect(text.contains(#"sluice_requests_total{rule="c",decision="exempt"} 1"# + "\n"))
        #expect(text.contains(#"sluice_requests_total{rule="d",decision="exempt"} 0"# + "\n"), "new rules start at 0")
        #expect(text.split(separator: "\n").filter { $0.hasPrefix("sluice_requests_total{") }.count == 16)
        #expect(text.components(separatedBy: "# TYPE sluice_requests_total counter\n").count == 2)
        // Rendering again renders the same counts (the registry is advanced by growth, not by totals).
        #expect(metrics.exposition().contains(#"sluice_requests_total{rule="a",decision="admitted"} 2"# + "\n"))
        first.record(ruleIndex: 0, decision: .admitted)
        #expect(metrics.exposition().contains(#"sluice_requests_total{rule="a",decision="admitted"} 3"# + "\n"))
    }

    @Test func aTableOfNoRulesCountsNothing() {
        let metrics = SluiceMetrics()
        let table = metrics.ruleCounters(for: [])
        #expect(table.count == 0)
        table.record(ruleIndex: 0, decision: .noRule)
        #expect(metrics.totals().requests.isEmpty)
        #expect(metrics.exposition().contains("# TYPE sluice_requests_total counter\n"))
    }

    // MARK: Concurrency

    /// More event loops than stripes, so that some loops share a stripe: every count must still be exact.
    @Test func concurrentIncrementsFromManyThreadsSumExactly() async throws {
        let threads = 2 * ThreadStripe.count + 1
        let perThread = 20_000
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        let metrics = SluiceMetrics()
        let table = metrics.ruleCounters(for: ["r0", "r1", "r2"])
        let tracker = LimitedKeyTracker()
        let key = StorageKey(high: 7, low: 11)
        let now: Int64 = 1_800_000_000
        var futures: [EventLoopFuture<Void>] = []
        for (thread, loop) in group.makeIterator().enumerated() {
            futures.append(
                loop.submit {
                    for call in 0..<perThread {
                        table.record(ruleIndex: call % 3, decision: call % 2 == 0 ? .admitted : .limited)
                        metrics.upstreamResponded(status: call % 4 == 0 ? 503 : 200, seconds: 0.002)
                        if call % 10 == 0 {
                            metrics.requestDecided(rule: "r\(thread % 3)", decision: .exempt)
                            metrics.storageObserved(seconds: 0.0003)
                            tracker.record(rule: "r0", key: key, shadow: false, nowSeconds: now)
                        }
                    }
                }
            )
        }
        try await EventLoopFuture.andAllSucceed(futures, on: group.next()).get()
        try await group.shutdownGracefully()

        let total = threads * perThread
        let totals = metrics.totals()
        let perRule = (0..<3).map { rule in (0..<perThread).filter { $0 % 3 == rule } }
        var exempt = [0, 0, 0]
        for thread in 0..<threads { exempt[thread % 3] += perThread / 10 }
        for rule in 0..<3 {
            let admitted = perRule[rule].filter { $0 % 2 == 0 }.count * threads
            let limited = perRule[rule].count * threads - admitted
            #expect(totals.requests["r\(rule)"] == DecisionCounts(admitted: admitted, limited: limited, exempt: exempt[rule]))
        }
        #expect(totals.upstreamResponses == [503: total / 4, 200: total - total / 4])
        #expect(totals.storageDecisions == total / 10)
        #expect(tracker.top(5, nowSeconds: now).map(\.count) == [total / 10])

        let text = metrics.exposition()
        #expect(text.contains("sluice_upstream_responses_total{status=\"200\"} \(total - total / 4)\n"))
        #expect(text.contains("sluice_upstream_latency_seconds_bucket{le=\"0.0025\"} \(total)\n"))
        #expect(text.contains("sluice_upstream_latency_seconds_bucket{le=\"0.001\"} 0\n"))
        #expect(text.contains("sluice_upstream_latency_seconds_count \(total)\n"))
        #expect(text.contains("sluice_storage_latency_seconds_bucket{le=\"0.0005\"} \(total / 10)\n"))
    }

    @Test func stripedCountersAddUpEveryStripe() async throws {
        let counters = StripedCounters(width: 3)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: ThreadStripe.count + 3)
        var futures: [EventLoopFuture<Void>] = []
        for loop in group.makeIterator() {
            futures.append(
                loop.submit {
                    for _ in 0..<50_000 { counters.add(1) }
                    counters.add(2, 5)
                }
            )
        }
        try await EventLoopFuture.andAllSucceed(futures, on: group.next()).get()
        try await group.shutdownGracefully()
        let threads = ThreadStripe.count + 3
        #expect(counters.value(0) == 0)
        #expect(counters.value(1) == 50_000 * threads)
        #expect(counters.value(2) == 5 * threads)
        #expect(counters.stripeValues(1).reduce(0, +) == 50_000 * threads)
        #expect(counters.stripeValues(1).count == ThreadStripe.count)
    }

    @Test func aThreadKeepsItsStripe() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let stripes = try await group.next().submit { (0..<100).map { _ in ThreadStripe.current } }.get()
        try await group.shutdownGracefully()
        #expect(Set(stripes).count == 1)
        #expect((0..<ThreadStripe.count).contains(stripes[0]))
        #expect(ThreadStripe.count >= 2 && ThreadStripe.count & (ThreadStripe.count - 1) == 0)
    }

    // MARK: Upstream statuses

    @Test func everyStatusIsCountedAndRenderedOnceSeen() {
        let metrics = SluiceMetrics()
        #expect(metrics.exposition().contains("# TYPE sluice_upstream_responses_total counter\n"))
        #expect(!metrics.exposition().contains("sluice_upstream_responses_total{"))
        for status in [100, 200, 200, 599, 600, 999, 42] {
            metrics.upstreamResponded(status: status, seconds: 0.01)
        }
        #expect(metrics.totals().upstreamResponses == [100: 1, 200: 2, 599: 1, 600: 1, 999: 1, 42: 1])
        let text = metrics.exposition()
        for (status, count) in [(100, 1), (200, 2), (599, 1), (600, 1), (999, 1), (42, 1)] {
            #expect(text.contains("sluice_upstream_responses_total{status=\"\(status)\"} \(count)\n"))
        }
        #expect(text.split(separator: "\n").filter { $0.hasPrefix("sluice_upstream_responses_total{") }.count == 6)
        #expect(text.components(separatedBy: "# TYPE sluice_upstream_responses_total counter\n").count == 2)
        metrics.upstreamResponded(status: 200, seconds: 0.01)
        metrics.upstreamResponded(status: 999, seconds: 0.01)
        let again = metrics.exposition()
        #expect(again.contains("sluice_upstream_responses_total{status=\"200\"} 3\n"))
        #expect(again.contains("sluice_upstream_responses_total{status=\"999\"} 2\n"))
    }

    // MARK: Histograms

    /// The histograms left the registry (its `record` takes a lock); they must render as its own did.
    @Test func histogramsRenderExactlyAsSwiftPrometheus() {
        let values: [Double] = [0, 0.0001, 0.001, 0.0011, 0.003, 0.5, 1, 1.0000001, 9.99, 10, 10.5, 400, 0.02, 0.02]
        for buckets in [SluiceMetrics.upstreamLatencyBuckets, SluiceMetrics.storageLatencyBuckets] {
            let registry = PrometheusCollectorRegistry()
            let reference = registry.makeValueHistogram(
                descriptor: MetricNameDescriptor(metricName: "sluice_test_latency", unitName: "seconds", helpText: "Some help."),
                buckets: buckets
            )
            let striped = StripedHistogram(name: "sluice_test_latency_seconds", help: "Some help.", buckets: buckets)
            func rendered() -> (String, String) {
                var expected: [UInt8] = []
                registry.emit(into: &expected)
                var actual: [UInt8] = []
                striped.emit(into: &actual)
                return (String(decoding: expected, as: UTF8.self), String(decoding: actual, as: UTF8.self))
            }
            let empty = rendered()
            #expect(empty.1 == empty.0)
            for value in values {
                reference.record(value)
                striped.observe(value)
            }
            let full = rendered()
            #expect(full.1 == full.0)
            #expect(striped.count == values.count)
        }
    }

    @Test func storageTotalsComeFromItsHistogram() {
        let metrics = SluiceMetrics()
        metrics.storageObserved(seconds: 0.0004)
        metrics.storageObserved(seconds: 0.0008)
        metrics.storageObserved(seconds: -1)  // a clock step back counts as 0
        let totals = metrics.totals()
        #expect(totals.storageDecisions == 3)
        #expect(totals.storageNanoseconds == 1_200_000)
        #expect(metrics.exposition().contains("sluice_storage_latency_seconds_bucket{le=\"0.0001\"} 1\n"))
    }

    // MARK: Limited keys

    @Test func limitedKeysOfEveryLoopAreMergedWhenRead() async throws {
        let tracker = LimitedKeyTracker(minutes: 2, slotsPerMinute: 4)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: ThreadStripe.count + 1)
        let now: Int64 = 60 * 30_000_000
        let shared = StorageKey(high: 1, low: 1)
        var futures: [EventLoopFuture<Void>] = []
        for (thread, loop) in group.makeIterator().enumerated() {
            futures.append(
                loop.submit {
                    for _ in 0..<100 { tracker.record(rule: "api", key: shared, shadow: false, nowSeconds: now + Int64(thread)) }
                    tracker.record(rule: "api", key: StorageKey(high: 2, low: UInt64(thread)), shadow: true, nowSeconds: now)
                }
            )
        }
        try await EventLoopFuture.andAllSucceed(futures, on: group.next()).get()
        try await group.shutdownGracefully()
        let threads = ThreadStripe.count + 1
        let top = tracker.top(100, nowSeconds: now + 59)
        #expect(top.first == LimitedKeyTracker.Entry(
            rule: "api", key: shared, shadow: false, count: 100 * threads, lastSeenSeconds: now + Int64(threads - 1)
        ))
        #expect(top.count == 1 + threads)
        #expect(top.dropFirst().allSatisfy { $0.shadow && $0.count == 1 })
        #expect(tracker.top(100, nowSeconds: now + 120).isEmpty, "both minutes have left the window")
    }
}
