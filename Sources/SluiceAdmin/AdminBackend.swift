import SluiceConfig
import SluiceLimiter

/// What the admin listener reads of the running proxy (SPEC §7).
///
/// The proxy server conforms to this. Every property is read per admin request, never cached, so a reload
/// (SPEC §6) shows up at once: a new `admin_token`, new rules in `/limits`, the new config in `/config`.
///
/// - note: Properties are read on the admin listener's event loop; they must be cheap and must not block.
public protocol AdminBackend: Sendable {
    /// The configuration snapshot in use now.
    var configuration: SluiceConfiguration { get }
    /// The limiter of that snapshot; `nil` before the first one is built. `/limits` answers 503 without one.
    var limiter: RateLimiter? { get }
    /// Whether the proxy accepts traffic and its storage answers (`GET /readyz`).
    var isReady: Bool { get }
    /// Whether the storage decides requests now (Redis reachable, breaker closed). Defaults to `true`.
    var storageAvailable: Bool { get }
    /// With storage spread over several servers (memcached), each server's health in configuration order, for the
    /// status page; empty otherwise (the default).
    var storageServers: [StorageServerHealth] { get }
    /// The keys refused most recently, for the status page; `nil` when the proxy does not track them (the
    /// default).
    var limitedKeys: LimitedKeyTracker? { get }
    /// Reload counts and the last result, for the status page; `nil` when unknown (the default).
    var reloadStatus: ReloadStatus? { get }
    /// The concurrency rules of the running snapshot (issue 22), for `/limits`; `nil` without any (the default).
    var concurrencyLimiter: ConcurrencyLimiter? { get }
}

extension AdminBackend {
    public var storageAvailable: Bool { true }
    public var storageServers: [StorageServerHealth] { [] }
    public var limitedKeys: LimitedKeyTracker? { nil }
    public var reloadStatus: ReloadStatus? { nil }
    public var concurrencyLimiter: ConcurrencyLimiter? { nil }
}
