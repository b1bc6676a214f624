#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// `server.max_connections` and its default (SPEC §3, "Hostile clients").
extension ServerConfiguration {
    /// The cap on the proxy's client connections in force: ``maxConnections``, or ``defaultMaxConnections``.
    public var effectiveMaxConnections: Int {
        self.maxConnections ?? Self.defaultMaxConnections
    }

    /// The soft open-file limit (`RLIMIT_NOFILE`) of this process, read once, at first use (at start);
    /// `nil` when it is unlimited or cannot be read.
    public static let openFileLimit: Int? = {
        var limit = rlimit()
        #if canImport(Glibc)
        let status = getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        #else
        let status = getrlimit(RLIMIT_NOFILE, &limit)
        #endif
        // RLIM_INFINITY (all bits set) is above Int32.max too.
        guard status == 0, limit.rlim_cur <= rlim_t(Int32.max) else { return nil }
        return Int(limit.rlim_cur)
    }()

    /// 80 % of ``openFileLimit`` (at least 1), leaving the rest for upstream connections, the admin listener,
    /// Redis, log files and the runtime; 1,000,000 when the limit is unlimited or unknown.
    public static let defaultMaxConnections: Int = {
        guard let limit = Self.openFileLimit else { return 1_000_000 }
        return max(1, limit * 8 / 10)
    }()
}
