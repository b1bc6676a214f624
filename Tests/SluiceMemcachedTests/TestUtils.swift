import Logging
import NIOCore
import NIOPosix
import SluiceConfig
import SluiceLimiter
import SluiceTestSupport
import Testing

@testable import SluiceMemcached

/// Connection state lines are not wanted in test output.
let quietLogger: Logger = {
    var logger = Logger(label: "sluice.memcached.test")
    logger.logLevel = .critical
    return logger
}()

/// The tests that run real `memcached` servers, one at a time (see the Redis suites: both cores of a small machine
/// are not loaded at once). Each test has a time limit, every command a timeout: a hang fails instead of stalling.
@Suite(.serialized, .timeLimit(.minutes(2))) enum MemcachedIntegrationTests {}

/// The loops the stores of these tests run on.
let testGroup = MultiThreadedEventLoopGroup(numberOfThreads: 2)

struct TestTimeout: Error, CustomStringConvertible {
    var description: String
}

/// A store configuration for `servers`, with a test prefix.
func memcachedConfiguration(
    _ servers: [MemcachedServer],
    onError: MemcachedStorageConfiguration.OnError = .deny,
    instances: Int = 1,
    timeout: Duration = .seconds(2)
) -> MemcachedStorageConfiguration {
    MemcachedStorageConfiguration(
        url: "memcached://" + servers.map(\.address).joined(separator: ","),
        servers: servers.map { MemcachedServerAddress(host: "127.0.0.1", port: $0.port) },
        poolSize: 2,
        timeout: timeout,
        keyPrefix: "test:",
        onError: onError,
        instances: instances
    )
}

func makeStore(_ configuration: MemcachedStorageConfiguration) -> MemcachedStore {
    MemcachedStore(configuration: configuration, group: testGroup, localMaxKeys: 10_000, logger: quietLogger)
}

/// The store's asynchronous decision, awaited.
func decide(_ store: some RateLimitStore, _ items: [StoreItem], now: LimiterInstant) async -> DecisionBatch {
    var batch = DecisionBatch()
    for item in items { batch.append(item) }
    return await withCheckedContinuation { continuation in
        store.decide(batch, now: now) { continuation.resume(returning: $0) }
    }
}

func testKey(_ text: String) -> StorageKey {
    var hasher = KeyHasher(seed: StorageKey(high: 7, low: 7))
    hasher.combine(lengthPrefixed: text)
    return hasher.finalize()
}

/// Polls `condition` until it holds, failing after `timeout`.
func eventually(within timeout: Duration = .seconds(5), _ what: String, _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while !(try await condition()) {
        if ContinuousClock.now >= deadline { throw TestTimeout(description: "\(what): not true within \(timeout)") }
        try await Task.sleep(for: .milliseconds(20))
    }
}
