import Logging
import NIOCore
import NIOPosix
import SluiceConfig

/// One TCP connection to a memcached server on which meta commands are pipelined.
///
/// `send` may be called from any thread; the reply completes on ``eventLoop``. Commands sent during one event-loop
/// tick leave in one write, and replies are matched by their opaque tokens (see ``MemcachedChannelHandler``). A
/// command that gets no reply within the command timeout fails with ``MemcachedError/timeout`` and closes the
/// connection; a lost connection fails every pending command with ``MemcachedError/unavailable(_:)``.
public final class MemcachedConnection: Sendable {
    let channel: any Channel
    /// Commands are handed to the handler directly on its loop rather than written through the pipeline.
    private let handler: NIOLoopBound<MemcachedChannelHandler>

    /// On the channel's loop, once its pipeline holds a ``MemcachedChannelHandler``.
    init(channel: any Channel) throws {
        self.channel = channel
        self.handler = NIOLoopBound(
            try channel.pipeline.syncOperations.handler(type: MemcachedChannelHandler.self),
            eventLoop: channel.eventLoop
        )
    }

    /// Connects to `server` (memcached has no login: the connection is usable at once).
    ///
    /// - Returns: The connection, or ``MemcachedError/unavailable(_:)`` when the server cannot be reached.
    public static func connect(
        to server: MemcachedServerAddress,
        on eventLoop: any EventLoop,
        connectTimeout: TimeAmount,
        commandTimeout: TimeAmount,
        logger: Logger
    ) -> EventLoopFuture<MemcachedConnection> {
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers(
                        MemcachedChannelHandler(commandTimeout: commandTimeout, logger: logger)
                    )
                }
            }
        return bootstrap.connect(host: server.host, port: server.port)
            .flatMapErrorThrowing { error in
                throw MemcachedError.unavailable("cannot connect to \(server): \(error)")
            }
            .flatMapThrowing { channel in
                do {
                    return try MemcachedConnection(channel: channel)
                } catch {
                    channel.close(promise: nil)
                    throw MemcachedError.unavailable("\(error)")
                }
            }
    }

    /// The loop this connection lives on; every reply completes there.
    public var eventLoop: any EventLoop { self.channel.eventLoop }

    /// `false` once the connection is closed or lost (it never comes back: open a new one).
    public var isActive: Bool { self.channel.isActive }

    /// Sends `command` and completes with its reply. `CLIENT_ERROR`, `SERVER_ERROR` and `ERROR` fail the future with
    /// ``MemcachedError/server(_:)``; `EN`, `NS`, `EX` and `NF` are replies like any other (the caller decides).
    public func send(_ command: MemcachedCommand) -> EventLoopFuture<MemcachedMetaReply> {
        let promise = self.eventLoop.makePromise(of: MemcachedMetaReply.self)
        let request = MemcachedRequest(command: command, promise: promise)
        if self.eventLoop.inEventLoop {
            self.write(request)
        } else {
            self.eventLoop.execute { self.write(request) }
        }
        return promise.futureResult
    }

    /// Sends a decision's command: its reply goes to `receiver` with `tag`, with no promise in between. On
    /// ``eventLoop`` only; a closed connection tells `receiver` at once.
    func send(_ command: MemcachedKeyCommand, prefix: String, receiver: any MemcachedReplyReceiver, tag: Int) {
        guard self.channel.isActive else {
            receiver.received(.failure(MemcachedError.unavailable("connection closed")), tag: tag)
            return
        }
        self.handler.value.send(command, prefix: prefix, receiver: receiver, tag: tag)
    }

    /// On the loop. A closed channel has no handlers left to fail the request, so check first.
    private func write(_ request: MemcachedRequest) {
        guard self.channel.isActive else {
            request.promise.fail(MemcachedError.unavailable("connection closed"))
            return
        }
        self.handler.value.send(request)
    }

    /// Closes the connection; pending commands fail. Succeeds also when it was closed already.
    public func close() -> EventLoopFuture<Void> {
        self.channel.close().recover { _ in }.flatMap { self.channel.closeFuture }
    }

    /// Completes when the connection is closed, for whatever reason.
    public var closeFuture: EventLoopFuture<Void> { self.channel.closeFuture }
}

/// Where a memcached server is: `host:port`.
public typealias MemcachedServerAddress = MemcachedStorageConfiguration.Server
