import Logging
import NIOCore
import SluiceLimiter
import Synchronization

/// The primaries of a Redis Cluster (issue 12): the slot map, one ``RedisPool`` and one circuit breaker per node, and
/// the redirections.
///
/// - The map comes from `CLUSTER SLOTS`, asked of the known nodes and then the seeds, at start, every 5 s, and soon
///   after a node fails or answers `MOVED`.
/// - ``send(_:orElse:slot:preferring:)`` sends a command to the primary of its slot and follows the cluster:
///   `MOVED` patches the map (and asks for a refresh) and retries once on the named node; `ASK` sends `ASKING` and
///   the command to the named node, on one connection; `TRYAGAIN` (a multi-key command while its slot migrates),
///   and redirections beyond the second (nodes that do not yet agree on a slot's owner), are retried from the map
///   every 5 ms for up to the command timeout (at least 100 ms); `NOSCRIPT` sends the fallback (`EVAL`) to the same
///   node.
/// - A node that fails (no connection, timeout) counts against its own breaker only: while it is open, commands
///   for its slots fail at once with ``RedisError/unavailable(_:)`` and the other nodes' keep going.
public final class RedisCluster: Sendable {
    /// One primary.
    final class Node: Sendable {
        let address: RedisSlotMap.Node
        /// `host:port`, made once (metrics label it every exchange).
        let name: String
        let pool: RedisPool
        let breaker: StorageCircuitBreaker

        init(address: RedisSlotMap.Node, pool: RedisPool, breaker: StorageCircuitBreaker) {
            self.address = address
            self.name = address.description
            self.pool = pool
            self.breaker = breaker
        }

        var isAvailable: Bool { self.breaker.isClosed && self.pool.isConnected }
    }

    private struct State {
        /// `nil` until the first `CLUSTER SLOTS` answered.
        var map: RedisSlotMap?
        var nodes: [RedisSlotMap.Node: Node] = [:]
        var isRefreshing = false
        var lastRefresh: NIODeadline?
        /// Commands sent before the first map, sent once it comes (or failed when no node answers).
        var mapWaiters: [EventLoopPromise<Void>] = []
        var isClosed = false
        var timer: RepeatedTask?
    }

    private let seeds: [RedisSlotMap.Node]
    /// Credentials and TLS for every node (host and port are each node's).
    private let endpoint: RedisEndpoint
    private let poolSize: Int
    private let group: any EventLoopGroup
    private let connectTimeout: TimeAmount
    private let commandTimeout: TimeAmount
    private let logger: Logger
    private let state = Mutex(State())
    /// Told of each exchange with a node: its `host:port`, time, failure (`sluice_storage_server_*`).
    private let observeNode: (@Sendable (String, Double, Bool) -> Void)?

    public init(
        seeds: [(host: String, port: Int)],
        endpoint: RedisEndpoint,
        poolSize: Int,
        group: any EventLoopGroup,
        connectTimeout: TimeAmount,
        commandTimeout: TimeAmount,
        logger: Logger,
        observeNode: (@Sendable (_ node: String, _ seconds: Double, _ failed: Bool) -> Void)? = nil
    ) {
        self.seeds = seeds.map { RedisSlotMap.Node(host: $0.host, port: $0.port) }
        self.endpoint = endpoint
        self.poolSize = max(1, poolSize)
        self.group = group
        self.connectTimeout = connectTimeout
        self.commandTimeout = commandTimeout
        self.logger = logger
        self.observeNode = observeNode
    }

    /// Reads the map now and every 5 s until ``close()``.
    func start() {
        self.refresh()
        let task = self.group.any().scheduleRepeatedTask(initialDelay: .seconds(5), delay: .seconds(5)) { [weak self] _ in
            self?.refresh()
        }
        let stale = self.state.withLock { state -> RepeatedTask? in
            if state.isClosed { return task }
            state.timer = task
            return nil
        }
        stale?.cancel()
    }

    public func close() async {
        let (nodes, timer, waiters) = self.state.withLock { state in
            state.isClosed = true
            defer { state.mapWaiters = [] }
            return (Array(state.nodes.values), state.timer, state.mapWaiters)
        }
        timer?.cancel()
        for waiter in waiters { waiter.fail(RedisError.unavailable("cluster closed")) }
        for node in nodes { await node.pool.close() }
    }

    // MARK: Health

    /// The primaries of the current map, in its order, with whether each takes commands now.
    public var nodeHealth: [(address: String, available: Bool)] {
        let nodes = self.state.withLock { state -> [Node] in
            guard let map = state.map else { return [] }
            return map.nodes.compactMap { state.nodes[$0] }
        }
        return nodes.map { ($0.name, $0.isAvailable) }
    }

    /// Whether the map is known and at least one primary takes commands.
    public var isAvailable: Bool {
        self.nodeHealth.contains { $0.available }
    }

    /// The primary of each of `slots` as an index into the current map's nodes (``RedisSlotMap/unassigned`` for
    /// none); `nil` before the first map. For grouping a tick's calls by node.
    func owners(ofSlots slots: [Int]) -> [UInt16]? {
        self.state.withLock { state in
            guard let map = state.map else { return nil }
            return slots.map { map.owners[$0] }
        }
    }

    // MARK: Sending

    /// Sends `command` to the primary of `slot`, following redirections (see the type's notes); `fallback` (an
    /// `EVAL` for an `EVALSHA`) goes to the same node when it answers `NOSCRIPT`. Completes on `loop` when given.
    func send(
        _ command: RedisCommand,
        orElse fallback: (@Sendable () -> RedisCommand)? = nil,
        slot: Int,
        preferring loop: (any EventLoop)?
    ) -> EventLoopFuture<RESPValue> {
        let eventLoop = loop ?? self.group.any()
        let promise = eventLoop.makePromise(of: RESPValue.self)
        let attempt = Attempt(
            command: command,
            fallback: fallback,
            slot: slot,
            loop: loop,
            promise: promise,
            deadline: .now() + max(self.commandTimeout, .milliseconds(100))
        )
        self.run(attempt, on: nil, asking: false)
        return promise.futureResult
    }

    /// One command on its way through the cluster.
    private struct Attempt: Sendable {
        var command: RedisCommand
        var fallback: (@Sendable () -> RedisCommand)?
        var slot: Int
        var loop: (any EventLoop)?
        var promise: EventLoopPromise<RESPValue>
        var deadline: NIODeadline
        var redirects = 0
        var usesFallback = false
    }

    private enum Target {
        case node(Node)
        case waitForMap(EventLoopFuture<Void>)
        case fail(RedisError)
    }

    private func run(_ attempt: Attempt, on target: Node?, asking: Bool) {
        let node: Node
        if let target {
            node = target
        } else {
            switch self.target(of: attempt.slot, loop: attempt.promise.futureResult.eventLoop) {
            case .node(let found):
                node = found
            case .fail(let error):
                attempt.promise.fail(error)
                return
            case .waitForMap(let ready):
                ready.whenComplete { result in
                    switch result {
                    case .success: self.run(attempt, on: nil, asking: false)
                    case .failure(let error): attempt.promise.fail(error)
                    }
                }
                return
            }
        }
        let now = LimiterInstant.now()
        guard node.breaker.allowsRequest(now: now) else {
            attempt.promise.fail(RedisError.unavailable("cluster node \(node.address) is unavailable"))
            return
        }
        let command = attempt.usesFallback ? (attempt.fallback?() ?? attempt.command) : attempt.command
        let started = ContinuousClock.now
        let reply = asking ? node.pool.sendAsking(command, preferring: attempt.loop) : node.pool.send(command, preferring: attempt.loop)
        reply.whenComplete { result in
            let elapsed = (ContinuousClock.now - started).components
            let seconds = Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
            switch result {
            case .success(let value):
                node.breaker.recordSuccess()
                self.observeNode?(node.name, seconds, false)
                attempt.promise.succeed(value)
            case .failure(RedisError.server(let message)):
                // The node answered: it is up, whatever it said.
                node.breaker.recordSuccess()
                self.observeNode?(node.name, seconds, false)
                self.handle(message, from: node, attempt: attempt, asking: asking)
            case .failure(let error):
                node.breaker.recordFailure(error, now: now)
                self.observeNode?(node.name, seconds, true)
                self.refreshSoon()
                attempt.promise.fail(error)
            }
        }
    }

    /// An error reply: a redirection to follow, a script to send again, or the command's failure.
    private func handle(_ message: String, from node: Node, attempt: Attempt, asking: Bool) {
        var attempt = attempt
        if message.hasPrefix("NOSCRIPT"), attempt.fallback != nil, !attempt.usesFallback {
            attempt.usesFallback = true
            self.run(attempt, on: node, asking: asking)
        } else if var redirection = RedisSlotMap.redirection(message), attempt.redirects < 2 {
            attempt.redirects += 1
            if redirection.node.host.isEmpty { redirection.node.host = node.address.host }
            let target = self.node(redirection.node)
            if redirection.ask {
                self.run(attempt, on: target, asking: true)
            } else {
                self.state.withLock { state in state.map?.assign(slot: redirection.slot, to: redirection.node) }
                self.refreshSoon()
                self.run(attempt, on: target, asking: false)
            }
        } else if message.hasPrefix("TRYAGAIN") || message.hasPrefix("MOVED") || message.hasPrefix("ASK"),
            NIODeadline.now() + .milliseconds(5) < attempt.deadline
        {
            // A multi-key command while its slot migrates (TRYAGAIN: its keys are being moved), or redirections going
            // round while the nodes learn a slot's new owner one after another: ask again from the start, shortly.
            let loop = attempt.promise.futureResult.eventLoop
            let retry = attempt
            loop.scheduleTask(in: .milliseconds(5)) { self.run(retry, on: nil, asking: false) }
        } else {
            attempt.promise.fail(RedisError.server(message))
        }
    }

    /// The node serving `slot`, or why there is none.
    private func target(of slot: Int, loop: any EventLoop) -> Target {
        enum Found {
            case node(RedisSlotMap.Node, Node?)
            case waitForMap(EventLoopFuture<Void>, startRefresh: Bool)
            case fail(RedisError)
        }
        let found = self.state.withLock { state -> Found in
            if state.isClosed { return .fail(.unavailable("cluster closed")) }
            guard let map = state.map else {
                let promise = loop.makePromise(of: Void.self)
                state.mapWaiters.append(promise)
                let start = !state.isRefreshing
                return .waitForMap(promise.futureResult, startRefresh: start)
            }
            guard let address = map.node(forSlot: slot) else { return .fail(.unavailable("no primary serves slot \(slot)")) }
            return .node(address, state.nodes[address])
        }
        switch found {
        case .node(_, let node?):
            return .node(node)
        case .node(let address, nil):
            return .node(self.node(address))
        case .waitForMap(let ready, let start):
            if start { self.refresh() }
            return .waitForMap(ready)
        case .fail(let error):
            return .fail(error)
        }
    }

    /// The node at `address`, made (with its pool and breaker) on first use.
    func node(_ address: RedisSlotMap.Node) -> Node {
        if let known = self.state.withLock({ $0.nodes[address] }) { return known }
        var endpoint = self.endpoint
        endpoint.host = address.host
        endpoint.port = address.port
        endpoint.database = 0
        var logger = self.logger
        logger[metadataKey: "redis_node"] = "\(address)"
        let made = Node(
            address: address,
            pool: RedisPool(
                endpoint: endpoint,
                size: self.poolSize,
                group: self.group,
                connectTimeout: self.connectTimeout,
                commandTimeout: self.commandTimeout,
                logger: logger
            ),
            breaker: StorageCircuitBreaker(
                logger: logger,
                recoveredMessage: "redis cluster node answers again: decisions for its slots go to it",
                unavailableMessage: "redis cluster node unavailable: decisions for its slots follow on_error"
            )
        )
        let (node, closeMade) = self.state.withLock { state -> (Node, Bool) in
            if let raced = state.nodes[address] { return (raced, true) }
            if state.isClosed { return (made, true) }
            state.nodes[address] = made
            return (made, false)
        }
        if closeMade, node !== made { Task { await made.pool.close() } }
        return node
    }

    // MARK: The map

    /// Asks for a refresh unless one ran in the last 100 ms (the 5 s timer catches up).
    private func refreshSoon() {
        let due = self.state.withLock { state in
            guard let last = state.lastRefresh else { return true }
            return NIODeadline.now() - last > .milliseconds(100)
        }
        if due { self.refresh() }
    }

    /// Reads `CLUSTER SLOTS` from the first node that answers: the map's nodes whose breaker is closed, then the
    /// seeds, then the others. One refresh at a time.
    func refresh() {
        let candidates = self.state.withLock { state -> [RedisSlotMap.Node]? in
            guard !state.isRefreshing, !state.isClosed else { return nil }
            state.isRefreshing = true
            state.lastRefresh = .now()
            let known = state.map?.nodes ?? []
            var ordered: [RedisSlotMap.Node] = known.filter { state.nodes[$0]?.breaker.isClosed ?? true }
            for seed in self.seeds where !ordered.contains(seed) { ordered.append(seed) }
            for node in known where !ordered.contains(node) { ordered.append(node) }
            return ordered
        }
        guard let candidates else { return }
        self.ask(candidates[...])
    }

    private func ask(_ candidates: ArraySlice<RedisSlotMap.Node>) {
        guard let address = candidates.first else {
            let waiters = self.state.withLock { state in
                state.isRefreshing = false
                defer { state.mapWaiters = [] }
                return state.map == nil ? state.mapWaiters : []
            }
            for waiter in waiters { waiter.fail(RedisError.unavailable("no Redis Cluster node answers CLUSTER SLOTS")) }
            return
        }
        let node = self.node(address)
        node.pool.send(RedisCommand("CLUSTER", "SLOTS"), preferring: nil).whenComplete { result in
            guard case .success(let reply) = result, let map = RedisSlotMap(clusterSlots: reply, answeredBy: address),
                !map.nodes.isEmpty
            else {
                if case .failure(let error) = result { self.logger.debug("CLUSTER SLOTS failed", metadata: ["node": "\(address)", "error": "\(error)"]) }
                self.ask(candidates.dropFirst())
                return
            }
            let (waiters, isFirst) = self.state.withLock { state in
                let isFirst = state.map == nil
                state.map = map
                state.isRefreshing = false
                defer { state.mapWaiters = [] }
                return (state.mapWaiters, isFirst)
            }
            if isFirst {
                self.logger.info("Redis Cluster map read", metadata: ["primaries": "\(map.nodes.count)", "from": "\(address)"])
                // Open every primary's connections now rather than on the first decision for its slots.
                for primary in map.nodes { _ = self.node(primary).pool.send(RedisCommand("PING"), preferring: nil) }
            }
            for waiter in waiters { waiter.succeed() }
        }
    }
}
