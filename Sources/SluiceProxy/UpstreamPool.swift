import NIOCore
import SluiceJWT
import NIOPosix
import NIOSSL
import SluiceConfig

/// One keep-alive connection to an upstream target.
final class UpstreamConnection {
    let channel: Channel
    let handler: UpstreamConnectionHandler
    let target: UpstreamTarget
    /// The client context an `https://` connection was made with; `nil` for `http://`.
    let tls: NIOSSLContext?
    /// Set when the connection served a request before (a pooled connection may have gone stale).
    var reused = false
    /// In its pool's idle list (so a close removes it from there).
    var isIdle = false

    init(channel: Channel, handler: UpstreamConnectionHandler, target: UpstreamTarget, tls: NIOSSLContext?) {
        self.channel = channel
        self.handler = handler
        self.target = target
        self.tls = tls
    }
}

/// Idle keep-alive upstream connections of ONE event loop (SPEC §2 `max_idle_per_loop`).
///
/// Never shared across loops, so it needs no lock: an exchange takes a connection from its own
/// loop's pool and gives it back there. LIFO reuse keeps the hottest connections warm and lets
/// the rest time out on the upstream's side.
final class UpstreamPool {
    /// The loop's cache of checked JWTs (issue 15), shared by its connections like the idle upstream connections.
    let jwtCache = JWTVerificationCache()
    /// The idle connections to one target. A class, so taking one out of the pool mutates the
    /// list in place instead of copying it out of the dictionary and back.
    private final class IdleList {
        var connections: [UpstreamConnection] = []
    }

    let eventLoop: EventLoop
    private var idle: [UpstreamTarget: IdleList] = [:]
    /// The list looked up last: nearly every request goes to the same target.
    private var lastTarget: UpstreamTarget?
    private var lastList: IdleList?
    private var idleCount = 0
    private var roundRobin = 0

    init(eventLoop: EventLoop) {
        self.eventLoop = eventLoop
    }

    /// Picks the next target round robin.
    func nextTarget(of targets: [UpstreamTarget]) -> UpstreamTarget {
        if targets.count == 1 { return targets[0] }
        self.roundRobin &+= 1
        return targets[self.roundRobin % targets.count]
    }

    /// An idle connection to `target`, if one is open.
    private func list(for target: UpstreamTarget) -> IdleList {
        if let lastList = self.lastList, self.lastTarget == target { return lastList }
        let list: IdleList
        if let existing = self.idle[target] {
            list = existing
        } else {
            list = IdleList()
            self.idle[target] = list
        }
        self.lastTarget = target
        self.lastList = list
        return list
    }

    /// An idle connection to `target`, if one is open.
    ///
    /// - Parameter tls: the running configuration's upstream context. An `https://` connection made with another
    ///   one (before a reload changed `upstream.tls` or renewed the CA) is closed instead of reused: it was checked
    ///   against settings that no longer hold.
    func takeIdle(for target: UpstreamTarget, tls: NIOSSLContext?) -> UpstreamConnection? {
        let list = self.list(for: target)
        while let connection = list.connections.popLast() {
            self.idleCount -= 1
            connection.isIdle = false
            guard connection.channel.isActive else { continue }
            if let made = connection.tls, made !== tls {
                connection.channel.close(promise: nil)
                continue
            }
            return connection
        }
        return nil
    }

    /// Gives a connection back after a complete exchange, or closes it if the pool is full.
    func release(_ connection: UpstreamConnection, maxIdle: Int) {
        guard connection.channel.isActive, self.idleCount < maxIdle else {
            connection.channel.close(promise: nil)
            return
        }
        connection.handler.delegate = nil
        connection.reused = true
        connection.isIdle = true
        self.list(for: connection.target).connections.append(connection)
        self.idleCount += 1
    }

    private func remove(_ connection: UpstreamConnection) {
        guard connection.isIdle else { return }
        connection.isIdle = false
        let list = self.list(for: connection.target)
        guard let index = list.connections.firstIndex(where: { $0 === connection }) else { return }
        list.connections.remove(at: index)
        self.idleCount -= 1
    }

    /// Closes every idle connection (shutdown, or a reload that changed the targets).
    func closeAll() {
        for (_, list) in self.idle {
            for c in list.connections { c.channel.close(promise: nil) }
        }
        self.idle.removeAll()
        self.lastTarget = nil
        self.lastList = nil
        self.idleCount = 0
    }

    /// Opens a new connection to `target` on this loop.
    ///
    /// For an `https://` target the connection is handed out only once its TLS handshake is done, with the server
    /// name (SNI, and the name its certificate must carry) taken from the target's host when that is a name; an
    /// address host is checked against the certificate's IP addresses instead. `timeout` applies to the TCP
    /// connect and then again to the handshake.
    ///
    /// - Parameter tls: the running configuration's upstream context; used for `https://` targets only.
    func connect(to target: UpstreamTarget, timeout: TimeAmount, tls: NIOSSLContext?) -> EventLoopFuture<UpstreamConnection> {
        var handshake: (handler: NIOLoopBound<UpstreamTLSHandshakeHandler>, context: NIOSSLContext, serverHostname: String?)?
        if target.scheme == .https {
            // A retry after a reload may pair an older snapshot's https target with a configuration without one:
            // never fall back to plain HTTP for an https:// target.
            guard let tls else { return self.eventLoop.makeFailedFuture(UpstreamTLSError.noContext) }
            let handler = UpstreamTLSHandshakeHandler(eventLoop: self.eventLoop, timeout: timeout)
            // SNI takes a name, never an address; NIOSSL then checks an address target against the certificate's IPs.
            let serverHostname = IPAddress(target.host) == nil ? target.host : nil
            handshake = (NIOLoopBound(handler, eventLoop: self.eventLoop), tls, serverHostname)
        }
        let bootstrap = ClientBootstrap(group: self.eventLoop)
            .connectTimeout(timeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.autoRead, value: true)
            .tuned(ProxyTuning.fromEnvironment)
            .channelInitializer { [handshake] channel in
                channel.eventLoop.makeCompletedFuture {
                    if let handshake {
                        try channel.pipeline.syncOperations.addHandler(
                            NIOSSLClientHandler(context: handshake.context, serverHostname: handshake.serverHostname)
                        )
                        try channel.pipeline.syncOperations.addHandler(handshake.handler.value)
                    }
                    // Raw bytes both ways: the request head is written by the client side, the response parsed here.
                    try channel.pipeline.syncOperations.addHandler(UpstreamConnectionHandler())
                }
            }
        let connected = bootstrap.connect(host: target.host, port: target.port)
        let ready: EventLoopFuture<Channel>
        if let handshake {
            let done = handshake.handler.value.handshakeDone
            ready = connected.flatMap { channel in
                done.map { channel }.flatMapErrorThrowing { error in
                    channel.close(promise: nil)
                    throw error
                }
            }
        } else {
            ready = connected
        }
        let loopBoundSelf = NIOLoopBound(self, eventLoop: self.eventLoop)
        return ready.flatMapThrowing { [handshake] channel in
            let handler = try channel.pipeline.syncOperations.handler(type: UpstreamConnectionHandler.self)
            let connection = UpstreamConnection(channel: channel, handler: handler, target: target, tls: handshake?.context)
            // Set once: a connection that closes while idle leaves the pool (release and take only flip `isIdle`).
            let pool = loopBoundSelf.value
            handler.onClose = { [weak pool, weak connection] in
                guard let pool, let connection else { return }
                pool.remove(connection)
            }
            return connection
        }
    }
}
