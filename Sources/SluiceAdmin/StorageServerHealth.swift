/// One storage server as the status page shows it (memcached storage: issue 21; Redis Sentinel: issue 12).
public struct StorageServerHealth: Sendable, Hashable {
    /// What the server is to the store.
    public enum Role: String, Sendable, Hashable {
        /// One of the servers the keys are spread over (memcached).
        case server
        /// The Redis primary decisions go to (Sentinel).
        case primary
        /// A sentinel that names the primary (Sentinel).
        case sentinel
    }

    /// `host:port`.
    public var address: String
    /// Whether decisions for its keys go to it now (its breaker closed and a connection up); for a sentinel,
    /// whether the last exchange with it worked.
    public var available: Bool
    /// Defaults to `.server`.
    public var role: Role

    public init(address: String, available: Bool, role: Role = .server) {
        self.address = address
        self.available = available
        self.role = role
    }
}
