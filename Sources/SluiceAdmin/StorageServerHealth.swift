/// One storage server as the status page shows it (memcached storage: issue 21).
public struct StorageServerHealth: Sendable, Hashable {
    /// `host:port`.
    public var address: String
    /// Whether decisions for its keys go to it now (its breaker closed and a connection up).
    public var available: Bool

    public init(address: String, available: Bool) {
        self.address = address
        self.available = available
    }
}
