import Logging
import NIOCore
import NIOSSL
import Synchronization

/// A fixed number of pipelined ``RedisConnection``s spread over an event loop group.
///
/// - Connections are opened on first use, one per slot, each slot on `group.next()`; after
///   that a slot is reconnected in the background with exponential backoff (25 ms doubling to
///   2 s, with jitter) whenever its connection is lost or cannot be opened.
/// - ``send(_:preferring:)`` picks a connection on the caller's event loop when there is one
///   (no thread hop for the command or its reply), else the next one round robin.
/// - It never waits for a reconnect: with no connection up, a command fails at once with
///   ``RedisError/unavailable(_:)``, so `on_error` decides right away (SPEC §8). Only the very
///   first commands, sent before the first connections were tried at all, wait for those
///   attempts (bounded by the connect and command timeouts), and so do those sent while
///   ``reconnectAll()`` moves the pool to a new server (Sentinel).
/// - State changes are logged once each (up, lost, re-established, cannot connect), commands
///   never.
///
/// Call ``close()`` when done: until then the pool keeps reconnecting.
public final class RedisPool: Sendable {
    private let endpoint: RedisEndpoint
    private let size: Int
    private let group: any EventLoopGroup
    private let connectTimeout: TimeAmount
    private let commandTimeout: TimeAmount
    private let logger: Logger
    private let state = Mutex(RedisPoolState())
    /// For `rediss://`: made once (it reads the CA file), not per reconnect; `nil` for plain connections or when
    /// it cannot be made, in which case each attempt makes it again and fails with the reason.
    private let tlsContext: NIOSSLContext?
    /// Where each connect attempt goes when the server moves (Sentinel: the primary of now); `nil`: ``endpoint``.
    private let endpointSource: (@Sendable (any EventLoop) -> EventLoopFuture<RedisEndpoint>)?
    /// Told of each failed connect attempt and each lost connection (Sentinel asks again where the primary is).
    private let onTrouble: (@Sendable () -> Void)?

    /// - Parameters:
    ///   - endpoint: The server and credentials.
    ///   - size: How many connections to keep (at least 1).
    ///   - group: Where the connections live, spread with `group.next()`.
    ///   - connectTimeout: For each TCP connect.
    ///   - commandTimeout: How long a command may wait for its reply.
    ///   - logger: Receives one line per connection state change.
    ///   - endpointSource: For a server that moves (Sentinel): asked for the endpoint before each connect attempt;
    ///     `endpoint` then only names the pool in logs and sets TLS. Defaults to `nil` (always `endpoint`).
    ///   - onTrouble: Called (on an event loop, without a lock held) after each failed connect attempt and each lost
    ///     connection. Defaults to `nil`.
    ///   - logName: What the log lines call the server (`redis` metadata). Defaults to `endpoint`'s description.
    public init(
        endpoint: RedisEndpoint,
        size: Int,
        group: any EventLoopGroup,
        connectTimeout: TimeAmount,
        commandTimeout: TimeAmount,
        logger: Logger,
        endpointSource: (@Sendable (any EventLoop) -> EventLoopFuture<RedisEndpoint>)? = nil,
        onTrouble: (@Sendable () -> Void)? = nil,
        logName: String? = nil
    ) {
        self.endpoint = endpoint
        self.endpointSource = endpointSource
        self.onTrouble = onTrouble
        self.size = max(1, size)
        self.group = group
        self.connectTimeout = connectTimeout
        self.commandTimeout = commandTimeout
        self.tlsContext = endpoint.useTLS ? try? RedisConnection.tlsContext(endpoint) : nil
        var logger = logger
        logger[metadataKey: "redis"] = "\(logName ?? endpoint.description)"
        self.logger = logger
    }

    deinit {
        // Dropped without close(): at least leave no socket or timer behind.
        let closing = self.state.withLock { $0.close() }
        for retry in closing.retries { retry.cancel() }
        for waiter in closing.waiters { waiter.promise.fail(RedisError.unavailable("pool closed")) }
        for connection in closing.connections { connection.channel.close(promise: nil) }
    }

    /// `true` while at least one connection is up.
    public var isConnected: Bool {
        self.state.withLock { state in
            state.slots.contains { slot in
                if case .connected(let connection) = slot.phase { return connection.isActive }
                return false
            }
        }
    }

    /// Sends `command` on one of the pool's connections.
    ///
    /// - Parameters:
    ///   - command: The command.
    ///   - eventLoop: The caller's loop: a connection on it is preferred, and the result
    ///     completes on it. `nil`: any connection, completing on that connection's loop.
    /// - Returns: The reply; ``RedisError/unavailable(_:)`` at once when no connection is up.
    public func send(_ command: RedisCommand, preferring eventLoop: (any EventLoop)?) -> EventLoopFuture<RESPValue> {
        let route = self.state.withLock { state in
            state.route(preferring: eventLoop, size: self.size, group: self.group) {
                RedisPoolState.Waiter(command: command, promise: (eventLoop ?? self.group.any()).makePromise())
            }
        }
        switch route {
        case .connection(let connection):
            let reply = connection.send(command)
            if let eventLoop, eventLoop !== connection.eventLoop { return reply.hop(to: eventLoop) }
            return reply
        case .wait(let reply, let start):
            for slot in start { self.connect(slot: slot) }
            return reply
        case .fail(let error):
            return (eventLoop ?? self.group.any()).makeFailedFuture(error)
        }
    }

    /// Moves every slot to where ``endpointSource`` points now (a Sentinel failover): live connections are closed
    /// (their pending commands fail with ``RedisError/unavailable(_:)``, so `on_error` decides them) and every slot
    /// connects again at once instead of waiting out its backoff.
    public func reconnectAll() {
        let moving = self.state.withLock { $0.reconnectAll() }
        for retry in moving.retries { retry.cancel() }
        for connection in moving.connections { connection.channel.close(promise: nil) }
        for slot in moving.connectNow { self.connect(slot: slot) }
    }

    /// Sends `ASKING` then `command` on one connection, as a Redis Cluster `ASK` redirection requires (the flag
    /// holds for the connection's next command only). Completes with `command`'s reply.
    public func sendAsking(_ command: RedisCommand, preferring eventLoop: (any EventLoop)?) -> EventLoopFuture<RESPValue> {
        let asking = RedisCommand("ASKING")
        let routes = self.state.withLock { state -> (RedisPoolState.Route, RedisPoolState.Route?) in
            let first = state.route(preferring: eventLoop, size: self.size, group: self.group) {
                RedisPoolState.Waiter(command: asking, promise: (eventLoop ?? self.group.any()).makePromise())
            }
            guard case .wait = first else { return (first, nil) }
            // Queued behind ASKING: waiters go out in order on the first connection up.
            let second = state.route(preferring: eventLoop, size: self.size, group: self.group) {
                RedisPoolState.Waiter(command: command, promise: (eventLoop ?? self.group.any()).makePromise())
            }
            return (first, second)
        }
        switch routes {
        case (.connection(let connection), _):
            _ = connection.send(asking)
            let reply = connection.send(command)
            if let eventLoop, eventLoop !== connection.eventLoop { return reply.hop(to: eventLoop) }
            return reply
        case (.wait(_, let start), .wait(let reply, _)?):
            for slot in start { self.connect(slot: slot) }
            return reply
        case (.wait(_, let start), _):
            for slot in start { self.connect(slot: slot) }
            return (eventLoop ?? self.group.any()).makeFailedFuture(RedisError.unavailable("no connection to Redis is up"))
        case (.fail(let error), _):
            return (eventLoop ?? self.group.any()).makeFailedFuture(error)
        }
    }

    /// Closes every connection and stops reconnecting; commands sent afterwards fail with
    /// ``RedisError/unavailable(_:)``.
    public func close() async {
        let closing = self.state.withLock { $0.close() }
        for retry in closing.retries { retry.cancel() }
        for waiter in closing.waiters { waiter.promise.fail(RedisError.unavailable("pool closed")) }
        for attempt in closing.attempts {
            if let connection = try? await attempt.get() { try? await connection.close().get() }
        }
        for connection in closing.connections { try? await connection.close().get() }
    }

    // MARK: - Background connecting

    /// Starts one attempt for `slot`; its result is handled in ``connectCompleted``.
    /// Does nothing when the slot is already connecting or connected (a late retry, or ``reconnectAll()`` racing
    /// a retry): a slot never has two attempts in flight.
    private func connect(slot index: Int) {
        let started: EventLoopPromise<RedisConnection>? = self.state.withLock { state in
            if state.isClosed { return nil }
            switch state.slots[index].phase {
            case .connecting, .connected: return nil
            case .idle, .backingOff: break
            }
            let promise = state.slots[index].eventLoop.makePromise(of: RedisConnection.self)
            // Recorded before the callback is registered, so the callback always finds it.
            state.attemptStarted(slot: index, promise.futureResult)
            return promise
        }
        guard let started else { return }
        let eventLoop = started.futureResult.eventLoop
        let attempt: EventLoopFuture<RedisConnection>
        if let source = self.endpointSource {
            let connectTimeout = self.connectTimeout
            let commandTimeout = self.commandTimeout
            let logger = self.logger
            let tlsContext = self.tlsContext
            attempt = source(eventLoop).hop(to: eventLoop).flatMap { endpoint in
                RedisConnection.connect(
                    to: endpoint,
                    on: eventLoop,
                    connectTimeout: connectTimeout,
                    commandTimeout: commandTimeout,
                    logger: logger,
                    tlsContext: tlsContext
                )
            }
        } else {
            attempt = RedisConnection.connect(
                to: self.endpoint,
                on: eventLoop,
                connectTimeout: self.connectTimeout,
                commandTimeout: self.commandTimeout,
                logger: self.logger,
                tlsContext: self.tlsContext
            )
        }
        attempt.cascade(to: started)
        attempt.whenComplete { [weak self] result in self?.connectCompleted(slot: index, result) }
    }

    private func connectCompleted(slot index: Int, _ result: Result<RedisConnection, any Error>) {
        switch result {
        case .success(let connection):
            let outcome = self.state.withLock { state in state.connected(slot: index, connection) }
            switch outcome {
            case .closeIt:
                connection.channel.close(promise: nil)
            case .again:
                // Opened to where the server was before reconnectAll(): open it again, to where it is now.
                connection.channel.close(promise: nil)
                self.connect(slot: index)
            case .up(let reconnected, let waiters):
                self.logger.info(
                    reconnected ? "Redis connection re-established" : "Redis connection up",
                    metadata: ["slot": "\(index)"]
                )
                connection.closeFuture.whenComplete { [weak self] _ in self?.connectionClosed(slot: index, connection) }
                for waiter in waiters { connection.send(waiter.command).cascade(to: waiter.promise) }
            }
        case .failure(let error):
            let redisError = error as? RedisError ?? .unavailable("\(error)")
            let outcome = self.state.withLock { state in state.attemptFailed(slot: index) }
            guard let outcome else { return }
            if outcome.isFirstFailure {
                self.logger.warning(
                    "Cannot connect to Redis; retrying in the background",
                    metadata: ["slot": "\(index)", "error": "\(redisError)"]
                )
            }
            for waiter in outcome.waiters { waiter.promise.fail(redisError) }
            self.onTrouble?()
            if outcome.again {
                self.connect(slot: index)
            } else {
                self.scheduleRetry(slot: index, attempt: outcome.failures)
            }
        }
    }

    private func connectionClosed(slot index: Int, _ connection: RedisConnection) {
        guard self.state.withLock({ state in state.lost(slot: index, connection) }) else { return }
        self.logger.warning("Redis connection lost; reconnecting in the background", metadata: ["slot": "\(index)"])
        self.onTrouble?()
        self.scheduleRetry(slot: index, attempt: 1)
    }

    private func scheduleRetry(slot index: Int, attempt: Int) {
        let delay = RedisBackoff.delay(attempt: attempt)
        let superseded: Scheduled<Void>? = self.state.withLock { state in
            guard !state.isClosed else { return nil }
            let retry = state.slots[index].eventLoop.scheduleTask(in: delay) { [weak self] () -> Void in
                self?.connect(slot: index)
            }
            return state.backingOff(slot: index, retry) ? nil : retry
        }
        superseded?.cancel()
    }
}
