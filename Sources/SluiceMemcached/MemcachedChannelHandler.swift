import Logging
import NIOCore

/// A command on its way to memcached and the promise its reply completes.
struct MemcachedRequest: Sendable {
    var command: MemcachedCommand
    var promise: EventLoopPromise<MemcachedMetaReply>
}

/// Pipelines meta commands on one connection: a FIFO of promises, each reply matched by its opaque token.
///
/// Takes requests from ``MemcachedConnection`` (called directly on the loop, see ``send(_:)``) and the bytes
/// memcached sends, which it decodes itself with ``MemcachedReplyDecoder`` (a reply passed through the pipeline
/// would be boxed into an allocation of its own each). Every command gets the next opaque token of this connection (`O1`, `O2`, ...), and is
/// encoded into one buffer per event-loop tick: the first command of a tick schedules one write and flush for the
/// end of the tick, so every command issued during that tick, for every decision of the loop, leaves in one write.
///
/// memcached answers in order, so a reply must carry the token of the oldest command waiting (`mn`'s `MN` carries
/// none, and must answer an `mn`). A reply with another token, or none, is a **desync**: from there on nothing read
/// can be trusted to answer what it seems to, so the connection is closed and every command on it fails with
/// ``MemcachedError/protocolError(_:)`` (their decisions follow `on_error`). `CLIENT_ERROR` and `ERROR` (memcached
/// misread a command, and may be skipping bytes) fail the oldest command and close too; `SERVER_ERROR` (memcached
/// read the command but could not carry it out) fails only that command.
///
/// Every command gets a deadline; one timer watches the oldest. Once a command times out the connection is closed as
/// Redis's is (``RedisChannelHandler``): the overdue commands fail with ``MemcachedError/timeout``, the rest with
/// ``MemcachedError/unavailable(_:)``, and the pool opens a new connection. Whatever ends the connection, every
/// pending command fails: none is left hanging.
final class MemcachedChannelHandler: ChannelInboundHandler {
    /// Who is told a command's reply: a promise (``MemcachedConnection/send(_:)``), or a decision directly, with
    /// the tag it gave (``MemcachedConnection/send(_:prefix:receiver:tag:)``: no promise, no future, no closure).
    private enum Waiter {
        case promise(EventLoopPromise<MemcachedMetaReply>)
        case receiver(any MemcachedReplyReceiver, tag: Int)

        func succeed(_ reply: MemcachedMetaReply) {
            switch self {
            case .promise(let promise): promise.succeed(reply)
            case .receiver(let receiver, let tag): receiver.received(.success(reply), tag: tag)
            }
        }

        func fail(_ error: MemcachedError) {
            switch self {
            case .promise(let promise): promise.fail(error)
            case .receiver(let receiver, let tag): receiver.received(.failure(error), tag: tag)
            }
        }
    }

    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private struct Pending {
        var waiter: Waiter
        var deadline: NIODeadline
        /// The token the reply must carry; `nil` for `mn`, whose `MN` carries none.
        var opaque: UInt32?
    }

    private let commandTimeout: TimeAmount
    private let logger: Logger
    /// Frames replies from the bytes read; the decoder bounds lines and values, so the buffer is bounded too.
    private var replies = NIOSingleStepByteToMessageProcessor(MemcachedReplyDecoder())
    private var context: ChannelHandlerContext?
    /// Commands written and not yet answered, oldest first.
    private var pending = CircularBuffer<Pending>(initialCapacity: 16)
    /// The tick's commands, written and flushed at the end of the tick.
    private var outbound: ByteBuffer?
    /// The last opaque token given out; tokens wrap around (a connection never has 2^32 commands waiting).
    private var lastOpaque: UInt32 = 0
    /// Armed for the oldest command's deadline or earlier (firing early, it re-arms); `nil` when not armed.
    private var timer: Scheduled<Void>?
    /// Set once the connection is going away: every command sent after that fails at once.
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

    /// Queues `request` on this loop. Called directly by ``MemcachedConnection``, not written through the pipeline.
    func send(_ request: MemcachedRequest) {
        guard !self.isClosed, self.context != nil else {
            request.promise.fail(MemcachedError.unavailable("connection closed"))
            return
        }
        if let problem = request.command.problem {
            request.promise.fail(MemcachedError.invalidCommand(problem))
            return
        }
        let opaque = self.enqueue(.promise(request.promise), noop: request.command.verb == .noop)
        MemcachedCommandEncoder.write(request.command, opaque: opaque, into: &self.outbound!)
    }

    /// Queues a decision's command on this loop; its reply (or failure) goes to `receiver` with `tag`, on this loop.
    /// - Precondition: `prefix` makes valid keys (checked by the store).
    func send(_ command: MemcachedKeyCommand, prefix: String, receiver: any MemcachedReplyReceiver, tag: Int) {
        guard !self.isClosed, self.context != nil else {
            receiver.received(.failure(MemcachedError.unavailable("connection closed")), tag: tag)
            return
        }
        let opaque = self.enqueue(.receiver(receiver, tag: tag), noop: false)
        command.write(prefix: prefix, opaque: opaque, into: &self.outbound!)
    }

    /// Records a command about to be written: its waiter, deadline and opaque token (returned; 0 for `mn`), arms the
    /// timer and the end-of-tick flush. The caller then writes the command into ``outbound``.
    private func enqueue(_ waiter: Waiter, noop: Bool) -> UInt32 {
        let context = self.context!
        let opaque: UInt32?
        if noop {
            opaque = nil
        } else {
            self.lastOpaque &+= 1
            opaque = self.lastOpaque
        }
        let deadline = context.eventLoop.now + self.commandTimeout
        self.pending.append(Pending(waiter: waiter, deadline: deadline, opaque: opaque))
        if self.timer == nil { self.armTimer(at: deadline, context: context) }
        if self.outbound == nil {
            self.outbound = context.channel.allocator.buffer(capacity: 256)
            // Runs after every task already queued on the loop: the whole tick's commands.
            context.eventLoop.assumeIsolated().execute {
                self.flushOutbound()
            }
        }
        return opaque ?? 0
    }

    private func flushOutbound() {
        guard let buffer = self.outbound else { return }
        self.outbound = nil
        guard let context = self.context, !self.isClosed else { return }
        context.writeAndFlush(self.wrapOutboundOut(buffer), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        do {
            try self.replies.process(buffer: self.unwrapInboundIn(data)) { reply in
                self.received(reply, context: context)
            }
        } catch {
            self.close(context: context, failing: error as? MemcachedError ?? .protocolError("\(error)"))
        }
    }

    private func received(_ reply: MemcachedReply, context: ChannelHandlerContext) {
        // Replies after a desync or an error line are not read as answers: the connection is going away.
        guard !self.isClosed else { return }
        switch reply {
        case .meta(let reply):
            guard let head = self.pending.first else {
                self.close(context: context, failing: .protocolError("a reply no command was waiting for"))
                return
            }
            let matches = head.opaque == nil ? (reply.status == .noop && reply.opaque == nil) : reply.opaque == head.opaque
            guard matches else {
                let got = reply.opaque.map { "O\($0)" } ?? "no token"
                let expected = head.opaque.map { "O\($0)" } ?? "MN"
                self.close(context: context, failing: .protocolError("desync: a reply with \(got) while \(expected) was due"))
                return
            }
            self.pending.removeFirst().waiter.succeed(reply)
        case .serverError(let message):
            guard let head = self.pending.popFirst() else {
                self.close(context: context, failing: .protocolError("a reply no command was waiting for"))
                return
            }
            head.waiter.fail(MemcachedError.server("SERVER_ERROR \(message)"))
        case .clientError(let message):
            self.failHeadAndClose(context: context, line: "CLIENT_ERROR \(message)")
        case .error:
            self.failHeadAndClose(context: context, line: "ERROR")
        }
    }

    /// memcached misread a command: it may be skipping bytes of the next ones, so nothing after can be trusted.
    private func failHeadAndClose(context: ChannelHandlerContext, line: String) {
        self.pending.popFirst()?.waiter.fail(MemcachedError.server(line))
        self.close(context: context, failing: .unavailable("connection closed after \(line)"))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let memcachedError = error as? MemcachedError ?? .unavailable("connection error: \(error)")
        self.close(context: context, failing: memcachedError)
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
        self.logger.debug("memcached command timed out; closing the connection")
        while let first = self.pending.first, first.deadline <= now {
            self.pending.removeFirst().waiter.fail(MemcachedError.timeout)
        }
        self.close(context: context, failing: .unavailable("connection closed after a command timed out"))
    }

    /// Fails everything pending with `error` and closes the channel.
    private func close(context: ChannelHandlerContext, failing error: MemcachedError) {
        guard !self.isClosed else { return }
        if case .protocolError(let why) = error { self.logger.debug("memcached protocol error; closing: \(why)") }
        self.shutDown(failing: error)
        context.close(promise: nil)
    }

    /// Enters the closed state and fails every pending command with `error`.
    private func shutDown(failing error: MemcachedError) {
        self.isClosed = true
        self.outbound = nil
        self.timer?.cancel()
        self.timer = nil
        while let entry = self.pending.popFirst() {
            entry.waiter.fail(error)
        }
    }
}

/// Told the replies of the commands it sent through ``MemcachedConnection/send(_:prefix:receiver:tag:)``, on the
/// connection's loop: a reply, or the ``MemcachedError`` that ended the command.
protocol MemcachedReplyReceiver: AnyObject {
    func received(_ result: Result<MemcachedMetaReply, any Error>, tag: Int)
}
