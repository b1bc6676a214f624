// A plain loop over one limiter operation, for `perf record` (the benchmark runner hides its work in a child).
// Run: swift build -c release --product LimiterProfile && perf record -g .build/release/LimiterProfile evaluate gcra
import SluiceLimiterForBenchmarks

let arguments = CommandLine.arguments.dropFirst()
let operation = arguments.first ?? "evaluate"
let algorithm = Algorithm(rawValue: arguments.dropFirst().first ?? "gcra") ?? .gcra
let iterations = 20_000_000

struct ProfileRequest: RequestAttributes {
    var method: String { "GET" }
    var uri: String { "/api/items?page=2" }
    var host: String? { "api.example.com" }
    var clientIP: IPAddress { IPAddress(ipv4: 0x7F00_0001) }
    func header(_ name: String) -> String? { name == "x-api-key" ? "key-42-abcdefghijklmnopqrstuvwxyz" : nil }
    func forEachHeaderValue(_ name: String, _ body: (String) -> Bool) {
        if let value = self.header(name) { _ = body(value) }
    }
}

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
var clock = LimiterInstant.seconds(1_800_000_000)
let start = ContinuousClock.now
var admitted = 0
switch operation {
case "sweep":
    // A million live keys, nothing idle: the cost of one pass of the idle sweeper.
    let store = MemoryStore(maxKeys: 1_000_000)
    var batch = DecisionBatch()
    let parameters = LimitParameters(count: 10, periodNanoseconds: 60_000_000_000)
    for index in 0..<1_000_000 {
        var hasher = KeyHasher(seed: StorageKey(high: 1, low: 2))
        hasher.combine(UInt64(index))
        batch.removeAll()
        batch.append(StoreItem(key: hasher.finalize(), algorithm: .gcra, limit: parameters, cost: 1))
        store.decide(&batch, now: clock)
    }
    let sweepStart = ContinuousClock.now
    admitted = store.removeIdleKeys(now: clock)
    print("sweep of \(store.trackedKeys) keys: \(ContinuousClock.now - sweepStart), \(store.tableBytes / store.trackedKeys) bytes per key")
    admitted = store.removeIdleKeys(now: clock.advanced(by: .seconds(60)))
    print("sweep removing \(admitted) keys: \(ContinuousClock.now - sweepStart)")
case "prepare":
    for _ in 0..<iterations {
        clock = clock.advanced(by: .microseconds(1))
        let prepared = limiter.prepare(ProfileRequest(), now: clock)
        admitted &+= prepared.batch.items.count
    }
default:
    for _ in 0..<iterations {
        clock = clock.advanced(by: .microseconds(1))
        if limiter.evaluate(ProfileRequest(), now: clock).decision == .admitted { admitted &+= 1 }
    }
}
let elapsed = ContinuousClock.now - start
print("\(operation) \(algorithm.rawValue): \(elapsed / iterations) per call, \(admitted) admitted")
print("sizes: outcome \(MemoryLayout<LimitOutcome>.size), prepared \(MemoryLayout<RateLimiter.PreparedDecision>.size), batch \(MemoryLayout<DecisionBatch>.size), item \(MemoryLayout<StoreItem>.size), result \(MemoryLayout<StoreItemResult>.size), status \(MemoryLayout<LimitStatus>.size)")
