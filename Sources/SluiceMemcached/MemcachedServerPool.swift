import Logging
import NIOCore
import SluiceConfig
import Synchronization

/// The pipelined connections to one memcached server: a fixed set of slots, each pinned to an event loop.
///
/// - There are `max(pool_size, loops)` slots, slot `i` on loop `i mod loops`, so every event loop has a connection
///   of its own to every server: a decision's commands and replies never change threads, and one tick's commands
///   for a server leave in one write (``MemcachedChannelHandler``).
/// - Connections are opened on first use; a slot whose connection is lost or cannot be opened is reconnected in
///   the background with ``MemcachedBackoff`` (25 ms doubling to 2 s, with jitter).
/// - ``send(_:preferring:)`` picks a connection on the caller's loop, else any live one. With none up it fails at
///   once with ``MemcachedError/unavailable(_:)`` (so `on_error` decides at once), unless an attempt is under way:
///   then it waits for that attempt, which the connect timeout bounds.
///
/// Call ``close()`` when done: until then the pool keeps reconnecting.
final class MemcachedServerPool: Sendable {
    private enum Phase {
        case idle
        case connecting(EventLoopFuture<MemcachedConnection>)
        case connected(MemcachedConnection)
        case backingOff(Scheduled<Void>)
    }

    private struct Slot {
        let eventLoop: any EventLoop
        var phase = Phase.idle
        var failures = 0
        var everConnected = false
    }

    private struct State {
        var slots: [Slot]
        var isStarted = false
        var isClosed = false
        var next = 0
    }

    private enum Route {
        case connection(MemcachedConnection)
        case attempt(EventLoopFuture<MemcachedConnection>)
        case fail(MemcachedError)
    }

    let server: MemcachedServerAddress
    private let connectTimeout: TimeAmount
    private let commandTimeout: TimeAmount
    private let logger: Logger
    private let state: Mutex<State>

    init(
        server: MemcachedServerAddress,
        size: Int,
        group: any EventLoopGroup,
        connectTimeout: TimeAmount,
        commandTimeout: TimeAmount,
        logger: Logger
    ) {
        self.server = server
        self.connectTimeout = connectTimeout
        self.commandTimeout = commandTimeout
        var logger = logger
        logger[metadataKey: "memcached"] = "\(server)"
        self.logger = logger
        let loops = Array(group.makeIterator())
        let count = max(size, loops.count, 1)
        self.state = Mutex(State(slots: (0..<count).map { Slot(eventLoop: loops[$0 % loops.count]) }))
    }

    deinit {
        let (connections, retries) = self.state.withLock { Self.closeAll(&$0) }
        for retry in retries { retry.cancel() }
        for connection in connections { connection.channel.close(promise: nil) }
    }

    /// `true` while at least one connection is up.
    var isConnected: Bool {
        self.state.withLock { state in
            state.slots.contains { slot in
                if case .connected(let connection) = slot.phase { return connection.isActive }
                return false
            }
        }
    }

    /// Sends `command` on one of the pool's connections; the reply completes on `eventLoop` when given.
    func send(_ command: MemcachedCommand, preferring eventLoop: (any EventLoop)?) -> EventLoopFuture<MemcachedMetaReply> {
        let (route, start) = self.state.withLock { state -> (Route, Bool) in
            if state.isClosed { return (.fail(.unavailable("pool closed")), false) }
            let start = !state.isStarted
            state.isStarted = true
            if start {
                // Every slot is opened now; this command waits for the attempt on its loop.
                for index in state.slots.indices {
                    state.slots[index].phase = .connecting(self.makeAttempt(on: state.slots[index].eventLoop))
                }
            }
            return (Self.route(&state, preferring: eventLoop), start)
        }
        if start { self.watchAttempts() }
        let reply: EventLoopFuture<MemcachedMetaReply>
        switch route {
        case .connection(let connection):
            reply = connection.send(command)
        case .attempt(let attempt):
            reply = attempt.flatMap { $0.send(command) }
        case .fail(let error):
            return (eventLoop ?? self.anyLoop).makeFailedFuture(error)
        }
        if let eventLoop, eventLoop !== reply.eventLoop { return reply.hop(to: eventLoop) }
        return reply
    }

    /// A live connection on `eventLoop`, `nil` when it has none (then ``send(_:preferring:)`` finds another way).
    func connection(on eventLoop: any EventLoop) -> MemcachedConnection? {
        self.state.withLock { state in
            guard state.isStarted, !state.isClosed else { return nil }
            for index in state.slots.indices where state.slots[index].eventLoop === eventLoop {
                if case .connected(let connection) = state.slots[index].phase, connection.isActive { return connection }
            }
            return nil
        }
    }

    private var anyLoop: any EventLoop {
        self.state.withLock { $0.slots[0].eventLoop }
    }

    /// A live connection on `eventLoop`, else any live one, else an attempt under way (on `eventLoop` first).
    private static func route(_ state: inout State, preferring eventLoop: (any EventLoop)?) -> Route {
        var fallback: (index: Int, connection: MemcachedConnection)?
        var attempt: EventLoopFuture<MemcachedConnection>?
        for offset in 0..<state.slots.count {
            let index = (state.next + offset) % state.slots.count
            let slot = state.slots[index]
            switch slot.phase {
            case .connected(let connection) where connection.isActive:
                if eventLoop == nil || slot.eventLoop === eventLoop {
                    state.next = index + 1
                    return .connection(connection)
                }
                if fallback == nil { fallback = (index, connection) }
            case .connecting(let future):
                if attempt == nil || slot.eventLoop === eventLoop { attempt = future }
            default:
                break
            }
        }
        if let fallback {
            state.next = fallback.index + 1
            return .connection(fallback.connection)
        }
        if let attempt { return .attempt(attempt) }
        return .fail(.unavailable("no connection to the memcached server is up"))
    }

    /// Closes every connection and stops reconnecting; commands sent afterwards fail.
    func close() async {
        let (connections, retries) = self.state.withLock { Self.closeAll(&$0) }
        for retry in retries { retry.cancel() }
        for connection in connections { try? await connection.close().get() }
    }

    private static func closeAll(_ state: inout State) -> ([MemcachedConnection], [Scheduled<Void>]) {
        state.isClosed = true
        var connections: [MemcachedConnection] = []
        var retries: [Scheduled<Void>] = []
        for index in state.slots.indices {
            switch state.slots[index].phase {
            case .connected(let connection): connections.append(connection)
            case .backingOff(let retry): retries.append(retry)
            case .connecting(let attempt):
                attempt.whenSuccess { $0.channel.close(promise: nil) }
            case .idle: break
            }
            state.slots[index].phase = .idle
        }
        return (connections, retries)
    }

    // MARK: Connecting

    private func makeAttempt(on eventLoop: any EventLoop) -> EventLoopFuture<MemcachedConnection> {
        MemcachedConnection.connect(
            to: self.server,
            on: eventLoop,
            connectTimeout: self.connectTimeout,
            commandTimeout: self.commandTimeout,
            logger: self.logger
        )
    }

    /// Registers the completion of the attempts started by the first command (outside the lock).
    private func watchAttempts() {
        let attempts = self.state.withLock { state in
            state.slots.indices.compactMap { index -> (Int, EventLoopFuture<MemcachedConnection>)? in
                if case .connecting(let attempt) = state.slots[index].phase { return (index, attempt) }
                return nil
            }
        }
        for (index, attempt) in attempts {
            attempt.whenComplete { [weak self] result in self?.attemptCompleted(slot: index, attempt, result) }
        }
    }

    private func connect(slot index: Int) {
        let attempt: EventLoopFuture<MemcachedConnection>? = self.state.withLock { state in
            guard !state.isClosed else { return nil }
            let attempt = self.makeAttempt(on: state.slots[index].eventLoop)
            state.slots[index].phase = .connecting(attempt)
            return attempt
        }
        attempt?.whenComplete { [weak self] result in self?.attemptCompleted(slot: index, attempt!, result) }
    }

    private func attemptCompleted(
        slot index: Int,
        _ attempt: EventLoopFuture<MemcachedConnection>,
        _ result: Result<MemcachedConnection, any Error>
    ) {
        switch result {
        case .success(let connection):
            let reconnected: Bool? = self.state.withLock { state in
                guard !state.isClosed else { return nil }
                let reconnected = state.slots[index].everConnected
                state.slots[index].phase = .connected(connection)
                state.slots[index].failures = 0
                state.slots[index].everConnected = true
                return reconnected
            }
            guard let reconnected else {
                connection.channel.close(promise: nil)
                return
            }
            if reconnected || index == 0 {
                self.logger.info(reconnected ? "memcached connection re-established" : "memcached connection up")
            }
            connection.closeFuture.whenComplete { [weak self] _ in self?.connectionClosed(slot: index, connection) }
        case .failure(let error):
            let failures: Int? = self.state.withLock { state in
                guard !state.isClosed else { return nil }
                state.slots[index].phase = .idle
                state.slots[index].failures += 1
                return state.slots[index].failures
            }
            guard let failures else { return }
            if failures == 1 {
                self.logger.warning(
                    "cannot connect to memcached; retrying in the background",
                    metadata: ["slot": "\(index)", "error": "\(error)"]
                )
            }
            self.scheduleRetry(slot: index, attempt: failures)
        }
    }

    private func connectionClosed(slot index: Int, _ connection: MemcachedConnection) {
        let lost = self.state.withLock { state -> Bool in
            guard !state.isClosed, case .connected(let current) = state.slots[index].phase, current === connection else {
                return false
            }
            state.slots[index].phase = .idle
            state.slots[index].failures = 1
            return true
        }
        guard lost else { return }
        self.logger.warning("memcached connection lost; reconnecting in the background", metadata: ["slot": "\(index)"])
        self.scheduleRetry(slot: index, attempt: 1)
    }

    private func scheduleRetry(slot index: Int, attempt: Int) {
        let delay = MemcachedBackoff.delay(attempt: attempt)
        self.state.withLock { state in
            guard !state.isClosed else { return }
            let retry = state.slots[index].eventLoop.scheduleTask(in: delay) { [weak self] () -> Void in
                self?.connect(slot: index)
            }
            state.slots[index].phase = .backingOff(retry)
        }
    }
}
