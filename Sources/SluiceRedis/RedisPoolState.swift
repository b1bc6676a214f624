import NIOCore

/// The bookkeeping of ``RedisPool``: which slot holds which connection, who waits for the
/// first connection, where the next command goes.
///
/// A plain value kept under the pool's mutex. Its methods are named after events and return
/// what the pool must do outside the lock (send, complete promises, log, close), so no I/O,
/// logging or promise completion ever runs while the lock is held.
struct RedisPoolState {
    /// What a slot is doing.
    enum Phase {
        /// Not opened yet (before first use), or between a failure and its scheduled retry.
        case idle
        /// Waiting for a connect (and `AUTH`/`SELECT`) attempt.
        case connecting(EventLoopFuture<RedisConnection>)
        /// Serving commands until the connection closes.
        case connected(RedisConnection)
        /// Waiting for the retry timer after a failure or a lost connection.
        case backingOff(Scheduled<Void>)
    }

    struct Slot {
        let eventLoop: any EventLoop
        var phase = Phase.idle
        /// Failed attempts since the last success; a lost connection counts as the first.
        var failures = 0
        var everConnected = false
        var triedOnce = false
        /// The attempt in flight was started before ``reconnectAll()``: its result is not used.
        var attemptIsStale = false
    }

    /// A command sent before the pool's first connection attempts completed.
    struct Waiter {
        var command: RedisCommand
        var promise: EventLoopPromise<RESPValue>
    }

    enum Route {
        case connection(RedisConnection)
        /// Queued until the first connection is up; open the listed slots.
        case wait(EventLoopFuture<RESPValue>, start: [Int])
        case fail(RedisError)
    }

    enum ConnectedOutcome {
        /// The pool was closed meanwhile.
        case closeIt
        /// The attempt was stale (see ``Slot/attemptIsStale``): close it and connect the slot again now.
        case again
        /// Log it, watch the connection, send the waiters on it.
        case up(reconnected: Bool, waiters: [Waiter])
    }

    struct FailedOutcome {
        var isFirstFailure: Bool
        var failures: Int
        /// The attempt was stale: connect again now, without backoff.
        var again = false
        /// Fail these: every slot has been tried once and none is up.
        var waiters: [Waiter]
    }

    /// What ``close()`` hands back to be closed, cancelled or failed outside the lock.
    struct Closing {
        var connections: [RedisConnection] = []
        var attempts: [EventLoopFuture<RedisConnection>] = []
        var retries: [Scheduled<Void>] = []
        var waiters: [Waiter] = []
    }

    private(set) var slots: [Slot] = []
    private(set) var isClosed = false
    /// From the first command until a connection is up or every slot has failed once.
    private var isStarting = false
    private var waiters: [Waiter] = []
    /// Where the round robin looks first.
    private var next = 0

    /// A command is to be sent. The first one creates the slots (lazily, on `group.next()`).
    mutating func route(
        preferring eventLoop: (any EventLoop)?,
        size: Int,
        group: any EventLoopGroup,
        makeWaiter: () -> Waiter
    ) -> Route {
        if self.isClosed { return .fail(.unavailable("pool closed")) }
        if self.slots.isEmpty {
            self.slots = (0..<size).map { _ in Slot(eventLoop: group.next()) }
            self.isStarting = true
            let waiter = makeWaiter()
            self.waiters.append(waiter)
            return .wait(waiter.promise.futureResult, start: Array(self.slots.indices))
        }
        if let connection = self.pick(preferring: eventLoop) { return .connection(connection) }
        if self.isStarting {
            let waiter = makeWaiter()
            self.waiters.append(waiter)
            return .wait(waiter.promise.futureResult, start: [])
        }
        return .fail(.unavailable("no connection to Redis is up"))
    }

    /// The next live connection on `eventLoop`, else the next live one on any loop.
    private mutating func pick(preferring eventLoop: (any EventLoop)?) -> RedisConnection? {
        var fallback: (index: Int, connection: RedisConnection)?
        for offset in 0..<self.slots.count {
            let index = (self.next + offset) % self.slots.count
            guard case .connected(let connection) = self.slots[index].phase, connection.isActive else { continue }
            if eventLoop == nil || self.slots[index].eventLoop === eventLoop {
                self.next = index + 1
                return connection
            }
            if fallback == nil { fallback = (index, connection) }
        }
        guard let fallback else { return nil }
        self.next = fallback.index + 1
        return fallback.connection
    }

    mutating func attemptStarted(slot index: Int, _ attempt: EventLoopFuture<RedisConnection>) {
        self.slots[index].phase = .connecting(attempt)
    }

    mutating func connected(slot index: Int, _ connection: RedisConnection) -> ConnectedOutcome {
        if self.isClosed { return .closeIt }
        if self.slots[index].attemptIsStale {
            self.slots[index].attemptIsStale = false
            return .again
        }
        let reconnected = self.slots[index].everConnected
        self.slots[index].phase = .connected(connection)
        self.slots[index].failures = 0
        self.slots[index].everConnected = true
        self.slots[index].triedOnce = true
        guard self.isStarting else { return .up(reconnected: reconnected, waiters: []) }
        self.isStarting = false
        defer { self.waiters = [] }
        return .up(reconnected: reconnected, waiters: self.waiters)
    }

    /// `nil` when the pool is closed (nothing to do).
    mutating func attemptFailed(slot index: Int) -> FailedOutcome? {
        if self.isClosed { return nil }
        self.slots[index].phase = .idle
        if self.slots[index].attemptIsStale {
            self.slots[index].attemptIsStale = false
            return FailedOutcome(isFirstFailure: false, failures: self.slots[index].failures, again: true, waiters: [])
        }
        self.slots[index].failures += 1
        self.slots[index].triedOnce = true
        var failed: [Waiter] = []
        if self.isStarting, self.slots.allSatisfy(\.triedOnce) {
            self.isStarting = false
            failed = self.waiters
            self.waiters = []
        }
        let failures = self.slots[index].failures
        return FailedOutcome(isFirstFailure: failures == 1, failures: failures, waiters: failed)
    }

    /// `connection` closed; `true` when it was the slot's live connection (reconnect it).
    mutating func lost(slot index: Int, _ connection: RedisConnection) -> Bool {
        guard !self.isClosed, case .connected(let current) = self.slots[index].phase, current === connection else {
            return false
        }
        self.slots[index].phase = .idle
        self.slots[index].failures = 1
        return true
    }

    /// `false` when the slot is connecting again already (``reconnectAll()`` came first): cancel `retry`.
    mutating func backingOff(slot index: Int, _ retry: Scheduled<Void>) -> Bool {
        guard case .idle = self.slots[index].phase else { return false }
        self.slots[index].phase = .backingOff(retry)
        return true
    }

    /// What ``RedisPool/reconnectAll()`` closes, cancels and connects, outside the lock.
    struct Moving {
        var connections: [RedisConnection] = []
        var retries: [Scheduled<Void>] = []
        var connectNow: [Int] = []
    }

    /// Every slot is to connect again, to where the server is now: live connections are dropped, waiting retries
    /// are superseded, attempts in flight are marked stale (their result is dropped and the slot connects again).
    mutating func reconnectAll() -> Moving {
        var moving = Moving()
        if self.isClosed || self.slots.isEmpty { return moving }
        // Commands wait for the first new connection (bounded by the connect timeout) instead of failing in the
        // moment between the old connections closing and the new ones opening, as at the pool's start.
        self.isStarting = true
        for index in self.slots.indices {
            self.slots[index].triedOnce = false
            switch self.slots[index].phase {
            case .idle:
                // Between a failure and its retry's scheduling (that retry is then dropped: the slot is connecting),
                // or about to be opened for the first time (that attempt is then the one made here).
                moving.connectNow.append(index)
            case .connecting:
                self.slots[index].attemptIsStale = true
            case .connected(let connection):
                moving.connections.append(connection)
                self.slots[index].phase = .idle
                moving.connectNow.append(index)
            case .backingOff(let retry):
                moving.retries.append(retry)
                self.slots[index].phase = .idle
                moving.connectNow.append(index)
            }
        }
        return moving
    }

    mutating func close() -> Closing {
        var closing = Closing()
        self.isClosed = true
        for index in self.slots.indices {
            switch self.slots[index].phase {
            case .idle: break
            case .connecting(let attempt): closing.attempts.append(attempt)
            case .connected(let connection): closing.connections.append(connection)
            case .backingOff(let retry): closing.retries.append(retry)
            }
            self.slots[index].phase = .idle
        }
        closing.waiters = self.waiters
        self.waiters = []
        return closing
    }
}
