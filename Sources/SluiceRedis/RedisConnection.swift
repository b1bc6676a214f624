import Logging
import NIOCore
import NIOPosix
import NIOSSL

/// One TCP connection to Redis on which commands are pipelined.
///
/// `send` may be called from any thread; the reply completes on ``eventLoop``. Commands sent
/// during one event-loop tick leave in one flush, and replies are matched in order (see
/// ``RedisChannelHandler``). A command that gets no reply within the command timeout fails with
/// ``RedisError/timeout`` and closes the connection; a lost connection fails every pending
/// command with ``RedisError/unavailable(_:)``.
public final class RedisConnection: Sendable {
    let channel: any Channel
    /// Commands are handed to the handler directly on its loop rather than written through the pipeline.
    private let handler: NIOLoopBound<RedisChannelHandler>

    /// On the channel's loop, once its pipeline holds a ``RedisChannelHandler``.
    init(channel: any Channel) throws {
        self.channel = channel
        self.handler = NIOLoopBound(
            try channel.pipeline.syncOperations.handler(type: RedisChannelHandler.self),
            eventLoop: channel.eventLoop
        )
    }

    /// Connects, then logs in (`AUTH`, with the username when there is one) and selects the
    /// database when it is not 0; succeeds only once both are answered.
    ///
    /// - Parameters:
    ///   - endpoint: The server and credentials.
    ///   - eventLoop: The loop the connection lives on; replies complete there.
    ///   - connectTimeout: For the TCP connect; `AUTH` and `SELECT` use `commandTimeout`.
    ///   - commandTimeout: How long any command may wait for its reply.
    ///   - logger: For debug lines only; state changes are logged by ``RedisPool``.
    ///   - tlsContext: For `rediss://`, a context made once for many connections (see ``RedisPool``); made here
    ///     when `nil`.
    /// - Returns: The connection, or a failure: ``RedisError/unavailable(_:)`` when the server
    ///   cannot be reached, ``RedisError/server(_:)`` when it refuses `AUTH` or `SELECT`.
    /// The TLS client context of `rediss://`: certificates verified against the system's roots, or against
    /// `tlsCAFile` when given.
    static func tlsContext(_ endpoint: RedisEndpoint) throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        if let file = endpoint.tlsCAFile {
            configuration.trustRoots = .file(file)
        }
        return try NIOSSLContext(configuration: configuration)
    }

    public static func connect(
        to endpoint: RedisEndpoint,
        on eventLoop: any EventLoop,
        connectTimeout: TimeAmount,
        commandTimeout: TimeAmount,
        logger: Logger,
        tlsContext: NIOSSLContext? = nil
    ) -> EventLoopFuture<RedisConnection> {
        let tls: NIOSSLContext?
        do {
            tls = try endpoint.useTLS ? (tlsContext ?? Self.tlsContext(endpoint)) : nil
        } catch {
            return eventLoop.makeFailedFuture(RedisError.unavailable("TLS setup for \(endpoint): \(error)"))
        }
        // SNI and name verification take a host name, never an address.
        let serverHostname = IPAddressText.isAddress(endpoint.host) ? nil : endpoint.host
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(
                            NIOSSLClientHandler(context: tls, serverHostname: serverHostname)
                        )
                    }
                    try channel.pipeline.syncOperations.addHandlers(
                        ByteToMessageHandler(RESPDecoder()),
                        RedisChannelHandler(commandTimeout: commandTimeout, logger: logger)
                    )
                }
            }
        return bootstrap.connect(host: endpoint.host, port: endpoint.port)
            .flatMapErrorThrowing { error in
                throw RedisError.unavailable("cannot connect to \(endpoint): \(error)")
            }
            .flatMap { channel in
                let connection: RedisConnection
                do {
                    connection = try RedisConnection(channel: channel)
                } catch {
                    return channel.close().flatMapThrowing { throw RedisError.unavailable("\(error)") }
                }
                return connection.logIn(endpoint).map { connection }.flatMapError { error in
                    connection.close().flatMapThrowing { throw error }
                }
            }
    }

    /// `AUTH` and `SELECT`, pipelined; fails with the first error reply (replies come in order).
    private func logIn(_ endpoint: RedisEndpoint) -> EventLoopFuture<Void> {
        var replies: [EventLoopFuture<RESPValue>] = []
        if let password = endpoint.password {
            if let username = endpoint.username {
                replies.append(self.send(RedisCommand("AUTH", username, password)))
            } else {
                replies.append(self.send(RedisCommand("AUTH", password)))
            }
        }
        if endpoint.database != 0 {
            replies.append(self.send(RedisCommand("SELECT", String(endpoint.database))))
        }
        return EventLoopFuture.andAllSucceed(replies, on: self.eventLoop)
    }

    /// The loop this connection lives on; every reply completes there.
    public var eventLoop: any EventLoop { self.channel.eventLoop }

    /// `false` once the connection is closed or lost (it never comes back: open a new one).
    public var isActive: Bool { self.channel.isActive }

    /// Sends `command` and completes with its reply. An error reply fails the future with
    /// ``RedisError/server(_:)``; see the type's notes for timeouts and connection loss.
    public func send(_ command: RedisCommand) -> EventLoopFuture<RESPValue> {
        let promise = self.eventLoop.makePromise(of: RESPValue.self)
        let request = RedisRequest(command: command, promise: promise)
        if self.eventLoop.inEventLoop {
            self.write(request)
        } else {
            self.eventLoop.execute { self.write(request) }
        }
        return promise.futureResult
    }

    /// On the loop. A closed channel has no handlers left to fail the request, so check first:
    /// on the loop, an active channel still has its ``RedisChannelHandler``.
    private func write(_ request: RedisRequest) {
        guard self.channel.isActive else {
            request.promise.fail(RedisError.unavailable("connection closed"))
            return
        }
        self.handler.value.send(request)
    }

    /// Closes the connection; pending commands fail with ``RedisError/unavailable(_:)``.
    /// Succeeds also when it was closed already.
    public func close() -> EventLoopFuture<Void> {
        self.channel.close().recover { _ in }.flatMap { self.channel.closeFuture }
    }

    /// Completes when the connection is closed, for whatever reason.
    public var closeFuture: EventLoopFuture<Void> { self.channel.closeFuture }
}

/// Whether a host is written as an address (`127.0.0.1`, `::1`), which TLS may not send as a server name.
enum IPAddressText {
    static func isAddress(_ host: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }
}
