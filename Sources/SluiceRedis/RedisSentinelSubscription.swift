import Logging
import NIOCore
import NIOPosix

/// Reads a Sentinel's `+switch-master` channel on a connection of its own.
///
/// Consumes ``RESPValue``s (from a ``RESPDecoder`` before it); produces nothing. Once active it writes `AUTH` (when the
/// sentinels have a password) and `SUBSCRIBE +switch-master` in one flush. Each published message (`message`,
/// channel, `"NAME OLD_IP OLD_PORT NEW_IP NEW_PORT"`) is handed to `onSwitch` with its payload; subscription
/// confirmations and the `AUTH` reply are not. An error reply (a refused `AUTH`) closes the channel, and so does
/// anything that is not a pub/sub frame: the owner sees the close and subscribes on another sentinel.
///
/// A connection in subscribed mode takes no other command, which is why ``RedisChannelHandler`` (a FIFO of replies)
/// is not used here.
final class RedisSentinelSubscriptionHandler: ChannelInboundHandler {
    typealias InboundIn = RESPValue
    typealias OutboundOut = ByteBuffer

    static let channelName = "+switch-master"

    private let password: String?
    private let onSwitch: @Sendable (String) -> Void
    private let onSubscribed: @Sendable () -> Void

    init(password: String?, onSubscribed: @escaping @Sendable () -> Void, onSwitch: @escaping @Sendable (String) -> Void) {
        self.password = password
        self.onSubscribed = onSubscribed
        self.onSwitch = onSwitch
    }

    func channelActive(context: ChannelHandlerContext) {
        if let password = self.password {
            context.write(self.wrapOutboundOut(RedisCommand("AUTH", password).encoded), promise: nil)
        }
        context.writeAndFlush(self.wrapOutboundOut(RedisCommand("SUBSCRIBE", Self.channelName).encoded), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let value = self.unwrapInboundIn(data)
        switch value {
        case .simpleString:
            // The `+OK` of AUTH.
            return
        case .error:
            context.close(promise: nil)
            return
        default:
            break
        }
        guard let frame = value.array, let kind = frame.first?.string?.lowercased() else {
            context.close(promise: nil)
            return
        }
        switch kind {
        case "subscribe":
            self.onSubscribed()
        case "message":
            if frame.count == 3, let payload = frame[2].string { self.onSwitch(payload) }
        default:
            break
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

extension RedisSentinelSubscriptionHandler {
    /// Connects to `sentinel` and subscribes; the future is the channel (its `closeFuture` says when it is lost).
    static func connect(
        to sentinel: RedisEndpoint,
        on eventLoop: any EventLoop,
        connectTimeout: TimeAmount,
        onSubscribed: @escaping @Sendable () -> Void,
        onSwitch: @escaping @Sendable (String) -> Void
    ) -> EventLoopFuture<any Channel> {
        ClientBootstrap(group: eventLoop)
            .connectTimeout(connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers(
                        ByteToMessageHandler(RESPDecoder()),
                        RedisSentinelSubscriptionHandler(
                            password: sentinel.password,
                            onSubscribed: onSubscribed,
                            onSwitch: onSwitch
                        )
                    )
                }
            }
            .connect(host: sentinel.host, port: sentinel.port)
    }

    /// The master name and new address of a `+switch-master` payload, `nil` when it is not one.
    static func parseSwitch(_ payload: String) -> (masterName: String, host: String, port: Int)? {
        let words = payload.split(separator: " ")
        guard words.count == 5, let port = Int(words[4]), (1...65535).contains(port) else { return nil }
        return (String(words[0]), String(words[3]), port)
    }
}
