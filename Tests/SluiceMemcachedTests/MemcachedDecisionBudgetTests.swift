import SluiceConfig
import SluiceLimiter
import Testing

@testable import SluiceMemcached

/// The decision budget (`timeout` + 500 ms), now watched by one watchdog per event loop instead of a timer per
/// decision: a decision that cannot go on (here: queued behind a compare-and-swap key held elsewhere, so no command
/// and no command timeout is involved) is still answered by `on_error` once its own budget runs out.
@Suite(.timeLimit(.minutes(1))) struct MemcachedDecisionBudgetTests {
    @Test func decisionsStuckInTheGateAreGivenUpEachAtItsOwnBudget() async throws {
        // Nothing listens there, and nothing is sent: the decisions wait for the gate.
        var configuration = memcachedConfiguration([], onError: .deny, timeout: .milliseconds(100))
        configuration.servers = [MemcachedServerAddress(host: "127.0.0.1", port: 9)]
        configuration.url = "memcached://127.0.0.1:9"
        let store = makeStore(configuration)
        defer { Task { await store.close() } }
        let key = testKey("budget")
        let heldName = store.keyspace.name(key)
        #expect(store.gate.enter(heldName) {})
        let item = StoreItem(
            key: key,
            algorithm: .gcra,
            limit: LimitParameters(count: 10, periodNanoseconds: 1_000_000_000),
            cost: 1
        )
        let budget = Duration.milliseconds(600)
        async let first: Duration = {
            let start = ContinuousClock.now
            let decided = await decide(store, [item], now: .now())
            #expect(decided.storageUnavailable && !decided.isAdmitted, "on_error: deny")
            return ContinuousClock.now - start
        }()
        try await Task.sleep(for: .milliseconds(250))
        async let second: Duration = {
            let start = ContinuousClock.now
            let decided = await decide(store, [item], now: .now())
            #expect(decided.storageUnavailable && !decided.isAdmitted, "on_error: deny")
            return ContinuousClock.now - start
        }()
        let (a, b) = await (first, second)
        for waited in [a, b] {
            #expect(waited >= budget - .milliseconds(20), "not before its budget: \(waited)")
            #expect(waited < budget + .milliseconds(600), "soon after its budget: \(waited)")
        }
        // The key's holder leaves: both given-up decisions pass their turn on, and the key is free again.
        store.gate.leave(heldName)
        try await eventually("the gate is empty") { store.gate.heldKeys == 0 }
    }
}
