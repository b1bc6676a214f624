import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// Socket-level levers below NIO's defaults, read from the environment at start (docs/performance.md records what
/// each did when measured): not configuration a user needs, but a way to measure them on any machine without a
/// rebuild.
///
/// - `SLUICE_MAX_MESSAGES_PER_READ`: NIO's `maxMessagesPerRead` for client and upstream connections (default 4).
/// - `SLUICE_RECEIVE_BUFFER_BYTES`: a fixed-size receive buffer instead of NIO's adaptive one (64 B to 64 KiB, grown
///   and shrunk with the reads).
struct ProxyTuning: Sendable {
    var maxMessagesPerRead: UInt?
    var receiveBufferBytes: Int?

    static let fromEnvironment: ProxyTuning = {
        func value(_ name: String) -> Int? {
            guard let text = getenv(name) else { return nil }
            return Int(String(cString: text)).flatMap { $0 > 0 ? $0 : nil }
        }
        return ProxyTuning(
            maxMessagesPerRead: value("SLUICE_MAX_MESSAGES_PER_READ").map { UInt($0) },
            receiveBufferBytes: value("SLUICE_RECEIVE_BUFFER_BYTES")
        )
    }()
}

extension ServerBootstrap {
    /// The child channel options of ``ProxyTuning``.
    func tuned(_ tuning: ProxyTuning) -> ServerBootstrap {
        var bootstrap = self
        if let count = tuning.maxMessagesPerRead {
            bootstrap = bootstrap.childChannelOption(.maxMessagesPerRead, value: count)
        }
        if let bytes = tuning.receiveBufferBytes {
            bootstrap = bootstrap.childChannelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: bytes))
        }
        return bootstrap
    }
}

extension ClientBootstrap {
    /// The channel options of ``ProxyTuning``.
    func tuned(_ tuning: ProxyTuning) -> ClientBootstrap {
        var bootstrap = self
        if let count = tuning.maxMessagesPerRead {
            bootstrap = bootstrap.channelOption(.maxMessagesPerRead, value: count)
        }
        if let bytes = tuning.receiveBufferBytes {
            bootstrap = bootstrap.channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: bytes))
        }
        return bootstrap
    }
}
