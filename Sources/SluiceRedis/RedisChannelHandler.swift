import Logging
import NIOCore

/// A command on its way to Redis and the promise its reply completes.
struct RedisRequest: Sendable {
    var command: RedisCommand
    var promise: EventLoopPromise<RESPValue>
}

/// Pipelines commands on one connection: a FIFO of promises matched to replies in order.
///
/// Takes requests from ``RedisConnection`` (called directly on the loop, see ``send(_:)``) and
/// ``RESPValue`` reads; writes each command's RESP bytes as they are,
/// with no encoder handler between it and the socket. A write is not flushed at once: the first
/// write of an event-loop tick schedules one flush for the end of the tick, so every command
/// issued during that tick, from any thread, leaves in one `writev` (SPEC §8: "pipelined on
/// shared connections").
///
/// Every command gets a deadline. Only the oldest one can be due first, so one timer is kept
/// for the head of the FIFO and re-armed lazily when it fires early. Because replies carry no
/// ids and are matched by position, a late reply would be taken for the answer to the next
/// command: so once a command times out the connection is closed, the overdue commands fail
/// with ``RedisError/timeout`` and the rest with ``RedisError/unavailable(_:)``; the pool opens
/// a new connection.
///
/// Closes the channel on a timeout, a malformed reply or a reply nobody asked for. Whatever
/// ends the connection, every pending command fails: none is left hanging.
final class RedisChannelHandler: ChannelInboundHandler {
    typealias InboundIn = RESPValue
    typealias OutboundOut = ByteBuffer

    private struct Pending {
        var promise: EventLoopPromise<RESPValue>
        var deadline: NIODeadline
    }

    private let commandTimeout: TimeAmount
    private let logger: Logger
    private var context: ChannelHandlerContext?
    /// Commands written and not yet answered, oldest first.
    private var pending = CircularBuffer<Pending>(initialCapacity: 16)
    private var flushScheduled = false
    /// Armed for the oldest command's deadline or earlier (firing early, it re-arms). It may
    /// outlive the last reply; it then finds nothing to do. `nil` when not armed.
    private var timer: Scheduled<Void>?
    /// Set once the connection is going away: every command written after that fails at once.
    private var isClosed = false

    init(commandTimeout: TimeAmount, logger: Logger) {
        self.commandTimeout = commandTimeout
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.shutDown(failing: .unavailable("connection closed"))
        self.context = nil
    }

    /// Queues `request` on this loop. Called directly by ``RedisConnection`` rather than written through the
    /// pipeline: no boxing of the request per command.
    func send(_ request: RedisRequest) {
        guard let context = self.context, !self.isClosed else {
            request.promise.fail(RedisError.unavailable("connection closed"))
            return
        }
        let deadline = context.eventLoop.now + self.commandTimeout
        self.pending.append(Pending(promise: request.promise, deadline: deadline))
        context.write(self.wrapOutboundOut(request.command.encoded), promise: nil)
        if self.timer == nil { self.armTimer(at: deadline, context: context) }
        if !self.flushScheduled {
            self.flushScheduled = true
            // Runs after every task already queued on the loop: the whole tick's commands.
            context.eventLoop.assumeIsolated().execute {
                self.flushScheduled = false
                self.context?.flush()
            }
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let value = self.unwrapInboundIn(data)
        if case .push = value { return }  // out-of-band (RESP3), answers no command
        guard let head = self.pending.popFirst() else {
            self.close(context: context, failing: .protocolError("a reply no command was waiting for"))
            return
        }
        if case .error(let message) = value {
            head.promise.fail(RedisError.server(message))
        } else {
            head.promise.succeed(value)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let redisError = error as? RedisError ?? .unavailable("connection error: \(error)")
        self.close(context: context, failing: redisError)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.shutDown(failing: .unavailable("connection lost"))
        context.fireChannelInactive()
    }

    private func armTimer(at deadline: NIODeadline, context: ChannelHandlerContext) {
        self.timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
            self.timerFired()
        }
    }

    private func timerFired() {
        self.timer = nil
        guard let context = self.context, !self.isClosed, let head = self.pending.first else { return }
        let now = context.eventLoop.now
        if head.deadline > now {
            self.armTimer(at: head.deadline, context: context)
            return
        }
        self.logger.debug("Redis command timed out; closing the connection (replies are matched in order)")
        // Everything already overdue timed out; what was sent later can no longer be matched.
        while let first = self.pending.first, first.deadline <= now {
            self.pending.removeFirst().promise.fail(RedisError.timeout)
        }
        self.close(context: context, failing: .unavailable("connection closed after a command timed out"))
    }

    /// Fails everything pending with `error` and closes the channel.
    private func close(context: ChannelHandlerContext, failing error: RedisError) {
        guard !self.isClosed else { return }
        if case .protocolError(let why) = error { self.logger.debug("Redis protocol error; closing: \(why)") }
        self.shutDown(failing: error)
        context.close(promise: nil)
    }

    /// Enters the closed state and fails every pending command with `error`.
    private func shutDown(failing error: RedisError) {
        self.isClosed = true
        self.timer?.cancel()
        self.timer = nil
        while let entry = self.pending.popFirst() {
            entry.promise.fail(error)
        }
    }
}
