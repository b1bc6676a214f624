import Logging
import NIOCore

/// What every listening channel of Sluice gets: a connection cap and a pause after a failed accept.
///
/// ```swift
/// ServerBootstrap(group: group)
///     .serverChannelOption(.maxMessagesPerRead, value: ListenerGuards.acceptsPerRead)
///     .serverChannelInitializer { channel in
///         channel.eventLoop.makeCompletedFuture {
///             try ListenerGuards.add(to: channel.pipeline.syncOperations, cap: cap, logger: logger, role: "proxy")
///         }
///     }
/// ```
///
/// `ServerBootstrap.bind(host:port:)` of NIO 2.101 installs no `AcceptBackoffHandler` (only its async `bind(...)`
/// returning an `NIOAsyncChannel` does), and that handler would not stop the spin after a failed accept anyway
/// (see ``AcceptGuardHandler``), so the pause is ``AcceptGuardHandler``'s.
public enum ListenerGuards {
    /// The pause after a failed accept. nginx waits 500 ms; a shorter pause resumes sooner once descriptors free up,
    /// and one failed `accept` per pause costs nothing.
    public static let acceptBackoffMilliseconds: Int64 = 250

    /// Connections accepted per wake-up of the listening socket: one, so the cap is checked before each accept
    /// (NIO's default of 4 could overshoot it by 3).
    public static let acceptsPerRead: UInt = 1

    /// Adds an ``AcceptGuardHandler`` to a server channel's pipeline, before NIO's own accept handler.
    public static func add(
        to pipeline: ChannelPipeline.SynchronousOperations,
        cap: ConnectionCap,
        logger: Logger,
        role: String
    ) throws {
        try pipeline.addHandler(AcceptGuardHandler(cap: cap, logger: logger, role: role))
    }
}
