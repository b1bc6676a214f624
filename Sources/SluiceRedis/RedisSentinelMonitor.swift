import Logging
import NIOCore
import SluiceConfig
import Synchronization

/// Finds the primary of a Redis managed by Sentinel and follows it across failovers (`redis+sentinel://`, issue 12).
///
/// - **Finding it.** The sentinels are asked in turn, starting with the last one that answered,
///   `SENTINEL get-master-addr-by-name NAME` on a short-lived connection each. The address named is believed only
///   once `ROLE` on it answers `master` (with the URL's credentials): a sentinel that has not seen the failover yet,
///   or a demoted primary, is not taken. The first sentinel whose answer passes wins; when none does, the primary
///   known before stays (the pool keeps failing fast on it, and `on_error` decides).
/// - **Following it.** One connection to one sentinel is subscribed to `+switch-master`; a switch of this master
///   starts a check at once. When that connection is lost, the next sentinel is subscribed to. Every
///   ``checkInterval`` a check runs anyway (a missed message costs at most that long), and the pool reports each
///   lost connection and failed connect (``primaryTrouble()``), as the store does with `READONLY` replies: the next
///   check then also verifies an unchanged address.
/// - **Moving.** When a check finds another primary, `onSwitch` runs (the store moves its pool there and lets its
///   breaker probe at once), without a restart.
///
/// - note: Thread-safe; every callback runs on an event loop of `group`, never under the lock.
public final class RedisSentinelMonitor: Sendable {
    /// One sentinel as `/readyz`, `/metrics` and the status page show it.
    public struct SentinelHealth: Sendable, Hashable {
        /// `host:port`.
        public var address: String
        /// The last exchange with it (a question or the subscription) worked; `nil` before the first.
        public var healthy: Bool?
        /// The one whose `+switch-master` messages are read.
        public var subscribed: Bool
    }

    /// How often the sentinels are asked even when nothing happened. 1 s.
    public static let checkInterval = TimeAmount.seconds(1)

    public let masterName: String
    public let sentinels: [RedisSeed]
    /// The primary's credentials and database; host and port are replaced by the primary's.
    private let primaryTemplate: RedisEndpoint
    private let sentinelPassword: String?
    private let group: any EventLoopGroup
    private let connectTimeout: TimeAmount
    private let commandTimeout: TimeAmount
    private let logger: Logger
    private let state: Mutex<State>

    private struct State {
        var primary: RedisSeed?
        /// Verify the primary's role at the next check even when the sentinels name it again.
        var suspect = true
        /// Bumped with each reason for suspicion, so a check that began before it does not clear it.
        var suspicion = 0
        /// Something happened during the check in flight (a switch announced, trouble): check again after it.
        var checkAgain = false
        var healthy: [Bool?]
        /// The sentinel asked first: the last one that answered.
        var preferred = 0
        var checking: EventLoopFuture<RedisEndpoint>?
        var lastTroubleCheck: NIODeadline?
        var subscription: (any Channel)?
        var subscribedIndex: Int?
        var subscribing = false
        var nextSubscription = 0
        var nextProbe = 0
        var ticker: RepeatedTask?
        var isClosed = false
        var switches = 0
        var onSwitch: (@Sendable (RedisEndpoint) -> Void)?
    }

    /// - Parameters:
    ///   - sentinels: Asked in this order at first.
    ///   - masterName: The name the sentinels monitor the primary under.
    ///   - primary: Credentials and database for the primary (host and port are ignored).
    ///   - sentinelPassword: `AUTH` for the sentinels; `nil` sends none.
    ///   - connectTimeout: For each connection to a sentinel or a candidate primary.
    ///   - commandTimeout: For each question to them.
    public init(
        sentinels: [RedisSeed],
        masterName: String,
        primary: RedisEndpoint,
        sentinelPassword: String?,
        group: any EventLoopGroup,
        connectTimeout: TimeAmount,
        commandTimeout: TimeAmount,
        logger: Logger
    ) {
        precondition(!sentinels.isEmpty, "at least one sentinel")
        self.sentinels = sentinels
        self.masterName = masterName
        self.primaryTemplate = primary
        self.sentinelPassword = sentinelPassword
        self.group = group
        self.connectTimeout = connectTimeout
        self.commandTimeout = commandTimeout
        var logger = logger
        logger[metadataKey: "sentinel_master"] = "\(masterName)"
        self.logger = logger
        self.state = Mutex(State(healthy: Array(repeating: nil, count: sentinels.count)))
    }

    deinit {
        // Dropped without close(): leave no timer or subscription behind.
        let (ticker, subscription) = self.state.withLock { ($0.ticker, $0.subscription) }
        ticker?.cancel()
        subscription?.close(promise: nil)
    }

    /// Starts asking, subscribing and checking periodically; `onSwitch` runs with the new primary after each move.
    public func start(onSwitch: @escaping @Sendable (RedisEndpoint) -> Void) {
        let loop = self.group.next()
        let started = self.state.withLock { state -> Bool in
            guard !state.isClosed, state.ticker == nil else { return false }
            state.onSwitch = onSwitch
            state.ticker = loop.scheduleRepeatedTask(initialDelay: Self.checkInterval, delay: Self.checkInterval) {
                [weak self] _ in
                self?.tick()
            }
            return true
        }
        guard started else { return }
        _ = self.check()
        self.subscribe()
        for index in self.sentinels.indices { self.probe(index) }
    }

    /// Stops checking and closes the subscription; `onSwitch` is not called again.
    public func close() {
        let (ticker, subscription) = self.state.withLock { state in
            state.isClosed = true
            state.onSwitch = nil
            defer {
                state.ticker = nil
                state.subscription = nil
            }
            return (state.ticker, state.subscription)
        }
        ticker?.cancel()
        subscription?.close(promise: nil)
    }

    // MARK: What the store reads

    /// The primary in use now, `nil` before one was found.
    public var primary: RedisSeed? { self.state.withLock { $0.primary } }

    /// How many times the primary moved since the start.
    public var switches: Int { self.state.withLock { $0.switches } }

    /// Each sentinel's health, in URL order.
    public var sentinelHealth: [SentinelHealth] {
        self.state.withLock { state in
            self.sentinels.indices.map { index in
                SentinelHealth(
                    address: self.sentinels[index].description,
                    healthy: state.healthy[index],
                    subscribed: state.subscribedIndex == index
                )
            }
        }
    }

    /// Where a connect attempt goes: the known primary at once, else (at the start) the outcome of a check.
    public func endpoint(on eventLoop: any EventLoop) -> EventLoopFuture<RedisEndpoint> {
        if let primary = self.primary { return eventLoop.makeSucceededFuture(self.endpoint(primary)) }
        return self.check().hop(to: eventLoop)
    }

    /// The primary failed a connect, lost a connection or answered `READONLY`: check soon, verifying its role.
    /// At most one such check per 200 ms, so a pool full of failing slots asks the sentinels once.
    public func primaryTrouble() {
        let now = NIODeadline.now()
        let go = self.state.withLock { state -> Bool in
            state.suspect = true
            state.suspicion += 1
            if let last = state.lastTroubleCheck, now - last < .milliseconds(200) { return false }
            state.lastTroubleCheck = now
            return true
        }
        if go { self.recheck() }
    }

    /// A check that starts now: after the one in flight, if there is one (it may have asked before the news).
    private func recheck() {
        let inFlight = self.state.withLock { state -> Bool in
            guard state.checking != nil else { return false }
            state.checkAgain = true
            return true
        }
        if !inFlight { _ = self.check() }
    }

    /// The check in flight ended: its successor, if one was asked for meanwhile.
    private func checkEnded() {
        let again = self.state.withLock { state -> Bool in
            defer { state.checkAgain = false }
            return state.checkAgain && !state.isClosed
        }
        if again { _ = self.check() }
    }

    // MARK: Checking

    private func endpoint(_ seed: RedisSeed) -> RedisEndpoint {
        var endpoint = self.primaryTemplate
        endpoint.host = seed.host
        endpoint.port = seed.port
        return endpoint
    }

    private func tick() {
        self.subscribe()
        _ = self.check()
        // The sentinels the check does not ask are pinged in turn, one per tick, so each one's health is known.
        let next = self.state.withLock { state -> Int? in
            guard self.sentinels.count > 1 else { return nil }
            state.nextProbe = (state.nextProbe + 1) % self.sentinels.count
            if state.nextProbe == state.preferred { state.nextProbe = (state.nextProbe + 1) % self.sentinels.count }
            return state.nextProbe
        }
        if let next { self.probe(next) }
    }

    /// `PING` on sentinel `index`: its health for `/readyz`, `/metrics` and the status page.
    private func probe(_ index: Int) {
        let sentinel = self.sentinels[index]
        let endpoint = RedisEndpoint(host: sentinel.host, port: sentinel.port, password: self.sentinelPassword)
        self.withConnection(to: endpoint) { $0.send(RedisCommand("PING")) }.whenComplete { [weak self] result in
            let healthy: Bool
            if case .success = result { healthy = true } else { healthy = false }
            self?.state.withLock { $0.healthy[index] = healthy }
        }
    }

    /// Asks the sentinels where the primary is (one check at a time: a caller during one gets its outcome).
    func check() -> EventLoopFuture<RedisEndpoint> {
        let loop = self.group.next()
        let (future, start) = self.state.withLock {
            state -> (EventLoopFuture<RedisEndpoint>, (EventLoopPromise<RedisEndpoint>, [Int])?) in
            if let checking = state.checking { return (checking, nil) }
            if state.isClosed { return (loop.makeFailedFuture(RedisError.unavailable("store closed")), nil) }
            let promise = loop.makePromise(of: RedisEndpoint.self)
            state.checking = promise.futureResult
            let count = self.sentinels.count
            return (promise.futureResult, (promise, (0..<count).map { (state.preferred + $0) % count }))
        }
        if let (promise, order) = start {
            self.ask(order[...], promise: promise, lastError: nil)
        }
        return future
    }

    private func ask(_ order: ArraySlice<Int>, promise: EventLoopPromise<RedisEndpoint>, lastError: String?) {
        guard let index = order.first else {
            let error = RedisError.unavailable(
                "no sentinel named a primary for \(self.masterName) that answers as master\(lastError.map { " (\($0))" } ?? "")"
            )
            self.state.withLock { $0.checking = nil }
            promise.fail(error)
            self.checkEnded()
            return
        }
        let sentinel = self.sentinels[index]
        self.askSentinel(sentinel).whenComplete { result in
            switch result {
            case .failure(let error):
                self.state.withLock { $0.healthy[index] = false }
                self.ask(order.dropFirst(), promise: promise, lastError: "sentinel \(sentinel): \(error)")
            case .success(let named):
                self.state.withLock { $0.healthy[index] = true }
                let (verify, suspicion) = self.state.withLock { state in
                    (state.suspect || state.primary != named, state.suspicion)
                }
                let verified = verify ? self.verifyPrimary(named) : promise.futureResult.eventLoop.makeSucceededFuture(())
                verified.whenComplete { outcome in
                    switch outcome {
                    case .success:
                        self.found(named, from: index, suspicion: suspicion, promise: promise)
                    case .failure(let error):
                        self.ask(order.dropFirst(), promise: promise, lastError: "\(named) named by \(sentinel): \(error)")
                    }
                }
            }
        }
    }

    /// - Parameter suspicion: ``State/suspicion`` when the role was verified (or found needless to): suspicion
    ///   raised since stays.
    private func found(_ primary: RedisSeed, from index: Int, suspicion: Int, promise: EventLoopPromise<RedisEndpoint>) {
        let endpoint = self.endpoint(primary)
        let (previous, onSwitch) = self.state.withLock { state -> (RedisSeed?, (@Sendable (RedisEndpoint) -> Void)?) in
            let previous = state.primary
            state.primary = primary
            if state.suspicion == suspicion { state.suspect = false }
            state.preferred = index
            state.checking = nil
            guard let previous, previous != primary else { return (previous, nil) }
            return (previous, state.onSwitch)
        }
        if previous == nil {
            self.logger.info("redis primary found through sentinel", metadata: ["primary": "\(primary)"])
        } else if previous != primary {
            self.logger.notice(
                "redis primary moved: decisions go to the new primary",
                metadata: ["from": "\(previous!)", "to": "\(primary)"]
            )
            onSwitch?(endpoint)
            // Counted once the pool is on its way there: whoever reads the count sees the move made.
            self.state.withLock { $0.switches += 1 }
        }
        promise.succeed(endpoint)
        self.checkEnded()
    }

    /// `SENTINEL get-master-addr-by-name` on a connection of its own, closed after the answer.
    private func askSentinel(_ sentinel: RedisSeed) -> EventLoopFuture<RedisSeed> {
        let endpoint = RedisEndpoint(host: sentinel.host, port: sentinel.port, password: self.sentinelPassword)
        let masterName = self.masterName
        return self.withConnection(to: endpoint) { connection in
            connection.send(RedisCommand("SENTINEL", "get-master-addr-by-name", masterName)).flatMapThrowing { reply in
                guard let parts = reply.array, parts.count == 2, let host = parts[0].string,
                    let port = parts[1].int.flatMap({ Int(exactly: $0) }), (1...65535).contains(port)
                else {
                    if reply.isNull { throw RedisError.unavailable("the sentinel does not monitor \(masterName)") }
                    throw RedisError.protocolError("unexpected answer to SENTINEL get-master-addr-by-name")
                }
                return RedisSeed(host: host, port: port)
            }
        }
    }

    /// `ROLE` on `candidate`, logged in as the store will be: succeeds only when it answers `master`. An ACL user
    /// not allowed `ROLE` (`NOPERM`) cannot tell: the sentinel is believed then.
    private func verifyPrimary(_ candidate: RedisSeed) -> EventLoopFuture<Void> {
        self.withConnection(to: self.endpoint(candidate)) { connection in
            connection.send(RedisCommand("ROLE")).flatMapThrowing { reply in
                let role = reply.array?.first?.string ?? "unknown"
                guard role == "master" else { throw RedisError.unavailable("its ROLE is \(role), not master") }
            }.flatMapError { error in
                if case RedisError.server(let message) = error, message.hasPrefix("NOPERM") {
                    return connection.eventLoop.makeSucceededFuture(())
                }
                return connection.eventLoop.makeFailedFuture(error)
            }
        }
    }

    private func withConnection<T: Sendable>(
        to endpoint: RedisEndpoint,
        _ body: @escaping @Sendable (RedisConnection) -> EventLoopFuture<T>
    ) -> EventLoopFuture<T> {
        RedisConnection.connect(
            to: endpoint,
            on: self.group.next(),
            connectTimeout: self.connectTimeout,
            commandTimeout: self.commandTimeout,
            logger: self.logger
        ).flatMap { connection in
            body(connection).always { _ in connection.channel.close(promise: nil) }
        }
    }

    // MARK: The subscription

    /// Subscribes to `+switch-master` on the next sentinel, unless a subscription is up or being made.
    private func subscribe() {
        let pick = self.state.withLock { state -> Int? in
            guard !state.isClosed, state.subscription == nil, !state.subscribing else { return nil }
            state.subscribing = true
            let index = state.nextSubscription % self.sentinels.count
            state.nextSubscription = index + 1
            return index
        }
        guard let index = pick else { return }
        let sentinel = self.sentinels[index]
        let endpoint = RedisEndpoint(host: sentinel.host, port: sentinel.port, password: self.sentinelPassword)
        let masterName = self.masterName
        RedisSentinelSubscriptionHandler.connect(
            to: endpoint,
            on: self.group.next(),
            connectTimeout: self.connectTimeout,
            onSubscribed: { [weak self] in
                self?.state.withLock { $0.healthy[index] = true }
            },
            onSwitch: { [weak self] payload in
                guard let self, let move = RedisSentinelSubscriptionHandler.parseSwitch(payload),
                    move.masterName == masterName
                else { return }
                self.logger.info("sentinel announced +switch-master", metadata: ["to": "\(move.host):\(move.port)"])
                self.state.withLock { state in
                    state.suspect = true
                    state.suspicion += 1
                }
                self.recheck()
            }
        ).whenComplete { [weak self] result in
            guard let self else { return }
            switch result {
            case .success(let channel):
                let keep = self.state.withLock { state -> Bool in
                    state.subscribing = false
                    guard !state.isClosed else { return false }
                    state.subscription = channel
                    state.subscribedIndex = index
                    return true
                }
                guard keep else {
                    channel.close(promise: nil)
                    return
                }
                channel.closeFuture.whenComplete { [weak self] _ in self?.subscriptionLost(channel, index: index) }
            case .failure:
                self.state.withLock { state in
                    state.subscribing = false
                    state.healthy[index] = false
                }
                self.resubscribeSoon()
            }
        }
    }

    private func subscriptionLost(_ channel: any Channel, index: Int) {
        let lost = self.state.withLock { state -> Bool in
            guard let current = state.subscription, current === channel else { return false }
            state.subscription = nil
            state.subscribedIndex = nil
            if !state.isClosed { state.healthy[index] = false }
            return !state.isClosed
        }
        guard lost else { return }
        self.logger.warning("sentinel subscription lost; subscribing on the next sentinel", metadata: ["sentinel": "\(self.sentinels[index])"])
        self.resubscribeSoon()
    }

    /// The next sentinel in 100 ms (a dead one on loopback refuses at once; this keeps that from spinning).
    private func resubscribeSoon() {
        self.group.next().scheduleTask(in: .milliseconds(100)) { [weak self] in self?.subscribe() }
    }
}
