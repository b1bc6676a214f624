import Foundation
import Logging
import NIOCore
import NIOPosix
import SluiceConfig
import SluiceTestSupport
import Synchronization
import Testing
@testable import SluiceLimiter
@testable import SluiceRedis

/// The Redis store against a real `redis-server` started by each test (one test at a time, with the other
/// real-server suites).
extension RedisIntegrationTests { @Suite("Redis store") struct RedisStoreTests {
    static let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)

    static func configuration(
        port: Int,
        password: String? = nil,
        database: Int = 0,
        onError: RedisStorageConfiguration.OnError = .local,
        instances: Int = 1,
        timeout: Duration = .seconds(2)
    ) -> RedisStorageConfiguration {
        var configuration = RedisStorageConfiguration(url: "redis://127.0.0.1:\(port)/\(database)")
        configuration.host = "127.0.0.1"
        configuration.port = port
        configuration.password = password
        configuration.database = database
        configuration.onError = onError
        configuration.instances = instances
        configuration.timeout = timeout
        configuration.keyPrefix = "test:"
        return configuration
    }

    static func store(_ configuration: RedisStorageConfiguration, serverTime: Bool = true) -> RedisStore {
        RedisStore(
            configuration: configuration,
            group: Self.group,
            localMaxKeys: 10_000,
            logger: Logger(label: "test"),
            useServerTime: serverTime,
            cacheRefusals: serverTime
        )
    }

    /// The store's asynchronous decision, awaited.
    static func decide(_ store: some RateLimitStore, _ items: [StoreItem], now: LimiterInstant) async -> DecisionBatch {
        var batch = DecisionBatch()
        for item in items { batch.append(item) }
        return await withCheckedContinuation { continuation in
            store.decide(batch, now: now) { continuation.resume(returning: $0) }
        }
    }

    static func key(_ text: String) -> StorageKey {
        var hasher = KeyHasher(seed: StorageKey(high: 7, low: 7))
        hasher.combine(lengthPrefixed: text)
        return hasher.finalize()
    }

    // MARK: Same decisions as the memory store

    /// Random sequences through both stores at the same instants (microsecond-aligned, the script's unit): every
    /// verdict, remaining count and block is the same, and waits agree to the microsecond.
    @Test(arguments: [Algorithm.fixedWindow, .slidingWindow, .movingWindow, .tokenBucket, .gcra])
    func sameDecisionsAsTheMemoryStore(_ algorithm: Algorithm) async throws {
        try await withRedisServer { server in
            let redis = Self.store(Self.configuration(port: server.port), serverTime: false)
            defer { Task { await redis.close() } }
            var random = SystemRandomNumberGenerator()
            let seed = UInt64.random(in: 0...UInt64.max, using: &random)
            var rng = SplitMix64(seed: seed)
            var compared = 0
            for sequence in 0..<24 {
                let memory = MemoryStore(maxKeys: 1000)
                let count = Int64(rng.next() % 8 + 1)
                let period = Int64(rng.next() % 5 + 1) * 1_000_000_000
                let burst = algorithm == .gcra || algorithm == .tokenBucket ? Int64(rng.next() % 3) : 0
                let delay = algorithm == .gcra && rng.next() % 2 == 0 ? period / count * Int64(rng.next() % 3) : 0
                let limit = LimitParameters(count: count, periodNanoseconds: period, burst: burst, delayNanoseconds: delay)
                let second = LimitParameters(count: count * 3, periodNanoseconds: period * 4, burst: burst, delayNanoseconds: delay)
                let penalty = rng.next() % 3 == 0 ? Int64(rng.next() % 3 + 1) * 1_000_000_000 : 0
                let name = "seq-\(seed)-\(sequence)"
                var now = Int64(1_800_000_000_000_000) + Int64(rng.next() % 1_000_000) * 1000
                for step in 0..<30 {
                    now += Int64(rng.next() % UInt64(period / 1000 / 2 + 1)) * 1000 * Int64(rng.next() % 3)
                    let cost = Int64(rng.next() % UInt64(count) + 1)
                    var items = [
                        StoreItem(
                            key: Self.key(name + "-a"),
                            algorithm: algorithm,
                            limit: limit,
                            cost: cost,
                            group: 0,
                            penaltyKey: penalty > 0 ? Self.key(name + "-block") : nil,
                            penaltyNanoseconds: penalty
                        )
                    ]
                    if sequence % 2 == 1 {
                        // The second limit is sometimes check-only (count_when) or a shadow rule's.
                        let mode: StoreItem.Mode = rng.next() % 4 == 0 ? .check : .consume
                        let enforced = rng.next() % 4 != 0
                        items.append(
                            StoreItem(
                                key: Self.key(name + "-b"), algorithm: algorithm, limit: second, cost: cost, mode: mode,
                                group: enforced ? 0 : 1, isEnforced: enforced
                            )
                        )
                    }
                    let instant = LimiterInstant(nanosecondsSinceEpoch: now)
                    if rng.next() % 6 == 0 {
                        // count_when: the cost taken after the response, whatever the budget.
                        memory.commit(items, now: instant)
                        try await #require(redis.committed(SmallArray(items), now: instant)).get()
                    }
                    var expected = DecisionBatch()
                    for item in items { expected.append(item) }
                    memory.decide(&expected, now: instant)
                    let actual = await Self.decide(redis, items, now: instant)
                    let context = "seed \(seed) sequence \(sequence) step \(step) \(algorithm.rawValue) \(limit) penalty \(penalty)"
                    #expect(actual.isAdmitted == expected.isAdmitted, "\(context)")
                    for index in items.indices {
                        let e = expected.results[index]
                        let a = actual.results[index]
                        #expect(Self.kind(a.verdict) == Self.kind(e.verdict), "\(context) item \(index): \(a.verdict) vs \(e.verdict)")
                        #expect(abs(Self.wait(a.verdict) - Self.wait(e.verdict)) < 1000, "\(context) item \(index): \(a.verdict) vs \(e.verdict)")
                        #expect(a.remaining == e.remaining, "\(context) item \(index): remaining \(a.remaining) vs \(e.remaining)")
                        #expect(a.isPenaltyBlocked == e.isPenaltyBlocked, "\(context) item \(index)")
                    }
                    compared += 1
                    if actual.isAdmitted != expected.isAdmitted { return }
                }
            }
            #expect(compared == 24 * 30)
        }
    }

    static func kind(_ verdict: StepVerdict) -> Int {
        switch verdict {
        case .admitted: 0
        case .delayed: 1
        case .denied: 2
        }
    }

    static func wait(_ verdict: StepVerdict) -> Int64 {
        switch verdict {
        case .admitted: 0
        case .delayed(let wait): wait
        case .denied(let retry): retry
        }
    }

    // MARK: Sharing

    /// Two stores (two instances' worth of connections) deciding concurrently for one key admit exactly COUNT.
    @Test func twoInstancesShareOneBudget() async throws {
        try await withRedisServer { server in
            let first = Self.store(Self.configuration(port: server.port))
            let second = Self.store(Self.configuration(port: server.port))
            let limit = LimitParameters(count: 500, periodNanoseconds: 3600 * 1_000_000_000)
            let item = StoreItem(key: Self.key("shared"), algorithm: .fixedWindow, limit: limit, cost: 1)
            let admitted = await withTaskGroup(of: Int.self) { tasks in
                for store in [first, second] {
                    for _ in 0..<8 {
                        tasks.addTask {
                            var admitted = 0
                            for _ in 0..<100 where await Self.decide(store, [item], now: .now()).isAdmitted {
                                admitted += 1
                            }
                            return admitted
                        }
                    }
                }
                return await tasks.reduce(0, +)
            }
            #expect(admitted == 500)
            await first.close()
            await second.close()
        }
    }

    // MARK: Failures

    @Test(arguments: [RedisStorageConfiguration.OnError.allow, .deny, .local])
    func redisDownFollowsOnErrorAndComesBack(_ policy: RedisStorageConfiguration.OnError) async throws {
        try await withRedisServer { server in
            let store = Self.store(Self.configuration(port: server.port, onError: policy, instances: 2, timeout: .milliseconds(200)))
            let limit = LimitParameters(count: 4, periodNanoseconds: 3600 * 1_000_000_000)
            let item = StoreItem(key: Self.key("outage-\(policy)"), algorithm: .fixedWindow, limit: limit, cost: 1)
            #expect(await Self.decide(store, [item], now: .now()).isAdmitted)
            #expect(store.isAvailable)

            await server.stop()
            var outcomes: [DecisionBatch] = []
            for _ in 0..<6 {
                let start = ContinuousClock.now
                outcomes.append(await Self.decide(store, [item], now: .now()))
                // Never longer than the command timeout (200 ms), with room for a slow machine.
                #expect(ContinuousClock.now - start < .seconds(1))
            }
            #expect(!store.isAvailable)
            switch policy {
            case .allow:
                #expect(outcomes.allSatisfy { $0.isAdmitted })
            case .deny:
                #expect(outcomes.allSatisfy { !$0.isAdmitted && $0.storageUnavailable })
            case .local:
                // COUNT / instances = 2 per instance while Redis is away.
                #expect(outcomes.map(\.isAdmitted) == [true, true, false, false, false, false])
            }

            try await server.restart()
            // The breaker probes again after its backoff; decisions then come from Redis by themselves.
            var back = false
            for _ in 0..<60 where !back {
                try await Task.sleep(for: .milliseconds(100))
                let batch = await Self.decide(store, [item], now: .now())
                back = store.isAvailable && !batch.storageUnavailable
            }
            #expect(back)
            // Redis kept its budget only for what it saw (the server restarted without persistence): fresh.
            #expect(server.cli("DBSIZE") != "0")
            await store.close()
        }
    }

    // MARK: Expiry, password, database

    @Test func keysExpireWhenTheirStateMeansNothing() async throws {
        try await withRedisServer { server in
            let store = Self.store(Self.configuration(port: server.port))
            let second = LimitParameters(count: 3, periodNanoseconds: 1_000_000_000, burst: 1)
            for algorithm in [Algorithm.fixedWindow, .slidingWindow, .movingWindow, .tokenBucket, .gcra] {
                var item = StoreItem(key: Self.key("expiry-\(algorithm)"), algorithm: algorithm, limit: second, cost: 1)
                item.penaltyKey = Self.key("expiry-block-\(algorithm)")
                item.penaltyNanoseconds = 1_000_000_000
                for _ in 0..<6 { _ = await Self.decide(store, [item], now: .now()) }
            }
            #expect(Int(server.cli("DBSIZE")) ?? 0 >= 5)
            // The longest: a sliding window lives two periods.
            try await Task.sleep(for: .milliseconds(2300))
            #expect(server.cli("DBSIZE") == "0")
            await store.close()
        }
    }

    @Test func passwordAndDatabase() async throws {
        try await withRedisServer(password: "s3cret") { server in
            let store = Self.store(Self.configuration(port: server.port, password: "s3cret", database: 3, onError: .deny))
            let item = StoreItem(
                key: Self.key("db"),
                algorithm: .gcra,
                limit: LimitParameters(count: 1, periodNanoseconds: 60_000_000_000),
                cost: 1
            )
            let first = await Self.decide(store, [item], now: .now())
            #expect(first.isAdmitted && !first.storageUnavailable)
            #expect(!(await Self.decide(store, [item], now: .now())).isAdmitted)
            #expect(server.cli("-a", "s3cret", "--no-auth-warning", "-n", "3", "DBSIZE") == "1")
            #expect(server.cli("-a", "s3cret", "--no-auth-warning", "-n", "0", "DBSIZE") == "0")
            await store.close()

            let wrong = Self.store(Self.configuration(port: server.port, password: "wrong", onError: .deny, timeout: .milliseconds(200)))
            #expect((await Self.decide(wrong, [item], now: .now())).storageUnavailable)
            await wrong.close()
        }
    }

    /// A refused key is answered from the local cache until its Retry-After: Redis sees no more scripts for it.
    @Test func knownRefusalsCostRedisNothing() async throws {
        try await withRedisServer { server in
            let store = Self.store(Self.configuration(port: server.port))
            let item = StoreItem(
                key: Self.key("flood"),
                algorithm: .fixedWindow,
                limit: LimitParameters(count: 2, periodNanoseconds: 3600 * 1_000_000_000),
                cost: 1
            )
            for _ in 0..<3 { _ = await Self.decide(store, [item], now: .now()) }
            let before = Self.scriptCalls(server)
            for _ in 0..<200 {
                let batch = await Self.decide(store, [item], now: .now())
                #expect(!batch.isAdmitted)
                guard case .denied(let retry) = batch.results[0].verdict else { Issue.record("not denied"); return }
                #expect(retry > 0)
            }
            #expect(Self.scriptCalls(server) == before)
            await store.close()
        }
    }

    /// `rediss://`: decisions over TLS to a server whose certificate a private CA signed; a client that does not
    /// trust that CA gets no connection (and `on_error` decides).
    @Test func decisionsOverTLS() async throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        let leaf = try certificates.issue("server")
        let other = try certificates.unrelatedCA("other")
        try await withRedisServer(tls: .init(cert: leaf.cert, key: leaf.key, ca: certificates.caPath)) { server in
            var configuration = Self.configuration(port: try #require(server.tlsPort), onError: .deny)
            configuration.host = "localhost"
            configuration.useTLS = true
            let item = StoreItem(
                key: Self.key("tls"),
                algorithm: .fixedWindow,
                limit: LimitParameters(count: 1, periodNanoseconds: 60_000_000_000),
                cost: 1
            )
            let trusted = RedisStore(configuration: configuration, group: Self.group, localMaxKeys: 100, logger: Logger(label: "test"), tlsCAFile: certificates.caPath)
            let first = await Self.decide(trusted, [item], now: .now())
            #expect(first.isAdmitted && !first.storageUnavailable)
            let second = await Self.decide(trusted, [item], now: .now())
            #expect(!second.isAdmitted && !second.storageUnavailable)
            #expect(server.cli("DBSIZE") == "1")
            await trusted.close()

            let untrusting = RedisStore(configuration: configuration, group: Self.group, localMaxKeys: 100, logger: Logger(label: "test"), tlsCAFile: other)
            #expect((await Self.decide(untrusting, [item], now: .now())).storageUnavailable)
            await untrusting.close()
        }
    }

    /// Calls of EVAL and EVALSHA so far (`INFO commandstats`).
    /// Decisions asked on one event loop in one tick leave as one script call, and come back as if sent one by one:
    /// the first COUNT admitted in order, with remaining counting down, the rest refused.
    @Test func decisionsOfOneTickShareOneScriptCall() async throws {
        try await withRedisServer { server in
            let store = Self.store(Self.configuration(port: server.port))
            let limit = LimitParameters(count: 5, periodNanoseconds: 3600 * 1_000_000_000)
            let warmUp = StoreItem(key: Self.key("tick-warm-up"), algorithm: .tokenBucket, limit: limit, cost: 1)
            let loop = Self.group.next()
            // On the loop, so the request is batched like the proxy's; this one also loads the script.
            _ = try await loop.flatSubmit { Self.decideOnLoop(store, [warmUp], loop: loop) }.get()
            let before = Self.scriptCalls(server)
            let item = StoreItem(key: Self.key("tick"), algorithm: .tokenBucket, limit: limit, cost: 1)
            let decided = try await loop.flatSubmit {
                EventLoopFuture.whenAllSucceed((0..<12).map { _ in Self.decideOnLoop(store, [item], loop: loop) }, on: loop)
            }.get()
            #expect(Self.scriptCalls(server) == before + 1, "12 decisions of one tick, one EVALSHA")
            #expect(decided.map(\.isAdmitted) == Array(repeating: true, count: 5) + Array(repeating: false, count: 7))
            #expect(decided.prefix(5).map { $0.results[0].remaining } == [4, 3, 2, 1, 0])
            await store.close()
        }
    }

    static func decideOnLoop(_ store: RedisStore, _ items: [StoreItem], loop: any EventLoop) -> EventLoopFuture<DecisionBatch> {
        var batch = DecisionBatch()
        for item in items { batch.append(item) }
        let promise = loop.makePromise(of: DecisionBatch.self)
        store.decide(batch, now: .now()) { promise.succeed($0) }
        return promise.futureResult
    }

    static func scriptCalls(_ server: RedisServer) -> Int {
        let stats = server.cli("INFO", "commandstats")
        var total = 0
        for line in stats.split(whereSeparator: \.isNewline) where line.hasPrefix("cmdstat_eval") {
            if let calls = line.split(separator: "=").dropFirst().first?.split(separator: ",").first { total += Int(calls) ?? 0 }
        }
        return total
    }
} }
