import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import NIOPosix
import SluiceConfig

/// The gRPC listener of `server.grpc_rls` (issue 14): grpc-swift 2 over HTTP/2 (NIO), plaintext or TLS, serving
/// ``RateLimitServiceHandler``.
///
/// ``run(onListening:)`` binds, reports the bound address, and serves until ``beginGracefulShutdown()`` (calls in
/// flight finish) or until the task is cancelled.
public final class RateLimitGRPCServer: Sendable {
    private let server: GRPCServer<HTTP2ServerTransport.Posix>
    private let transport: HTTP2ServerTransport.Posix

    /// - Parameters:
    ///   - configuration: where to listen and with which TLS files.
    ///   - handler: the service.
    ///   - eventLoopGroup: the loops; defaults to NIO's singleton group (not the proxy's, which the proxy shuts down
    ///     when it stops, possibly before this listener has closed).
    public init(
        configuration: GRPCRateLimitServiceConfiguration,
        handler: RateLimitServiceHandler,
        eventLoopGroup: MultiThreadedEventLoopGroup = .singletonMultiThreadedEventLoopGroup
    ) {
        let address = configuration.listen
        let socketAddress: GRPCNIOTransportCore.SocketAddress =
            address.host.contains(":")
            ? .ipv6(host: address.host, port: address.port) : .ipv4(host: address.host, port: address.port)
        let security: HTTP2ServerTransport.Posix.TransportSecurity
        if let tls = configuration.tls {
            security = .tls(
                certificateChain: [.file(path: tls.cert, format: .pem)],
                privateKey: .file(path: tls.key, format: .pem)
            )
        } else {
            security = .plaintext
        }
        self.transport = HTTP2ServerTransport.Posix(
            address: socketAddress,
            transportSecurity: security,
            config: .defaults,
            eventLoopGroup: eventLoopGroup
        )
        self.server = GRPCServer(transport: self.transport, services: [handler])
    }

    /// Serves until shut down; `onListening` gets `HOST:PORT` of the bound socket (IPv6 in brackets) once it accepts.
    public func run(onListening: @escaping @Sendable (String) -> Void = { _ in }) async throws {
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await self.server.serve() }
            let address = try await self.transport.listeningAddress
            if let ipv4 = address.ipv4 {
                onListening("\(ipv4.host):\(ipv4.port)")
            } else if let ipv6 = address.ipv6 {
                onListening("[\(ipv6.host)]:\(ipv6.port)")
            }
        }
    }

    /// The bound port once listening.
    public var listeningPort: Int? {
        get async {
            guard let address = try? await self.transport.listeningAddress else { return nil }
            return address.ipv4?.port ?? address.ipv6?.port
        }
    }

    /// Stops accepting; calls in flight finish, then ``run(onListening:)`` returns.
    public func beginGracefulShutdown() {
        self.server.beginGracefulShutdown()
    }
}
